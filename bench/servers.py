"""Private servers on loopback for fault injection: a PostgreSQL cluster, a Redis server and a
RabbitMQ node that exist only for the run that started them, so they can be killed, restarted
or emptied without touching the machine's own services. Each is ended by its PID.

    with PrivateRedis() as broker:          # broker.url, broker.restart(lose_data=True)
    with PrivatePostgres() as pg:           # pg.port, pg.restart(down_seconds=5)
    with PrivateRabbitMQ() as broker:       # broker.url, broker.restart(lose_data=False)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout} s")


def _end(process: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class _Server:
    """Start/stop bookkeeping shared by the servers below."""

    name = "server"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"signal-{self.name}-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = self.dir / f"{self.name}.log"

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _spawn(self, argv: list[str], env: dict | None = None) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # its own group: one signal ends it and its children
            )

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        _end(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crashed host would."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class PrivateRedis(_Server):
    """redis-server without persistence: a restart loses everything, queued tasks included."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._spawn(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)]
        )  # fmt: skip
        wait_until(lambda: answers(self.port), 20, f"redis on {self.port} did not answer")

    def restart(self, *, down_seconds: float = 5.0, lose_data: bool = True) -> float:
        """Kills the server, keeps it down, starts it again (always empty: nothing persists).
        Returns the monotonic time it answered again."""
        self.kill()
        time.sleep(down_seconds)
        self.start()
        return time.monotonic()


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return versions[-1].parent


class PrivatePostgres(_Server):
    """A PostgreSQL cluster of its own (trust auth for `postgres` on 127.0.0.1). The server
    refuses to run as root, so when we are root it runs as the `postgres` system user."""

    name = "postgres"

    def __init__(self) -> None:
        super().__init__()
        self.data = self.dir / "data"
        self._user = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        self._initdb()

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._user else argv

    def _initdb(self) -> None:
        subprocess.run(
            self._as_server_user(
                [str(_postgres_bin() / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "--no-sync", "-E", "UTF8"]
            ),
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        self._spawn(
            self._as_server_user(
                [str(_postgres_bin() / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200",
                 "-c", "shared_buffers=256MB"]
            )
        )  # fmt: skip
        wait_until(self._ready, 30, f"PostgreSQL on {self.port} did not accept connections")

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(_postgres_bin() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown: sessions are ended, the data kept.
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _end(self.process)
        self.process = None

    def restart(self, *, down_seconds: float = 5.0) -> float:
        """Fast shutdown, `down_seconds` with nothing listening, start. Returns the monotonic
        time it accepted connections again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        return time.monotonic()


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class PrivateRabbitMQ(_Server):
    """A RabbitMQ node of its own (own node name, ports, data and log directories). A restart
    keeps durable queues and persistent messages unless `lose_data` wipes its data directory."""

    name = "rabbitmq"

    def __init__(self) -> None:
        super().__init__()
        self.dist_port = free_port()
        self.node = f"signal-faults-{self.port}@localhost"
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
        }

    def start(self) -> None:
        # The server script itself: Debian's /usr/sbin wrapper switches to the rabbitmq user
        # and drops the environment that makes this node our own.
        self._spawn([RABBITMQ_SERVER], env=self._env())
        # The AMQP listener opens once the node has booted.
        wait_until(lambda: answers(self.port), 90, f"RabbitMQ node {self.node} did not start")

    def stop(self) -> None:
        # SIGTERM is a clean stop for the Erlang VM: queues and messages are written out.
        _end(self.process, timeout=60)
        self.process = None

    def restart(self, *, down_seconds: float = 5.0, lose_data: bool = False) -> float:
        self.kill() if lose_data else self.stop()
        if lose_data:
            shutil.rmtree(self.dir / "mnesia", ignore_errors=True)
        time.sleep(down_seconds)
        self.start()
        return time.monotonic()
