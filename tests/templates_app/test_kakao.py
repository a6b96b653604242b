"""KakaoTalk AlimTalk templates: the dealer's list synced per application (service, command,
beat task), listed at GET /kakao-templates, shown read-only in the admin; messages,
templates and campaigns refused without an approved template or with a `#{variable}` left
unfilled; previews showing the approved text filled.

The dealer is reached through the registry, the one seam between the service and the
providers: a small adapter class named in CHANNEL_ADAPTERS stands in for KakaoAdapter here
(the adapter's own HTTP against the fake dealer is tested in tests/adapters and e2e)."""

from __future__ import annotations

import io
from typing import ClassVar

import pytest
from django.core.management import CommandError, call_command

from accounts.services import channel_credentials_set
from adapters import registry
from campaigns import services as campaign_services
from messaging.models import Message
from templates_app import services as template_services
from templates_app.kakao import (
    kakao_preview,
    kakao_templates_sync,
    kakao_templates_sync_all,
    kakao_variables_of,
)
from templates_app.models import KakaoTemplate
from templates_app.tasks import sync_kakao_templates
from tests.assertions import assert_error
from tests.conftest import application_with_keys, subscription_create
from tests.kakao import kakao_template_add

pytestmark = pytest.mark.django_db

CREDENTIALS = {"app_key": "app-key", "secret_key": "kakao-secret", "sender_key": "sender-key"}
WELCOME = {
    "template_code": "WELCOME_01",
    "name": "welcome",
    "text": "#{name}님, 가입을 환영합니다. 쿠폰: #{coupon}",
    "variables": ["name", "coupon"],
    "buttons": [{"ordering": 1, "type": "WL", "name": "열기", "linkMo": "https://e.example/m"}],
    "status": "TSC03",
}


class DealerStandIn:
    """KakaoAdapter's templates() as the dealer's list gives it, per sender key."""

    channel = "KakaoTalk"
    listed: ClassVar[dict[str, list[dict]]] = {}
    calls: ClassVar[list[dict]] = []
    failing: ClassVar[set[str]] = set()

    def templates(self, credentials):
        self.calls.append(dict(credentials.values))
        sender = credentials.values["sender_key"]
        if sender in self.failing:
            raise ConnectionError("dealer unreachable")
        return [dict(t) for t in self.listed.get(sender, [])]


@pytest.fixture
def dealer(settings):
    settings.CHANNEL_ADAPTERS = {
        **settings.CHANNEL_ADAPTERS,
        "KakaoTalk": f"{__name__}.DealerStandIn",
    }
    registry.reset_adapters()
    DealerStandIn.listed, DealerStandIn.calls, DealerStandIn.failing = {}, [], set()
    yield DealerStandIn
    registry.reset_adapters()


@pytest.fixture
def kakao_app(app):
    channel_credentials_set(application=app.application, channel="KakaoTalk", values=CREDENTIALS)
    return app


def stored(application) -> dict[str, tuple]:
    return {
        t.template_code: (t.name, t.text, t.variables, t.buttons, t.status)
        for t in KakaoTemplate.objects.filter(application=application)
    }


# --- Sync --------------------------------------------------------------------------------------


def test_variables_are_the_names_in_hash_braces_once_each():
    assert kakao_variables_of("#{name}님 #{ coupon } / #{name} #{}") == ["name", "coupon"]


def test_sync_stores_the_dealers_list_with_the_decrypted_credentials(dealer, kakao_app):
    dealer.listed["sender-key"] = [
        WELCOME,
        {**WELCOME, "template_code": "DRAFT", "status": "TSC02"},
    ]

    counts = kakao_templates_sync(application=kakao_app.application)

    assert (counts.created, counts.updated, counts.removed, counts.approved) == (2, 0, 0, 1)
    assert dealer.calls == [CREDENTIALS]
    assert stored(kakao_app.application)["WELCOME_01"] == (
        "welcome", WELCOME["text"], ["name", "coupon"], WELCOME["buttons"], "TSC03",
    )  # fmt: skip
    assert stored(kakao_app.application)["DRAFT"][4] == "TSC02"


