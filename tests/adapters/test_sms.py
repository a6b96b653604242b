"""The Twilio SMS adapter over the wire: against the fake Twilio, against small stand-ins of
our own (a server that counts requests in flight, a status-callback receiver, a proxy), and
the webhook signature against Twilio's published example."""

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qsl

import pytest

from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage
from adapters.sms import (
    TWILIO_ERRORS,
    TwilioSMSAdapter,
    classify_twilio,
    signature_valid,
    twilio_signature,
)
from fakes import client
from tests.adapters.conftest import phone
from tests.adapters.servers import Proxy

SID = re.compile(r"^SM[0-9a-f]{32}$")


def _message(token, body="Your code is 123456", **fields):
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, body=body, **fields)


def _send_one(adapter, credentials, message):
    [result] = adapter.send_batch(credentials, [message])
    return result


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of connections is queued, not refused


@contextlib.contextmanager
def _http_server(handler_class):
    """A threaded HTTP/1.1 server on 127.0.0.1 running `handler_class`; yields its origin."""
    server = _Server(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        return dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


# -- delivery --


def test_delivery_sends_twilios_form_fields(sms, fakes):
    to = phone()
    callback = "https://signal.example.com/sms/status?app=7"
    body = "Tom & Jerry = 100% + €5\nline two: ünïcödé 😀"
    result = _send_one(sms, fakes.sms_credentials(), _message(to, body, status_callback=callback))
    assert result.ok, result
    assert result.status_code == 201
    assert SID.match(result.provider_id)
    assert result.latency_ms is not None
    [received] = fakes.sms_messages(to)
    assert received["To"] == to
    assert received["From"] == fakes.sms_from
    assert received["MessagingServiceSid"] is None
    assert received["Body"] == body
    assert received["StatusCallback"] == callback
    assert received["sid"] == result.provider_id


def test_without_a_status_callback_none_is_sent(sms, fakes):
    to = phone()
    assert _send_one(sms, fakes.sms_credentials(), _message(to)).ok
    assert fakes.sms_messages(to)[0]["StatusCallback"] is None


def test_the_sms_part_wins_over_the_body(sms, fakes):
    to = phone()
    message = _message(to, "generic body", title="Title", parts={"text": "SMS-only text"})
    assert _send_one(sms, fakes.sms_credentials(), message).ok
    assert fakes.sms_messages(to)[0]["Body"] == "SMS-only text"


def test_messaging_service_credentials_send_messaging_service_sid(sms, fakes):
    to = phone()
    result = _send_one(sms, fakes.sms_credentials(messaging_service=True), _message(to))
    assert result.ok, result
    [received] = fakes.sms_messages(to)
    assert received["MessagingServiceSid"] == fakes.sms_messaging_service_sid
    assert received["From"] is None
    assert received["status"] in ("accepted", "sent", "delivered")


def test_the_fake_speaks_http1_only_so_the_pool_settles_on_it(sms, fakes):
    credentials = fakes.sms_credentials()
    assert _send_one(sms, credentials, _message(phone())).ok
    [client_] = sms._clients.values()
    assert client_.pool.protocol == "http/1.1"


# -- Twilio's errors --


@pytest.mark.parametrize(
    ("to", "status", "code", "token_invalid", "permanent"),
    [
        (phone("+15005551"), 400, "21211", True, True),
        ("not-a-number", 400, "21211", True, True),
        ("0101234567", 400, "21211", True, True),
        (phone("+15005552"), 400, "21614", True, True),
        (phone("+15005553"), 400, "21610", True, True),
        (phone("+15005557"), 400, "21612", False, True),
        (phone("+15005558"), 400, "21408", False, True),
        ("+15005550001", 400, "21211", True, True),
        ("+15005550004", 400, "21610", True, True),
        ("+15005550009", 400, "21614", True, True),
        (phone("+15005559"), 503, "HTTP503", False, False),
    ],
)
def test_error_answers_map_to_flags(sms, fakes, to, status, code, token_invalid, permanent):
    result = _send_one(sms, fakes.sms_credentials(), _message(to))
    assert (result.ok, result.status_code, result.error_code) == (False, status, code)
    assert (result.token_invalid, result.permanent) == (token_invalid, permanent)
    assert result.error_message


def test_too_many_requests_is_temporary_with_retry_after(sms, fakes):
    result = _send_one(sms, fakes.sms_credentials(), _message(phone("+15005554")))
    assert (result.status_code, result.error_code) == (429, "20429")
    assert not result.permanent and not result.token_invalid
    assert result.retry_after == 2.0


def test_flaky_number_fails_twice_with_retry_after_then_delivers(sms, fakes):
    to = phone("+15005555")
    credentials = fakes.sms_credentials()
    first, second, third = (_send_one(sms, credentials, _message(to)) for _ in range(3))
    for failed in (first, second):
        assert (failed.ok, failed.status_code, failed.error_code) == (False, 503, "20503")
        assert not failed.permanent
        assert failed.retry_after == 1.0
    assert third.ok and SID.match(third.provider_id)


def test_a_sender_that_is_not_the_accounts_is_permanent(sms, fakes):
    values = dict(fakes.sms_credentials().values, **{"from": "+14155550000"})
    result = _send_one(sms, Credentials(key="other-from", values=values), _message(phone()))
    assert (result.status_code, result.error_code) == (400, "21606")
    assert result.permanent and not result.token_invalid


def test_an_empty_body_is_refused_permanently(sms, fakes):
    result = _send_one(sms, fakes.sms_credentials(), _message(phone(), ""))
    assert (result.status_code, result.error_code, result.permanent) == (400, "21602", True)


def test_a_body_over_1600_characters_fails_without_a_request(sms, fakes):
    too_long, longest = phone(), phone()
    results = sms.send_batch(
        fakes.sms_credentials(), [_message(too_long, "x" * 1601), _message(longest, "x" * 1600)]
    )
    assert results[0].error_code == "payload_too_large"
    assert results[0].permanent and results[0].status_code is None
    assert results[1].ok, results[1]
    assert fakes.sms_messages(too_long) == []
    assert len(fakes.sms_messages(longest)) == 1


def test_a_batch_keeps_its_order_across_outcomes(sms, fakes):
    numbers = [phone(), phone("+15005551"), phone(), phone("+15005554"), phone("+15005553")]
    messages = [_message(number) for number in numbers]
    results = sms.send_batch(fakes.sms_credentials(), messages)
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert [r.error_code for r in results] == [None, "21211", None, "20429", "21610"]


def test_unknown_codes_fall_back_on_the_http_status():
    temporary = classify_twilio("m", 500, {"code": 20999, "message": "odd"})
    assert (temporary.error_code, temporary.permanent) == ("20999", False)
    permanent = classify_twilio("m", 400, {"code": 21999, "message": "odd"})
    assert (permanent.error_code, permanent.permanent, permanent.token_invalid) == (
        "21999",
        True,
        False,
    )
    bare = classify_twilio("m", 502, None)
    assert (bare.error_code, bare.permanent) == ("HTTP502", False)
    assert classify_twilio("m", 404, None).permanent


def test_the_table_says_what_the_contract_says():
    for code in ("21211", "21614", "21610"):
        assert TWILIO_ERRORS[code].token_invalid and TWILIO_ERRORS[code].permanent
    for code in ("21408", "21606", "21612"):
        assert TWILIO_ERRORS[code].permanent and not TWILIO_ERRORS[code].token_invalid
    for code in ("20003", "20429", "20500", "20503"):
        assert not TWILIO_ERRORS[code].permanent


# -- credentials --


def test_a_wrong_auth_token_is_temporary_and_stops_the_batch(fakes):
    adapter = TwilioSMSAdapter(endpoint=fakes.sms_endpoint, timeout=5, concurrency=5)
    values = dict(fakes.sms_credentials().values, auth_token="0" * 32)
    before = fakes.sms_stats()["by_reason"].get("20003", 0)
    try:
        results = adapter.send_batch(
            Credentials(key="wrong-token", values=values), [_message(phone()) for _ in range(200)]
        )
    finally:
        adapter.close()
    assert {r.error_code for r in results} == {"20003"}
    assert not any(r.permanent or r.token_invalid for r in results)
    sent = [r for r in results if not r.error_message.startswith("not sent")]
    assert {r.status_code for r in sent} == {401}
    assert {r.status_code for r in results if r not in sent} == {None}
    # The first refusal stops the batch: only the requests already in flight reached Twilio.
    assert 1 <= fakes.sms_stats()["by_reason"]["20003"] - before <= 5
    assert sum(r.error_message.startswith("not sent") for r in results) >= 195


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"account_sid": "AC1", "auth_token": "t"},  # neither from nor messaging_service_sid
        {"account_sid": "", "auth_token": "t", "from": "+15005550006"},
        {"account_sid": "AC1/../x", "auth_token": "t", "from": "+15005550006"},
        {"account_sid": "AC1", "auth_token": "", "from": "+15005550006"},
        {"account_sid": "AC1", "auth_token": "t", "messaging_service_sid": 7},
    ],
)
def test_unusable_credentials_raise_configuration_errors(sms, values):
    with pytest.raises(AdapterConfigurationError):
        sms.send_batch(Credentials(key=f"bad-{uuid.uuid4()}", values=values), [_message(phone())])


