"""KakaoTalk AlimTalk end to end: templates synced from the fake dealer, a campaign to mixed
KakaoTalk and SMS subscriptions delivered by a real Celery worker, a number that is not a
KakaoTalk user resent as SMS by the dealer (and its events saying so), a worker SIGKILLed while
its batch was at the dealer with the batch sent again (each recipient gets one AlimTalk: the
request's idempotency key), and the dealer's results, polled by the worker's beat task, moving
messages to `received`."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.services import channel_credentials_set
from adapters import registry
from messaging import delivery, dispatch
from messaging.models import Message, MessageEvent

from .conftest import Worker, wait_for

pytestmark = pytest.mark.e2e

TEXT = "#{name}님, 주문 #{order}이 접수되었습니다."


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


@pytest.fixture
def kakao_app(live_app, fake_providers, settings):
    """The e2e application with the fake dealer's credentials (with its SMS fallback number)
    and the fake SMS gateway's, one approved template registered at the dealer and synced."""
    settings.KAKAO_ENDPOINT = fake_providers.kakao_endpoint
    registry.reset_adapters()
    channel_credentials_set(
        application=live_app,
        channel="KakaoTalk",
        values=dict(fake_providers.kakao_credentials(fallback=True).values),
    )
    channel_credentials_set(
        application=live_app, channel="SMS", values=dict(fake_providers.sms_credentials().values)
    )
    live_app.kakao_code = f"ORDER_{uuid.uuid4().hex[:8].upper()}"
    fake_providers.kakao_template(
        live_app.kakao_code,
        TEXT,
        buttons=[{"type": "WL", "name": "주문 보기", "url_mobile": "https://shop.example/o"}],
    )
    call_command("sync_kakao_templates", "--application", str(live_app.pk))
    yield live_app
    registry.reset_adapters()


