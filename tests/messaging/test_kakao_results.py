"""The KakaoTalk dealer's per-recipient results, polled: delivered moves a message to
`received`, a resend as SMS is recorded with its status (and `received` once the SMS was
delivered), a failure is recorded with the dealer's code ("not a KakaoTalk user" disables the
subscription); results read twice are recorded once; the watermark moves per application.

The dealer is reached through the registry, the one seam between messaging and the
providers: an adapter class named in CHANNEL_ADAPTERS stands in for KakaoAdapter to script
each kind of result; the last test goes through the real adapter to the fake dealer."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import ClassVar

import pytest
from django.core.cache import cache
from django.utils import timezone

from accounts.services import channel_credentials_set
from adapters import registry
from adapters.base import SendResult
from messaging import delivery
from messaging.models import Message, MessageEvent, MessageStatus, Subscription
from messaging.services.messages import Content, Delivery, message_send
from messaging.services.reports import KAKAO_PROVIDER, kakao_results_poll
from messaging.tasks import poll_kakao_results
from templates_app.kakao import kakao_templates_sync
from tests.conftest import application_with_keys, subscription_create
from tests.kakao import kakao_template_add

pytestmark = pytest.mark.django_db

CREDENTIALS = {"app_key": "app-key", "secret_key": "kakao-secret", "sender_key": "sender-key"}
PART = {"template_code": "HELLO", "variables": {"name": "Kim"}}


class DealerStandIn:
    """KakaoAdapter's send_batch() and results() as the dealer answers them."""

    channel = "KakaoTalk"
    errors: ClassVar[dict] = {}
    results_: ClassVar[list[dict]] = []
    windows: ClassVar[list[tuple]] = []

    def send_batch(self, credentials, messages):
        return [
            SendResult(message_id=m.message_id, ok=True, provider_id=f"req-1:{index}")
            for index, m in enumerate(messages, start=1)
        ]

    def results(self, credentials, *, since, until):
        self.windows.append((credentials.values["sender_key"], since, until))
        return [dict(r) for r in self.results_]


@pytest.fixture
def dealer(settings):
    settings.CHANNEL_ADAPTERS = {
        **settings.CHANNEL_ADAPTERS,
        "KakaoTalk": f"{__name__}.DealerStandIn",
    }
    registry.reset_adapters()
    DealerStandIn.results_, DealerStandIn.windows = [], []
    cache.clear()
    yield DealerStandIn
    registry.reset_adapters()
    cache.clear()


@pytest.fixture
def kakao_app(app, dealer):
    channel_credentials_set(application=app.application, channel="KakaoTalk", values=CREDENTIALS)
    kakao_template_add(app.application, "HELLO", "#{name}님 안녕하세요")
    return app.application


def sent(application, count: int = 1) -> list[Message]:
    """`count` KakaoTalk messages, sent (successful, provider ids req-1:1...)."""
    subscriptions = [
        subscription_create(application, type="KakaoTalk", token=f"+8210000000{n:02d}")
        for n in range(count)
    ]
    outcome = message_send(
        application=application,
        subscriptions=subscriptions,
        content=Content(title="t", body="b", parts={"kakao": PART}),
        delivery=Delivery(),
    )
    delivery.deliver_batch([str(m.pk) for m in outcome.messages])
    messages = sorted(Message.objects.filter(application=application), key=lambda m: m.provider_id)
    assert {m.status for m in messages} == {MessageStatus.SUCCESSFUL}
    return messages


def result(message: Message, outcome: str, code="1000", resend=None, **extra) -> dict:
    return {
        "provider_id": message.provider_id,
        "recipient_no": "01000000000",
        "outcome": outcome,
        "code": code,
        "resend_status": resend,
        "details": {"resultCodeName": "name", **extra},
    }


def reports(message: Message) -> list[dict]:
    return list(
        MessageEvent.objects.filter(message=message, type="report")
        .order_by("at", "id")
        .values_list("details", flat=True)
    )


def test_delivered_moves_the_message_to_received(kakao_app, dealer):
    [message] = sent(kakao_app)
    dealer.results_ = [result(message, "delivered")]

    counts = kakao_results_poll(application=kakao_app)

    message.refresh_from_db()
    assert message.status == MessageStatus.RECEIVED
    assert counts["delivered"] == 1
    [report] = reports(message)
    assert report["provider_status"] == "delivered" and report["code"] == "1000"
    status = MessageEvent.objects.get(message=message, type="status", status="received")
    assert status.details == {"actor": KAKAO_PROVIDER}


