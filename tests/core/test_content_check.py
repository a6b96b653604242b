"""A channel's content rule is its spec's `content_check`: messages, campaigns and templates
run the rule of every channel they are meant for, with no channel named in their code. Here
a throwaway rule is patched onto the e-mail spec; the SMS rule is the SMS adapter's."""

from __future__ import annotations

import dataclasses

import pytest

from adapters.sms import TwilioSMSAdapter
from campaigns.models import Campaign
from core import channels
from core.channels import EMAIL, KAKAOTALK, SMS, SPECS, PlainContent
from core.validation import InputInvalid
from messaging.models import Message
from templates_app.models import MessageTemplate
from tests.assertions import assert_error
from tests.conftest import subscription_create
from tests.kakao import kakao_template_add

pytestmark = pytest.mark.django_db

CALLS: list[dict] = []


def no_shouting(*, application, channel, contents, templated=False) -> None:
    """The throwaway rule: an e-mail subject in capitals is refused."""
    CALLS.append(
        {
            "application": application,
            "channel": channel,
            "bodies": [c.body for c in contents],
            "templated": templated,
        }
    )
    for content in contents:
        subject = (content.parts.get("email") or {}).get("subject") or ""
        if subject.isupper():
            raise InputInvalid("No shouting in the subject.", field="email.subject")


@pytest.fixture
def ruled(monkeypatch):
    CALLS.clear()
    spec = dataclasses.replace(SPECS[EMAIL], content_check=f"{__name__}.no_shouting")
    monkeypatch.setitem(channels.SPECS, EMAIL, spec)
    yield CALLS


def test_a_message_to_the_channel_is_checked_by_its_rule(server_api, app, ruled):
    email = subscription_create(app.application, type=EMAIL, token="kim@example.com")
    push = subscription_create(app.application)
    body = {"subscription_ids": [str(email.pk), str(push.pk)], "title": "t", "body": "b"}

    refused = server_api.post(
        "/api/v1/messages", {**body, "email": {"subject": "SALE"}}, format="json"
    )
    accepted = server_api.post(
        "/api/v1/messages", {**body, "email": {"subject": "Sale"}}, format="json"
    )

    assert assert_error(refused, 400, "validation_error") == {
        "email.subject": ["No shouting in the subject."]
    }
    assert accepted.status_code == 202, accepted.content
    assert Message.objects.count() == 2
    # Once per request, over the contents going to the channel, for the application.
    assert [(c["application"], c["channel"], c["bodies"]) for c in ruled] == [
        (app.application, EMAIL, ["b"])
    ] * 2


def test_a_message_to_another_channel_is_not(server_api, app, ruled):
    push = subscription_create(app.application)

    response = server_api.post(
        "/api/v1/messages",
        {"subscription_id": str(push.pk), "body": "b", "email": {"subject": "SALE"}},
        format="json",
    )

    assert response.status_code == 202, response.content
    assert ruled == []


def test_a_campaign_with_the_channels_part_is_checked_by_its_rule(server_api, ruled):
    response = server_api.post(
        "/api/v1/campaigns",
        {"name": "c", "title": "t", "body": "b", "email": {"subject": "SALE"}},
        format="json",
    )

    assert assert_error(response, 400, "validation_error") == {
        "email.subject": ["No shouting in the subject."]
    }
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    ("channels_named", "checked"), [([EMAIL], [EMAIL]), ([SMS], []), (None, [])]
)
def test_a_campaign_naming_the_channel_is_checked_without_its_part(
    server_api, app, ruled, channels_named, checked
):
    # An e-mail subscriber in the audience does not make a campaign meant for e-mail: the
    # rule runs in the fan-out (only a channel that requires its part is looked up).
    subscription_create(app.application, type=EMAIL, token="kim@example.com")
    targeting = {"channels": channels_named} if channels_named else {}

    response = server_api.post(
        "/api/v1/campaigns",
        {"name": "c", "title": "t", "body": "b", "targeting_criteria": targeting},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert [c["channel"] for c in ruled] == checked


def test_a_template_with_the_channels_part_is_checked_in_every_language(server_api, ruled):
    response = server_api.post(
        "/api/v1/templates",
        {
            "name": "t",
            "body_template": "b",
            "email": {"subject": "Sale"},
            "default_language": "ko",
            "translations": {"en": {"body_template": "en", "email": {"subject": "SALE"}}},
        },
        format="json",
    )

    assert assert_error(response, 400, "validation_error") == {
        "email.subject": ["No shouting in the subject."]
    }
    assert not MessageTemplate.objects.exists()
    assert [(c["bodies"], c["templated"]) for c in ruled] == [(["b", "en"], True)]


def test_the_sms_rule_is_the_sms_adapters():
    assert TwilioSMSAdapter.content_problem(body="a" * 1530, part={}) is None
    field, message = TwilioSMSAdapter.content_problem(body="b", part={"text": "가" * 671})
    assert field == "sms.text" and "11 segments of UCS-2" in message

    with pytest.raises(InputInvalid) as refused:
        SPECS[SMS].check_content(application=None, contents=[PlainContent("a" * 1531, {})])
    assert refused.value.field == "body"
    assert "(body) takes 11 segments of GSM-7" in refused.value.message


def test_the_kakao_rule_reads_the_templates_once_for_all_contents(app, django_assert_num_queries):
    kakao_template_add(app.application, "WELCOME_01", "#{name}님, 환영합니다.")
    kakao_template_add(app.application, "BYE_01", "#{name}님, 안녕히.")
    contents = [
        PlainContent("b", {"kakao": {"template_code": code, "variables": {"name": name}}})
        for code in ("WELCOME_01", "BYE_01")
        for name in ("Kim", "Lee", "Park")
    ]

    with django_assert_num_queries(1):
        SPECS[KAKAOTALK].check_content(application=app.application, contents=contents)

    unfilled = [*contents, PlainContent("b", {"kakao": {"template_code": "BYE_01"}})]
    with django_assert_num_queries(1), pytest.raises(InputInvalid) as refused:
        SPECS[KAKAOTALK].check_content(application=app.application, contents=unfilled)
    assert refused.value.field == "kakao.variables.name"
