"""Fallback across channels end to end: beat's tick (`messaging.fallback_advance`, every
second here) and real workers move a chain from an iOS push (the fake APNs accepts it, and
nobody reports it received) to an SMS (the fake Twilio reports it delivered), or stop it
where the app reported the push received; and a chain whose worker is SIGKILLed and whose
broker restarts without its data still sends its next hop, exactly once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.services import channel_credentials_set
from bench.servers import free_port
from messaging.models import FallbackChain, Message
from messaging.services.subscriptions import SYSTEM, subscription_register

from .conftest import broker_env, private_broker, wait_for
from .processes import Process, api, celery, stack_processes, start, start_web

pytestmark = pytest.mark.e2e

AFTER_SECONDS = 2
FAST = {"FALLBACK_INTERVAL_SECONDS": "1", "FALLBACK_MIN_AFTER_SECONDS": "1"}


@pytest.fixture
def sms_app(live_app, fake_providers, settings):
    """The e2e application with the fake Twilio's credentials; this process accepts
    after_seconds of 1 s and more, as the processes the tests start do."""
    settings.FALLBACK_MIN_AFTER_SECONDS = 1
    channel_credentials_set(
        application=live_app, channel="SMS", values=dict(fake_providers.sms_credentials().values)
    )
    return live_app


@pytest.fixture
def beat(e2e, worker_env, tmp_path):
    """Beat on the tests' broker, ticking every second; the suite's worker runs the ticks."""
    process = Process(
        "beat",
        celery("beat", "-l", "info", "--pidfile", str(tmp_path / "beat.pid"),
               "-s", str(tmp_path / "beat-schedule")),
        {**worker_env, **FAST}, tmp_path,
    )  # fmt: skip
    start(process, "beat: Starting")
    yield process
    process.stop()


def user_with_push_and_sms(application, fake_providers) -> tuple[str, str]:
    """A user with an iOS device the fake APNs accepts and a number the fake Twilio reports
    delivered; returns (external user id, number)."""
    user, number = f"user-{uuid.uuid4().hex[:8]}", fake_providers.sms_number("delivered")
    for type_, token in (("iOSPush", f"ab{uuid.uuid4().int % 16**62:062x}"), ("SMS", number)):
        subscription_register(
            application=application, actor=SYSTEM, type=type_, token=token, external_user_id=user
        )
    return user, number


def chain_request(user: str) -> dict:
    return {
        "external_user_id": user,
        "title": "Your code",
        "body": "It is 1234",
        "fallback": {"order": ["iOSPush", "SMS"], "after_seconds": AFTER_SECONDS},
    }


def client(key: str) -> APIClient:
    api_client = APIClient()
    api_client.credentials(HTTP_X_API_KEY=key)
    return api_client


def status_of(message_id) -> str | None:
    return Message.objects.filter(pk=message_id).values_list("status", flat=True).first()


def chain_status(chain_id) -> str:
    return FallbackChain.objects.get(pk=chain_id).status


def test_an_unreceived_push_falls_back_to_sms_after_its_wait(sms_app, fake_providers, beat):
    user, number = user_with_push_and_sms(sms_app, fake_providers)

    response = client(sms_app.server_key).post(
        "/api/v1/messages", chain_request(user), format="json"
    )

    assert response.status_code == 202, response.content
    body = response.json()
    (push,) = body["messages"]
    assert body["fallback"]["channel"] == "iOSPush"
    wait_for(lambda: status_of(push["id"]) == "successful", timeout=10, what="the push sent")
    sms = wait_for(
        lambda: Message.objects.filter(channel="SMS", fallback_of=push["id"]).first(),
        timeout=15,
        what="the SMS hop",
    )
    chain = FallbackChain.objects.get(pk=body["fallback"]["id"])
    pushed_at = dt.datetime.fromisoformat(chain.hops[0]["at"])
    assert sms.created_at >= pushed_at + dt.timedelta(seconds=AFTER_SECONDS)
    # The fake Twilio reports it delivered: a receipt, which ends the chain.
    wait_for(lambda: status_of(sms.pk) == "received", timeout=15, what="the SMS delivered")
    wait_for(lambda: chain_status(chain.pk) == "received", timeout=15, what="the chain's end")
    assert [m["Body"] for m in fake_providers.sms_messages(number)] == ["It is 1234"]
    detail = client(sms_app.server_key).get(f"/api/v1/messages/{push['id']}").json()
    assert detail["fallback_next"] == str(sms.pk)


def test_a_push_the_app_reports_received_ends_the_chain(sms_app, fake_providers, beat):
    user, number = user_with_push_and_sms(sms_app, fake_providers)
    body = (
        client(sms_app.server_key)
        .post("/api/v1/messages", chain_request(user), format="json")
        .json()
    )
    (push,) = body["messages"]
    wait_for(lambda: status_of(push["id"]) == "successful", timeout=10, what="the push sent")

    reported = client(sms_app.client_key).put(
        f"/api/v1/messages/{push['id']}/status", {"status": "received"}, format="json"
    )

    assert reported.status_code == 200, reported.content
    wait_for(
        lambda: chain_status(body["fallback"]["id"]) == "received",
        timeout=AFTER_SECONDS + 10,
        what="the chain to end at its deadline",
    )
    time.sleep(2)  # two more ticks: nothing follows
    assert not Message.objects.filter(channel="SMS").exists()
    assert fake_providers.sms_messages(number) == []


@pytest.fixture
def broker():
    with private_broker() as server:
        yield server


@pytest.fixture
def stack(sms_app, worker_env, broker, tmp_path):
    """Web, worker and beat on a private broker, ticking every second; the stale-pending
    sweep counts work as lost only after 300 s, so a hop that goes within the test's
    deadlines was made again by the chain's tick, not re-sent by the sweep."""
    env = {
        **worker_env,
        **broker_env(broker),
        **FAST,
        "MESSAGE_STALE_AFTER_SECONDS": "300",
        "MESSAGE_SWEEP_INTERVAL_SECONDS": "1",
        "API_RATE_LIMIT": "10000",
    }
    processes = stack_processes(env, tmp_path, port=free_port(), name="fallback")
    yield processes
    for process in processes.values():
        process.stop()


