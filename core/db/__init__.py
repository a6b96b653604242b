"""The database as web, worker and beat processes meet it: persistent connections that the
server closed are replaced before a request or task uses them (see `base.py`, the backend
that does it), and an unreachable database is told apart from other errors, so the API can
answer `503` with `Retry-After` instead of `500`.

`ENGINE = "core.db"` is PostgreSQL's backend with that check (settings.py sets it).
"""

from __future__ import annotations

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

# Errors of a connection that failed or was lost (never of a statement that PostgreSQL
# refused): what a task retries, and what makes a request `503`.
CONNECTION_ERRORS = (OperationalError, InterfaceError)

# Server-sent SQLSTATEs that mean "not now" rather than "not this": the server is shutting
# down or terminated the backend (57P01, 57P02), is starting up (57P03), or has no
# connection slot left (53300). Class 08 is every connection exception.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unavailable(exc: BaseException | None) -> bool:
    """True if `exc` means the database cannot be reached or the connection was lost: no
    answer, refused, timed out, closed under us, or a server that is going down."""
    if not isinstance(exc, CONNECTION_ERRORS):
        return False
    # Django re-raises the driver's exception with the driver's as its cause; errors the
    # client raises itself (no connection, connection lost, timeout) carry no SQLSTATE.
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate is None:
        return True
    return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES


def retry_after_seconds() -> int:
    """The Retry-After of a `503` while the database is unavailable."""
    return settings.DB_UNAVAILABLE_RETRY_AFTER


def check_connections_before_next_use() -> None:
    """Makes every open connection of this thread check itself before its next statement.

    Django does this at the start of every request (`close_old_connections`); a Celery
    worker reuses its connection across tasks (CELERY_DB_REUSE_MAX) and calls nothing, so
    its task_prerun hook calls this."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            connection.health_check_done = False