def register(app, type_: str, token: str, **extra) -> str:
    response = api(app.client_key).post(
        "/api/v1/subscriptions", {"type": type_, "token": token, **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["channel_ready"] is True
    return response.json()["id"]


def kakao_part(app, **variables) -> dict:
    return {
        "template_code": app.kakao_code,
        "variables": {"name": "고객", "order": "A-1", **variables},
    }


def poll_results_in_the_worker() -> None:
    """What beat does every minute: the worker polls the dealer for each application."""
    dispatch.publish("messaging.poll_kakao_results", args=[], queue="critical")


def statuses(ids) -> dict[str, str]:
    return {str(pk): s for pk, s in Message.objects.filter(pk__in=ids).values_list("pk", "status")}


def reports(message_id) -> list[dict]:
    return list(
        MessageEvent.objects.filter(message_id=message_id, type="report")
        .order_by("at", "id")
        .values_list("details", flat=True)
    )


def test_campaign_to_kakao_and_sms_falls_back_and_results_arrive(kakao_app, fake_providers):
    kakao_numbers = [fake_providers.kakao_number("delivered") for _ in range(5)]
    not_kakao = fake_providers.kakao_number("not_kakao_user")
    sms_numbers = [fake_providers.sms_number() for _ in range(3)]
    subscription_of = {
        number: register(kakao_app, "KakaoTalk", number, tags={"list": "orders"})
        for number in [*kakao_numbers, not_kakao]
    }
    for number in sms_numbers:
        register(kakao_app, "SMS", number, tags={"list": "orders"})
    server = api(kakao_app.server_key)

    # The audience includes KakaoTalk: without a kakao part the campaign is refused.
    refused = server.post(
        "/api/v1/campaigns",
        {"name": "orders", "body": "주문 접수", "targeting_criteria": {"tags": {"list": "orders"}}},
        format="json",
    )
    created = server.post(
        "/api/v1/campaigns",
        {
            "name": "orders",
            "body": "주문이 접수되었습니다.",
            "kakao": {**kakao_part(kakao_app), "fallback_text": "[SMS] 주문이 접수되었습니다."},
            "targeting_criteria": {"tags": {"list": "orders"}},
        },
        format="json",
    )
    assert refused.status_code == 400
    assert list(refused.json()["error"]["details"]) == ["kakao.template_code"]
    assert created.status_code == 201, created.content
    campaign_id = created.json()["id"]
    preview = server.post(f"/api/v1/campaigns/{campaign_id}/preview").json()
    shown = [i["channel_content"] for i in preview["sample"] if i["channel"] == "KakaoTalk"]
    assert shown and shown[0]["text"] == "고객님, 주문 A-1이 접수되었습니다."
    assert shown[0]["buttons"][0]["name"] == "주문 보기"

    assert server.post(f"/api/v1/campaigns/{campaign_id}/execute").status_code == 202
    messages = Message.objects.filter(campaign_id=campaign_id)
    wait_for(
        lambda: messages.count() == 9 and not messages.filter(status="pending").exists(),
        timeout=60,
        what="the campaign's messages to be sent",
    )
    assert set(messages.values_list("status", flat=True)) <= {"successful", "received"}

    kakao_ids = list(messages.filter(channel="KakaoTalk").values_list("pk", flat=True))

    def results_polled():
        poll_results_in_the_worker()
        return set(statuses(kakao_ids).values()) == {"received"}

    wait_for(results_polled, timeout=60, what="the dealer's results to move messages on")

    # Each KakaoTalk number got one AlimTalk with the approved text filled.
    for number in [*kakao_numbers, not_kakao]:
        [sent] = fake_providers.kakao_messages(number)
        assert sent["content"] == "고객님, 주문 A-1이 접수되었습니다."
    # The number that is not a KakaoTalk user got the SMS the dealer sent in its place, and
    # its message's events say so.
    fallback = messages.get(subscription_id=subscription_of[not_kakao])
    [report] = reports(fallback.pk)
    assert report["provider_status"] == "resent_sms" and report["fallback"] == "sms"
    assert report["code"] == "3019" and report["resend_status"] == "RSC04"
    assert fake_providers.kakao_messages(not_kakao)[0]["resendParameter"]["resendContent"] == (
        "[SMS] 주문이 접수되었습니다."
    )
    # The SMS subscriptions went through the SMS gateway, once each.
    for number in sms_numbers:
        assert len(fake_providers.sms_messages(number)) == 1


def test_worker_killed_while_its_batch_is_at_the_dealer_sends_each_alimtalk_once(
    kakao_app, fake_providers, worker_env, celery_worker, tmp_path
):
    # A slow number keeps the request in flight (the dealer answers it after 2 s) when the
    # kill lands; the dealer has accepted every recipient of it by then.
    numbers = [fake_providers.kakao_number("slow")] + [
        fake_providers.kakao_number("delivered") for _ in range(9)
    ]
    ids = [register(kakao_app, "KakaoTalk", number) for number in numbers]
    response = api(kakao_app.server_key).post(
        "/api/v1/messages",
        {"subscription_ids": ids, "title": "t", "body": "b", "kakao": kakao_part(kakao_app)},
        format="json",
    )
    assert response.status_code == 202, response.content
    message_ids = [m["id"] for m in response.json()["messages"]]
    wait_for(
        lambda: fake_providers.kakao_stats()["by_prefix"].get("send", 0) > 0,
        what="the worker's request to reach the dealer",
    )
    celery_worker.kill()
    assert set(statuses(message_ids).values()) == {"pending"}, "the kill came too late"

    replacement = Worker(worker_env, tmp_path / "worker2.log", "e2e-kakao-restart").start()
    try:
        # The same batch again (the sweep hands over the stale messages, or the broker gives
        # the killed worker's task back): the same idempotency key, refused by the dealer as
        # a repeat, which means it has them.
        def swept_and_sent():
            delivery.pending_sweep()
            return set(statuses(message_ids).values()) == {"successful"}

        wait_for(swept_and_sent, timeout=60, what="the batch to be sent again")

        def results_polled():
            poll_results_in_the_worker()
            return set(statuses(message_ids).values()) == {"received"}

        wait_for(results_polled, timeout=60, what="the results to move the messages on")
    finally:
        replacement.stop()
        celery_worker.start()

    for number in numbers:
        assert len(fake_providers.kakao_messages(number)) == 1, number
    assert fake_providers.kakao_stats()["duplicate_requests"] >= 1
    assert all(m.provider_id for m in Message.objects.filter(pk__in=message_ids))
