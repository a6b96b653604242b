"""Channel parts of templates: written with POST/PUT (and in translations), checked, kept per
version, rendered with the variables (a translation overriding the default language field by
field), and returned by render."""

from __future__ import annotations

import pytest

from templates_app.models import TemplateVersion
from templates_app.rendering import compiled, render
from tests.assertions import assert_error
from tests.kakao import kakao_template_add

from .conftest import template_create, template_payload

URL = "/api/v1/templates"

pytestmark = pytest.mark.django_db

PARTS = {
    "email": {
        "subject": "{{event_name}} 시작",
        "html": "<p>{{user_name}}님, {{ event_name }}</p>",
        "from_name": "이벤트팀",
    },
    "sms": {"text": "{{event_name}}: {{start_date}}"},
    "kakao": {
        "template_code": "EVENT_01",
        "variables": {"name": "{{user_name}}"},
        "buttons": [
            {"type": "WL", "name": "열기", "url_mobile": "https://e.example.com/{{event_id}}"}
        ],
        "fallback_text": "{{event_name}}",
    },
    "web_push": {
        "url": "https://e.example.com/{{event_id}}",
        "icon": "https://e.example.com/i.png",
    },
    "in_app": {"image_url": "{{banner}}", "action_url": "https://e.example.com/go"},
}
VARIABLES = {
    "user_name": "Kim",
    "event_name": "Sale",
    "start_date": "12-01",
    "event_id": "7",
    "banner": "https://cdn.example.com/b.png",
}


@pytest.fixture(autouse=True)
def _kakao_template(app):
    """The approved KakaoTalk template the kakao part names."""
    kakao_template_add(app.application, "EVENT_01", "#{name}님, 이벤트가 시작됩니다.")


def detail_url(template_id, suffix: str = "") -> str:
    return f"{URL}/{template_id}{suffix}"


def create(client, **overrides) -> dict:
    response = client.post(URL, template_payload(**overrides), format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- Written and read --------------------------------------------------------------------------


def test_post_stores_the_parts_on_the_version_and_get_shows_them(server_api):
    body = create(server_api, **PARTS)

    version = TemplateVersion.objects.get()
    assert version.parts == PARTS
    assert {name: body[name] for name in PARTS} == PARTS
    assert server_api.get(detail_url(body["id"])).json()["email"] == PARTS["email"]
    # The variables of the parts count among the template's.
    assert {"banner", "event_id", "start_date"} <= set(body["variables"])


def test_a_template_without_parts_shows_none(server_api):
    body = create(server_api)

    assert not {"email", "sms", "kakao", "web_push", "in_app"} & set(body)
    assert TemplateVersion.objects.get().parts == {}


def test_put_replaces_the_parts_it_names_and_keeps_the_others(server_api):
    created = create(server_api, email=PARTS["email"], sms=PARTS["sms"])
    url = detail_url(created["id"])

    updated = server_api.put(
        url, {"email": {"subject": "New {{event_name}}"}, "sms": {}}, format="json"
    ).json()

    assert updated["version"] == 2
    assert updated["email"] == {"subject": "New {{event_name}}"}
    assert "sms" not in updated  # {} removes a part
    # A PUT without parts keeps them all.
    third = server_api.put(url, {"title_template": "Hi"}, format="json").json()
    assert third["email"] == {"subject": "New {{event_name}}"}
    # Every version keeps its own.
    first = server_api.get(url + "?version=1").json()
    assert (first["email"], first["sms"]) == (PARTS["email"], PARTS["sms"])


def test_translations_may_carry_parts(server_api):
    body = create(
        server_api,
        email=PARTS["email"],
        translations={
            "en": {
                "title_template": "Hello {{user_name}}",
                "email": {"subject": "{{event_name}} starts"},
                "sms": {},
            }
        },
    )

    assert body["translations"]["en"] == {
        "title_template": "Hello {{user_name}}",
        "email": {"subject": "{{event_name}} starts"},
    }


# --- Refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "subject"}, "email"),
        ({"email": {"subject": "{{ event_name"}}, "email.subject"),
        ({"email": {"subject": "x" * 999}}, "email.subject"),
        ({"email": {"body": "x"}}, "email.body"),
        ({"sms": {"text": "}} stray"}}, "sms.text"),
        ({"kakao": {"variables": {"name": "{{ 1x }}"}}}, "kakao.variables.name"),
        ({"kakao": {"buttons": [{"name": "{{"}]}}, "kakao.buttons[0].name"),
        ({"web_push": {"url": "not a url"}}, "web_push.url"),  # no variable: checked now
        ({"in_app": {"action_url": "ftp://x.example.com"}}, "in_app.action_url"),
        ({"web_push": {"url": "https://x.example.com/{{ id"}}, "web_push.url"),
    ],
)
def test_bad_parts_are_400_naming_the_field_and_create_nothing(server_api, overrides, field):
    response = server_api.post(URL, template_payload(**overrides), format="json")

    details = assert_error(response, 400, "validation_error")
    assert field in details, details
    assert not TemplateVersion.objects.exists()


