"""Fallback across channels (messaging.services.fallback): POST /messages with `fallback`,
the chain it stores and beat's tick that moves it, on real PostgreSQL. The tick runs
in-process with a `now` of the test's choosing; message outcomes are set as delivery or the
app would set them."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.conf import settings as project_settings
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey, Category, MessageQuota
from accounts.services import api_key_create, application_create, channel_credentials_store
from messaging import delivery, retention, tasks
from messaging.inbox.services import inbox_item_read
from messaging.models import FallbackChain, Message, MessageStatus, User
from messaging.services import erasure, fallback
from messaging.services.reports import message_provider_report
from templates_app.services import template_create
from tests.assertions import assert_error
from tests.conftest import api_client, subscription_create
from tests.kakao import kakao_template_add

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages"
# Channels whose credentials the application has (any values: nothing is sent here); the
# in-app inbox needs none, AndroidPush has none and is not ready.
CREDENTIALS = {
    "iOSPush": {"auth": "token"},
    "SMS": {"account_sid": "AC1", "auth_token": "t", "from": "+15005550006"},
    "Email": {"host": "127.0.0.1", "port": 25, "security": "none", "from_address": "a@b.c"},
    "KakaoTalk": {"app_key": "k", "secret_key": "s", "sender_key": "sk"},
}


@pytest.fixture
def application(app):
    for channel, values in CREDENTIALS.items():
        channel_credentials_store(application=app.application, channel=channel, values=values)
    return app.application


def device(application, type="iOSPush", user="alice", **fields):
    tokens = {
        "SMS": "+821012340001",
        "KakaoTalk": "+821012340001",
        "Email": f"{user}@example.com",
        "InAppMessage": f"{user}-install",
        "AndroidPush": "fcm-token:APA91b" + "1" * 140,
    }
    token = fields.pop("token", None) or tokens.get(type)
    return subscription_create(
        application,
        type=type,
        external_user_id=user,
        **({"token": token} if token else {}),
        **fields,
    )


def chain_body(order, after=60, **fields) -> dict:
    """A chain to alice; a field given as None is left out."""
    body = {
        "external_user_id": "alice",
        "title": "Your code",
        "body": "It is 1234",
        "fallback": {"order": order, "after_seconds": after},
        **fields,
    }
    return {name: value for name, value in body.items() if value is not None}


def start(api, order, after=60, **fields) -> dict:
    response = api.post(URL, chain_body(order, after, **fields), format="json")
    assert response.status_code == 202, response.content
    return response.json()


def chain() -> FallbackChain:
    return FallbackChain.objects.get()


def tick(at: dt.datetime | None = None):
    return fallback.fallback_advance(now=at or timezone.now())


def set_status(ids, status: str) -> None:
    Message.objects.filter(pk__in=list(ids)).update(status=status)


def later(chain_: FallbackChain, seconds: float = 0) -> dt.datetime:
    """The chain's current deadline, plus `seconds`."""
    return chain_.deadline_at + dt.timedelta(seconds=seconds)


def of_channel(channel: str) -> list[Message]:
    return list(Message.objects.filter(channel=channel).order_by("pk"))


# --- Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"external_user_id": None, "subscription_id": "0" * 32}, "fallback"),
        ({"channels": ["iOSPush"]}, "channels"),
        ({"fallback": {"order": ["iOSPush"], "after_seconds": 60}}, "fallback.order"),
        ({"fallback": {"order": ["iOSPush", "iOSPush"], "after_seconds": 60}}, "fallback.order"),
        ({"fallback": {"order": ["iOSPush", "Pigeon"], "after_seconds": 60}}, "fallback.order"),
        ({"fallback": {"order": ["iOSPush", "SMS"], "after_seconds": 5}}, "fallback.after_seconds"),
        (
            {"fallback": {"order": ["iOSPush", "SMS"], "after_seconds": 8 * 86400}},
            "fallback.after_seconds",
        ),
        (
            {"fallback": {"order": ["iOSPush", "SMS"], "after_seconds": "60"}},
            "fallback.after_seconds",
        ),
        ({"fallback": {"order": ["iOSPush", "SMS"]}}, "fallback.after_seconds"),
        ({"fallback": {"order": ["iOSPush", "SMS"], "after_seconds": 60, "x": 1}}, "fallback.x"),
        ({"fallback": ["iOSPush", "SMS"]}, "fallback"),
        # AlimTalk sends only approved templates: a KakaoTalk hop needs its part, as any send.
        (
            {"fallback": {"order": ["iOSPush", "KakaoTalk"], "after_seconds": 60}},
            "kakao.template_code",
        ),
    ],
)  # fmt: skip
def test_invalid_fallbacks_are_400_naming_the_field_and_create_nothing(
    application, server_api, change, field
):
    device(application)
    device(application, "KakaoTalk")
    body = chain_body(["iOSPush", "SMS"], **change)

    details = assert_error(server_api.post(URL, body, format="json"), 400, "validation_error")

    assert field in details, details
    assert not Message.objects.exists() and not FallbackChain.objects.exists()


