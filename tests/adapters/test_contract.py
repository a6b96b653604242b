"""What every adapter class says about its channel (INTERFACES: adapters.base): its type, its
error table, its secret credential fields, its credential check and what a message looks like
on it, the same function the adapter sends with and a preview shows."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from adapters.apns import APNsAdapter, build_payload
from adapters.base import CredentialsInvalid, OutboundMessage
from adapters.email import EmailAdapter
from adapters.errors import ErrorClass
from adapters.fcm import FCMAdapter
from adapters.kakao import KakaoAdapter
from adapters.sms import TwilioSMSAdapter
from adapters.webpush import WebPushAdapter, payload_of
from tests.admin_pages import p8_key, service_account

ADAPTERS = {
    "iOSPush": APNsAdapter,
    "AndroidPush": FCMAdapter,
    "Email": EmailAdapter,
    "SMS": TwilioSMSAdapter,
    "WebPush": WebPushAdapter,
    "KakaoTalk": KakaoAdapter,
}
# A part and credentials for each channel that fill every field its content has.
SAMPLES = {
    "Email": ({"subject": "S", "html": "<p>B</p>", "from_name": "Shop"}, {"from_name": "Relay"}),
    "SMS": ({"text": "Sale 가"}, None),
    "WebPush": ({"url": "https://example.com/sale", "icon": "https://example.com/i.png"}, None),
    "KakaoTalk": (
        {
            "template_code": "SALE_01",
            "variables": {"pct": 50},
            "buttons": [{"ordering": 1, "chat_extra": "x"}],
            "fallback_text": "세일 50%, 오늘만. 자세한 내용은 앱에서 확인하세요. " * 3,
        },
        {"fallback_send_no": "15881234"},
    ),
}


@pytest.mark.parametrize(("channel", "adapter"), ADAPTERS.items())
def test_every_adapter_says_what_its_channel_is(channel, adapter):
    assert adapter.channel == channel
    assert adapter.errors and all(isinstance(e, ErrorClass) for e in adapter.errors.values())
    assert adapter.secret_fields and all(isinstance(name, str) for name in adapter.secret_fields)
    content = adapter.content_of(title="T", body="B", data={"k": "v"}, part={})
    assert json.loads(json.dumps(content)) == content  # JSON-able, as a preview shows it
    with pytest.raises(CredentialsInvalid):
        adapter.clean_credentials({"nonsense": "x"}, default_subject="mailto:ops@example.com")


@pytest.mark.parametrize(("channel", "adapter"), ADAPTERS.items())
def test_content_of_is_what_its_content_schema_says(channel, adapter):
    validator = Draft202012Validator(adapter.content_schema)
    Draft202012Validator.check_schema(adapter.content_schema)
    part, credentials = SAMPLES.get(channel, ({}, None))
    for content in (
        adapter.content_of(title="T", body="B", data={"k": "v"}, part={}),
        adapter.content_of(
            title="Sale", body="Half price", data={"n": 1}, part=part, credentials=credentials
        ),
    ):
        assert list(validator.iter_errors(content)) == [], content
    assert adapter.content_schema["description"]
    assert not validator.is_valid({})  # it says something: an empty object is not one


def test_credentials_invalid_is_a_value_error_with_the_reason():
    error = CredentialsInvalid("why")
    assert isinstance(error, ValueError) and str(error) == "why"


# --- content_of: what is sent is what a preview shows ------------------------------------------


def _message(**fields):
    return OutboundMessage(message_id="m-1", token="t", **fields)


def test_apns_sends_its_content_of():
    shown = APNsAdapter.content_of(title="Sale", body="Half", data={"screen": "s"}, part={})
    payload = build_payload(_message(title="Sale", body="Half", data={"screen": "s"}))
    assert shown == {"title": "Sale", "body": "Half", "data": {"screen": "s"}}
    assert payload["aps"]["alert"] == {"title": shown["title"], "body": shown["body"]}
    assert payload["screen"] == "s"


def test_webpush_sends_its_content_of_with_the_message_id_and_data():
    part = {"url": "https://example.com/sale", "icon": ""}
    shown = WebPushAdapter.content_of(title="Sale", body="Half", data={"a": 1}, part=part)
    sent = json.loads(payload_of(_message(title="Sale", body="Half", data={"a": 1}, parts=part)))
    assert shown == {"title": "Sale", "body": "Half", "url": "https://example.com/sale", "icon": ""}
    assert sent == {
        "message_id": "m-1",
        "title": "Sale",
        "body": "Half",
        "data": {"a": 1},
        "url": "https://example.com/sale",
    }


def test_email_content_takes_the_part_then_the_title_and_the_relays_name():
    shown = EmailAdapter.content_of(
        title="Sale", body="Half", data={}, part={}, credentials={"from_name": "Shop"}
    )
    assert shown == {"subject": "Sale", "text": "Half", "html": "", "from_name": "Shop"}
    part = {"subject": "SALE!", "html": "<p>Half</p>", "from_name": "Sales"}
    shown = EmailAdapter.content_of(
        title="Sale", body="Half", data={}, part=part, credentials={"from_name": "Shop"}
    )
    assert shown == {
        "subject": "SALE!",
        "text": "Half",
        "html": "<p>Half</p>",
        "from_name": "Sales",
    }


def test_sms_content_is_the_parts_text_else_the_body_with_its_segments():
    assert TwilioSMSAdapter.content_of(title="", body="Half", data={}, part={}) == {
        "text": "Half",
        "encoding": "GSM-7",
        "segments": 1,
    }
    shown = TwilioSMSAdapter.content_of(title="", body="Half", data={}, part={"text": "가"})
    assert shown == {"text": "가", "encoding": "UCS-2", "segments": 1}


# --- clean_credentials -------------------------------------------------------------------------


def test_apns_takes_token_auth_fields_and_its_own_stored_form():
    values = {"private_key": p8_key(), "key_id": "K1", "team_id": "T1", "topic": "app.example"}
    stored = APNsAdapter.clean_credentials(values)
    assert stored == {**values, "auth": "token", "sandbox": False}
    assert APNsAdapter.clean_credentials(stored) == stored


def test_apns_certificate_auth_is_checked_by_loading_it(fakes):
    certificate = Path(fakes.apns_client_cert_file).read_text()
    values = {"auth": "certificate", "certificate": certificate, "topic": "app.example"}
    assert APNsAdapter.clean_credentials(values) == {**values, "sandbox": False}
    with pytest.raises(CredentialsInvalid, match="not a PEM certificate"):
        APNsAdapter.clean_credentials({**values, "certificate": "-----BEGIN nothing"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"key_id": "K"}, "APNs credentials take private_key"),
        ({"auth": "password"}, 'APNs "auth" must be'),
    ],
)
def test_apns_refusals(values, message):
    with pytest.raises(CredentialsInvalid, match=message):
        APNsAdapter.clean_credentials(values)


def test_fcm_takes_the_service_account_as_an_object_or_as_its_json_text():
    account = service_account()
    assert FCMAdapter.clean_credentials({"service_account": account}) == {
        "service_account": account
    }
    as_text = FCMAdapter.clean_credentials({"service_account": json.dumps(account)})
    assert as_text == {"service_account": account}
    with pytest.raises(CredentialsInvalid, match="lacks"):
        FCMAdapter.clean_credentials({"service_account": {"type": "service_account"}})


def test_email_from_address_must_be_what_the_adapter_can_send():
    with pytest.raises(CredentialsInvalid, match="is not an address"):
        EmailAdapter.clean_credentials({"host": "smtp.example.com", "from_address": "nö@x.org"})
