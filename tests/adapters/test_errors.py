import email.utils
import time
from pathlib import Path

import pytest

from adapters import errors
from adapters.apns import APNS_ERRORS, APNsAdapter, classify_apns
from adapters.email import EmailAdapter
from adapters.errors_doc import errors_markdown
from adapters.fcm import FCM_ERRORS, FCMAdapter, classify_fcm
from adapters.sms import TwilioSMSAdapter
from adapters.webpush import WebPushAdapter

ADAPTERS = (APNsAdapter, FCMAdapter, TwilioSMSAdapter, WebPushAdapter, EmailAdapter)
ALL_ERRORS = [
    *errors.LOCAL_ERRORS.values(),
    *(error for adapter in ADAPTERS for error in adapter.errors.values()),
]

APPLE_REASONS = [
    "BadCollapseId",
    "BadDeviceToken",
    "BadExpirationDate",
    "BadMessageId",
    "BadPriority",
    "BadTopic",
    "DeviceTokenNotForTopic",
    "DuplicateHeaders",
    "IdleTimeout",
    "InvalidPushType",
    "MissingDeviceToken",
    "MissingTopic",
    "PayloadEmpty",
    "TopicDisallowed",
    "BadCertificate",
    "BadCertificateEnvironment",
    "ExpiredProviderToken",
    "Forbidden",
    "InvalidProviderToken",
    "MissingProviderToken",
    "UnrelatedKeyIdInToken",
    "BadEnvironmentKeyIdInToken",
    "BadPath",
    "MethodNotAllowed",
    "ExpiredToken",
    "Unregistered",
    "PayloadTooLarge",
    "TooManyProviderTokenUpdates",
    "TooManyRequests",
    "InternalServerError",
    "ServiceUnavailable",
    "Shutdown",
]
FCM_CODES = [
    "UNSPECIFIED_ERROR",
    "INVALID_ARGUMENT",
    "UNREGISTERED",
    "SENDER_ID_MISMATCH",
    "QUOTA_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
    "THIRD_PARTY_AUTH_ERROR",
    "UNAUTHENTICATED",
]


def test_errors_md_matches_the_table():
    path = Path(errors.__file__).with_name("ERRORS.md")
    assert path.read_text() == errors_markdown(), "regenerate adapters/ERRORS.md"


def test_every_documented_code_is_in_the_table():
    assert list(APNS_ERRORS) == APPLE_REASONS
    assert set(FCM_CODES) <= set(FCM_ERRORS)


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: f"{e.provider}-{e.code}")
def test_a_rejected_credential_is_our_fault_and_temporary(error):
    if error.credential_rejected:
        assert not error.token_invalid
        assert not error.permanent
    if error.token_invalid:
        assert error.permanent


@pytest.mark.parametrize(
    ("status", "reason", "permanent", "token_invalid"),
    [
        (410, "Unregistered", True, True),
        (410, "ExpiredToken", True, True),
        (400, "BadDeviceToken", True, True),
        (400, "DeviceTokenNotForTopic", True, True),
        (400, "BadTopic", True, False),
        (403, "ExpiredProviderToken", False, False),
        (429, "TooManyRequests", False, False),
        (503, "Shutdown", False, False),
        (502, None, False, False),
        (418, "SomethingNew", True, False),
    ],
)
def test_classify_apns(status, reason, permanent, token_invalid):
    result = classify_apns("m", status, reason, retry_after=1.0)
    assert not result.ok
    assert (result.permanent, result.token_invalid) == (permanent, token_invalid)
    assert result.status_code == status
    assert result.retry_after == 1.0


def _fcm_error(status, code=None, message="", field=None):
    details = []
    if code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        )
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    return {"error": {"code": status, "message": message, "status": "X", "details": details}}


def test_fcm_invalid_argument_is_token_invalid_only_when_it_names_the_token():
    by_field = classify_fcm("m", 400, _fcm_error(400, "INVALID_ARGUMENT", "bad", "message.token"))
    by_text = classify_fcm(
        "m", 400, _fcm_error(400, "INVALID_ARGUMENT", "The registration token is not valid")
    )
    other = classify_fcm(
        "m", 400, _fcm_error(400, "INVALID_ARGUMENT", "Invalid value", "message.data[x].value")
    )
    assert by_field.token_invalid and by_text.token_invalid
    assert not other.token_invalid
    assert by_field.permanent and other.permanent


def test_fcm_bare_401_is_a_rejected_credential():
    result = classify_fcm("m", 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
    assert result.error_code == "UNAUTHENTICATED"
    assert errors.is_credential_rejected(result, FCM_ERRORS)
    assert not errors.is_credential_rejected(result, APNS_ERRORS)
    assert not result.permanent and not result.token_invalid


def test_fcm_success_takes_the_message_name():
    result = classify_fcm("m", 200, {"name": "projects/p/messages/1"})
    assert result.ok and result.provider_id == "projects/p/messages/1"


def test_fcm_unknown_5xx_without_json_is_temporary():
    result = classify_fcm("m", 502, None)
    assert not result.permanent and result.error_code == "HTTP502"


# --- The machinery every adapter shares ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(None, False), (307, True), (400, True), (401, False), (404, True), (418, True)]
    + [(429, False), (500, False), (503, False), (599, False)],
)
def test_one_rule_for_a_code_missing_from_its_table(status, permanent):
    error = errors.unknown_error("Any", "odd", status)
    assert (error.permanent, error.token_invalid, error.credential_rejected) == (
        permanent,
        False,
        False,
    )


def test_every_adapter_applies_the_same_unknown_status_rule():
    from adapters.sms import classify_twilio
    from adapters.webpush import classify_webpush

    for status in (307, 402, 418, 507, 599):  # in no table
        expected = errors.unknown_error("Any", "odd", status).permanent
        assert classify_apns("m", status, "SomethingNew").permanent == expected
        assert classify_fcm("m", status, {"error": {"status": "SOMETHING_NEW"}}).permanent == (
            expected
        )
        assert classify_twilio("m", status, {"code": 29999}).permanent == expected
        assert classify_webpush("m", status, {}, b"").permanent == expected


def test_every_table_is_built_by_the_one_builder():
    for adapter in ADAPTERS:
        assert adapter.errors, adapter
        for code, error in adapter.errors.items():
            assert isinstance(error, errors.ErrorClass) and error.code == code


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [("7", 7, 7), (b"0", 0, 0), ("1.5", 1.5, 1.5)],
)
def test_retry_after_in_seconds(value, low, high):
    assert low <= errors.parse_retry_after(value) <= high


def test_retry_after_as_an_http_date():
    ahead = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= errors.parse_retry_after(ahead.encode()) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert errors.parse_retry_after(past) == 0.0
    # RFC 9110's obsolete forms, which recipients must read too.
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= errors.parse_retry_after(rfc850) <= 61


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", b"\xff"])
def test_unreadable_retry_after_is_none(value):
    assert errors.parse_retry_after(value) is None