def test_a_kakao_hop_with_an_approved_template_is_accepted(application, server_api):
    kakao_template_add(application, "CODE_1", "Your code is #{code}")
    device(application, "KakaoTalk")

    body = start(
        server_api,
        ["KakaoTalk", "SMS"],
        kakao={"template_code": "CODE_1", "variables": {"code": "1234"}},
    )

    assert body["fallback"]["channel"] == "KakaoTalk"
    assert len(body["messages"]) == 1


def test_the_shortest_after_seconds_is_a_setting(application, server_api, settings):
    device(application)
    settings.FALLBACK_MIN_AFTER_SECONDS = 2

    assert start(server_api, ["iOSPush", "SMS"], after=2)["fallback"]["status"] == "open"


def test_an_unknown_user_is_404(application, server_api):
    assert_error(
        server_api.post(URL, chain_body(["iOSPush", "SMS"]), format="json"), 404, "not_found"
    )


# --- The first hop -----------------------------------------------------------------------------


def test_the_first_hop_goes_to_the_first_type_the_user_has_ready_and_enabled(
    application, server_api
):
    off = device(application, "iOSPush")
    off.enabled = False
    off.save()
    device(application, "AndroidPush")  # no credentials: its channel is not ready
    sms = device(application, "SMS")
    device(application, "Email")
    device(application, "iOSPush", user="bruno")
    before = timezone.now()

    body = start(server_api, ["iOSPush", "AndroidPush", "SMS", "Email"], after=120)

    (message,) = body["messages"]
    assert message["subscription_id"] == str(sms.pk)
    assert body["skipped"] == 1 and body["skipped_by_reason"]["disabled"] == 1
    stored = chain()
    assert body["fallback"] == {"id": str(stored.pk), "channel": "SMS", "status": "open"}
    assert (stored.position, stored.message_ids) == (2, [message["id"]])
    assert stored.user.external_user_id == "alice"
    assert before <= stored.due_at <= timezone.now()  # looked at by the next tick
    assert stored.deadline_at - stored.due_at == dt.timedelta(seconds=120)
    assert Message.objects.get().fallback_of is None


def test_every_subscription_of_the_first_type_gets_the_hop(application, server_api):
    phone, tablet = device(application), device(application)
    device(application, "SMS")

    body = start(server_api, ["iOSPush", "SMS"])

    assert {m["subscription_id"] for m in body["messages"]} == {str(phone.pk), str(tablet.pk)}
    assert len(chain().message_ids) == 2


def test_without_any_type_of_the_order_nothing_is_sent_and_no_chain_is_kept(
    application, server_api
):
    device(application, "Email")

    body = start(server_api, ["iOSPush", "SMS"])

    assert body["messages"] == [] and body["fallback"] is None
    assert not FallbackChain.objects.exists()


def test_a_send_without_fallback_answers_as_before(application, server_api):
    device(application)

    response = server_api.post(URL, {"external_user_id": "alice", "title": "t"}, format="json")

    assert response.status_code == 202
    assert "fallback" not in response.json()


# --- Moving on ---------------------------------------------------------------------------------


def test_a_failed_hop_moves_on_at_the_next_tick(application, server_api):
    device(application)
    device(application)
    device(application, "SMS")
    email = device(application, "Email")
    body = start(server_api, ["iOSPush", "Email", "SMS"], after=300)
    first = [m["id"] for m in body["messages"]]
    lead = chain().message_ids[0]

    set_status(first[:1], MessageStatus.FAILED)
    assert tick()["waiting"] == 1  # one device still pending
    assert not of_channel("Email")

    set_status(first, MessageStatus.FAILED)
    counts = tick(chain().due_at)

    assert counts["advanced"] == 1
    (mail,) = of_channel("Email")
    assert (mail.subscription_id, str(mail.fallback_of)) == (email.pk, lead)
    stored = chain()
    assert (stored.status, stored.position, stored.message_ids) == ("open", 1, [str(mail.pk)])
    assert [h["ended"] for h in stored.hops] == ["failed", None]
    # Both iOS messages name the e-mail as what followed them; it names the first of them.
    for pk in first:
        detail = server_api.get(f"{URL}/{pk}").json()
        assert (detail["fallback_of"], detail["fallback_next"]) == (None, str(mail.pk))
    detail = server_api.get(f"{URL}/{mail.pk}").json()
    assert (detail["fallback_of"], detail["fallback_next"]) == (lead, None)


