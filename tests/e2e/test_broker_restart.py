"""A broker that restarts without its data: the worker reconnects instead of exiting, and the
work the broker lost moves again within seconds, not after MESSAGE_STALE_AFTER_SECONDS.

Each test runs its own broker server, Redis or a RabbitMQ node as the suite runs on (killed and
started again here, its data lost), and its own web, worker and beat processes pointed at it;
the tests' own broker and the machine's are never touched."""

from __future__ import annotations

import time

import pytest

from bench.servers import free_port
from campaigns.models import CampaignRun, RunStatus
from messaging.models import Message, MessageStatus
from messaging.services.subscriptions import SYSTEM, subscription_register

from .conftest import broker_env, private_broker, queued, wait_for
from .processes import api, stack_processes, start, start_web

pytestmark = pytest.mark.e2e


@pytest.fixture
def broker():
    with private_broker() as server:
        yield server


@pytest.fixture
def stack(e2e, worker_env, broker, tmp_path):
    """Web, worker and beat on the private broker. The stale-pending sweep runs every second
    but counts work as lost only after 300 s, and the campaign watchdog after 300 s, so what
    moves within the tests' deadlines was recovered because the broker lost it."""
    port = free_port()
    env = {
        **worker_env,
        **broker_env(broker),
        "MESSAGE_BATCH_SIZE": "5",
        "MESSAGE_STALE_AFTER_SECONDS": "300",
        "CAMPAIGN_STALL_SECONDS": "300",
        "MESSAGE_SWEEP_INTERVAL_SECONDS": "1",
        "API_RATE_LIMIT": "10000",
    }
    # The worker as `make run` and compose run it: with gossip, mingle and heartbeats.
    processes = stack_processes(env, tmp_path, port=port, name="restart")
    yield processes
    for process in processes.values():
        process.stop()


def subscriptions(application, prefix: str, count: int, **fields) -> list[str]:
    return [
        str(
            subscription_register(
                application=application, actor=SYSTEM, type="iOSPush",
                token=f"{prefix}{i:060x}", **fields,
            )[0].pk
        )
        for i in range(count)
    ]  # fmt: skip


def statuses(ids) -> dict[str, int]:
    found: dict[str, int] = {}
    for status in Message.objects.filter(pk__in=ids).values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


def test_the_worker_reconnects_when_the_broker_restarts_under_it(live_app, stack, broker):
    start_web(stack["web"])
    start(stack["beat"], "beat: Starting")
    start(stack["worker"], "ready.")
    key = live_app.server_key
    # Three batches of slow sends (2 s each at the fake): two run, one waits in the worker,
    # fewer than its prefetch limit, so it is still waiting on the broker when it goes away.
    slow = subscriptions(live_app, "5104", 15)
    status, body = api(stack["web"], key, "POST", "/api/v1/messages",
                       {"subscription_ids": slow, "title": "t", "body": "b"})  # fmt: skip
    assert status == 202, body
    first = [m["id"] for m in body["messages"]]
    wait_for(lambda: stack["worker"].text().count("received") >= 3, timeout=20,
             what="three delivery tasks received")  # fmt: skip
    time.sleep(0.5)  # the worker is back to waiting on the broker

    broker.restart(down_seconds=2, lose_data=True)

    wait_for(lambda: stack["worker"].text().count("Connected to") >= 2 or not
             stack["worker"].alive(), timeout=30, what="the worker to reconnect")  # fmt: skip
    assert stack["worker"].alive(), stack["worker"].text()[-4000:]
    assert "Unrecoverable error" not in stack["worker"].text()
    # It delivers what is sent after the restart.
    fresh = subscriptions(live_app, "abcd", 3)
    status, body = api(stack["web"], key, "POST", "/api/v1/messages",
                       {"subscription_ids": fresh, "title": "t", "body": "b"})  # fmt: skip
    assert status == 202, body
    after = [m["id"] for m in body["messages"]]
    wait_for(lambda: statuses(after) == {"successful": 3}, timeout=20, what="sends after it")
    # The batches in flight at the restart finished, and the one the worker held but had not
    # started (gone with the broker's data) was enqueued again: none is left pending.
    wait_for(lambda: MessageStatus.PENDING not in statuses(first), timeout=20, what="in flight")
    assert stack["worker"].alive()


def test_work_the_broker_lost_moves_again_without_waiting_for_the_stale_sweep(
    live_app, stack, broker
):
    start_web(stack["web"])
    start(stack["beat"], "beat: Starting")
    key = live_app.server_key
    # No worker yet: what is sent and started now waits in the broker.
    targets = subscriptions(live_app, "abcd", 12)
    status, body = api(stack["web"], key, "POST", "/api/v1/messages",
                       {"subscription_ids": targets, "title": "t", "body": "b"})  # fmt: skip
    assert status == 202, body
    sent = [m["id"] for m in body["messages"]]
    subscriptions(live_app, "abce", 30, tags={"plan": "gold"})
    status, body = api(stack["web"], key, "POST", "/api/v1/campaigns", {
        "name": "lost", "title": "t", "body": "b", "targeting_criteria": {"tags": {"plan": "gold"}},
    })  # fmt: skip
    assert status == 201, body
    campaign_id = body["id"]
    status, body = api(stack["web"], key, "POST", f"/api/v1/campaigns/{campaign_id}/execute")
    assert status == 202, body
    wait_for(lambda: broker_queued(broker) >= 2, timeout=10, what="the tasks to reach the broker")

    broker.restart(down_seconds=1, lose_data=True)  # every queued task is gone
    assert broker_queued(broker) == 0
    start(stack["worker"], "ready.")

    wait_for(lambda: statuses(sent) == {"successful": 12}, timeout=30, what="the lost sends")
    wait_for(
        lambda: CampaignRun.objects.filter(campaign_id=campaign_id, status=RunStatus.COMPLETED,
                                           successful=30).exists(),
        timeout=30, what="the campaign to complete",
    )  # fmt: skip
    assert "The broker lost its queued tasks" in stack["worker"].text()


def broker_queued(broker) -> int:
    return queued(broker.url)