def test_sync_updates_changed_codes_and_removes_the_ones_no_longer_listed(dealer, kakao_app):
    dealer.listed["sender-key"] = [WELCOME, {**WELCOME, "template_code": "OLD"}]
    kakao_templates_sync(application=kakao_app.application)
    dealer.listed["sender-key"] = [{**WELCOME, "text": "#{name}님 안녕", "variables": None}]

    counts = kakao_templates_sync(application=kakao_app.application)

    assert (counts.created, counts.updated, counts.removed) == (0, 1, 1)
    # Without the adapter's variables, they are read from the text.
    assert stored(kakao_app.application) == {
        "WELCOME_01": ("welcome", "#{name}님 안녕", ["name"], WELCOME["buttons"], "TSC03")
    }


def test_a_sync_that_finds_nothing_new_changes_only_the_sync_time(dealer, kakao_app):
    dealer.listed["sender-key"] = [WELCOME]
    kakao_templates_sync(application=kakao_app.application)
    before = KakaoTemplate.objects.get().synced_at

    counts = kakao_templates_sync(application=kakao_app.application)

    assert (counts.created, counts.updated, counts.removed) == (0, 0, 0)
    assert KakaoTemplate.objects.get().synced_at > before


def test_sync_keeps_each_applications_templates_apart(dealer, kakao_app, other_app):
    channel_credentials_set(
        application=other_app.application,
        channel="KakaoTalk",
        values={**CREDENTIALS, "sender_key": "other-sender"},
    )
    dealer.listed = {"sender-key": [WELCOME], "other-sender": []}

    kakao_templates_sync(application=kakao_app.application)
    kakao_templates_sync(application=other_app.application)

    assert set(stored(kakao_app.application)) == {"WELCOME_01"}
    assert stored(other_app.application) == {}


def test_a_failed_sync_changes_nothing(dealer, kakao_app):
    kakao_template_add(kakao_app.application, "KEPT", "hi")
    dealer.failing.add("sender-key")

    with pytest.raises(ConnectionError):
        kakao_templates_sync(application=kakao_app.application)

    assert set(stored(kakao_app.application)) == {"KEPT"}


def test_the_beat_task_syncs_every_application_with_kakao_credentials(dealer, kakao_app):
    broken = application_with_keys("broken")
    channel_credentials_set(
        application=broken.application,
        channel="KakaoTalk",
        values={**CREDENTIALS, "sender_key": "broken"},
    )
    application_with_keys("no-kakao")
    dealer.listed["sender-key"] = [WELCOME]
    dealer.failing.add("broken")

    outcome = sync_kakao_templates()

    assert outcome[str(kakao_app.application.pk)].startswith("1 created, 0 updated, 0 removed")
    assert outcome[str(broken.application.pk)].startswith("failed: ConnectionError")
    assert len(outcome) == 2
    assert kakao_templates_sync_all().keys() == outcome.keys()


def test_the_command_prints_counts_per_application(dealer, kakao_app):
    dealer.listed["sender-key"] = [WELCOME]
    out = io.StringIO()

    call_command("sync_kakao_templates", "--application", str(kakao_app.application.pk), stdout=out)

    assert "1 created, 0 updated, 0 removed (1 approved)" in out.getvalue()
    assert set(stored(kakao_app.application)) == {"WELCOME_01"}


def test_the_command_refuses_an_application_without_kakao_credentials(dealer, app):
    with pytest.raises(CommandError, match="no KakaoTalk credentials"):
        call_command("sync_kakao_templates", "--application", str(app.application.pk))
    with pytest.raises(CommandError, match="No application"):
        call_command("sync_kakao_templates", "--application", "not-an-id")


# --- GET /kakao-templates ----------------------------------------------------------------------

URL = "/api/v1/kakao-templates"