def test_a_hop_not_received_in_time_moves_on_at_its_deadline(application, server_api):
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "SMS"], after=300)
    set_status([m["id"] for m in body["messages"]], MessageStatus.SUCCESSFUL)

    assert tick()["waiting"] == 1
    stored = chain()
    assert stored.due_at == stored.deadline_at  # sent: it can only time out now
    assert tick(later(stored, -1)) == {}  # not due yet
    assert not of_channel("SMS")

    assert tick(later(stored))["advanced"] == 1

    (sms,) = of_channel("SMS")
    assert str(sms.fallback_of) == body["messages"][0]["id"]
    assert [h["ended"] for h in chain().hops] == ["not_received", None]


def test_a_pending_hop_is_looked_at_again_later_and_less_often_as_it_ages(
    application, server_api, settings
):
    settings.FALLBACK_INTERVAL_SECONDS = 5
    device(application)
    device(application, "SMS")
    start(server_api, ["iOSPush", "SMS"], after=3600)
    now = timezone.now()

    tick(now)
    first = chain().due_at - now
    tick(now + dt.timedelta(seconds=600))
    second = chain().due_at - (now + dt.timedelta(seconds=600))

    assert first == dt.timedelta(seconds=5)
    assert second == dt.timedelta(seconds=fallback.RECHECK_MAX_SECONDS)


def test_the_received_hop_ends_the_chain(application, server_api, client_api):
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "SMS"])
    (push,) = body["messages"]
    set_status([push["id"]], MessageStatus.SUCCESSFUL)
    tick()

    reported = client_api.put(f"{URL}/{push['id']}/status", {"status": "received"}, format="json")
    assert reported.status_code == 200
    counts = tick(later(chain()))

    assert counts["received"] == 1
    stored = chain()
    assert (stored.status, stored.due_at) == ("received", None) and stored.closed_at
    assert not of_channel("SMS")
    assert tick(later(stored, 3600)) == {}
    assert server_api.get(f"{URL}/{push['id']}").json()["fallback_next"] is None


def test_an_inbox_item_read_counts_as_received(application, server_api):
    inbox = device(application, "InAppMessage")
    device(application, "SMS")
    body = start(server_api, ["InAppMessage", "SMS"])
    (item,) = body["messages"]
    delivery.deliver_batch([item["id"]])  # the inbox is ours: written in-process
    assert Message.objects.get(pk=item["id"]).status == MessageStatus.SUCCESSFUL

    inbox_item_read(subscription=inbox, item_id=item["id"], actor="test")

    assert tick(later(chain()))["received"] == 1
    assert not of_channel("SMS")


def test_an_sms_the_gateway_reports_delivered_counts_as_received(application, server_api):
    device(application)
    device(application, "SMS")
    device(application, "Email")
    body = start(server_api, ["iOSPush", "SMS", "Email"])
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)
    tick()
    (sms,) = of_channel("SMS")
    set_status([sms.pk], MessageStatus.SUCCESSFUL)

    message_provider_report(message=sms, status="delivered", details={})

    assert Message.objects.get(pk=sms.pk).status == MessageStatus.RECEIVED
    assert tick(later(chain()))["received"] == 1
    assert not of_channel("Email")


def test_the_chain_is_exhausted_after_its_last_type(application, server_api):
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "AndroidPush", "SMS"])
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)
    tick()
    (sms,) = of_channel("SMS")
    set_status([sms.pk], MessageStatus.SUCCESSFUL)

    assert tick(later(chain()))["exhausted"] == 1

    stored = chain()
    assert (stored.status, stored.reason, stored.due_at) == ("exhausted", "", None)
    assert [h["ended"] for h in stored.hops] == ["failed", "not_received"]
    assert Message.objects.count() == 2


def test_a_type_the_user_lost_meanwhile_is_passed_over(application, server_api):
    device(application)
    sms = device(application, "SMS")
    device(application, "Email")
    body = start(server_api, ["iOSPush", "SMS", "Email"])
    sms.enabled = False
    sms.save()
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)

    tick()

    assert not of_channel("SMS") and len(of_channel("Email")) == 1