def test_from_settings_reads_endpoint_timeout_and_concurrency():
    settings = SimpleNamespace(
        SMS_ENDPOINT="http://127.0.0.1:9/", SMS_TIMEOUT=3.5, SMS_CONCURRENCY=12
    )
    adapter = TwilioSMSAdapter.from_settings(settings)
    assert (adapter.endpoint, adapter.timeout, adapter.concurrency) == (
        "http://127.0.0.1:9",
        3.5,
        12,
    )
    assert TwilioSMSAdapter.from_settings(SimpleNamespace()).endpoint == "https://api.twilio.com"


# -- no answer --


def _dead_origin() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: nothing listens there


def test_a_dead_endpoint_is_temporary_and_the_batch_stops_after_a_round(fakes):
    adapter = TwilioSMSAdapter(endpoint=_dead_origin(), timeout=5, concurrency=10)
    started = time.monotonic()
    try:
        results = adapter.send_batch(
            fakes.sms_credentials(), [_message(phone()) for _ in range(300)]
        )
    finally:
        adapter.close()
    assert time.monotonic() - started < 5
    assert {r.error_code for r in results} == {"network_error"}
    assert not any(r.permanent or r.ok for r in results)
    assert sum(r.error_message.startswith("not sent") for r in results) >= 250


def test_no_answer_within_the_timeout_is_temporary(fakes):
    adapter = TwilioSMSAdapter(endpoint=fakes.sms_endpoint, timeout=0.5)
    try:
        result = _send_one(adapter, fakes.sms_credentials(), _message(phone("+15005560")))
    finally:
        adapter.close()
    assert (result.ok, result.error_code, result.permanent) == (False, "timeout", False)