def test_a_chain_outlives_a_killed_worker_and_a_broker_restart(
    sms_app, fake_providers, stack, broker
):
    start_web(stack["web"])
    start(stack["beat"], "beat: Starting")
    start(stack["worker"], "ready.")
    user, number = user_with_push_and_sms(sms_app, fake_providers)
    status, body = api(stack["web"], sms_app.server_key, "POST", "/api/v1/messages",
                       chain_request(user) | {"fallback": {"order": ["iOSPush", "SMS"],
                                                           "after_seconds": 3}})  # fmt: skip
    assert status == 202, body
    (push,) = body["messages"]
    wait_for(lambda: status_of(push["id"]) == "successful", timeout=10, what="the push sent")

    os.killpg(stack["worker"].process.pid, signal.SIGKILL)  # no worker: nothing moves
    stack["worker"].process.wait(timeout=10)
    broker.restart(down_seconds=1, lose_data=True)  # and the ticks queued meanwhile are gone
    time.sleep(4)  # past the push's deadline
    assert not Message.objects.filter(channel="SMS").exists()
    start(stack["worker"], "ready.")

    sms = wait_for(
        lambda: Message.objects.filter(channel="SMS", fallback_of=push["id"]).first(),
        timeout=20,
        what="the SMS hop after the restart",
    )
    wait_for(lambda: status_of(sms.pk) == "received", timeout=15, what="the SMS delivered")
    time.sleep(2)  # more ticks, some queued twice around the restart: still one SMS
    assert Message.objects.filter(channel="SMS").count() == 1
    assert len(fake_providers.sms_messages(number)) == 1
    assert FallbackChain.objects.get(pk=body["fallback"]["id"]).hops[0]["ended"] == "not_received"