def test_resent_as_sms_is_recorded_and_received_once_the_sms_arrived(kakao_app, dealer):
    arrived, failed, on_its_way = sent(kakao_app, 3)
    dealer.results_ = [
        result(arrived, "resent_sms", code="3019", resend="RSC04"),
        result(failed, "resend_failed", code="3019", resend="RSC05"),
        result(on_its_way, "resent_sms", code="3019", resend="RSC03"),
    ]

    counts = kakao_results_poll(application=kakao_app)

    statuses = {m.pk: m.status for m in Message.objects.all()}
    assert statuses == {
        arrived.pk: MessageStatus.RECEIVED,
        failed.pk: MessageStatus.SUCCESSFUL,
        on_its_way.pk: MessageStatus.SUCCESSFUL,
    }
    [report] = reports(arrived)
    assert report["provider_status"] == "resent_sms" and report["fallback"] == "sms"
    assert report["resend_status"] == "RSC04" and report["code"] == "3019"
    assert reports(failed)[0]["resend_status"] == "RSC05"
    assert reports(failed)[0]["provider_status"] == "resend_failed"
    assert reports(on_its_way) == []  # recorded once the SMS has its result
    assert (counts["resent_sms"], counts["resend_failed"], counts["resending"]) == (1, 1, 1)
    # With an SMS sent in its place, "not a KakaoTalk user" leaves the subscription alone.
    assert Subscription.objects.filter(enabled=False).count() == 0


def test_not_a_kakao_user_without_fallback_disables_the_subscription(kakao_app, dealer):
    dead, blocked, judged = sent(kakao_app, 3)
    dealer.results_ = [
        result(dead, "failed", code="3019"),
        result(blocked, "failed", code="3020"),
        # The adapter's own judgement (its error table) wins over the code.
        {**result(judged, "failed", code="3020"), "token_invalid": True},
    ]

    counts = kakao_results_poll(application=kakao_app)

    assert reports(dead)[0] | {"at": None} == {
        "provider_status": "failed", "code": "3019", "resend_status": None,
        "provider_id": dead.provider_id, "resultCodeName": "name", "at": None,
    }  # fmt: skip
    assert reports(blocked)[0]["code"] == "3020"
    subscription = Subscription.objects.get(pk=dead.subscription_id)
    assert not subscription.enabled and subscription.disabled_reason == "token_invalid"
    assert Subscription.objects.get(pk=blocked.subscription_id).enabled
    assert not Subscription.objects.get(pk=judged.subscription_id).enabled
    assert counts["subscriptions_disabled"] == 2
    # The message was accepted; what the dealer found later is history, not a new outcome.
    assert Message.objects.get(pk=dead.pk).status == MessageStatus.SUCCESSFUL


def test_a_result_read_twice_is_recorded_once(kakao_app, dealer):
    [message] = sent(kakao_app)
    dealer.results_ = [result(message, "delivered")]

    kakao_results_poll(application=kakao_app)
    counts = kakao_results_poll(application=kakao_app)

    assert len(reports(message)) == 1
    assert counts["already_recorded"] == 1


def test_results_match_by_the_message_id_first_and_ignore_strangers(kakao_app, dealer):
    first, second = sent(kakao_app, 2)
    other = application_with_keys("other").application
    dealer.results_ = [
        # The request's recipientGroupingKey names our message, whatever the request id.
        {**result(second, "delivered"), "provider_id": "lost:1", "message_id": str(second.pk)},
        {**result(first, "delivered"), "provider_id": "unknown:9"},
        {**result(first, "delivered"), "message_id": "not-a-uuid", "provider_id": "x:1"},
    ]  # fmt: skip
    Message.objects.filter(pk=first.pk).update(application=other)

    counts = kakao_results_poll(application=kakao_app)

    assert Message.objects.get(pk=second.pk).status == MessageStatus.RECEIVED
    assert Message.objects.get(pk=first.pk).status == MessageStatus.SUCCESSFUL
    assert counts["unmatched"] == 2


def test_pending_results_record_nothing(kakao_app, dealer):
    [message] = sent(kakao_app)
    dealer.results_ = [result(message, "pending", code=None)]

    assert kakao_results_poll(application=kakao_app)["pending"] == 1
    assert reports(message) == []


def test_a_result_of_a_message_not_yet_recorded_as_sent_is_read_again_later(kakao_app, dealer):
    # A worker sent the batch and died before recording it: the dealer's result comes while
    # the message is still pending; it is taken once the batch, sent again, is recorded.
    [message] = sent(kakao_app)
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.PENDING)
    dealer.results_ = [result(message, "delivered")]
    start = timezone.now()

    held = kakao_results_poll(application=kakao_app, now=start)
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SUCCESSFUL)
    taken = kakao_results_poll(application=kakao_app, now=start + timedelta(minutes=10))

    assert held["not_sent_yet"] == 1 and taken["delivered"] == 1
    assert Message.objects.get(pk=message.pk).status == MessageStatus.RECEIVED
    # The window did not move past the held result.
    (_, since1, _), (_, since2, _) = dealer.windows
    assert since2 == since1