def test_the_list_shows_the_applications_templates_by_code_paginated(server_api, app, other_app):
    for code in ("B", "A", "C"):
        kakao_template_add(app.application, code, "#{x} hi", buttons=[{"type": "WL"}])
    kakao_template_add(app.application, "R", "no", status="TSC04")
    kakao_template_add(other_app.application, "THEIRS", "x")

    first = server_api.get(URL, {"limit": 2}).json()
    second = server_api.get(first["next"]).json()

    assert [t["template_code"] for t in first["results"]] == ["A", "B"]
    assert [t["template_code"] for t in second["results"]] == ["C", "R"]
    assert second["next"] is None
    assert {key: first["results"][0][key] for key in ("name", "text", "variables", "status")} == {
        "name": "a", "text": "#{x} hi", "variables": ["x"], "status": "TSC03",
    }  # fmt: skip
    assert first["results"][0]["buttons"] == [{"type": "WL"}]
    approved = server_api.get(URL, {"status": "TSC03"}).json()["results"]
    assert [t["template_code"] for t in approved] == ["A", "B", "C"]


def test_the_list_is_for_server_keys(client_api):
    assert_error(client_api.get(URL), 403, "permission_denied")


def test_the_list_refuses_an_unknown_parameter(server_api):
    assert_error(server_api.get(URL, {"colour": "red"}), 400, "validation_error")


# --- Checks: messages --------------------------------------------------------------------------

MESSAGES = "/api/v1/messages"


@pytest.fixture
def welcome(app):
    return kakao_template_add(app.application, "WELCOME_01", WELCOME["text"])


def kakao_message(client, subscription, **kakao):
    body = {"subscription_id": str(subscription.pk), "title": "t", "body": "b"}
    if kakao:
        body["kakao"] = kakao
    return client.post(MESSAGES, body, format="json")


@pytest.mark.parametrize(
    ("kakao", "field"),
    [
        ({}, "kakao.template_code"),
        ({"variables": {"name": "Kim"}}, "kakao.template_code"),
        ({"template_code": "NOPE", "variables": {}}, "kakao.template_code"),
        ({"template_code": "DRAFT_01"}, "kakao.template_code"),
        ({"template_code": "WELCOME_01", "variables": {"name": "Kim"}}, "kakao.variables.coupon"),
        ({"template_code": "WELCOME_01"}, "kakao.variables.name"),
    ],
)
def test_a_kakao_message_needs_an_approved_template_filled(server_api, app, welcome, kakao, field):
    kakao_template_add(app.application, "DRAFT_01", "x", status="TSC01")
    subscription = subscription_create(app.application, type="KakaoTalk", token="+821012345678")

    details = assert_error(
        kakao_message(server_api, subscription, **kakao), 400, "validation_error"
    )

    assert list(details) == [field]
    assert Message.objects.count() == 0


def test_another_applications_template_is_unknown(server_api, app, other_app):
    kakao_template_add(other_app.application, "THEIRS", "hi")
    subscription = subscription_create(app.application, type="KakaoTalk", token="+821012345678")

    response = kakao_message(server_api, subscription, template_code="THEIRS")

    assert list(assert_error(response, 400, "validation_error")) == ["kakao.template_code"]


def test_a_filled_approved_template_is_accepted(server_api, app, welcome):
    subscription = subscription_create(app.application, type="KakaoTalk", token="+821012345678")
    kakao = {"template_code": "WELCOME_01", "variables": {"name": "Kim", "coupon": "A1"}}

    response = kakao_message(server_api, subscription, **kakao)

    assert response.status_code == 202, response.content
    assert Message.objects.get().parts == kakao


def test_a_send_to_a_users_subscriptions_checks_the_kakao_one(server_api, app, welcome):
    for type_, token in (("iOSPush", None), ("KakaoTalk", "+821012345678")):
        subscription_create(app.application, type=type_, token=token, external_user_id="kim")
    body = {"external_user_id": "kim", "title": "t", "body": "b"}

    refused = server_api.post(MESSAGES, body, format="json")
    push_only = server_api.post(MESSAGES, {**body, "channels": ["iOSPush"]}, format="json")

    assert list(assert_error(refused, 400, "validation_error")) == ["kakao.template_code"]
    assert push_only.status_code == 202, push_only.content


