"""`make run`: one command from a fresh clone to a running service.

Uses PostgreSQL and Redis from the environment / `.env` when they answer; otherwise falls
back to SQLite and a file-system broker, and says so. Then migrates, creates the demo
application once, and runs the fake providers, the web app (gunicorn, WEB_ADDRESS), the ASGI
app (hypercorn, ASGI_ADDRESS: the inbox's live stream, /api/v1/inbox/stream, which the WSGI
workers do not serve), a Celery worker and beat in the foreground, as their supervisor: a
process that exits is started again (after a pause that grows while it keeps exiting soon
after its start), and the output says so. Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from core.metrics_process import directory_clear

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PY = sys.executable
WEB_ADDRESS = os.environ.get("WEB_ADDRESS", "127.0.0.1:8000")
ASGI_ADDRESS = os.environ.get("ASGI_ADDRESS", "127.0.0.1:8001")
APNS_PORT, FCM_PORT = 8443, 8089
SMS_PORT, WEBPUSH_PORT, KAKAO_PORT = 8090, 8091, 8092
SMTP_PORT, SMTPS_PORT, SMTP_ADMIN_PORT = 2525, 2465, 8025
# The browsers' push services (settings.WEB_PUSH_ALLOWED_HOSTS' default), plus the fake's host.
WEB_PUSH_HOSTS = (
    "fcm.googleapis.com", ".push.services.mozilla.com", ".push.apple.com", ".notify.windows.com",
)  # fmt: skip


def say(text: str) -> None:
    print(f"[make run] {text}", flush=True)


def read_env_file() -> dict[str, str]:
    """.env as a dict, created on first run with fresh secrets."""
    path = ROOT / ".env"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.write_text(
            "# Written by `make run` on first use. The environment overrides it.\n"
            "DEBUG=true\n"
            f"SECRET_KEY={secrets.token_urlsafe(40)}\n"
            f"FIELD_ENCRYPTION_KEYS={Fernet.generate_key().decode()}\n"
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/signal\n"
            "REDIS_URL=redis://127.0.0.1:6379/0\n"
        )
        os.chmod(path, 0o600)
        say("wrote .env with a new SECRET_KEY and FIELD_ENCRYPTION_KEYS")
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def ensure_database(url: str) -> None:
    """Creates the database DATABASE_URL names when the server has no such database yet."""
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/") or "signal"
    admin_url = parsed._replace(path="/postgres").geturl().replace("postgres://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")


def configure() -> dict[str, str]:
    env = {**read_env_file(), **os.environ}
    database_url = env.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/signal")
    redis_url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    VAR.mkdir(exist_ok=True)
    # Every process writes its metric files here and /metrics sums them: the files of the
    # last run's processes are gone from a new run's figures.
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR / "prometheus"))
    if env["PROMETHEUS_MULTIPROC_DIR"]:
        directory_clear(env["PROMETHEUS_MULTIPROC_DIR"])
    if database_url.startswith("postgres") and answers(database_url, 5432):
        ensure_database(database_url)
        say(f"database: PostgreSQL at {urlparse(database_url).hostname}")
    elif database_url.startswith("postgres"):
        env["DATABASE_URL"] = f"sqlite:///{VAR / 'signal.sqlite3'}"
        say(
            "PostgreSQL does not answer: FALLING BACK to SQLite (var/signal.sqlite3). "
            "Fine for a first look; use PostgreSQL for anything real."
        )
    if answers(redis_url, 6379):
        say(f"broker, cache, rate limits: Redis at {urlparse(redis_url).hostname}")
    else:
        env["CELERY_BROKER_URL"] = "filesystem://"
        env["CACHE_URL"] = "locmem://"
        for folder in ("broker", "broker-processed"):
            (VAR / folder).mkdir(exist_ok=True)
        say(
            "Redis does not answer: FALLING BACK to a file-system broker (var/broker) and "
            "per-process caches (rate limits are per process)."
        )
    env.setdefault("APNS_ENDPOINT", f"https://127.0.0.1:{APNS_PORT}")
    env.setdefault("APNS_CA_FILE", str(VAR / "fake" / "ca.pem"))
    env.setdefault("FCM_ENDPOINT", f"http://127.0.0.1:{FCM_PORT}")
    env.setdefault("SMS_ENDPOINT", f"http://127.0.0.1:{SMS_PORT}")
    env.setdefault("KAKAO_ENDPOINT", f"http://127.0.0.1:{KAKAO_PORT}")
    env.setdefault("SMTP_CA_FILE", str(VAR / "fake" / "ca.pem"))
    # The fake push service's endpoints are http://127.0.0.1:<port>/push/...: allowed here only.
    env.setdefault("WEB_PUSH_ALLOWED_HOSTS", ",".join([*WEB_PUSH_HOSTS, "127.0.0.1"]))
    # Where the fake Twilio posts its status callbacks, and what unsubscribe links point at.
    env.setdefault("PUBLIC_URL", f"http://{WEB_ADDRESS}")
    # No proxy in front here: pages of the web app open the stream on the ASGI process itself.
    env.setdefault("INBOX_STREAM_URL", f"http://{ASGI_ADDRESS}")
    # Plain HTTP on loopback, also when .env turns DEBUG off: no redirect to HTTPS, and cookies
    # the admin login can set over HTTP.
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        env.setdefault(name, "false")
    return env


def wait_for_file(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear: did the fake providers start?")
        time.sleep(0.2)


class Child:
    """One supervised process: started again whenever it exits."""

    # A child that ran this long is healthy again: its next restart comes at once.
    HEALTHY_AFTER = 60.0
    MAX_PAUSE = 30.0

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.pause = 0.0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=ROOT)
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self) -> None:
        """Notices an exit and schedules the restart; restarts when its pause is over."""
        now = time.monotonic()
        if self.restart_at is None and self.process.poll() is not None:
            ran = now - self.started_at
            self.pause = (
                0.0 if ran >= self.HEALTHY_AFTER else min(max(self.pause * 2, 1.0), self.MAX_PAUSE)
            )
            self.restart_at = now + self.pause
            say(
                f"{self.name} exited with code {self.process.returncode} after {ran:.0f} s; "
                f"restarting it in {self.pause:.0f} s"
            )
        if self.restart_at is not None and now >= self.restart_at:
            self.restarts += 1
            say(f"restarting {self.name} (restart {self.restarts})")
            self.start()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main() -> int:
    env = configure()
    manage = [PY, str(ROOT / "manage.py")]
    children: list[Child] = []

    def start(name: str, argv: list[str]) -> None:
        say(f"starting {name}: {' '.join(argv[1:])}")
        child = Child(name, argv, env)
        child.start()
        children.append(child)

    def stop(*_args) -> None:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()

    # Ctrl-C (or a SIGTERM) ends the loop below and stops every child, also when this
    # process was started in the background, where SIGINT would be ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        subprocess.run([*manage, "migrate", "--no-input"], env=env, cwd=ROOT, check=True)
        (VAR / "fake" / "ready.json").unlink(missing_ok=True)  # a stale one from the last run
        start(
            "fake providers",
            [
                PY,
                "-m",
                "fakes",
                f"--apns-port={APNS_PORT}",
                f"--fcm-port={FCM_PORT}",
                f"--sms-port={SMS_PORT}",
                f"--smtp-port={SMTP_PORT}",
                f"--smtps-port={SMTPS_PORT}",
                f"--smtp-admin-port={SMTP_ADMIN_PORT}",
                f"--webpush-port={WEBPUSH_PORT}",
                f"--kakao-port={KAKAO_PORT}",
                f"--state-dir={VAR / 'fake'}",
            ],
        )
        # Written once every fake listens (and its accounts are in the state directory).
        wait_for_file(VAR / "fake" / "ready.json")
        subprocess.run(
            # The demo page (web app) opens the stream on the ASGI app: another origin.
            [
                *manage,
                "bootstrap_demo",
                f"--fake-state-dir={VAR / 'fake'}",
                f"--allowed-origin=http://{WEB_ADDRESS}",
            ],  # fmt: skip
            env=env,
            cwd=ROOT,
            check=True,
        )
        start(
            "web",
            [
                PY,
                "-m",
                "gunicorn",
                "signal_project.wsgi:application",
                "-b",
                WEB_ADDRESS,
                "-w",
                "2",
                "--access-logfile",
                "-",
            ],
        )
        # The same API, and the inbox's stream: one process, every stream a coroutine in it.
        start(
            "asgi",
            [
                PY,
                "-m",
                "hypercorn",
                "--config",
                "file:hypercorn.conf.py",
                "signal_project.asgi:application",
                "--bind",
                ASGI_ADDRESS,
                "--workers",
                "1",
                "--access-logfile",
                "-",
            ],
        )
        start(
            "worker",
            [
                PY,
                "-m",
                "celery",
                "-A",
                "signal_project",
                "worker",
                "-Q",
                "critical,messages,campaigns,retry",
                "-l",
                "info",
            ],
        )
        start(
            "beat",
            [
                PY,
                "-m",
                "celery",
                "-A",
                "signal_project",
                "beat",
                "-l",
                "info",
            ],
        )
        say(
            f"ready: API http://{WEB_ADDRESS}/api/v1/docs/  admin http://{WEB_ADDRESS}/admin/  "
            f"inbox stream http://{ASGI_ADDRESS}/api/v1/inbox/stream "
            "(keys and login above, also in var/demo.json). Ctrl-C stops everything."
        )
        while True:
            for child in children:
                child.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
