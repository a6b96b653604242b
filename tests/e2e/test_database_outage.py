"""The database goes away and comes back: web, worker and beat ride it out. While it cannot be
reached the API answers 503 with Retry-After in the error shape; after its connections were
cut, the next requests and tasks get fresh ones (no 5xx, nothing lost).

The processes reach PostgreSQL through a TCP proxy on loopback (tests/tcp_proxy.py) that the
test cuts, stops and starts again; the machine's PostgreSQL is never touched."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from bench.servers import free_port
from messaging.models import Message, SweepMark
from messaging.services.subscriptions import SYSTEM, subscription_register
from tests.tcp_proxy import TcpProxy

from .conftest import broker_env, private_broker, wait_for
from .processes import api, request, stack_processes, start, start_web

pytestmark = pytest.mark.e2e
THREADS = 4


@pytest.fixture
def proxy():
    db = settings.DATABASES["default"]
    server = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)).listen()
    yield server
    server.stop()


@pytest.fixture
def stack(e2e, worker_env, proxy, tmp_path):
    """Web, worker and beat on the proxied database, with a broker of their own (the suite's
    worker must not take their tasks)."""
    db = settings.DATABASES["default"]
    with private_broker() as broker:
        port = free_port()
        env = {
            **worker_env,
            "DATABASE_URL": f"postgres://{db['USER']}@{proxy.url_host_port}/{db['NAME']}",
            **broker_env(broker),
            "DB_CONNECT_TIMEOUT": "2",
            "MESSAGE_SWEEP_INTERVAL_SECONDS": "1",
            "API_RATE_LIMIT": "10000",
        }
        processes = stack_processes(
            env,
            tmp_path,
            port=port,
            name="db",
            threads=THREADS,
            worker_args=("--without-gossip", "--without-mingle", "--without-heartbeat"),
        )
        try:
            yield processes
        finally:
            for process in processes.values():
                process.stop()


def concurrently(call, times: int) -> list:
    with ThreadPoolExecutor(max_workers=times) as pool:
        return list(pool.map(lambda _: call(), range(times)))


def send(stack, key: str, subscription_ids: list[str]) -> list[str]:
    body = {"subscription_ids": subscription_ids, "title": "t", "body": "b"}
    status, body = api(stack["web"], key, "POST", "/api/v1/messages", body)
    assert status == 202, body
    return [m["id"] for m in body["messages"]]


def delivered(ids: list[str]) -> bool:
    return Message.objects.filter(pk__in=ids, status="successful").count() == len(ids)


def test_web_worker_and_beat_ride_out_database_outages(live_app, stack, proxy):
    start_web(stack["web"])
    start(stack["worker"], "ready.")
    start(stack["beat"], "beat: Starting")
    key = live_app.server_key
    targets = [
        str(subscription_register(
            application=live_app, actor=SYSTEM, type="iOSPush", token=f"abcd{i:060x}"
        )[0].pk)
        for i in range(4)
    ]  # fmt: skip

    def get() -> int:
        return api(stack["web"], key, "GET", f"/api/v1/subscriptions/{targets[0]}")[0]

    # Every web thread holds a persistent connection; the worker has delivered once.
    assert concurrently(get, 4 * THREADS) == [200] * (4 * THREADS)
    first = send(stack, key, targets)
    wait_for(lambda: delivered(first), timeout=20, what="the first sends")

    # Every connection of the stack is cut (as when every backend is terminated).
    assert proxy.cut() >= 2
    assert concurrently(get, 4 * THREADS) == [200] * (4 * THREADS)
    after_cut = send(stack, key, targets)
    wait_for(lambda: delivered(after_cut), timeout=20, what="sends after the cut")

    # Unreachable: refused connections, then a server that does not answer.
    proxy.stop()
    for method, path, body in [
        ("GET", f"/api/v1/subscriptions/{targets[0]}", None),
        ("POST", "/api/v1/messages", {"subscription_ids": targets, "title": "t", "body": "b"}),
    ]:
        status, headers, answer = request(stack["web"], key, method, path, body)
        assert status == 503, answer
        assert headers["Retry-After"] == "5"
        assert answer["error"]["code"] == "service_unavailable"
        assert set(answer["error"]) == {"code", "message", "details"}
    proxy.hang()
    started = time.monotonic()
    status, headers, answer = request(
        stack["web"], key, "GET", f"/api/v1/subscriptions/{targets[0]}"
    )
    assert status == 503 and headers["Retry-After"] == "5", answer
    assert time.monotonic() - started < 2 * 2 + 3  # DB_CONNECT_TIMEOUT bounds the wait

    # Back: requests and deliveries go on, and so do beat's sweeps.
    proxy.cut()
    proxy.listen()
    wait_for(lambda: get() == 200, timeout=15, what="the API to answer again")
    assert concurrently(get, 4 * THREADS) == [200] * (4 * THREADS)
    back = send(stack, key, targets)
    wait_for(lambda: delivered(back), timeout=30, what="sends after the outage")
    # Each sweep moves its "due" mark to its own start (the sweep writes no log line when
    # it found nothing to do).
    swept = sweep_position()
    wait_for(lambda: sweep_position() > swept + timedelta(seconds=2), timeout=20,
             what="beat to keep scheduling the sweep")  # fmt: skip
    for name in ("web", "worker", "beat"):
        assert stack[name].alive(), stack[name].text()[-3000:]
    assert " 500 " not in stack["web"].text()


def sweep_position() -> datetime:
    mark = SweepMark.objects.filter(name="due").first()
    return mark.position if mark else datetime.min.replace(tzinfo=UTC)
