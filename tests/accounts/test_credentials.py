"""Channel credentials: what each channel's check accepts and refuses (with the message an
operator reads), how the services store and remove them, and which channels are ready."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.utils import timezone

from accounts.credentials import (
    CredentialsInvalid,
    email_credentials_clean,
    kakao_credentials_clean,
    sms_credentials_clean,
    web_push_credentials_clean,
)
from accounts.models import Application, ChannelCredential
from accounts.selectors import channel_credentials_get, channels_ready, channels_ready_of
from accounts.services import (
    application_create,
    channel_credentials_clean,
    channel_credentials_remove,
    channel_credentials_set,
)
from adapters.webpush import generate_vapid_keys, vapid_public_key_of
from core.channels import CHANNELS, SPECS
from tests.admin_pages import p8_key, service_account

EMAIL = {"host": "smtp.example.com", "from_address": "news@example.com"}
SMS = {"account_sid": "AC" + "1" * 32, "auth_token": "twilio-token-1", "from": "+15005550006"}
KAKAO = {"app_key": "app-key", "secret_key": "kakao-secret", "sender_key": "sender-key"}
SUBJECT = "mailto:ops@example.com"


def refused(clean, values, **kwargs) -> str:
    with pytest.raises(CredentialsInvalid) as caught:
        clean(values, **kwargs)
    return str(caught.value)


# --- Email -------------------------------------------------------------------------------------


def test_email_keeps_every_field_it_was_given():
    values = {
        "host": "smtp.example.com",
        "port": 2525,
        "security": "tls",
        "username": "relay",
        "password": "smtp-secret",
        "from_address": "news@example.com",
        "from_name": "Example News",
    }

    assert email_credentials_clean(values) == values


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_email_port_defaults_to_the_securitys_port(security, port):
    cleaned = email_credentials_clean({**EMAIL, "security": security})

    assert cleaned == {**EMAIL, "port": port, "security": security, "from_name": ""}


def test_email_security_defaults_to_starttls_and_no_username_means_no_auth():
    cleaned = email_credentials_clean({**EMAIL, "password": "unused"})

    assert cleaned["security"] == "starttls" and cleaned["port"] == 587
    assert "username" not in cleaned and "password" not in cleaned


def test_email_values_are_stripped():
    cleaned = email_credentials_clean(
        {"host": " smtp.example.com ", "from_address": " news@example.com", "from_name": " N "}
    )

    assert (cleaned["host"], cleaned["from_address"], cleaned["from_name"]) == (
        "smtp.example.com",
        "news@example.com",
        "N",
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"from_address": "news@example.com"}, "Email credentials need 'host'."),
        ({"host": "smtp.example.com"}, "Email credentials need 'from_address'."),
        ({**EMAIL, "from_address": ""}, "Email credentials need 'from_address'."),
        (
            {**EMAIL, "from_address": "not-an-address"},
            "Email \"from_address\" 'not-an-address' is not an address.",
        ),
        ({**EMAIL, "security": "ssl"}, 'Email "security" must be "starttls", "tls" or "none".'),
        ({**EMAIL, "security": None}, 'Email "security" must be "starttls", "tls" or "none".'),
        ({**EMAIL, "port": True}, 'Email "port" must be a number from 1 to 65535.'),
        ({**EMAIL, "port": 0}, 'Email "port" must be a number from 1 to 65535.'),
        ({**EMAIL, "port": 65536}, 'Email "port" must be a number from 1 to 65535.'),
        ({**EMAIL, "port": "587"}, 'Email "port" must be a number from 1 to 65535.'),
        ({**EMAIL, "port": 587.0}, 'Email "port" must be a number from 1 to 65535.'),
        (
            {**EMAIL, "username": "relay"},
            'Email credentials with a "username" need its "password".',
        ),
        (
            {**EMAIL, "username": "relay", "password": ""},
            'Email credentials with a "username" need its "password".',
        ),
        ({**EMAIL, "username": "relay", "password": 1234}, 'Email "password" must be text.'),
        (
            {**EMAIL, "pass": "x"},
            "Email credentials have no field pass; known: host, port, security, username, "
            "password, from_address, from_name.",
        ),
        (
            {**EMAIL, "host": "smtp.example.com\r\nRCPT TO:<a@b.c>"},
            "Email credentials: 'host' must be one line of text.",
        ),
        (
            {**EMAIL, "from_name": "News\nBcc: everyone@example.com"},
            "Email credentials: 'from_name' must be one line of text.",
        ),
        (
            {**EMAIL, "from_address": "news@example.com\r"},
            "Email credentials: 'from_address' must be one line of text.",
        ),
        (
            {**EMAIL, "username": "re\nlay", "password": "x"},
            "Email credentials: 'username' must be one line of text.",
        ),
        ({**EMAIL, "host": "smtp\x00.example.com"}, "Email credentials: 'host' must be one line"),
        ({**EMAIL, "host": ["smtp.example.com"]}, "Email credentials: 'host' must be one line"),
    ],
    ids=lambda value: None if isinstance(value, dict) else value[:40],
)
def test_email_refusals_say_what_is_wrong(values, message):
    assert refused(email_credentials_clean, values).startswith(message)


@pytest.mark.parametrize("port", [1, 65535])
def test_email_takes_the_ports_at_both_ends(port):
    assert email_credentials_clean({**EMAIL, "port": port})["port"] == port


# --- SMS ---------------------------------------------------------------------------------------


def test_sms_with_a_from_number():
    assert sms_credentials_clean(SMS) == SMS


def test_sms_with_a_messaging_service():
    values = {**SMS, "messaging_service_sid": "MG" + "2" * 32}
    del values["from"]

    assert sms_credentials_clean(values) == values


@pytest.mark.parametrize("sender", ["Signal", "Signal News", "ACME2024", "A"])
def test_sms_takes_an_alphanumeric_sender_id(sender):
    assert sms_credentials_clean({**SMS, "from": sender})["from"] == sender


EXACTLY_ONE = 'SMS credentials need exactly one of "from" and "messaging_service_sid".'
BAD_FROM = 'SMS "from" must be an E.164 number (+15005550006) or an alphanumeric sender id.'


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**SMS, "messaging_service_sid": "MG" + "2" * 32}, EXACTLY_ONE),
        ({"account_sid": SMS["account_sid"], "auth_token": "t"}, EXACTLY_ONE),
        ({**SMS, "from": ""}, EXACTLY_ONE),
        ({**SMS, "from": "15005550006"}, BAD_FROM),
        ({**SMS, "from": "+05005550006"}, BAD_FROM),
        ({**SMS, "from": "+1 500 555 0006"}, BAD_FROM),
        ({**SMS, "from": "123456"}, BAD_FROM),  # digits only: neither a number nor a sender id
        ({**SMS, "from": "SignalNews12"}, BAD_FROM),  # 12 characters
        ({**SMS, "from": "Signal-News"}, BAD_FROM),
        ({"auth_token": "t", "from": "+15005550006"}, "SMS credentials need 'account_sid'."),
        ({**SMS, "auth_token": ""}, "SMS credentials need 'auth_token'."),
        ({**SMS, "auth_token": "tok\r\nen"}, "SMS credentials: 'auth_token' must be one line"),
        ({**SMS, "sid": "x"}, "SMS credentials have no field sid; known: account_sid, "),
    ],
    ids=lambda value: None if isinstance(value, dict) else value[:40],
)
def test_sms_refusals_say_what_is_wrong(values, message):
    assert refused(sms_credentials_clean, values).startswith(message)


# --- WebPush -----------------------------------------------------------------------------------


def test_webpush_empty_generates_a_key_pair_that_belongs_together():
    cleaned = web_push_credentials_clean({}, default_subject=SUBJECT)

    assert set(cleaned) == {"vapid_private_key", "vapid_public_key", "subject"}
    assert vapid_public_key_of(cleaned["vapid_private_key"]) == cleaned["vapid_public_key"]
    assert cleaned["subject"] == SUBJECT
    again = web_push_credentials_clean({}, default_subject=SUBJECT)
    assert again["vapid_private_key"] != cleaned["vapid_private_key"]


def test_webpush_derives_the_public_key_of_a_private_key_alone():
    keys = generate_vapid_keys()

    cleaned = web_push_credentials_clean(
        {"vapid_private_key": keys["vapid_private_key"]}, default_subject=SUBJECT
    )

    assert cleaned == {**keys, "subject": SUBJECT}


def test_webpush_takes_a_private_key_with_its_own_public_key_and_a_subject():
    keys = generate_vapid_keys()
    values = {**keys, "subject": "https://signal.example.com/contact"}

    assert web_push_credentials_clean(values, default_subject=SUBJECT) == values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "vapid_private_key": generate_vapid_keys()["vapid_private_key"],
                "vapid_public_key": generate_vapid_keys()["vapid_public_key"],
            },
            'WebPush "vapid_public_key" is not the public key of "vapid_private_key".',
        ),
        (
            {"vapid_public_key": generate_vapid_keys()["vapid_public_key"]},
            'WebPush "vapid_public_key" needs its "vapid_private_key".',
        ),
        (
            {"vapid_private_key": "not base64url!"},
            'WebPush "vapid_private_key" must be the base64url raw P-256 private key.',
        ),
        (
            {"vapid_private_key": "AAAA"},  # 3 octets, not 32
            'WebPush "vapid_private_key" must be the base64url raw P-256 private key.',
        ),
        ({"subject": "http://signal.example.com"}, 'WebPush "subject" must be a mailto: or'),
        ({"subject": "ops@example.com"}, 'WebPush "subject" must be a mailto: or https:// URL.'),
        ({"subject": "mailto:a@b.c\nX: y"}, "WebPush credentials: 'subject' must be one line"),
        ({"private_key": "x"}, "WebPush credentials have no field private_key; known: "),
    ],
    ids=lambda value: None if isinstance(value, dict) else value[:40],
)
def test_webpush_refusals_say_what_is_wrong(values, message):
    assert refused(web_push_credentials_clean, values, default_subject=SUBJECT).startswith(message)


def test_webpush_refuses_a_default_subject_that_is_not_a_url():
    message = refused(web_push_credentials_clean, {}, default_subject="http://localhost")

    assert message == 'WebPush "subject" must be a mailto: or https:// URL.'


# --- KakaoTalk ---------------------------------------------------------------------------------


def test_kakao_takes_its_three_keys_and_an_optional_fallback_number():
    assert kakao_credentials_clean(KAKAO) == KAKAO
    with_fallback = {**KAKAO, "fallback_send_no": "0212345678"}
    assert kakao_credentials_clean(with_fallback) == with_fallback


@pytest.mark.parametrize("name", ["app_key", "secret_key", "sender_key"])
def test_kakao_needs_each_key(name):
    values = {key: value for key, value in KAKAO.items() if key != name}

    assert refused(kakao_credentials_clean, values) == f"KakaoTalk credentials need {name!r}."


@pytest.mark.parametrize("number", ["+821012345678", "01012345678", "15881234"])
def test_kakao_fallback_number_is_e164_or_korean_digits(number):
    values = {**KAKAO, "fallback_send_no": number}
    assert kakao_credentials_clean(values)["fallback_send_no"] == number


def test_kakao_fallback_number_drops_hyphens_and_spaces():
    values = {**KAKAO, "fallback_send_no": "010-1234 5678"}
    assert kakao_credentials_clean(values)["fallback_send_no"] == "01012345678"


@pytest.mark.parametrize("number", ["010-12", "12345", "+0123456789", "call me"])
def test_kakao_refuses_a_fallback_number_that_is_not_one(number):
    message = refused(kakao_credentials_clean, {**KAKAO, "fallback_send_no": number})
    assert message.startswith('KakaoTalk "fallback_send_no" must be an E.164 number')


def test_credentials_invalid_is_the_adapters_class():
    from adapters.base import CredentialsInvalid as AdaptersCredentialsInvalid

    assert CredentialsInvalid is AdaptersCredentialsInvalid


def test_kakao_refuses_an_unknown_field():
    message = refused(kakao_credentials_clean, {**KAKAO, "plus_friend_id": "x"})

    assert message.startswith("KakaoTalk credentials have no field plus_friend_id; known: ")


# --- channel_credentials_clean: one entry for every channel --------------------------------------


@pytest.mark.parametrize(
    ("channel", "values"),
    [("Email", EMAIL), ("SMS", SMS), ("KakaoTalk", KAKAO), ("WebPush", {"subject": SUBJECT})],
)
def test_the_service_checks_each_channel_with_its_own_check(channel, values):
    cleaned = channel_credentials_clean(channel=channel, values=values)

    assert values.items() <= cleaned.items()


def test_the_service_refuses_what_is_not_an_object():
    for values in ([], "{}", None):
        with pytest.raises(CredentialsInvalid, match="Credentials must be a JSON object."):
            channel_credentials_clean(channel="Email", values=values)


def test_in_app_messages_take_no_credentials():
    with pytest.raises(CredentialsInvalid) as caught:
        channel_credentials_clean(channel="InAppMessage", values={"key": "x"})

    assert str(caught.value) == "InAppMessage takes no credentials."


def test_an_unknown_channel_is_refused_naming_the_known_ones():
    with pytest.raises(CredentialsInvalid) as caught:
        channel_credentials_clean(channel="Pigeon", values={})

    assert str(caught.value) == f"Unknown channel 'Pigeon'; known: {', '.join(CHANNELS)}."


def test_apns_credentials_with_unknown_fields_are_refused():
    with pytest.raises(CredentialsInvalid, match="APNs credentials take private_key, key_id"):
        channel_credentials_clean(channel="iOSPush", values={"key": "x"})


def test_webpush_default_subject_is_the_public_url_when_it_is_https(settings):
    settings.PUBLIC_URL = "https://signal.example.com"
    assert channel_credentials_clean(channel="WebPush", values={})["subject"] == (
        "https://signal.example.com"
    )

    settings.PUBLIC_URL = "http://localhost:8000"
    assert channel_credentials_clean(channel="WebPush", values={})["subject"] == (
        "mailto:webpush@localhost"
    )


# --- Storing, reading and removing -------------------------------------------------------------


@pytest.fixture
def application(db) -> Application:
    return application_create(name="credentials")


def raw_values(application: Application, channel: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT values FROM accounts_channelcredential"
            " WHERE application_id = %s AND channel = %s",
            [application.pk, channel],
        )
        return cursor.fetchone()[0]


def test_set_stores_the_checked_values_encrypted(application):
    stored = channel_credentials_set(
        application=application, channel="Email", values={**EMAIL, "port": 2525}
    )

    row = ChannelCredential.objects.get(application=application)
    assert row.channel == "Email" and row.values == stored
    assert stored == {**EMAIL, "port": 2525, "security": "starttls", "from_name": ""}
    assert channel_credentials_get(application=application, channel="Email") == stored
    raw = raw_values(application, "Email")
    assert "smtp.example.com" not in raw and "news@example.com" not in raw


def test_set_refuses_invalid_values_and_stores_nothing(application):
    with pytest.raises(CredentialsInvalid):
        channel_credentials_set(application=application, channel="Email", values={"host": "x"})

    assert not ChannelCredential.objects.exists()


def test_set_again_replaces_the_row(application):
    first = channel_credentials_set(application=application, channel="SMS", values=SMS)
    set_at = ChannelCredential.objects.get().set_at
    second = channel_credentials_set(
        application=application, channel="SMS", values={**SMS, "auth_token": "rotated"}
    )

    row = ChannelCredential.objects.get()
    assert first["auth_token"] != second["auth_token"]
    assert row.values == second and row.set_at > set_at


def test_webpush_empty_stores_a_generated_pair(application):
    stored = channel_credentials_set(application=application, channel="WebPush", values={})

    assert channel_credentials_get(application=application, channel="WebPush") == stored
    assert vapid_public_key_of(stored["vapid_private_key"]) == stored["vapid_public_key"]


def test_remove_deletes_the_row_and_is_harmless_when_there_is_none(application):
    channel_credentials_set(application=application, channel="SMS", values=SMS)
    channel_credentials_set(application=application, channel="Email", values=EMAIL)

    channel_credentials_remove(application=application, channel="SMS", actor="test")
    channel_credentials_remove(application=application, channel="KakaoTalk", actor="test")

    assert list(ChannelCredential.objects.values_list("channel", flat=True)) == ["Email"]
    assert channel_credentials_get(application=application, channel="SMS") == {}


def test_credentials_of_one_application_are_not_anothers(application):
    other = application_create(name="other")
    channel_credentials_set(application=application, channel="SMS", values=SMS)

    assert channel_credentials_get(application=other, channel="SMS") == {}
    assert channels_ready(application=other)["SMS"] is False


def apns_values() -> dict:
    return {"private_key": p8_key(), "key_id": "KEY1234567", "team_id": "TEAM123456",
            "topic": "com.example.app"}  # fmt: skip


def test_ios_push_through_the_service_is_a_channel_row(application):
    values = apns_values()

    stored = channel_credentials_set(application=application, channel="iOSPush", values=values)

    assert stored == {**values, "auth": "token", "sandbox": False}
    row = ChannelCredential.objects.get()
    assert (row.application_id, row.channel, row.values) == (application.pk, "iOSPush", stored)
    assert row.set_at is not None
    assert channel_credentials_get(application=application, channel="iOSPush") == stored
    assert channels_ready(application=application)["iOSPush"] is True

    channel_credentials_remove(application=application, channel="iOSPush", actor="test")

    assert not ChannelCredential.objects.exists()
    assert channel_credentials_get(application=application, channel="iOSPush") == {}
    assert channels_ready(application=application)["iOSPush"] is False


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "bare account"])
def test_android_push_through_the_service_is_a_channel_row(application, wrapped):
    account = service_account()
    values = {"service_account": account} if wrapped else account

    stored = channel_credentials_set(application=application, channel="AndroidPush", values=values)

    assert stored == {"service_account": account}
    row = ChannelCredential.objects.get()
    assert (row.channel, row.values) == ("AndroidPush", stored) and row.set_at is not None
    assert channels_ready_of(application_id=application.pk)["AndroidPush"] is True

    channel_credentials_remove(application=application, channel="AndroidPush", actor="test")

    assert not ChannelCredential.objects.exists()
    assert channels_ready_of(application_id=application.pk)["AndroidPush"] is False


def test_push_credentials_set_to_empty_are_removed(application):
    channel_credentials_set(application=application, channel="iOSPush", values=apns_values())

    assert channel_credentials_set(application=application, channel="iOSPush", values={}) == {}

    assert not ChannelCredential.objects.exists()


def test_android_push_refuses_what_is_not_a_service_account(application):
    with pytest.raises(CredentialsInvalid, match="lacks"):
        channel_credentials_set(application=application, channel="AndroidPush", values={"a": 1})

    assert not ChannelCredential.objects.exists()


# --- Which channels are ready ------------------------------------------------------------------


def test_only_the_inbox_is_ready_for_a_new_application(application):
    expected = dict.fromkeys(CHANNELS, False) | {"InAppMessage": True}

    assert channels_ready(application=application) == expected
    assert channels_ready_of(application_id=application.pk) == expected


@pytest.mark.parametrize(
    ("channel", "values"), [("Email", EMAIL), ("SMS", SMS), ("WebPush", {})]
)  # fmt: skip
def test_a_channel_is_ready_once_its_credentials_are_set(application, channel, values):
    channel_credentials_set(application=application, channel=channel, values=values)

    expected = dict.fromkeys(CHANNELS, False) | {channel: True, "InAppMessage": True}
    assert channels_ready(application=application) == expected
    assert channels_ready_of(application_id=application.pk) == expected

    channel_credentials_remove(application=application, channel=channel, actor="test")

    assert channels_ready_of(application_id=application.pk)[channel] is False


def test_a_channel_delivered_locally_is_ready_without_an_adapter(application):
    assert SPECS["InAppMessage"].adapter is None
    ChannelCredential.objects.create(
        application=application, channel="InAppMessage", values={"any": "x"}, set_at=timezone.now()
    )

    for ready in (
        channels_ready(application=application),
        channels_ready_of(application_id=application.pk),
    ):
        assert ready["InAppMessage"] is True


def test_a_channel_turned_off_in_settings_is_not_ready(application, settings):
    channel_credentials_set(application=application, channel="Email", values=EMAIL)
    assert channels_ready(application=application)["Email"] is True

    settings.CHANNEL_ADAPTERS = {"Email": None}

    assert channels_ready(application=application)["Email"] is False


def test_a_channel_whose_adapter_is_not_installed_is_not_ready(application, settings):
    channel_credentials_set(application=application, channel="SMS", values=SMS)
    settings.CHANNEL_ADAPTERS = {"SMS": "adapters.not_in_this_release.SMSAdapter"}

    assert channels_ready_of(application_id=application.pk)["SMS"] is False


def test_an_adapter_in_settings_overrides_the_specs(application, settings):
    channel_credentials_set(application=application, channel="KakaoTalk", values=KAKAO)
    settings.CHANNEL_ADAPTERS = {"KakaoTalk": "adapters.sms.TwilioSMSAdapter"}

    assert channels_ready_of(application_id=application.pk)["KakaoTalk"] is True


def test_channels_ready_of_an_unknown_application_is_false_but_for_the_inbox(db):
    expected = dict.fromkeys(CHANNELS, False) | {"InAppMessage": True}
    assert channels_ready_of(application_id=uuid.uuid4()) == expected


def test_channels_ready_takes_one_query(application, django_assert_num_queries):
    channel_credentials_set(application=application, channel="Email", values=EMAIL)
    channel_credentials_set(application=application, channel="SMS", values=SMS)

    with django_assert_num_queries(1):
        ready = channels_ready(application=application)

    assert ready["Email"] and ready["SMS"]
