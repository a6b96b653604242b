"""What the inbox's end-to-end tests share: the ASGI app under hypercorn and the WSGI app under
gunicorn on loopback ports (hypercorn serves the API and the SSE stream; either serves the
reference page with INBOX_DEMO on), a small SSE client
that records when each event arrived, and a tiny Chrome DevTools Protocol client over aiohttp's
websocket that drives Debian's headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, wait_for

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    """Whether an HTTP server answers there at all (any status)."""
    try:
        requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return True


class Server:
    """A web server process (hypercorn for the ASGI app, gunicorn for the WSGI app) on a free
    loopback port, in its own process group."""

    def __init__(self, kind: str, env: dict[str, str], log: Path):
        self.kind, self.env, self.log = kind, env, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        bind = f"127.0.0.1:{self.port}"
        if self.kind == "asgi":
            return [sys.executable, "-m", "hypercorn", "signal_project.asgi:application",
                    "--bind", bind, "--workers", "1"]  # fmt: skip
        return [sys.executable, "-m", "gunicorn", "signal_project.wsgi:application",
                "--bind", bind, "--workers", "1", "--threads", "4"]  # fmt: skip

    def start(self) -> Server:
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: self.process.poll() is not None or _answers(f"{self.url}/api/v1/"),
                timeout=60,
                what=f"{self.command()[2]} to answer",
            )
        except AssertionError:
            self.stop()
            raise
        if self.process.poll() is not None:
            log = self.log.read_text(errors="replace")
            raise RuntimeError(f"the {self.kind} server exited:\n{log}")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


# Import it as `asgi_server_fixture` into a test module; it stops with that module's last test.
@pytest.fixture(scope="module", name="asgi_server")
def asgi_server_fixture(worker_env, tmp_path_factory):
    env = {**worker_env, "INBOX_DEMO": "true"}
    server = Server("asgi", env, tmp_path_factory.mktemp("asgi") / "hypercorn.log").start()
    yield server
    server.stop()


class SSEClient:
    """Reads one text/event-stream response in a thread; `events` receives (arrived_at
    monotonic, {"id", "event", "data"}) as each event completes."""

    def __init__(self, url: str, *, params: dict, headers: dict | None = None):
        self.events: queue.Queue = queue.Queue()
        self.comments: list[str] = []
        self.ended: str | None = None
        self.retry: int | None = None
        self.response = requests.get(url, params=params, headers=headers or {}, stream=True,
                                     timeout=(5, 60))  # fmt: skip
        self.status = self.response.status_code
        self.content_type = self.response.headers.get("Content-Type", "")
        self._thread = None
        if self.status == 200:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    def _read(self) -> None:
        event: dict = {}
        try:
            for raw in self.response.iter_lines(decode_unicode=True):
                line = raw if raw is not None else ""
                if line == "":
                    if "data" in event:
                        event.setdefault("event", "message")
                        self.events.put((time.monotonic(), event))
                    event = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        event["data"] = event["data"] + "\n" + value if "data" in event else value
                    elif name in ("id", "event"):
                        event[name] = value
                    elif name == "retry":
                        self.retry = int(value)
        except Exception as exc:  # the test closed the stream under the reader
            self.ended = repr(exc)

    def next(self, timeout: float = 10.0) -> tuple[float, dict]:
        return self.events.get(timeout=timeout)

    def until(self, predicate, timeout: float = 10.0) -> tuple[float, dict]:
        """The first event (arrival time, event) that predicate accepts; earlier ones are kept
        in `skipped`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no such event within the time")
            arrived, event = self.events.get(timeout=remaining)
            if predicate(event):
                return arrived, event

    def drain(self, wait: float = 0.5) -> list[dict]:
        out = []
        deadline = time.monotonic() + wait
        while True:
            try:
                out.append(self.events.get(timeout=max(deadline - time.monotonic(), 0.01))[1])
            except queue.Empty:
                return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.response.close()


# --- Chromium over the DevTools protocol --------------------------------------------------------


def ensure_chromium() -> str:
    """Debian's chromium; scripts/ensure_chromium.sh installs it (the `make test` setup). Here
    only its absence is reported: a browser is never downloaded from anywhere else."""
    if not os.access(CHROMIUM, os.X_OK):
        script = ROOT / "scripts" / "ensure_chromium.sh"
        subprocess.run([str(script)], check=False)
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(
            f"{CHROMIUM} is missing and could not be installed with apt-get "
            "(run scripts/ensure_chromium.sh as root): the browser test needs Debian's chromium"
        )
    return CHROMIUM


class Browser:
    """Headless Chromium with one page, driven over CDP from a background event loop; every
    method is synchronous for the test."""

    def __init__(self, profile: Path, log: Path):
        self.profile, self.log = profile, log
        self.process: subprocess.Popen | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._ids = 0
        self._pending: dict[int, asyncio.Future] = {}
        self.console: list[str] = []
        self.exceptions: list[str] = []

    def start(self) -> Browser:
        self.process = subprocess.Popen(
            [
                ensure_chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        port_file = self.profile / "DevToolsActivePort"
        wait_for(
            lambda: (
                self.process.poll() is not None
                or (port_file.exists() and port_file.read_text().count("\n") >= 1)
            ),
            timeout=30,
            what="chromium's DevTools port",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"chromium exited:\n{self.log.read_text(errors='replace')}")
        port = int(port_file.read_text().splitlines()[0])
        pages = wait_for(
            lambda: [
                t
                for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                if t.get("type") == "page"
            ],
            timeout=20,
            what="chromium's first page",
        )
        self._thread.start()
        self._run(self._connect(pages[0]["webSocketDebuggerUrl"]))
        self.call("Runtime.enable")
        self.call("Page.enable")
        return self

    def _run(self, coroutine, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _connect(self, url: str) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        """Answers to calls, and what the page reports: console messages with their level,
        exceptions, and (once Log.enable was called) the browser's own log entries, such as
        resources that failed to load."""
        async for message in self._ws:
            payload = json.loads(message.data)
            if "id" in payload:
                future = self._pending.pop(payload["id"], None)
                if future and not future.done():
                    future.set_result(payload)
                continue
            method, params = payload.get("method"), payload.get("params", {})
            if method == "Runtime.consoleAPICalled":
                texts = (str(a.get("value", a.get("description"))) for a in params.get("args", []))
                self.console.append(f"console.{params.get('type')}: {' '.join(texts)}")
            elif method == "Runtime.exceptionThrown":
                self.exceptions.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded":
                entry = params["entry"]
                self.console.append(f"{entry['level']} ({entry['source']}): {entry['text']}")

    async def _call(self, method: str, params: dict) -> dict:
        self._ids += 1
        future = self.loop.create_future()
        self._pending[self._ids] = future
        await self._ws.send_str(json.dumps({"id": self._ids, "method": method, "params": params}))
        answer = await future
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def call(self, method: str, **params) -> dict:
        return self._run(self._call(method, params))

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        wait_for(
            lambda: self.evaluate("document.readyState") == "complete",
            timeout=20,
            what=f"{url} to load",
        )

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        assert box, f"nothing on the page matches {selector}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], **extra)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._close(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    async def _close(self) -> None:
        await self._ws.close()
        await self._session.close()
