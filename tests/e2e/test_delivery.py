"""A message accepted by the API reaches the (fake) provider through a real Celery worker,
and ends in the status the provider's answer calls for."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from messaging import delivery
from messaging.models import Message, MessageStatus, Subscription, SubscriptionEvent
from messaging.services.subscriptions import subscription_register

from .conftest import Worker, wait_for

pytestmark = pytest.mark.e2e

IOS_OK = "ab" * 32
ANDROID_OK = "fcm-ok:" + "A" * 140


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def subscribe(app, type_: str, token: str) -> Subscription:
    subscription, _ = subscription_register(application=app, actor="test", type=type_, token=token)
    return subscription


def send(app, **body) -> list[str]:
    body.setdefault("title", "Hello")
    body.setdefault("body", "World")
    body = {key: value for key, value in body.items() if value is not None}
    response = api(app.server_key).post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return [m["id"] for m in response.json()["messages"]]


def terminal(ids, statuses=("successful", "failed")):
    def check():
        rows = list(Message.objects.filter(pk__in=ids).values_list("status", flat=True))
        return len(rows) == len(ids) and all(s in statuses for s in rows)

    return check


def test_push_to_ios_and_android_ends_successful_with_events(live_app, fake_providers):
    ios = subscribe(live_app, "iOSPush", IOS_OK)
    android = subscribe(live_app, "AndroidPush", ANDROID_OK)
    ids = send(live_app, subscription_ids=[str(ios.pk), str(android.pk)], data={"n": 1})
    wait_for(terminal(ids), what="both messages to finish")

    for message_id in ids:
        detail = api(live_app.server_key).get(f"/api/v1/messages/{message_id}").json()
        assert detail["status"] == "successful", detail
        assert detail["attempts"] == 1
        assert detail["error"] is None
        assert detail["sent_at"] is not None
        kinds = [(e["type"], e["status"]) for e in detail["events"]]
        assert kinds == [("attempt", ""), ("status", "successful")]
        assert detail["events"][0]["details"]["status_code"] == 200
    assert fake_providers.apns_stats()["requests"] == 1
    assert fake_providers.fcm_stats()["requests"] == 1


def test_dead_token_fails_and_disables_the_subscription(live_app):
    dead_ios = subscribe(live_app, "iOSPush", "dead" + "0" * 60)
    dead_android = subscribe(live_app, "AndroidPush", "dead-" + "B" * 140)
    ids = send(live_app, subscription_ids=[str(dead_ios.pk), str(dead_android.pk)])
    wait_for(terminal(ids), what="dead-token messages to fail")

    for message in Message.objects.filter(pk__in=ids):
        assert message.status == MessageStatus.FAILED
        assert message.error_code == "token_invalid"
        assert message.error_permanent is True
        assert message.attempts == 1
    for subscription in (dead_ios, dead_android):
        subscription.refresh_from_db()
        assert subscription.enabled is False
        assert subscription.disabled_reason == "token_invalid"
        assert SubscriptionEvent.objects.filter(
            subscription=subscription, kind="disabled", changes__reason="token_invalid"
        ).exists()
    # A later send skips the disabled subscription instead of trying again.
    response = api(live_app.server_key).post(
        "/api/v1/messages", {"subscription_id": str(dead_ios.pk), "body": "x"}, format="json"
    )
    assert response.status_code == 202
    assert response.json() == {
        "messages": [],
        "skipped": 1,
        "skipped_by_reason": {"disabled": 1, "opted_out": 0, "frequency_cap": 0},
    }


def test_flaky_answer_is_retried_after_retry_after_and_succeeds(live_app):
    flaky = subscribe(live_app, "iOSPush", "f1a0" + "1" * 60)
    flaky_android = subscribe(live_app, "AndroidPush", "flaky-" + "C" * 140)
    ids = send(live_app, subscription_ids=[str(flaky.pk), str(flaky_android.pk)])
    wait_for(terminal(ids), timeout=45, what="flaky messages to finish")

    for message in Message.objects.filter(pk__in=ids):
        assert message.status == MessageStatus.SUCCESSFUL, message.error_message
        assert message.attempts == 3
        attempts = list(message.events.filter(type="attempt").order_by("at"))
        assert [a.details["ok"] for a in attempts] == [False, False, True]
        assert attempts[0].details["retry_after"] == 1
        for earlier, later in zip(attempts, attempts[1:], strict=False):
            # Retry-After: 1 is a floor, whatever the back-off would have chosen.
            assert (later.at - earlier.at).total_seconds() >= 1.0


def test_permanent_error_is_not_retried(live_app, fake_providers):
    rejected = subscribe(live_app, "iOSPush", "0413" + "2" * 60)
    ids = send(live_app, subscription_id=str(rejected.pk))
    wait_for(terminal(ids), what="the rejected message to fail")
    time.sleep(1.0)  # a retry, if one were scheduled, would have been made by now

    message = Message.objects.get(pk=ids[0])
    assert message.status == MessageStatus.FAILED
    assert message.attempts == 1
    assert message.error_permanent is True
    assert message.error_code == "PayloadTooLarge"
    assert fake_providers.apns_stats()["requests"] == 1
    rejected.refresh_from_db()
    assert rejected.enabled is True  # not the device's fault


def test_idempotent_post_twice_creates_one_message(live_app, fake_providers):
    sub = subscribe(live_app, "iOSPush", IOS_OK)
    client = api(live_app.server_key)
    body = {"subscription_id": str(sub.pk), "title": "Once"}
    first = client.post("/api/v1/messages", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = client.post("/api/v1/messages", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert Message.objects.filter(subscription=sub).count() == 1
    other = client.post(
        "/api/v1/messages", {**body, "title": "Other"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert Message.objects.filter(subscription=sub).count() == 1
    wait_for(terminal([first.json()["messages"][0]["id"]]), what="the message to finish")
    assert fake_providers.apns_stats()["requests"] == 1


def test_client_status_reports_move_the_state_machine(live_app):
    ok = subscribe(live_app, "AndroidPush", ANDROID_OK)
    dead = subscribe(live_app, "AndroidPush", "dead-" + "D" * 140)
    [ok_id] = send(live_app, subscription_id=str(ok.pk))
    [dead_id] = send(live_app, subscription_id=str(dead.pk))
    wait_for(terminal([ok_id, dead_id]), what="the messages to finish")
    client = api(live_app.client_key)

    def report(message_id, status):
        return client.put(
            f"/api/v1/messages/{message_id}/status", {"status": status}, format="json"
        )

    assert report(ok_id, "received").status_code == 200
    assert report(ok_id, "received").status_code == 200  # the same again: a no-op
    converted = report(ok_id, "converted")
    assert converted.status_code == 200
    assert converted.json()["status"] == "converted"
    backwards = report(ok_id, "received")
    assert backwards.status_code == 409
    assert backwards.json()["error"]["code"] == "invalid_transition"
    after_failed = report(dead_id, "received")
    assert after_failed.status_code == 409
    assert after_failed.json()["error"]["code"] == "invalid_transition"
    statuses = list(
        Message.objects.get(pk=ok_id).events.filter(type="status").values_list("status", flat=True)
    )
    assert statuses == ["successful", "received", "converted"]


def test_worker_killed_mid_batch_loses_nothing(
    live_app, worker_env, celery_worker, tmp_path, fake_providers
):
    # Slow tokens keep the batch in flight (the fake answers after 2 s) when the kill lands.
    slow = [subscribe(live_app, "iOSPush", f"5104{i:060x}") for i in range(40)]
    fast = [subscribe(live_app, "AndroidPush", f"fcm-{i}-" + "E" * 140) for i in range(200)]
    ids = send(live_app, subscription_ids=[str(s.pk) for s in slow + fast])
    wait_for(
        lambda: fake_providers.apns_stats()["requests"] > 0,
        what="a worker to be sending the batch",
    )
    celery_worker.kill()
    assert Message.objects.filter(pk__in=ids, status="pending").exists(), (
        "the kill came too late to test anything"
    )

    replacement = Worker(worker_env, tmp_path / "worker2.log", "e2e-restarted").start()
    try:
        # The dead worker's row locks went with its connection; its work is found again by
        # the stale-pending sweep (beat runs it every few seconds in production).
        def swept_and_done():
            delivery.pending_sweep()
            return terminal(ids)()

        wait_for(swept_and_done, timeout=60, what="every message to reach a terminal status")
    finally:
        replacement.stop()
        celery_worker.start()

    assert Message.objects.filter(pk__in=ids, status="successful").count() == len(ids)


def test_template_message_renders_in_each_subscriptions_language(live_app):
    from templates_app.services import template_create

    version = template_create(
        application=live_app,
        name="welcome",
        title_template="Hello {{ name }}",
        body_template="Welcome to {{ place }}",
        data_template={"screen": "home", "who": "{{ name }}"},
        translations={"ko": {"title_template": "안녕 {{ name }}", "body_template": "{{ place }}"}},
        default_language="en",
    )
    korean, _ = subscription_register(
        application=live_app, actor="t", type="iOSPush", token="cd" * 32, language="ko"
    )
    other, _ = subscription_register(
        application=live_app, actor="t", type="AndroidPush", token=ANDROID_OK, language="fr"
    )
    ids = send(
        live_app,
        title=None,
        body=None,
        subscription_ids=[str(korean.pk), str(other.pk)],
        template_id=str(version.template_id),
        variables={"name": "Kim"},
    )
    wait_for(terminal(ids), what="template messages to finish")
    by_sub = {m.subscription_id: m for m in Message.objects.filter(pk__in=ids)}
    assert by_sub[korean.pk].title == "안녕 Kim"
    assert by_sub[other.pk].title == "Hello Kim"  # no French: the default language
    assert by_sub[other.pk].body == "Welcome to "  # a missing variable renders empty
    assert by_sub[other.pk].data == {"screen": "home", "who": "Kim"}
    assert {m.status for m in by_sub.values()} == {"successful"}
    detail = api(live_app.server_key).get(f"/api/v1/messages/{ids[0]}").json()
    assert detail["template_id"] == str(version.template_id)
    assert detail["template_version"] == 1