def test_a_message_from_a_template_renders_our_variables_inside_kakao_variables(
    server_api, app, welcome
):
    version = template_services.template_create(
        application=app.application,
        name="welcome",
        body_template="Welcome {{user}}",
        parts={
            "kakao": {
                "template_code": "WELCOME_01",
                "variables": {"name": "{{user}}", "coupon": "{{code}}"},
            }
        },
    )
    subscription = subscription_create(app.application, type="KakaoTalk", token="+821012345678")

    response = server_api.post(
        MESSAGES,
        {
            "subscription_id": str(subscription.pk),
            "template_id": str(version.template_id),
            "variables": {"user": "Kim", "code": "Z9"},
        },
        format="json",
    )

    assert response.status_code == 202, response.content
    assert Message.objects.get().parts["variables"] == {"name": "Kim", "coupon": "Z9"}


# --- Checks: templates -------------------------------------------------------------------------

TEMPLATES = "/api/v1/templates"


@pytest.mark.parametrize(
    ("kakao", "field"),
    [
        ({"variables": {"name": "{{user}}"}}, "kakao.template_code"),
        ({"template_code": "NOPE"}, "kakao.template_code"),
        (
            {"template_code": "WELCOME_01", "variables": {"name": "{{user}}"}},
            "kakao.variables.coupon",
        ),
    ],
)
def test_a_template_with_a_kakao_part_is_checked(server_api, welcome, kakao, field):
    response = server_api.post(
        TEMPLATES, {"name": "t", "body_template": "b", "kakao": kakao}, format="json"
    )

    assert list(assert_error(response, 400, "validation_error")) == [field]


def test_a_templates_translated_kakao_part_is_checked_and_a_good_one_accepted(server_api, welcome):
    good = {"template_code": "WELCOME_01", "variables": {"name": "{{u}}", "coupon": "{{c}}"}}
    body = {"name": "t", "body_template": "b", "default_language": "ko", "kakao": good}

    created = server_api.post(TEMPLATES, body, format="json")
    refused = server_api.put(
        f"{TEMPLATES}/{created.json()['id']}",
        {"translations": {"en": {"body_template": "b", "kakao": {"template_code": "NOPE"}}}},
        format="json",
    )

    assert created.status_code == 201, created.content
    assert list(assert_error(refused, 400, "validation_error")) == ["kakao.template_code"]


def test_a_template_without_a_kakao_part_is_not_checked(server_api, app):
    response = server_api.post(TEMPLATES, {"name": "t", "body_template": "b"}, format="json")

    assert response.status_code == 201, response.content


# --- Checks: campaigns -------------------------------------------------------------------------

CAMPAIGNS = "/api/v1/campaigns"


def test_a_campaign_whose_audience_has_kakao_needs_a_kakao_part(server_api, app, welcome):
    subscription_create(app.application, type="KakaoTalk", token="+821012345678")
    subscription_create(app.application)
    body = {"name": "c", "title": "t", "body": "b"}

    refused = server_api.post(CAMPAIGNS, body, format="json")
    push_only = server_api.post(
        CAMPAIGNS, {**body, "targeting_criteria": {"channels": ["iOSPush"]}}, format="json"
    )
    filled = {"template_code": "WELCOME_01", "variables": {"name": "n", "coupon": "c"}}
    with_kakao = server_api.post(CAMPAIGNS, {**body, "kakao": filled}, format="json")

    assert list(assert_error(refused, 400, "validation_error")) == ["kakao.template_code"]
    assert push_only.status_code == 201, push_only.content
    assert with_kakao.status_code == 201, with_kakao.content


def test_a_campaign_targeting_kakao_by_name_or_with_a_kakao_part_is_checked(server_api, welcome):
    by_name = server_api.post(
        CAMPAIGNS,
        {"name": "c", "body": "b", "targeting_criteria": {"channels": ["KakaoTalk"]}},
        format="json",
    )
    unfilled = server_api.post(
        CAMPAIGNS,
        {"name": "c", "body": "b", "kakao": {"template_code": "WELCOME_01"}},
        format="json",
    )

    assert list(assert_error(by_name, 400, "validation_error")) == ["kakao.template_code"]
    assert list(assert_error(unfilled, 400, "validation_error")) == ["kakao.variables.name"]


