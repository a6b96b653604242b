"""The Celery application. Its configuration is the CELERY_* block of settings.py."""

import gc
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")

app = Celery("signal_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _refuse_undecryptable_data(**kwargs) -> None:
    from messaging.checks import verify_on_start

    verify_on_start()


@worker_process_init.connect
def _publish_without_delay(**kwargs) -> None:
    from messaging.outbox import outbox

    outbox.immediate = True


# A worker's loaded code (Django, Celery, our modules: about 130,000 objects) never becomes
# garbage, yet each full collection walks it: with 500-message batches promoting objects
# steadily, that was 0.8-1.2 s of a 15 s campaign per prefork child (a gc callback's count),
# about a seventh of a campaign's CPU. Frozen, a full collection walks the 10,000-20,000
# objects made since. A larger young generation (10,000 allocations, not 700) lets a batch's
# short-lived objects die before a collection sees them: about 1,100 -> 50 collections per
# child in the same run. Set in the main process (inherited by forked children; what solo
# and thread pools run in) and again in each prefork child, for what its start-up made.
GC_YOUNG_THRESHOLD = 10_000


@worker_init.connect
@worker_process_init.connect
def _collect_less(**kwargs) -> None:
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