# -- concurrency --


def test_a_batch_of_500_is_delivered(sms, fakes):
    before = fakes.sms_stats()["by_status"].get("201", 0)
    messages = [_message(phone()) for _ in range(500)]
    results = sms.send_batch(fakes.sms_credentials(), messages)
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert len({r.provider_id for r in results}) == 500
    assert fakes.sms_stats()["by_status"]["201"] - before == 500


def test_requests_in_flight_never_exceed_the_concurrency():
    seen = {"now": 0, "max": 0, "requests": 0, "connections": set()}
    lock = threading.Lock()

    class Slow(_Quiet):
        def do_POST(self):
            form = self._form()
            with lock:
                seen["now"] += 1
                seen["max"] = max(seen["max"], seen["now"])
                seen["requests"] += 1
                seen["connections"].add(self.client_address)
            time.sleep(0.02)
            with lock:
                seen["now"] -= 1
            sid = "SM" + uuid.uuid4().hex
            body = {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]}
            self._answer(201, json.dumps(body).encode())

    with _http_server(Slow) as origin:
        adapter = TwilioSMSAdapter(endpoint=origin, timeout=5, concurrency=7)
        try:
            credentials = Credentials(
                key="slow", values={"account_sid": "AC1", "auth_token": "t", "from": "+1500"}
            )
            results = adapter.send_batch(credentials, [_message(phone()) for _ in range(120)])
        finally:
            adapter.close()
    assert all(r.ok for r in results)
    assert seen["requests"] == 120
    assert seen["max"] == 7
    assert len(seen["connections"]) <= 7  # kept alive and reused