def test_a_template_campaign_is_checked_as_rendered(app, welcome):
    kakao = {"template_code": "WELCOME_01", "variables": {"name": "{{u}}", "coupon": "{{c}}"}}
    version = template_services.template_create(
        application=app.application, name="w", body_template="b", parts={"kakao": kakao}
    )
    subscription_create(app.application, type="KakaoTalk", token="+821012345678")

    campaign = campaign_services.campaign_create(
        application=app.application, name="c", template=version.template, variables={"u": "Kim"}
    )

    assert campaign.pk is not None


# --- Preview -----------------------------------------------------------------------------------


def test_preview_shows_the_approved_text_filled_and_its_buttons(app):
    buttons = [{"type": "WL", "name": "#{name}의 쿠폰", "linkMo": "https://e.example/#{coupon}"}]
    kakao_template_add(app.application, "WELCOME_01", WELCOME["text"], buttons=buttons)
    parts = {"kakao": {"template_code": "WELCOME_01", "variables": {"name": "김", "coupon": "A1"}}}

    shown = kakao_preview(application=app.application, channel="KakaoTalk", parts=parts)

    assert shown == {
        "template_name": "welcome_01",
        "text": "김님, 가입을 환영합니다. 쿠폰: A1",
        "buttons": [{"type": "WL", "name": "김의 쿠폰", "linkMo": "https://e.example/A1"}],
        "problem": None,
    }
    assert kakao_preview(application=app.application, channel="SMS", parts=parts) == {}


def test_preview_says_why_without_an_approved_template(app):
    shown = kakao_preview(
        application=app.application, channel="KakaoTalk", parts={"kakao": {"template_code": "X"}}
    )

    assert shown["text"] is None and "'X' is not a KakaoTalk template" in shown["problem"]


def test_campaign_preview_shows_what_kakaotalk_shows(server_api, app, welcome):
    subscription_create(app.application, type="KakaoTalk", token="+821012345678")
    filled = {"template_code": "WELCOME_01", "variables": {"name": "Kim", "coupon": "C1"}}
    created = server_api.post(CAMPAIGNS, {"name": "c", "body": "b", "kakao": filled}, format="json")

    [item] = server_api.post(f"{CAMPAIGNS}/{created.json()['id']}/preview").json()["sample"]

    assert item["channel_content"]["text"] == "Kim님, 가입을 환영합니다. 쿠폰: C1"
    assert item["channel_content"]["template_code"] == "WELCOME_01"


# --- Admin -------------------------------------------------------------------------------------


def test_the_admin_shows_synced_templates_read_only(admin_client, app, welcome):
    listing = admin_client.get("/admin/templates_app/kakaotemplate/")
    page = admin_client.get(f"/admin/templates_app/kakaotemplate/{welcome.pk}/change/")
    add = admin_client.get("/admin/templates_app/kakaotemplate/add/")
    post = admin_client.post(
        f"/admin/templates_app/kakaotemplate/{welcome.pk}/change/", {"status": "TSC04"}
    )

    assert listing.status_code == 200 and b"WELCOME_01" in listing.content
    assert page.status_code == 200 and "가입을 환영합니다" in page.content.decode()
    assert add.status_code == 403
    assert post.status_code == 403
    assert KakaoTemplate.objects.get().status == "TSC03"


def test_the_template_admin_preview_shows_what_kakaotalk_shows(admin_client, app):
    buttons = [{"type": "WL", "name": "쿠폰 #{coupon} 보기", "url_mobile": "https://e.example/c"}]
    kakao_template_add(app.application, "WELCOME_01", WELCOME["text"], buttons=buttons)
    version = template_services.template_create(
        application=app.application,
        name="welcome",
        body_template="Welcome {{user}}",
        parts={
            "kakao": {
                "template_code": "WELCOME_01",
                "variables": {"name": "{{user}}", "coupon": "{{code}}"},
            }
        },
    )

    page = admin_client.get(
        f"/admin/templates_app/messagetemplate/{version.template_id}/change/",
        {"preview_variables": '{"user": "Kim", "code": "Z9"}'},
    ).content.decode()

    assert "Kim님, 가입을 환영합니다. 쿠폰: Z9" in page
    assert "쿠폰 Z9 보기" in page
