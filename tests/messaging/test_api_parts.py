"""Channel parts of messages: POST /messages takes the five parts (or a template's), each
message stores its own channel's part, GET shows it under its channel's key; bad parts are
400 naming the field; an SMS text must fit 10 segments."""

from __future__ import annotations

import pytest

from messaging.models import Message
from templates_app.services import template_create
from tests.assertions import assert_error
from tests.conftest import subscription_create
from tests.kakao import kakao_template_add

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages"

EMAIL = {"subject": "Your receipt", "html": "<p>Thanks</p>", "from_name": "Shop"}
SMS = {"text": "Your code is 1234"}
KAKAO = {
    "template_code": "WELCOME_01",
    "variables": {"name": "Kim"},
    "buttons": [{"type": "WL", "name": "Open", "url_mobile": "https://example.com/m"}],
    "fallback_text": "Welcome, Kim",
}
WEB_PUSH = {"url": "https://example.com/sale", "icon": "https://example.com/icon.png"}
IN_APP = {"image_url": "https://example.com/banner.png", "action_url": "https://example.com/go"}
ALL_PARTS = {"email": EMAIL, "sms": SMS, "kakao": KAKAO, "web_push": WEB_PUSH, "in_app": IN_APP}


@pytest.fixture(autouse=True)
def _kakao_template(app):
    """The approved KakaoTalk template KAKAO names."""
    kakao_template_add(app.application, "WELCOME_01", "Welcome, #{name}!")


def post(client, body):
    return client.post(URL, body, format="json")


@pytest.fixture
def targets(app) -> dict:
    """One subscription of each type of the application."""
    application = app.application
    return {
        "iOSPush": subscription_create(application),
        "Email": subscription_create(application, type="Email", token="kim@example.com"),
        "SMS": subscription_create(application, type="SMS", token="+821012345678"),
        "KakaoTalk": subscription_create(application, type="KakaoTalk", token="+821087654321"),
        "WebPush": subscription_create(
            application, type="WebPush", token="https://fcm.googleapis.com/fcm/send/abc"
        ),
        "InAppMessage": subscription_create(application, type="InAppMessage", token="install-1"),
    }


def ids(*subscriptions) -> list[str]:
    return [str(s.pk) for s in subscriptions]


# --- Accepted ----------------------------------------------------------------------------------


def test_each_message_stores_its_own_channels_part(server_api, targets):
    response = post(
        server_api,
        {"subscription_ids": ids(*targets.values()), "title": "Hi", "body": "There", **ALL_PARTS},
    )

    assert response.status_code == 202, response.content
    stored = {m.channel: m.parts for m in Message.objects.all()}
    assert stored == {
        "iOSPush": {},
        "Email": EMAIL,
        "SMS": SMS,
        "KakaoTalk": KAKAO,
        "WebPush": WEB_PUSH,
        "InAppMessage": IN_APP,
    }
    assert {m.title for m in Message.objects.all()} == {"Hi"}


def test_get_shows_the_part_under_its_channels_key_and_nothing_for_push(server_api, targets):
    post(server_api, {"subscription_ids": ids(*targets.values()), "title": "Hi", **ALL_PARTS})
    by_channel = {m.channel: m for m in Message.objects.all()}
    part_keys = {"email", "sms", "kakao", "web_push", "in_app"}

    email = server_api.get(f"{URL}/{by_channel['Email'].pk}").json()
    sms = server_api.get(f"{URL}/{by_channel['SMS'].pk}").json()
    push = server_api.get(f"{URL}/{by_channel['iOSPush'].pk}").json()

    assert email["email"] == EMAIL and part_keys & set(email) == {"email"}
    assert sms["sms"] == SMS and part_keys & set(sms) == {"sms"}
    assert not part_keys & set(push)
    listed = {item["id"]: item for item in server_api.get(URL).json()["results"]}
    assert listed[str(by_channel["WebPush"].pk)]["web_push"] == WEB_PUSH
    assert not part_keys & set(listed[str(by_channel["iOSPush"].pk)])


def test_a_message_to_a_channel_without_its_part_shows_an_empty_one(server_api, targets):
    post(server_api, {"subscription_id": str(targets["Email"].pk), "title": "Hi"})

    message = Message.objects.get()
    assert message.parts == {}
    assert server_api.get(f"{URL}/{message.pk}").json()["email"] == {}


