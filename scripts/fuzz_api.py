"""Schemathesis against a live server: every operation of the OpenAPI document, with all checks.

Creates a throwaway database, migrates it, creates an application with a server and a client
key, serves the API with gunicorn on a free loopback port, runs schemathesis with each key, then
stops gunicorn by its PID and drops the database. Exits non-zero when a run fails.

    .venv/bin/python scripts/fuzz_api.py [--max-examples N] [--seed N]

Environment: DATABASE_URL names the PostgreSQL server (its database part is replaced by
FUZZ_DATABASE, default signal_fuzz); FUZZ_REDIS_URL and FUZZ_CACHE_URL (default Redis dbs 4
and 3 on 127.0.0.1) are the server's broker and cache. No Celery worker runs: messages stay
pending, which the API does not wait for.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOG_DIR = ROOT / "var" / "fuzz"
CONFIG = ROOT / "scripts" / "schemathesis.toml"


def _database_urls() -> tuple[str, str, str]:
    """(the throwaway database's URL, the maintenance database's URL, its name)."""
    base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/signal"))
    name = os.environ.get("FUZZ_DATABASE", "signal_fuzz")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        sys.exit(f"FUZZ_DATABASE {name!r} is not a plain database name.")
    return (
        urlunsplit(base._replace(path=f"/{name}")),
        urlunsplit(base._replace(path="/postgres")),
        name,
    )


def _admin_sql(maintenance_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(maintenance_url, autocommit=True) as connection:
        connection.execute(statement)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not serve {url} within {timeout} s")


def _run(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, check=True, **kwargs)  # noqa: S603


def _schemathesis(
    label: str, base: str, key: str, args: argparse.Namespace, extra: list[str]
) -> tuple[int, int | None, float]:
    """Runs one schemathesis pass; (exit code, cases generated, seconds)."""
    argv = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/api/v1/schema/",
        "--url",
        base,
        "--header",
        f"X-API-Key: {key}",
        "--checks",
        "all",
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--request-timeout",
        "30",
        # Runs repeat from the seed alone, not from examples kept by earlier runs.
        "--generation-database",
        "none",
        # The API refuses U+0000 in every string (400); the document says so in its description.
        "--generation-allow-x00",
        "false",
        "--report",
        "junit",
        "--report-junit-path",
        str(LOG_DIR / f"{label}.junit.xml"),
        "--no-color",
        *extra,
    ]
    secret = f"X-API-Key: {key}"
    shown = [f"X-API-Key: <{label} key>" if arg == secret else arg for arg in argv]
    print(f"\n== schemathesis ({label} key)\n$ {shlex.join(shown)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603
        argv, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    print(output, flush=True)
    return result.returncode, _cases_generated(output), elapsed


def _cases_generated(output: str) -> int | None:
    match = re.search(r"(\d+) generated", output)
    return int(match.group(1)) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=30)
    parser.add_argument("--client-max-examples", type=int, default=15)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "20261111")))
    # One worker: parallel ones crash inside hypothesis on Python 3.11 (AST recursion check).
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    database_url, maintenance_url, database = _database_urls()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("FUZZ_REDIS_URL", "redis://127.0.0.1:6379/4"),
        "CACHE_URL": os.environ.get("FUZZ_CACHE_URL", "redis://127.0.0.1:6379/3"),
        # High enough that 429s stay rare; they are documented and allowed when they happen.
        "API_RATE_LIMIT": "100000",
        "DEBUG": "false",
        # gunicorn on loopback speaks plain HTTP: no redirect to HTTPS.
        "SECURE_SSL_REDIRECT": "false",
        "LOG_FORMAT": "console",
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "4",
    }
    env.pop("CELERY_BROKER_URL", None)
    python = str(BIN / "python")

    _admin_sql(maintenance_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _admin_sql(maintenance_url, f'CREATE DATABASE "{database}"')
    server = None
    failed = True
    try:
        _run([python, "manage.py", "migrate", "--noinput", "-v", "0"], env)
        created = _run(
            [python, "manage.py", "create_application", "--name", "schemathesis"],
            env,
            capture_output=True,
            text=True,
        )
        keys = json.loads(created.stdout.strip().splitlines()[-1])
        base = f"http://127.0.0.1:{_free_port()}"
        log = (LOG_DIR / "gunicorn.log").open("wb")
        server = subprocess.Popen(  # noqa: S603
            [python, "-m", "gunicorn", "signal_project.wsgi:application", "-c", "gunicorn.conf.py",
             "--bind", base.removeprefix("http://")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_until_serving(f"{base}/api/v1/schema/", server)

        runs = [
            ("server", keys["server_key"], args, []),
            (
                "client",
                keys["client_key"],
                argparse.Namespace(**{**vars(args), "max_examples": args.client_max_examples}),
                [],
            ),
        ]
        failed = False
        summary = []
        for label, key, run_args, extra in runs:
            code, cases, seconds = _schemathesis(label, base, key, run_args, extra)
            failed |= code != 0
            summary.append(f"{label} key: exit {code}, {cases} cases generated, {seconds:.0f} s")
        print("\n== summary\n" + "\n".join(summary), flush=True)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        _admin_sql(maintenance_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if failed:
        print(f"schemathesis failed; the server's log is {LOG_DIR / 'gunicorn.log'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