def test_cancelled_hop_stops_the_chain(application, server_api):
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "SMS"])
    set_status([m["id"] for m in body["messages"]], MessageStatus.CANCELLED)

    assert tick()["stopped"] == 1
    assert (chain().status, chain().reason) == ("stopped", "cancelled")
    assert not of_channel("SMS")


def test_a_used_up_quota_stops_the_chain_and_sends_nothing_more(application, server_api):
    device(application)
    device(application, "SMS")
    MessageQuota.objects.filter(application=application).update(daily_limit=1)
    body = start(server_api, ["iOSPush", "SMS"])
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)

    assert tick()["stopped"] == 1

    assert (chain().status, chain().reason) == ("stopped", "quota_exceeded")
    assert not of_channel("SMS")


def test_a_scheduled_first_hop_starts_its_wait_when_it_goes(application, server_api):
    device(application)
    device(application, "SMS")
    at = (timezone.now() + dt.timedelta(hours=2)).replace(microsecond=0)

    start(server_api, ["iOSPush", "SMS"], after=60, send_after=at.isoformat())

    stored = chain()
    assert (stored.due_at, stored.deadline_at) == (at, at + dt.timedelta(seconds=60))
    assert tick() == {}


def test_each_hop_renders_its_own_channels_part_of_the_template(application, server_api):
    version = template_create(
        application=application,
        name="code",
        title_template="Code",
        body_template="Your code: {{ code }}",
        parts={"sms": {"text": "SMS code {{ code }}"}},
    )
    device(application)
    device(application, "SMS")
    body = start(
        server_api,
        ["iOSPush", "SMS"],
        title=None,
        body=None,
        template_id=str(version.template_id),
        variables={"code": "42"},
    )
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)

    tick()

    (push,) = of_channel("iOSPush")
    (sms,) = of_channel("SMS")
    assert push.body == "Your code: 42" and push.parts == {}
    assert sms.parts == {"text": "SMS code 42"}
    assert sms.template_version_id == version.pk == chain().template_version_id


# --- The recipients' rules on every hop --------------------------------------------------------


def test_the_rules_apply_to_every_hop_and_a_type_they_leave_out_is_passed_over(
    application, server_api
):
    Category.objects.create(application=application, key="offers", name="Offers")
    device(application, "AndroidPush")
    device(application)
    device(application, "SMS")
    device(application, "Email")
    device(application, "InAppMessage")
    User.objects.filter(external_user_id="alice").update(
        preferences={"channels": {"iOSPush": False, "Email": False}}
    )

    # The first type's targets are all left out: the next goes at once.
    body = start(server_api, ["iOSPush", "SMS", "Email", "InAppMessage"], category="offers")

    assert body["fallback"]["channel"] == "SMS"
    assert body["skipped_by_reason"]["opted_out"] == 1
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)
    tick()

    assert not of_channel("iOSPush") and not of_channel("Email")
    (item,) = of_channel("InAppMessage")
    assert item.category == "offers"
    assert [(h["channel"], h["ended"]) for h in chain().hops] == [
        ("iOSPush", "left_out"),
        ("SMS", "failed"),
        ("Email", "left_out"),
        ("InAppMessage", None),
    ]


def test_a_hop_held_by_quiet_hours_starts_its_wait_when_they_end(application, server_api):
    Category.objects.create(application=application, key="offers", name="Offers")
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "SMS"], after=60, category="offers")
    now = timezone.now()
    start_, end = (f"{now + dt.timedelta(hours=h):%H:%M}" for h in (-1, 1))
    User.objects.filter(external_user_id="alice").update(
        preferences={"quiet_hours": {"start": start_, "end": end, "timezone": "UTC"}}
    )
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)

    tick(now)

    (sms,) = of_channel("SMS")
    assert sms.send_after > now  # held until the quiet hours end
    stored = chain()
    assert stored.deadline_at == sms.send_after + dt.timedelta(seconds=60)
    assert stored.due_at == sms.send_after
    # Looked at before it goes (say, by a tick that was late): it waits for its time.
    set_status([sms.pk], MessageStatus.PENDING)
    assert tick(sms.send_after)["waiting"] == 1
    assert chain().due_at > sms.send_after


def test_a_deleted_category_stops_the_chain(application, server_api):
    category = Category.objects.create(application=application, key="offers", name="Offers")
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "SMS"], category="offers")
    category.delete()
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)

    tick()

    assert (chain().status, chain().reason) == ("stopped", "category_deleted")


# --- Erasure, retention, the admin, beat ---------------------------------------------------------