def test_a_part_alone_is_content_enough(server_api, targets):
    response = post(server_api, {"subscription_id": str(targets["Email"].pk), "email": EMAIL})

    assert response.status_code == 202, response.content
    message = Message.objects.get()
    assert (message.title, message.body, message.parts) == ("", "", EMAIL)


def test_an_email_with_no_subject_at_all_is_accepted(server_api, targets):
    body = {"subscription_id": str(targets["Email"].pk), "email": {"html": "<p>Hi</p>"}}

    assert post(server_api, body).status_code == 202


# --- Refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"email": "Hi"}, "email"),
        ({"email": ["subject"]}, "email"),
        ({"email": {"subject": "x", "colour": "red"}}, "email.colour"),
        ({"email": {"subject": "x" * 999}}, "email.subject"),
        ({"email": {"subject": "two\nlines"}}, "email.subject"),
        ({"email": {"subject": 7}}, "email.subject"),
        ({"email": {"html": "<p>\x00</p>"}}, "email.html"),
        ({"email": {"from_name": "n" * 201}}, "email.from_name"),
        ({"sms": {"text": "x" * 1601}}, "sms.text"),
        ({"sms": {"text": None}}, "sms.text"),
        ({"kakao": {"buttons": [{"name": "b"}] * 6}}, "kakao.buttons"),
        ({"kakao": {"buttons": ["Open"]}}, "kakao.buttons[0]"),
        ({"kakao": {"variables": {"name": 1}}}, "kakao.variables.name"),
        ({"kakao": {"template_code": "c" * 101}}, "kakao.template_code"),
        ({"web_push": {"url": "ftp://example.com/x"}}, "web_push.url"),
        ({"web_push": {"icon": "https:///no-host.png"}}, "web_push.icon"),
        ({"in_app": {"image_url": "not a url"}}, "in_app.image_url"),
        ({"in_app": {"action_url": "https://example.com/a b"}}, "in_app.action_url"),
    ],
)
def test_a_bad_part_is_400_naming_its_field(server_api, targets, extra, field):
    body = {"subscription_id": str(targets["Email"].pk), "title": "Hi", **extra}

    details = assert_error(post(server_api, body), 400, "validation_error")

    assert field in details, details
    assert not Message.objects.exists()


def test_a_part_with_a_template_is_refused_as_title_is(server_api, app, targets):
    version = template_create(application=app.application, name="t", title_template="Hi")
    body = {
        "subscription_id": str(targets["Email"].pk),
        "template_id": str(version.template_id),
        "email": EMAIL,
        "sms": SMS,
    }

    details = assert_error(post(server_api, body), 400, "validation_error")

    assert set(details) == {"email", "sms"}
    assert not Message.objects.exists()


def test_empty_parts_are_no_content(server_api, targets):
    body = {"subscription_id": str(targets["Email"].pk), "email": {}, "sms": {}}

    details = assert_error(post(server_api, body), 400, "validation_error")

    assert "non_field_errors" in details


# --- SMS segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "accepted", "field"),
    [
        ({"sms": {"text": "a" * 1530}}, True, None),  # 10 x 153 GSM-7 septets
        ({"sms": {"text": "a" * 1531}}, False, "sms.text"),
        # An extension character is two septets and never straddles two segments: 76 a part.
        ({"sms": {"text": "€" * 760}}, True, None),
        ({"sms": {"text": "€" * 761}}, False, "sms.text"),
        ({"body": "가" * 670}, True, None),  # 10 x 67 UCS-2 units
        ({"body": "가" * 671}, False, "body"),
        ({"body": "a" * 1529 + "가"}, False, "body"),  # one character outside GSM-7: UCS-2
        ({"body": "😀" * 330}, True, None),  # a surrogate pair is two units: 33 a part
        ({"body": "😀" * 331}, False, "body"),
        ({"body": "x" * 4000, "sms": {"text": "short"}}, True, None),  # the part wins
    ],
)
def test_the_sms_text_must_fit_ten_segments(server_api, targets, content, accepted, field):
    body = {"subscription_ids": ids(targets["SMS"], targets["iOSPush"]), "title": "t", **content}

    response = post(server_api, body)

    if accepted:
        assert response.status_code == 202, response.content
        assert Message.objects.count() == 2
    else:
        details = assert_error(response, 400, "validation_error")
        assert list(details) == [field]
        assert "segments" in details[field][0]
        assert not Message.objects.exists()


