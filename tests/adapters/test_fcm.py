import json
import urllib.error
import urllib.request
import uuid

import google.auth.transport.requests
import pytest
from google.oauth2 import service_account

from adapters.base import OutboundMessage
from adapters.fcm import SCOPES, FCMAdapter, stringify_data
from fakes.client import revoke_fcm_access_tokens
from tests.adapters.conftest import fcm_token


def _message(token, **fields):
    fields.setdefault("title", "Hello")
    fields.setdefault("body", "World")
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, **fields)


def _send_one(adapter, credentials, message):
    [result] = adapter.send_batch(credentials, [message])
    return result


def test_success_returns_the_message_name(fcm, fakes):
    message = _message(fcm_token(), priority="high", ttl=600, collapse_id="news")
    result = _send_one(fcm, fakes.fcm_credentials(), message)
    assert result.ok, result
    assert result.provider_id.startswith("projects/signal-fake/messages/")
    assert result.latency_ms is not None


def test_data_values_are_stringified(fcm, fakes):
    data = {"count": 3, "nested": {"a": [1, 2]}, "flag": True, "text": "plain"}
    assert stringify_data(data) == {
        "count": "3",
        "nested": '{"a":[1,2]}',
        "flag": "true",
        "text": "plain",
    }
    # The fake answers INVALID_ARGUMENT to any non-string data value.
    assert _send_one(fcm, fakes.fcm_credentials(), _message(fcm_token(), data=data)).ok


def test_the_fake_rejects_non_string_data(fakes):
    account = fakes.fcm_credentials().values["service_account"]
    credentials = service_account.Credentials.from_service_account_info(account, scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        f"{fakes.fcm_endpoint}/v1/projects/signal-fake/messages:send",
        data=json.dumps({"message": {"token": "tok", "data": {"n": 1}}}).encode(),
        headers={"Authorization": f"Bearer {credentials.token}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 (loopback URL)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("prefix", "status", "code", "token_invalid", "permanent"),
    [
        ("dead", 404, "UNREGISTERED", True, True),
        ("mismatch", 403, "SENDER_ID_MISMATCH", True, True),
        ("badtoken", 400, "INVALID_ARGUMENT", True, True),
        ("badarg", 400, "INVALID_ARGUMENT", False, True),
        ("err500", 500, "INTERNAL", False, False),
    ],
)
def test_error_answers(fcm, fakes, prefix, status, code, token_invalid, permanent):
    result = _send_one(fcm, fakes.fcm_credentials(), _message(fcm_token(prefix)))
    assert (result.ok, result.status_code, result.error_code) == (False, status, code)
    assert (result.token_invalid, result.permanent) == (token_invalid, permanent)


def test_quota_exceeded_is_temporary_with_retry_after(fcm, fakes):
    result = _send_one(fcm, fakes.fcm_credentials(), _message(fcm_token("quota")))
    assert (result.error_code, result.permanent, result.retry_after) == (
        "QUOTA_EXCEEDED",
        False,
        1.0,
    )


def test_flaky_is_temporary_with_retry_after_then_succeeds(fcm, fakes):
    credentials, token = fakes.fcm_credentials(), fcm_token("flaky")
    first, second, third = (_send_one(fcm, credentials, _message(token)) for _ in range(3))
    for result in (first, second):
        assert (result.status_code, result.error_code, result.retry_after) == (
            503,
            "UNAVAILABLE",
            1.0,
        )
        assert not result.permanent
    assert third.ok


def test_slow_answer_times_out(fakes):
    adapter = FCMAdapter(endpoint=fakes.fcm_endpoint, timeout=0.5)
    try:
        result = _send_one(adapter, fakes.fcm_credentials(), _message(fcm_token("slow")))
    finally:
        adapter.close()
    assert (result.ok, result.error_code, result.permanent) == (False, "timeout", False)


def test_access_token_is_fetched_once_for_many_sends(fcm, fakes):
    fakes.reset()
    credentials = fakes.fcm_credentials()
    for _ in range(3):
        results = fcm.send_batch(credentials, [_message(fcm_token()) for _ in range(20)])
        assert all(r.ok for r in results)
    stats = fakes.fcm_stats()
    assert stats["token_requests"] == 1
    assert stats["by_status"] == {"200": 60}


def test_access_token_is_refreshed_after_a_401(fcm, fakes):
    credentials = fakes.fcm_credentials()
    assert _send_one(fcm, credentials, _message(fcm_token())).ok
    revoke_fcm_access_tokens(fakes.fcm_endpoint)
    fakes.reset()
    results = fcm.send_batch(credentials, [_message(fcm_token()) for _ in range(5)])
    assert all(r.ok for r in results), results
    stats = fakes.fcm_stats()
    assert stats["token_requests"] == 1  # one refresh for the whole batch
    assert stats["by_status"] == {"401": 5, "200": 5}


def test_unreachable_endpoint_is_a_network_error(fakes):
    adapter = FCMAdapter(endpoint="http://127.0.0.1:9", timeout=5)
    try:
        result = _send_one(adapter, fakes.fcm_credentials(), _message(fcm_token()))
    finally:
        adapter.close()
    assert (result.ok, result.error_code, result.permanent) == (False, "network_error", False)


def test_the_builders_json_is_pyfcms_own_text():
    """orjson in place of pyfcm's json.dumps: byte for byte the same message body."""
    from pyfcm.baseapi import BaseAPI

    from adapters.fcm import _Builder

    builder = _Builder.__new__(_Builder)
    builder.json_encoder = None
    payload = {
        "message": {
            "token": "t",
            "notification": {"title": "Hé 한글", "body": 'b\n"q"'},
            "data": {"z": "1", "a": "2"},
            "android": {"priority": "high", "ttl": "3600s"},
        }
    }
    assert builder.json_dumps(payload) == BaseAPI.json_dumps(builder, payload)
    assert builder.json_dumps({"n": 2**70}) == BaseAPI.json_dumps(builder, {"n": 2**70})