def test_erasing_the_user_deletes_its_chains(application, server_api):
    device(application)
    device(application, "SMS")
    device(application, "iOSPush", user="bruno")
    start(server_api, ["iOSPush", "SMS"])
    start(server_api, ["iOSPush", "SMS"], external_user_id="bruno")

    counts = erasure.user_erase(user=User.objects.get(external_user_id="alice"), actor="test")

    assert counts["fallback_chains"] == 1
    assert list(FallbackChain.objects.values_list("user__external_user_id", flat=True)) == ["bruno"]


def test_retention_deletes_closed_chains_older_than_the_application_keeps(application, server_api):
    device(application)
    device(application, "SMS")
    for _ in range(3):
        start(server_api, ["iOSPush", "SMS"])
    old, young, still_open = FallbackChain.objects.order_by("pk")
    now = timezone.now()
    FallbackChain.objects.filter(pk=old.pk).update(
        status="exhausted", closed_at=now - dt.timedelta(days=application.retention_days + 1)
    )
    FallbackChain.objects.filter(pk=young.pk).update(status="received", closed_at=now)

    dry = retention.expired_purge(application_id=application.pk, now=now, dry_run=True)
    run = retention.expired_purge(application_id=application.pk, now=now, pause_seconds=0)

    assert dry.purged[application.pk].fallback_chains == 1
    assert run.purged[application.pk].fallback_chains == 1
    assert set(FallbackChain.objects.values_list("pk", flat=True)) == {young.pk, still_open.pk}


def test_the_admin_lists_chains_read_only(application, server_api, admin_client):
    device(application)
    device(application, "SMS")
    start(server_api, ["iOSPush", "SMS"])
    stored = chain()

    listed = admin_client.get("/admin/messaging/fallbackchain/")
    page = admin_client.get(f"/admin/messaging/fallbackchain/{stored.pk}/change/")

    assert listed.status_code == 200 and page.status_code == 200
    assert "<b>iOSPush</b> › SMS" in listed.content.decode()
    assert stored.message_ids[0][:8] in listed.content.decode()
    assert admin_client.get("/admin/messaging/fallbackchain/add/").status_code == 403
    found = admin_client.get("/admin/messaging/fallbackchain/", {"q": str(stored.pk)})
    assert found.status_code == 200 and "1 fallback chain" in found.content.decode()
    assert admin_client.get("/admin/messaging/fallbackchain/", {"q": "nope"}).status_code == 200


def test_the_tick_is_on_the_beat_schedule_on_the_critical_queue(application, server_api):
    entry = project_settings.CELERY_BEAT_SCHEDULE["fallback-advance"]
    assert entry["task"] == tasks.fallback_advance.name == "messaging.fallback_advance"
    assert entry["options"]["queue"] == "critical"
    assert entry["schedule"] == project_settings.FALLBACK_INTERVAL_SECONDS
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "SMS"])
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)

    assert tasks.fallback_advance.apply().get() == {"advanced": 1}


def test_a_tick_reads_its_chains_and_their_messages_once_whatever_their_number(
    application, server_api
):
    statements = []
    for n, user in ((1, "u1"), (8, "u2")):
        for i in range(n):
            device(application, user=f"{user}-{i}")
            start(server_api, ["iOSPush", "SMS"], external_user_id=f"{user}-{i}")
        with CaptureQueriesContext(connections["default"]) as queries:
            assert tick()["waiting"] == n
        statements.append(len(queries.captured_queries) - n)  # one UPDATE per chain
    assert statements[0] == statements[1], statements


@pytest.mark.django_db(transaction=True)
def test_a_chain_another_tick_holds_is_skipped_and_moved_once(application, server_api):
    device(application)
    device(application, "SMS")
    body = start(server_api, ["iOSPush", "SMS"])
    set_status([m["id"] for m in body["messages"]], MessageStatus.FAILED)
    locked, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                FallbackChain.objects.select_for_update().get()
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(10)
    try:
        assert tick() == {}  # skipped, not waited for
    finally:
        release.set()
        thread.join(10)

    assert tick()["advanced"] == 1
    assert "advanced" not in tick()
    assert len(of_channel("SMS")) == 1


def _server_key(application) -> str:
    return api_key_create(application=application, scope=ApiKey.Scope.SERVER).raw


def test_an_application_without_credentials_sends_only_to_the_inbox(db):
    application = application_create(name="bare")
    device(application, "iOSPush")
    device(application, "InAppMessage")
    api = api_client(_server_key(application))

    body = start(api, ["iOSPush", "InAppMessage"])

    assert body["fallback"]["channel"] == "InAppMessage"