def test_a_long_body_is_fine_when_no_target_is_an_sms(server_api, targets):
    body = {
        "subscription_ids": ids(targets["iOSPush"], targets["Email"]),
        "body": "가" * 4000,
        "sms": {"text": "a" * 1600},
    }

    assert post(server_api, body).status_code == 202
    assert Message.objects.count() == 2


# --- From a template ---------------------------------------------------------------------------


@pytest.fixture
def parts_template(app):
    return template_create(
        application=app.application,
        name="receipt",
        title_template="주문 확인",
        body_template="감사합니다 {{name}}",
        default_language="ko",
        parts={
            "email": {"subject": "영수증 {{order}}", "html": "<p>{{name}}님</p>"},
            "sms": {"text": "주문 {{order}} 완료{{note}}"},
            "web_push": {"url": "https://shop.example.com/o/{{order}}"},
        },
        translations={
            "en": {
                "title_template": "Order confirmed",
                "body_template": "Thanks {{name}}",
                "email": {"subject": "Receipt {{order}}"},
            }
        },
    )


def test_a_templates_parts_are_rendered_into_each_message(server_api, app, parts_template):
    email_en = subscription_create(
        app.application, type="Email", token="en@example.com", language="en"
    )
    email_ko = subscription_create(
        app.application, type="Email", token="ko@example.com", language="ko"
    )
    sms = subscription_create(app.application, type="SMS", token="+821011112222", language="ko")
    web = subscription_create(
        app.application, type="WebPush", token="https://fcm.googleapis.com/fcm/send/x"
    )
    body = {
        "subscription_ids": ids(email_en, email_ko, sms, web),
        "template_id": str(parts_template.template_id),
        "variables": {"order": "A-7", "name": "Kim"},
    }

    assert post(server_api, body).status_code == 202

    parts = {m.subscription_id: m.parts for m in Message.objects.all()}
    # The English subject, and the default language's html: a translation overrides by field.
    assert parts[email_en.pk] == {"subject": "Receipt A-7", "html": "<p>Kim님</p>"}
    assert parts[email_ko.pk] == {"subject": "영수증 A-7", "html": "<p>Kim님</p>"}
    assert parts[sms.pk] == {"text": "주문 A-7 완료"}
    assert parts[web.pk] == {"url": "https://shop.example.com/o/A-7"}


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"order": "x" * 1000}, "email.subject"),  # over 998 once rendered
        ({"order": "a\nb"}, "email.subject"),  # a line break in a subject
        ({"order": "%zz"}, "web_push.url"),  # a broken percent-escape once rendered
        ({"order": "x" * 1600}, "sms.text"),  # over 1,600 characters once rendered
    ],
)
def test_rendered_parts_over_the_limits_are_400_naming_template_and_field(
    server_api, targets, parts_template, variables, field
):
    body = {
        "subscription_id": str(targets["iOSPush"].pk),
        "template_id": str(parts_template.template_id),
        "variables": variables,
    }

    response = post(server_api, body)

    details = assert_error(response, 400, "validation_error")
    assert list(details) == [field]
    assert str(parts_template.template_id) in response.json()["error"]["message"]
    assert not Message.objects.exists()


def test_a_rendered_sms_text_over_ten_segments_is_refused(server_api, targets, parts_template):
    body = {
        "subscription_id": str(targets["SMS"].pk),
        "template_id": str(parts_template.template_id),
        "variables": {"order": "A-7", "note": "가" * 700},
    }

    details = assert_error(post(server_api, body), 400, "validation_error")

    assert list(details) == ["sms.text"]
    assert not Message.objects.exists()


def test_variable_text_in_a_rendered_url_is_percent_encoded(server_api, targets, parts_template):
    body = {
        "subscription_id": str(targets["WebPush"].pk),
        "template_id": str(parts_template.template_id),
        "variables": {"order": "여름 세일"},
    }

    response = post(server_api, body)

    assert response.status_code == 202, response.content
    message = Message.objects.get()
    assert message.parts == {
        "url": "https://shop.example.com/o/%EC%97%AC%EB%A6%84%20%EC%84%B8%EC%9D%BC"
    }
