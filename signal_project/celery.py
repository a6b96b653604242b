"""The Celery application. Its configuration is the CELERY_* block of settings.py."""

import os

from celery import Celery
from celery.signals import task_prerun, worker_init, worker_process_init

from signal_project.gc_settings import freeze_loaded_code

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
    from messaging.dispatch import outbox

    outbox.immediate = True


@worker_init.connect
@worker_process_init.connect
def _collect_less(**kwargs) -> None:
    """In the main process (inherited by forked children; what solo and thread pools run in)
    and again in each prefork child, for what its start-up made."""
    freeze_loaded_code()


@task_prerun.connect
def _check_connections_before_task(**kwargs) -> None:
    """A connection the database closed since the last task is replaced before this task's
    first statement, not found dead by it (see core/db/base.py)."""
    from core.db import check_connections_before_next_use

    check_connections_before_next_use()