# -- status callbacks and their signature --


@contextlib.contextmanager
def _callback_receiver():
    received: list[dict] = []
    arrived = threading.Condition()

    class Receiver(_Quiet):
        def do_POST(self):
            form = self._form()
            with arrived:
                received.append(
                    {
                        "path": self.path,
                        "signature": self.headers.get("X-Twilio-Signature"),
                        "content_type": self.headers.get("Content-Type"),
                        "form": form,
                    }
                )
                arrived.notify_all()
            self._answer(204)

    with _http_server(Receiver) as origin:

        def wait_for(count: int, timeout: float = 5.0) -> list[dict]:
            with arrived:
                arrived.wait_for(lambda: len(received) >= count, timeout)
                return list(received)

        yield origin, wait_for


def test_status_callbacks_arrive_signed(sms, fakes):
    delivered, undelivered = phone(), phone("+15005556")
    before = fakes.sms_stats().get("callbacks_sent", 0)
    with _callback_receiver() as (origin, wait_for):
        url = f"{origin}/sms/status?application=42"
        results = sms.send_batch(
            fakes.sms_credentials(),
            [_message(n, status_callback=url) for n in (delivered, undelivered)],
        )
        assert all(r.ok for r in results), results
        callbacks = wait_for(4)
    assert len(callbacks) == 4
    by_number: dict[str, list[dict]] = {}
    for callback in callbacks:
        assert callback["path"] == "/sms/status?application=42"
        assert callback["content_type"].startswith("application/x-www-form-urlencoded")
        form = callback["form"]
        assert signature_valid(fakes.sms_auth_token, url, form, callback["signature"])
        assert form["AccountSid"] == fakes.sms_account_sid
        assert form["From"] == fakes.sms_from
        assert form["ApiVersion"] == "2010-04-01"
        assert form["SmsSid"] == form["MessageSid"]
        by_number.setdefault(form["To"], []).append(form)
    sids = {r.provider_id for r in results}
    assert {form["MessageSid"] for forms in by_number.values() for form in forms} == sids
    assert [f["MessageStatus"] for f in by_number[delivered]] == ["sent", "delivered"]
    assert [f["MessageStatus"] for f in by_number[undelivered]] == ["sent", "undelivered"]
    assert by_number[undelivered][1]["ErrorCode"] == "30003"
    assert "ErrorCode" not in by_number[delivered][1]
    assert fakes.sms_stats()["callbacks_sent"] - before == 4


def test_a_tampered_callback_is_refused(sms, fakes):
    with _callback_receiver() as (origin, wait_for):
        url = f"{origin}/sms/status"
        assert _send_one(sms, fakes.sms_credentials(), _message(phone(), status_callback=url)).ok
        [callback, *_] = wait_for(1)
    form, signature = callback["form"], callback["signature"]
    token = fakes.sms_auth_token
    assert signature_valid(token, url, form, signature)
    assert not signature_valid(token, url, dict(form, MessageStatus="delivered!"), signature)
    assert not signature_valid(token, url, dict(form, Extra="1"), signature)
    assert not signature_valid(token, url + "?x=1", form, signature)
    assert not signature_valid("0" * 32, url, form, signature)
    assert not signature_valid(token, url, form, signature[:-2] + "AA")
    assert not signature_valid(token, url, form, "")
    assert not signature_valid(token, url, form, None)


