"""Channel parts of campaigns: literal parts written, shown and changed through the API; the
fan-out storing each message's own channel's part; previews showing what each member's
channel sends; WebPush as a targeted channel."""

from __future__ import annotations

import pytest

from accounts.services import channel_credentials_set
from campaigns import services
from campaigns.models import Campaign, CampaignRun, RunStatus
from messaging.models import Message
from tests.assertions import assert_error
from tests.conftest import subscription_create

from .conftest import fanout, run_messages, template_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/campaigns"

EMAIL = {"subject": "Summer sale", "html": "<p>Half price</p>"}
SMS = {"text": "Sale: half price today"}
WEB_PUSH = {"url": "https://shop.example.com/sale", "icon": "https://shop.example.com/i.png"}
PART_KEYS = {"email", "sms", "kakao", "web_push", "in_app"}


def url(campaign_id, action: str = "") -> str:
    return f"{URL}/{campaign_id}" + (f"/{action}" if action else "")


def create(client, **body) -> dict:
    body.setdefault("name", "summer-sale")
    response = client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def members(app) -> dict:
    """One enabled subscription per channel the tests send to."""
    application = app.application
    return {
        "iOSPush": subscription_create(application, language="ko"),
        "Email": subscription_create(
            application, type="Email", token="kim@example.com", language="en"
        ),
        "SMS": subscription_create(application, type="SMS", token="+821012345678"),
        "WebPush": subscription_create(
            application, type="WebPush", token="https://fcm.googleapis.com/fcm/send/abc"
        ),
    }


# --- Written and read --------------------------------------------------------------------------


def test_a_literal_campaign_keeps_its_parts_and_shows_them(server_api):
    created = create(server_api, title="Sale", body="Half price", email=EMAIL, sms=SMS)

    assert (created["email"], created["sms"]) == (EMAIL, SMS)
    assert not {"kakao", "web_push", "in_app"} & set(created)
    assert Campaign.objects.get().parts == {"email": EMAIL, "sms": SMS}
    assert server_api.get(url(created["id"])).json()["email"] == EMAIL


def test_parts_alone_are_content_enough(server_api):
    created = create(server_api, sms=SMS)

    assert created["sms"] == SMS and (created["title"], created["body"]) == ("", "")


def test_put_replaces_the_parts_it_names_and_keeps_the_others(server_api):
    created = create(server_api, title="Sale", email=EMAIL, sms=SMS)

    response = server_api.put(
        url(created["id"]), {"email": {"subject": "Last day"}, "sms": {}}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["email"] == {"subject": "Last day"} and "sms" not in body
    assert Campaign.objects.get().parts == {"email": {"subject": "Last day"}}


def test_switching_to_a_template_drops_the_parts(server_api, app):
    version = template_create(app.application)
    created = create(server_api, title="Sale", email=EMAIL)

    body = server_api.put(
        url(created["id"]), {"template_id": str(version.template_id)}, format="json"
    ).json()

    assert not PART_KEYS & set(body)
    assert Campaign.objects.get().parts == {}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"email": {"subject": "a\nb"}}, "email.subject"),
        ({"email": {"colour": "red"}}, "email.colour"),
        ({"sms": "text"}, "sms"),
        ({"web_push": {"url": "javascript:alert(1)"}}, "web_push.url"),
        ({"kakao": {"buttons": [1]}}, "kakao.buttons[0]"),
        ({"in_app": {"image_url": "https://x.example.com/\x00"}}, "in_app.image_url"),
        ({"sms": {"text": "a" * 1531}}, "sms.text"),  # 11 segments
    ],
)
def test_a_bad_part_is_400_naming_the_field_and_creates_nothing(server_api, extra, field):
    response = server_api.post(URL, {"name": "c", "title": "Sale", **extra}, format="json")

    assert field in assert_error(response, 400, "validation_error")
    assert not Campaign.objects.exists()


def test_a_part_with_a_template_is_refused_as_title_is(server_api, app):
    version = template_create(app.application)

    response = server_api.post(
        URL,
        {"name": "c", "template_id": str(version.template_id), "email": EMAIL},
        format="json",
    )

    assert list(assert_error(response, 400, "validation_error")) == ["email"]


def test_a_body_over_ten_sms_segments_is_refused_when_the_campaign_targets_sms(server_api):
    body = {"name": "c", "body": "a" * 1531}

    refused = server_api.post(
        URL, {**body, "targeting_criteria": {"channels": ["SMS"]}}, format="json"
    )
    accepted = server_api.post(
        URL, {**body, "targeting_criteria": {"channels": ["iOSPush"]}}, format="json"
    )

    assert list(assert_error(refused, 400, "validation_error")) == ["body"]
    assert accepted.status_code == 201


# --- Fan-out -----------------------------------------------------------------------------------


