"""Structured logs: the LOGGING dictionary of every process (web, ASGI, worker, beat), and the
context each line carries.

Every logger, ours (`logging.getLogger(__name__)`) and the libraries' (Django, Celery,
gunicorn, hypercorn), writes through one handler whose formatter is structlog's
ProcessorFormatter, so all lines have one shape:

- LOG_FORMAT=json: one JSON object a line with `timestamp` (ISO 8601, UTC), `level`, `event`,
  `logger`, and `request_id`, `api_key`, `task_id`, `message_id`, `campaign_id` while they
  are bound (structlog.contextvars); an exception is the string field `exception`. `api_key`
  is the prefix of the request's key (its first 11 characters, bound where the API
  authenticates it), never the key.
- LOG_FORMAT=console (the default): the same fields as a line for people.

The context travels: core.middleware binds the request's id; a task published meanwhile
carries it in its `request_id` header (`add_request_id_header`), and the worker binds it with
the task's id while the task runs (`bind_task_context`, `clear_task_context`); the Celery
signals are connected in signal_project/celery.py.

Celery's per-task INFO lines for the periodic maintenance tasks (beat's "Sending due task",
the worker's "received" and "succeeded", every few seconds) are DEBUG lines
(`PeriodicTaskChatter`): an idle service writes nothing; those tasks log their own line when
they did some work.

Nothing here reads Django's settings: gunicorn's configuration builds the same dictionary
before any Django code is loaded.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import sys

import structlog

LOG_FORMATS = ("json", "console")
# The context fields a line carries when they are bound, and the only `extra=` keys of a
# standard-library call that become fields (`logger.info(..., extra={"message_id": ...})`).
CONTEXT_FIELDS = ("request_id", "api_key", "task_id", "message_id", "campaign_id")
# Loggers of libraries that have handlers of their own (or would get some): ours instead.
_LIBRARY_LOGGERS = ("django", "django.server", "gunicorn.error", "gunicorn.access",
                    "hypercorn.error", "hypercorn.access")  # fmt: skip
# Celery's loggers whose per-task lines name the task (PeriodicTaskChatter).
_TASK_LINE_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")

_configured = False

# An API key as accounts.services makes them: "sk_" or "ck_" and 43 URL-safe characters. Its
# first 11 characters (the prefix) name it; a whole key never reaches a log line.
_RAW_API_KEY = re.compile(r"(?<![A-Za-z0-9])([sc]k_[A-Za-z0-9_-]{8})[A-Za-z0-9_-]{20,}")


def redact_api_keys(_logger, _name, event_dict: dict) -> dict:
    """Every string field of a line (the message, an exception's traceback, a server's access
    line with its query string) with any whole API key in it cut to the key's prefix and
    "…": a key given where it does not belong (in a URL, the inbox stream's `api_key`
    parameter, an error message) is not written to the logs."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "k_" in value:
            event_dict[key] = _RAW_API_KEY.sub(r"\1…", value)
    return event_dict


def _shared_processors() -> list:
    """What every line gets, whether it was logged through structlog or the standard library."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(allow=CONTEXT_FIELDS),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def formatter(log_format: str = "console", colors: bool | None = None) -> logging.Formatter:
    """The formatter of the one handler (a `()` factory of the LOGGING dictionary)."""
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        if colors is None:
            colors = sys.stdout.isatty()
        # Plain tracebacks (made into text first, so they are redacted like the rest): rich's
        # would print local variables (tokens, keys) into the logs.
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_api_keys,
            renderer,
        ],
    )


class PeriodicTaskChatter(logging.Filter):
    """Turns Celery's per-task INFO lines about the named tasks into DEBUG lines (dropped
    unless the logger writes DEBUG): beat's "Sending due task", the worker's "received" and
    "succeeded". Other tasks (deliveries, campaign steps, scheduled campaigns) keep theirs."""

    def __init__(self, tasks=()) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self.tasks:
            return True
        args = record.args
        if isinstance(args, dict):  # the worker's lines: {"name": task name, "id": ...}
            task = args.get("name")
        elif isinstance(args, tuple) and len(args) == 2:  # beat's: (entry name, task name)
            task = args[1]
        else:
            return True
        if task not in self.tasks:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def build_logging(log_format: str | None = None, level: str | None = None, quiet_tasks=()) -> dict:
    """The LOGGING dictionary: LOG_FORMAT and LOG_LEVEL from the environment unless given;
    `quiet_tasks` are the names of the periodic tasks whose Celery lines are DEBUG."""
    log_format = (log_format or os.environ.get("LOG_FORMAT") or "console").lower()
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    handler = {"handlers": ["default"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": formatter, "log_format": log_format}},
        "filters": {
            "periodic_task_chatter": {"()": PeriodicTaskChatter, "tasks": list(quiet_tasks)},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "structured",
            },
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            **{name: dict(handler) for name in _LIBRARY_LOGGERS},
            **{name: {"filters": ["periodic_task_chatter"]} for name in _TASK_LINE_LOGGERS},
        },
    }


def configure(logging_settings: dict) -> None:
    """Django's LOGGING_CONFIG: applies the dictionary, routes Python warnings into the logs
    and makes structlog's own loggers (`structlog.get_logger()`) end in the same handler."""
    global _configured
    logging.config.dictConfig(logging_settings)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured = True


def configured() -> bool:
    return _configured


# --- Context ---------------------------------------------------------------------------------

REQUEST_ID_MAX_LENGTH = 200


def current_request_id() -> str | None:
    """The id of the request (or of the request behind the task) this code runs for."""
    return structlog.contextvars.get_contextvars().get("request_id")


def add_request_id_header(headers: dict | None = None, **_signal) -> None:
    """Celery's before_task_publish: the task carries the current request's id in its
    `request_id` header (Redis and AMQP alike), unless the publisher set one."""
    if headers is not None and "request_id" not in headers:
        request_id = current_request_id()
        if request_id:
            headers["request_id"] = request_id


def bind_task_context(task_id: str | None = None, task=None, **_signal) -> None:
    """Celery's task_prerun: the task's lines carry its id and its request's."""
    structlog.contextvars.clear_contextvars()
    request_id = getattr(task.request, "request_id", None) if task is not None else None
    if request_id:
        structlog.contextvars.bind_contextvars(task_id=task_id, request_id=request_id)
    else:
        structlog.contextvars.bind_contextvars(task_id=task_id)


def clear_task_context(**_signal) -> None:
    """Celery's task_postrun: nothing of this task is carried into the next one's lines."""
    structlog.contextvars.clear_contextvars()
