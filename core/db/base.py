"""PostgreSQL's backend, whose persistent connections notice a server that closed them before
the first statement of a request or task fails on them.

Django either trusts a persistent connection (CONN_HEALTH_CHECKS off: a connection the
server closed fails the first statement of the next request of that thread, a `500`) or
sends `SELECT 1` before the first statement of every request (on: a round trip each). This
backend, with CONN_HEALTH_CHECKS off, asks the kernel instead: an idle connection's socket
has nothing to read unless the server said something while it was idle, and a server that
terminates a backend or shuts down sends its FATAL message and closes the socket. So a
`poll()` with no timeout (about a microsecond, no round trip) finds those connections, and
only for them `SELECT 1` decides; a dead one is closed, and the statement opens a fresh one.

It cannot see a connection whose peer vanished without a word (a host that lost power, a
dropped network path); a statement on it waits for TCP to give up, as with Django's check.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if (
            self.connection is None
            or self.health_check_done
            or self.health_check_enabled  # Django's own check (SELECT 1) was asked for
            or self.pool
        ):
            return super().close_if_health_check_failed()
        if self._server_spoke_while_idle() and not self.is_usable():
            self.close()
        self.health_check_done = True

    def _server_spoke_while_idle(self) -> bool:
        """True if the connection is closed or its socket has something to read (a FATAL
        message, the end of the stream, a notice)."""
        if self.connection.closed:
            return True
        try:
            fd = self.connection.fileno()
        except (base.Database.Error, OSError):  # no socket left: as good as closed
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