def test_the_fan_out_stores_each_messages_own_part(server_api, members):
    created = create(
        server_api,
        title="Sale",
        body="Half price",
        data={"screen": "sale"},
        email=EMAIL,
        sms=SMS,
        web_push=WEB_PUSH,
    )
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])

    fanout(run.pk)

    rows = dict(run_messages(run).values_list("channel", "parts"))
    assert rows == {"iOSPush": {}, "Email": EMAIL, "SMS": SMS, "WebPush": WEB_PUSH}
    assert set(run_messages(run).values_list("title", "body")) == {("Sale", "Half price")}


def test_the_fan_out_of_a_template_stores_each_members_rendered_part(server_api, app, members):
    version = template_create(
        app.application,
        parts={
            "email": {"subject": "{{event_name}} 시작", "html": "<b>{{user_name}}</b>"},
            "sms": {"text": "{{event_name}}: {{user_name}}"},
        },
        translations={
            "en": {"title_template": "Hello", "email": {"subject": "{{event_name}} starts"}}
        },
    )
    created = create(
        server_api,
        template_id=str(version.template_id),
        variables={"user_name": "Kim", "event_name": "Sale"},
    )
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])

    fanout(run.pk)

    rows = dict(run_messages(run).values_list("channel", "parts"))
    assert rows["Email"] == {"subject": "Sale starts", "html": "<b>Kim</b>"}  # en
    assert rows["SMS"] == {"text": "Sale: Kim"}
    assert rows["iOSPush"] == rows["WebPush"] == {}


def test_a_body_over_ten_sms_segments_fails_the_run_that_reaches_an_sms(server_api, members):
    created = create(server_api, title="Sale", body="가" * 671)
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])

    fanout(run.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "segments" in run.error
    assert not Message.objects.exists()


# --- Preview -----------------------------------------------------------------------------------


def test_preview_shows_what_each_members_channel_sends(server_api, app, members):
    channel_credentials_set(
        application=app.application,
        channel="Email",
        values={
            "host": "smtp.example.com",
            "from_address": "shop@example.com",
            "from_name": "Shop",
        },
    )
    created = create(
        server_api,
        title="Sale",
        body="Half price",
        email=EMAIL,
        web_push=WEB_PUSH,
        targeting_criteria={"channels": ["Email", "SMS", "WebPush"]},
    )

    response = server_api.post(url(created["id"], "preview"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["by_channel"] == {"Email": 1, "SMS": 1, "WebPush": 1}
    sample = {item["channel"]: item for item in body["sample"]}
    assert {item["subscription_id"] for item in body["sample"]} == {
        str(members[channel].pk) for channel in ("Email", "SMS", "WebPush")
    }
    for item in sample.values():
        assert item["parts"] == {"email": EMAIL, "web_push": WEB_PUSH}
    assert sample["Email"]["channel_content"] == {
        "subject": "Summer sale",
        "text": "Half price",
        "html": "<p>Half price</p>",
        "from_name": "Shop",
    }
    assert sample["SMS"]["channel_content"] == {
        "text": "Half price",
        "encoding": "GSM-7",
        "segments": 1,
    }
    assert sample["WebPush"]["channel_content"] == {
        "title": "Sale",
        "body": "Half price",
        **WEB_PUSH,
    }


def test_preview_of_a_template_campaign_renders_the_parts(server_api, app, members):
    version = template_create(
        app.application,
        parts={"sms": {"text": "{{event_name}} {{coupon}}"}},
    )
    created = create(
        server_api,
        template_id=str(version.template_id),
        variables={"user_name": "Kim", "event_name": "Sale", "event_id": "7"},
        targeting_criteria={"channels": ["SMS"]},
    )

    [item] = server_api.post(url(created["id"], "preview")).json()["sample"]

    assert item["parts"] == {"sms": {"text": "Sale "}}
    assert item["missing_variables"] == ["coupon"]
    assert item["channel_content"] == {"text": "Sale ", "encoding": "GSM-7", "segments": 1}


def test_preview_channel_content_per_channel(app, members):
    channel_credentials_set(
        application=app.application,
        channel="Email",
        values={
            "host": "smtp.example.com",
            "from_address": "shop@example.com",
            "from_name": "Shop",
        },
    )
    campaign = services.campaign_create(
        application=app.application,
        name="c",
        title="Sale",
        body="Half price 가",
        data={"screen": "sale"},
        parts={"email": EMAIL, "web_push": WEB_PUSH},
    )

    preview = services.campaign_preview(campaign=campaign, sample_size=10)

    sent = {item["channel"]: item["channel_content"] for item in preview["sample"]}
    assert sent == {
        "iOSPush": {"title": "Sale", "body": "Half price 가", "data": {"screen": "sale"}},
        "Email": {
            "subject": "Summer sale",
            "text": "Half price 가",
            "html": "<p>Half price</p>",
            "from_name": "Shop",
        },
        "SMS": {"text": "Half price 가", "encoding": "UCS-2", "segments": 1},
        "WebPush": {"title": "Sale", "body": "Half price 가", **WEB_PUSH},
    }
