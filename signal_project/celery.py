"""The Celery application. Its configuration is the CELERY_* block of settings.py."""

import os

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)

from core.logging import add_request_id_header, bind_task_context, clear_task_context
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


@setup_logging.connect
def _log_as_django_does(**kwargs) -> None:
    """Celery leaves the logging alone (no handlers of its own on the root logger, no `-l`
    level): the worker's and beat's lines, the libraries' too, take the shape and level of
    settings.LOGGING (core.logging), which Django applied at its setup."""
    from django.conf import settings

    from core import logging as structured

    if not structured.configured():
        structured.configure(settings.LOGGING)


# A published task carries the request id it was published for; the worker binds it (and the
# task's id) for the task's lines.
before_task_publish.connect(add_request_id_header, weak=False)
task_prerun.connect(bind_task_context, weak=False)
task_postrun.connect(clear_task_context, weak=False)


@beat_init.connect
def _mark_a_new_broker(**kwargs) -> None:
    """A broker this deployment never used gets its marker before beat's first work reaches
    it, so that losing what is queued from then on is recognised even when no worker swept
    before the loss (messaging.dispatch.broker_lost_queued_tasks; a loss found here is left
    to the sweep)."""
    import logging

    from messaging.dispatch import broker_lost_queued_tasks

    try:
        broker_lost_queued_tasks()
    except Exception as exc:
        logging.getLogger(__name__).warning("Could not mark the broker: %s", exc)