def test_a_bad_part_in_a_translation_is_named_under_its_language(server_api):
    translations = {"en": {"title_template": "Hi", "email": {"subject": "{{ oops"}}}

    response = server_api.post(URL, template_payload(translations=translations), format="json")

    details = assert_error(response, 400, "validation_error")
    assert list(details["translations"]["en"]) == ["email.subject"]


def test_a_bad_part_on_put_changes_nothing(server_api):
    created = create(server_api, email=PARTS["email"])

    response = server_api.put(
        detail_url(created["id"]), {"email": {"subject": "a\nb"}}, format="json"
    )

    assert "email.subject" in assert_error(response, 400, "validation_error")
    assert TemplateVersion.objects.count() == 1


# --- Rendering ---------------------------------------------------------------------------------


def test_render_returns_the_parts_rendered_with_the_variables(server_api):
    created = create(server_api, **PARTS)

    body = server_api.post(
        detail_url(created["id"], "/render"), {"variables": VARIABLES}, format="json"
    ).json()

    assert body["parts"] == {
        "email": {"subject": "Sale 시작", "html": "<p>Kim님, Sale</p>", "from_name": "이벤트팀"},
        "sms": {"text": "Sale: 12-01"},
        "kakao": {
            "template_code": "EVENT_01",
            "variables": {"name": "Kim"},
            "buttons": [{"type": "WL", "name": "열기", "url_mobile": "https://e.example.com/7"}],
            "fallback_text": "Sale",
        },
        "web_push": {"url": "https://e.example.com/7", "icon": "https://e.example.com/i.png"},
        "in_app": {
            "image_url": "https://cdn.example.com/b.png",
            "action_url": "https://e.example.com/go",
        },
    }
    assert body["missing_variables"] == []


def test_missing_variables_of_the_parts_are_listed(server_api):
    created = create(server_api, sms={"text": "{{coupon}} for {{user_name}}"})

    body = server_api.post(
        detail_url(created["id"], "/render"),
        {"variables": {"user_name": "Kim", "event_name": "E", "start_date": "d", "event_id": 1}},
        format="json",
    ).json()

    assert body["parts"]["sms"] == {"text": " for Kim"}
    assert body["missing_variables"] == ["coupon"]


def test_a_translation_overrides_the_default_part_field_by_field(app):
    version = template_create(
        app.application,
        parts={
            "email": {"subject": "{{event_name}} 시작", "html": "<p>{{user_name}}</p>"},
            "sms": {"text": "기본 {{event_name}}"},
        },
        translations={
            "en": {
                "title_template": "Hello",
                "email": {"subject": "{{event_name}} starts"},
                "in_app": {"action_url": "https://e.example.com/en"},
            },
            "ja": {"title_template": "こんにちは"},
        },
    )

    en = render(version, VARIABLES, "en-US")
    ja = render(version, VARIABLES, "ja")
    ko = render(version, VARIABLES, "ko")

    assert en.parts == {
        "email": {"subject": "Sale starts", "html": "<p>Kim</p>"},
        "sms": {"text": "기본 Sale"},
        "in_app": {"action_url": "https://e.example.com/en"},
    }
    assert (
        ja.parts
        == ko.parts
        == {
            "email": {"subject": "Sale 시작", "html": "<p>Kim</p>"},
            "sms": {"text": "기본 Sale"},
        }
    )


def test_the_variables_of_every_languages_parts_are_the_templates(app):
    version = template_create(
        app.application,
        translations={"en": {"title_template": "Hi", "sms": {"text": "{{only_in_english}}"}}},
    )

    assert "only_in_english" in compiled(version).variables
