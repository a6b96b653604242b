import time
import uuid

from adapters.apns import APNsAdapter, build_payload
from adapters.base import OutboundMessage
from tests.adapters.conftest import hex_token


def _message(token, **fields):
    fields.setdefault("title", "Hello")
    fields.setdefault("body", "World")
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, **fields)


def _send_one(adapter, credentials, message):
    [result] = adapter.send_batch(credentials, [message])
    return result


def test_success_returns_the_apns_id(apns, fakes):
    message = _message(hex_token(), priority="high", ttl=3600, collapse_id="news")
    result = _send_one(apns, fakes.apns_credentials(), message)
    assert result.ok, result
    assert result.provider_id == message.message_id  # our UUID is sent as apns-id
    assert result.status_code == 200
    assert result.latency_ms is not None and result.latency_ms > 0


def test_background_message_is_sent_with_priority_5(apns, fakes):
    # The fake rejects a background push at priority 10 with BadPriority, as Apple does.
    message = _message(hex_token(), title="", body="", data={"sync": True}, priority="high")
    assert build_payload(message) == {"sync": True, "aps": {"content-available": 1}}
    assert _send_one(apns, fakes.apns_credentials(), message).ok


def test_results_come_back_in_order(apns, fakes):
    messages = [_message(hex_token(prefix)) for prefix in ("", "dead", "", "bad0", "")]
    results = apns.send_batch(fakes.apns_credentials(), messages)
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert [r.ok for r in results] == [True, False, True, False, True]


def test_unregistered_token_is_invalid_and_permanent(apns, fakes):
    result = _send_one(apns, fakes.apns_credentials(), _message(hex_token("dead")))
    assert (result.ok, result.status_code, result.error_code) == (False, 410, "Unregistered")
    assert result.token_invalid and result.permanent


def test_bad_device_token(apns, fakes):
    result = _send_one(apns, fakes.apns_credentials(), _message(hex_token("bad0")))
    assert (result.status_code, result.error_code) == (400, "BadDeviceToken")
    assert result.token_invalid and result.permanent


def test_flaky_is_temporary_with_retry_after_then_succeeds(apns, fakes):
    credentials, token = fakes.apns_credentials(), hex_token("f1a0")
    first, second, third = (_send_one(apns, credentials, _message(token)) for _ in range(3))
    for result in (first, second):
        assert (result.status_code, result.error_code) == (503, "ServiceUnavailable")
        assert not result.permanent and not result.token_invalid
        assert result.retry_after == 1.0
    assert third.ok


def test_oversized_payload_fails_without_a_request(apns, fakes):
    credentials = fakes.apns_credentials()
    _send_one(apns, credentials, _message(hex_token()))  # connection and token are warm
    before = fakes.apns_stats()["requests"]
    result = _send_one(apns, credentials, _message(hex_token(), data={"blob": "x" * 4100}))
    assert (result.ok, result.error_code, result.permanent) == (False, "payload_too_large", True)
    assert result.status_code is None
    assert fakes.apns_stats()["requests"] == before


def test_slow_answer_times_out_and_the_connection_survives(fakes):
    adapter = APNsAdapter(endpoint=fakes.apns_endpoint, ca_file=fakes.ca_file, timeout=0.5)
    credentials = fakes.apns_credentials()
    try:
        result = _send_one(adapter, credentials, _message(hex_token("5104")))
        assert (result.ok, result.error_code, result.permanent) == (False, "timeout", False)
        # The late answer to the abandoned request must not break the shared connection.
        time.sleep(2.0)
        assert _send_one(adapter, credentials, _message(hex_token())).ok
    finally:
        adapter.close()


def test_expired_provider_token_is_renewed_and_the_message_resent(apns, fakes):
    credentials = fakes.apns_credentials()
    # A clock two hours behind: APNs sees an `iat` older than an hour.
    apns.provider_token(credentials).issue(iat=int(time.time()) - 7200)
    fakes.reset()
    result = _send_one(apns, credentials, _message(hex_token()))
    assert result.ok, result
    stats = fakes.apns_stats()
    assert stats["by_reason"] == {"ExpiredProviderToken": 1, "Success": 1}


def test_unknown_key_id_is_retried_once_then_temporary(apns, fakes):
    fakes.reset()
    credentials = fakes.apns_credentials(key_id="NOTAKEY000")
    result = _send_one(apns, credentials, _message(hex_token()))
    assert (result.ok, result.status_code, result.error_code) == (
        False,
        403,
        "InvalidProviderToken",
    )
    assert not result.permanent and not result.token_invalid
    assert fakes.apns_stats()["by_reason"] == {"InvalidProviderToken": 2}


def test_certificate_auth(apns, fakes):
    result = _send_one(apns, fakes.apns_certificate_credentials(), _message(hex_token()))
    assert result.ok, result


def test_many_error_bodies_do_not_stall_the_connection(apns, fakes):
    # Each error answer carries a body; 2000 of them exceed the 64 KiB flow-control window.
    messages = [_message(hex_token("dead")) for _ in range(2000)]
    results = apns.send_batch(fakes.apns_credentials(), messages)
    assert {r.error_code for r in results} == {"Unregistered"}


def test_unreachable_endpoint_is_a_network_error(fakes):
    adapter = APNsAdapter(endpoint="https://127.0.0.1:9", ca_file=fakes.ca_file, timeout=5)
    try:
        result = _send_one(adapter, fakes.apns_credentials(), _message(hex_token()))
    finally:
        adapter.close()
    assert (result.ok, result.error_code, result.permanent) == (False, "network_error", False)


def test_a_payload_orjson_refuses_is_sent_all_the_same(apns, fakes):
    """An integer beyond 64 bits in the data: the standard library encodes that payload."""
    message = _message(hex_token(), data={"order": 2**70, "name": "한글"})
    assert _send_one(apns, fakes.apns_credentials(), message).ok
