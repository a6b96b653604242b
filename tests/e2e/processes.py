"""Processes of the stack that e2e tests start themselves (web, worker, beat), each ended by its
PID, and a small JSON client for the web one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from bench.servers import answers

from .conftest import QUEUES, ROOT, wait_for


class Process:
    """One process tree of ours, started and ended by its PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "signal_project", *args]


def stack_processes(
    env: dict[str, str],
    log_dir: Path,
    *,
    port: int,
    name: str,
    threads: int = 4,
    web_args: tuple[str, ...] = (),
    worker_args: tuple[str, ...] = (),
) -> dict[str, Process]:
    """Web (gunicorn on `port`), worker (all four queues, `-c 2`, node `name@%h`) and beat, not
    started: a test starts them (`start`) in the order it needs. `processes["web"].url` is
    the web process's base URL."""
    processes = {
        "web": Process(
            "web",
            [sys.executable, "-m", "gunicorn", "signal_project.wsgi:application",
             "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", str(threads), *web_args],
            env, log_dir,
        ),
        "worker": Process(
            "worker",
            celery("worker", "-Q", QUEUES, "-c", "2", "-l", "info", "-n", f"{name}@%h",
                   *worker_args),
            env, log_dir,
        ),
        "beat": Process(
            "beat",
            celery("beat", "-l", "info", "--pidfile", str(log_dir / "beat.pid"),
                   "-s", str(log_dir / "beat-schedule")),
            env, log_dir,
        ),
    }  # fmt: skip
    processes["web"].url = f"http://127.0.0.1:{port}"
    return processes


def start(process: Process, ready: str) -> None:
    process.start()
    wait_for(lambda: ready in process.text() or not process.alive(), timeout=60, what=ready)
    assert process.alive(), process.text()[-3000:]


def start_web(web: Process) -> None:
    web.start()
    port = int(web.url.rsplit(":", 1)[1])
    wait_for(lambda: answers(port) or not web.alive(), timeout=30, what="gunicorn")
    assert web.alive(), web.text()[-3000:]


def api(web: Process, key: str, method: str, path: str, body: dict | None = None) -> tuple:
    """(status, JSON body) of one request to the web process."""
    status, _headers, answer = request(web, key, method, path, body)
    return status, answer


def request(
    web: Process, key: str, method: str, path: str, body: dict | None = None, headers=None
) -> tuple:
    """(status, headers, JSON body) of one request to the web process."""
    outgoing = urllib.request.Request(  # noqa: S310 (our own loopback server)
        web.url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"X-API-Key": key, "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=30) as response:  # noqa: S310
            return response.status, response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, exc.headers, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, exc.headers, {"not_json": raw[:300].decode(errors="replace")}