def test_a_failing_callback_receiver_is_counted_not_fatal(sms, fakes):
    before = fakes.sms_stats().get("callback_failures", 0)
    dead = _dead_origin() + "/sms/status"
    assert _send_one(sms, fakes.sms_credentials(), _message(phone(), status_callback=dead)).ok
    deadline = time.monotonic() + 5
    while fakes.sms_stats().get("callback_failures", 0) - before < 2:
        assert time.monotonic() < deadline, fakes.sms_stats()
        time.sleep(0.05)
    assert _send_one(sms, fakes.sms_credentials(), _message(phone())).ok  # still serving


# Twilio's published example (the security docs and the helper libraries' request-validator
# documentation): auth token 12345, this URL and these POST parameters.
DOCS_TOKEN = "12345"
DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOCS_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
DOCS_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_the_signature_matches_twilios_documented_example():
    assert twilio_signature(DOCS_TOKEN, DOCS_URL, DOCS_PARAMS) == DOCS_SIGNATURE
    reordered = dict(reversed(list(DOCS_PARAMS.items())))
    assert twilio_signature(DOCS_TOKEN, DOCS_URL, reordered) == DOCS_SIGNATURE
    assert signature_valid(DOCS_TOKEN, DOCS_URL, DOCS_PARAMS, DOCS_SIGNATURE)


def test_the_documented_example_fails_when_anything_changes():
    assert not signature_valid("12346", DOCS_URL, DOCS_PARAMS, DOCS_SIGNATURE)
    assert not signature_valid(
        DOCS_TOKEN, DOCS_URL.replace("foo=1", "foo=2"), DOCS_PARAMS, DOCS_SIGNATURE
    )
    assert not signature_valid(
        DOCS_TOKEN, DOCS_URL, dict(DOCS_PARAMS, Digits="9999"), DOCS_SIGNATURE
    )
    assert not signature_valid(DOCS_TOKEN, DOCS_URL, DOCS_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8")


def test_the_default_port_may_be_added_or_left_out():
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert signature_valid(DOCS_TOKEN, with_port, DOCS_PARAMS, DOCS_SIGNATURE)
    signed_with_port = twilio_signature(DOCS_TOKEN, with_port, DOCS_PARAMS)
    assert signature_valid(DOCS_TOKEN, DOCS_URL, DOCS_PARAMS, signed_with_port)
    other_port = "https://mycompany.com:8443/myapp.php?foo=1&bar=2"
    assert not signature_valid(DOCS_TOKEN, other_port, DOCS_PARAMS, DOCS_SIGNATURE)


# -- through a proxy --


def test_sms_goes_through_http_proxy_as_a_forward_proxy(fakes, monkeypatch):
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with Proxy().running() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        adapter = TwilioSMSAdapter(endpoint=fakes.sms_endpoint, timeout=5)
        try:
            to = phone()
            assert _send_one(adapter, fakes.sms_credentials(), _message(to)).ok
        finally:
            adapter.close()
    assert fakes.sms_messages(to)[0]["To"] == to
    path = f"/2010-04-01/Accounts/{fakes.sms_account_sid}/Messages.json"
    assert any(f"{fakes.sms_endpoint}{path}" in line for line in proxy.log.forwarded)


def test_reset_forgets_what_the_fake_received(fakes, sms):
    to = phone()
    assert _send_one(sms, fakes.sms_credentials(), _message(to)).ok
    client.reset_stats(fakes.sms_endpoint)
    assert fakes.sms_messages(to) == []
    assert fakes.sms_stats()["requests"] == 0


def test_the_registry_builds_the_sms_adapter_from_settings(settings):
    from adapters import registry

    settings.SMS_ENDPOINT = "http://127.0.0.1:9"
    settings.SMS_TIMEOUT = 2.5
    settings.SMS_CONCURRENCY = 3
    registry.reset_adapters()
    try:
        adapter = registry.get_adapter("SMS")
    finally:
        registry.reset_adapters()
    assert isinstance(adapter, TwilioSMSAdapter)
    assert (adapter.endpoint, adapter.timeout, adapter.concurrency) == (
        "http://127.0.0.1:9",
        2.5,
        3,
    )