def test_one_poll_per_application_at_a_time(kakao_app, dealer):
    cache.add(f"kakao-results-polling:{kakao_app.pk}", 1)

    assert kakao_results_poll(application=kakao_app) == {"busy": 1}
    assert dealer.windows == []


def test_each_poll_reads_from_the_last_window_less_the_overlap(kakao_app, dealer, settings):
    start = timezone.now()

    kakao_results_poll(application=kakao_app, now=start)
    kakao_results_poll(application=kakao_app, now=start + timedelta(minutes=1))

    (_, since1, until1), (_, since2, until2) = dealer.windows
    first_lookback = timedelta(seconds=settings.KAKAO_RESULTS_FIRST_LOOKBACK_SECONDS)
    overlap = timedelta(seconds=settings.KAKAO_RESULTS_OVERLAP_SECONDS)
    assert (since1, until1) == (start - first_lookback, start)
    assert (since2, until2) == (start - overlap, start + timedelta(minutes=1))


def test_the_beat_task_polls_each_application_with_kakao_credentials(
    kakao_app, dealer, monkeypatch
):
    application_with_keys("no-kakao")
    [message] = sent(kakao_app)
    dealer.results_ = [result(message, "delivered")]
    published = []
    monkeypatch.setattr(
        "messaging.dispatch.publish", lambda task, **kw: published.append((task, kw))
    )

    assert poll_kakao_results() == {}
    [(task, options)] = published
    counts = poll_kakao_results(*options["args"])

    assert (task, options) == (
        "messaging.poll_kakao_results",
        {"args": [str(kakao_app.pk)], "queue": "critical"},
    )
    assert Message.objects.get(pk=message.pk).status == MessageStatus.RECEIVED
    assert counts == {"delivered": 1, "unmatched": 0}


# --- Against the fake dealer -------------------------------------------------------------------


@pytest.fixture
def dealer_app(providers, settings):
    """An application with the fake dealer's credentials (with an SMS fallback number), its
    templates synced, the real KakaoAdapter pointed at the fake."""
    settings.KAKAO_ENDPOINT = providers.kakao_endpoint
    registry.reset_adapters()
    cache.clear()
    code = f"HELLO_{uuid.uuid4().hex[:8]}"
    providers.kakao_template(code, "#{name}님, 주문이 접수되었습니다.")
    application = application_with_keys("dealer").application
    channel_credentials_set(
        application=application,
        channel="KakaoTalk",
        values=dict(providers.kakao_credentials(fallback=True).values),
    )
    kakao_templates_sync(application=application)
    yield application, code
    registry.reset_adapters()
    cache.clear()


def test_the_dealers_results_move_messages_on(dealer_app, providers):
    application, code = dealer_app
    kinds = ("delivered", "not_kakao_user")
    subscriptions = [
        subscription_create(application, type="KakaoTalk", token=providers.kakao_number(kind))
        for kind in kinds
    ]
    outcome = message_send(
        application=application,
        subscriptions=subscriptions,
        content=Content(
            title="t",
            body="b",
            parts={"kakao": {"template_code": code, "variables": {"name": "김"}}},
        ),
        delivery=Delivery(),
    )
    delivery.deliver_batch([str(m.pk) for m in outcome.messages])
    delivered, resent = (
        Message.objects.get(subscription=s) for s in subscriptions
    )  # in the order of kinds

    def polled() -> bool:
        kakao_results_poll(application=application)
        return (
            MessageEvent.objects.filter(type="report", message__application=application).count()
            == 2
        )

    deadline = time.monotonic() + 15
    while not polled():
        assert time.monotonic() < deadline, "the dealer's results did not come"
        time.sleep(0.3)

    assert Message.objects.get(pk=delivered.pk).status == MessageStatus.RECEIVED
    [report] = reports(resent)
    assert report["provider_status"] == "resent_sms" and report["fallback"] == "sms"
    assert report["code"] == "3019" and report["resend_status"] == "RSC04"
    assert Message.objects.get(pk=resent.pk).status == MessageStatus.RECEIVED
    assert [m["templateParameter"] for m in providers.kakao_messages(subscriptions[0].token)] == [
        {"name": "김"}
    ]
