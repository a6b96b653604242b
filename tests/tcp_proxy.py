"""A TCP proxy on loopback that a test controls: what a database outage looks like from the
application's side, without touching the machine's PostgreSQL.

- `cut()`: every connection through the proxy is closed at once (both sides), as when every
  backend is terminated or the server restarts;
- `stop()`: the port stops listening (new connections are refused) and every connection is
  cut: the database is unreachable;
- `listen()`: the same port listens again: the database is back;
- `hang()`: connections are accepted but nothing is forwarded (a server that does not
  answer), until `listen()`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0  # connections accepted since the start, forwarded or not
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket | None]] = set()
        self._listener: socket.socket | None = None
        self._hanging = False

    # --- control ---------------------------------------------------------------------------

    def listen(self) -> TcpProxy:
        """Listens (on a free port the first time, on the same port afterwards), forwarding."""
        self._hanging = False
        if self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            self._listener = listener
            threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()
        return self

    def hang(self) -> None:
        """Accepts new connections but forwards nothing and answers nothing."""
        self.listen()
        self._hanging = True

    def cut(self) -> int:
        """Closes every connection through the proxy; returns how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for sock in pair:
                if sock is not None:
                    _close(sock)
        return len(pairs)

    def stop(self) -> None:
        """Refuses new connections and cuts the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        self.cut()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for _, upstream in self._pairs if upstream is not None)

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- forwarding ------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            self.accepted += 1
            if self._hanging:
                with self._lock:
                    self._pairs.add((client, None))
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.add((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select(timeout=1.0):
                        data = key.fileobj.recv(65536)
                        if not data:
                            raise ConnectionError("closed")
                        peer[key.fileobj].sendall(data)
                    if client.fileno() < 0 or upstream.fileno() < 0:
                        raise ConnectionError("cut")
            except (OSError, ValueError, ConnectionError):
                pass
        with self._lock:
            self._pairs.discard((client, upstream))
        _close(client)
        _close(upstream)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
