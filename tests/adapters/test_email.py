"""EmailAdapter over the wire against the fake SMTP relay (fakes/smtp_server.py)."""

import email
import email.policy
import socket
import uuid

import pytest

from adapters.base import AdapterConfigurationError, OutboundMessage
from adapters.email import (
    ContentBuilder,
    EmailAdapter,
    build_content,
    classify_smtp,
    enhanced_status,
    fold_plain,
)
from tests.adapters.conftest import email_address


def _message(token, **fields):
    fields.setdefault("title", "Spring sale")
    fields.setdefault("body", "Everything is 20% off until Sunday.\n")
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, **fields)


def _send_one(adapter, credentials, message):
    [result] = adapter.send_batch(credentials, [message])
    return result


def _received(fakes, address):
    [message] = fakes.smtp_messages(address)
    return message


def _header_names(received):
    return [name.lower() for name, _value in received["headers"]]


# --- Delivery and content ------------------------------------------------------------------


def test_delivers_text_and_html_with_the_headers_at_the_relay(email_adapter, fakes):
    to = email_address()
    url = f"https://signal.example.com/u/{uuid.uuid4()}"
    message = _message(
        to,
        body="Hello Kim,\nEverything is 20% off.\n",
        parts={"html": "<p>Hello <b>Kim</b>, everything is 20% off.</p>"},
        unsubscribe_url=url,
    )
    result = _send_one(email_adapter, fakes.email_credentials(), message)
    assert result.ok, result
    assert result.status_code == 250
    assert result.provider_id == f"<{message.message_id}@signal.test>"
    assert result.latency_ms is not None

    received = _received(fakes, to)
    assert received["envelope_from"] == "news@signal.test"
    assert received["envelope_to"] == [to]
    assert received["from"] == "Signal News <news@signal.test>"
    assert received["to"] == to
    assert received["subject"] == "Spring sale"
    assert received["message_id"] == result.provider_id
    assert email.utils.parsedate_to_datetime(received["date"]).tzinfo is not None
    assert received["text"].replace("\r\n", "\n") == "Hello Kim,\nEverything is 20% off.\n"
    assert received["html"].strip() == "<p>Hello <b>Kim</b>, everything is 20% off.</p>"
    content_type = dict(received["headers"])["Content-Type"]
    assert content_type.startswith("multipart/alternative")
    # RFC 8058 one-click unsubscribe: both headers, the URL in angle brackets.
    assert received["list_unsubscribe"] == f"<{url}>"
    assert received["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    for name in ("from", "to", "subject", "message-id", "date", "list-unsubscribe"):
        assert _header_names(received).count(name) == 1, name


def test_no_list_unsubscribe_without_an_unsubscribe_url(email_adapter, fakes):
    to = email_address()
    result = _send_one(email_adapter, fakes.email_credentials(), _message(to))
    assert result.ok, result
    received = _received(fakes, to)
    assert "list-unsubscribe" not in _header_names(received)
    assert "list-unsubscribe-post" not in _header_names(received)
    # Without an HTML part the message is text/plain alone.
    assert received["html"] is None
    assert dict(received["headers"])["Content-Type"].startswith("text/plain")


def test_a_long_unsubscribe_url_is_folded_not_encoded(email_adapter, fakes):
    to = email_address()
    url = "https://signal.example.com/unsubscribe/" + "a1b2c3d4" * 20
    result = _send_one(email_adapter, fakes.email_credentials(), _message(to, unsubscribe_url=url))
    assert result.ok, result
    assert _received(fakes, to)["list_unsubscribe"] == f"<{url}>"


def test_the_message_parts_override_subject_and_from_name(email_adapter, fakes):
    to = email_address()
    message = _message(
        to,
        title="the title",
        parts={"subject": "봄 세일: 모든 상품 20% 할인", "from_name": "Kim's Shop"},
        body="안녕하세요, 김님!\n" * 3,
    )
    assert _send_one(email_adapter, fakes.email_credentials(), message).ok
    received = _received(fakes, to)
    assert received["subject"] == "봄 세일: 모든 상품 20% 할인"
    assert received["from"] == "Kim's Shop <news@signal.test>"
    assert received["text"].replace("\r\n", "\n") == "안녕하세요, 김님!\n" * 3


def test_without_a_subject_part_the_title_is_the_subject(email_adapter, fakes):
    to = email_address()
    message = _message(to, title="Your receipt", parts={"html": "<p>Thanks</p>"})
    assert _send_one(email_adapter, fakes.email_credentials(), message).ok
    received = _received(fakes, to)
    assert received["subject"] == "Your receipt"
    assert received["from"] == "Signal News <news@signal.test>"


def test_lines_starting_with_a_dot_arrive_intact(email_adapter, fakes):
    to = email_address()
    body = ".\n..two dots\n.leading\nlast\n"
    assert _send_one(email_adapter, fakes.email_credentials(), _message(to, body=body)).ok
    assert _received(fakes, to)["text"].replace("\r\n", "\n") == body


# --- Security and AUTH ---------------------------------------------------------------------


def test_starttls_and_auth(email_adapter, fakes):
    before = fakes.smtp_stats()
    to = email_address()
    assert _send_one(email_adapter, fakes.email_credentials("starttls"), _message(to)).ok
    received = _received(fakes, to)
    assert received["tls"] is True
    assert received["auth"] == "signal-relay"
    after = fakes.smtp_stats()
    assert after.get("tls_upgrades", 0) > before.get("tls_upgrades", 0)
    assert after.get("auth_succeeded", 0) > before.get("auth_succeeded", 0)


def test_implicit_tls_and_auth(email_adapter, fakes):
    to = email_address()
    assert _send_one(email_adapter, fakes.email_credentials("tls"), _message(to)).ok
    received = _received(fakes, to)
    assert received["tls"] is True
    assert received["auth"] == "signal-relay"


def test_security_none_sends_in_clear_without_auth(email_adapter, fakes):
    to = email_address()
    assert _send_one(email_adapter, fakes.email_credentials("none"), _message(to)).ok
    received = _received(fakes, to)
    assert received["tls"] is False
    assert received["auth"] is None


def test_a_username_without_tls_is_not_sent_in_clear(email_adapter, fakes):
    # The fake offers AUTH only under TLS: the adapter fails rather than skip AUTH.
    credentials = fakes.email_credentials("none", username="signal-relay", password="x")
    to = email_address()
    result = _send_one(email_adapter, credentials, _message(to))
    assert not result.ok
    assert result.error_code == "smtp_auth_failed"
    assert not result.permanent
    assert fakes.smtp_messages(to) == []


def test_wrong_password_fails_temporarily_with_its_own_code(email_adapter, fakes):
    before = fakes.smtp_stats().get("auth_failed", 0)
    addresses = [email_address() for _ in range(3)]
    results = email_adapter.send_batch(
        fakes.email_credentials(password="wrong"), [_message(to) for to in addresses]
    )
    for result in results:
        assert not result.ok
        assert result.error_code == "smtp_auth_failed"
        assert result.status_code == 535
        assert "5.7.8" in result.error_message
        assert not result.permanent and not result.token_invalid
    assert fakes.smtp_stats().get("auth_failed", 0) > before
    assert all(fakes.smtp_messages(to) == [] for to in addresses)


def test_a_certificate_from_an_unknown_ca_is_refused(fakes):
    adapter = EmailAdapter(timeout=5)  # the system's CAs: the fake's CA is not among them
    try:
        result = _send_one(adapter, fakes.email_credentials("starttls"), _message(email_address()))
    finally:
        adapter.close()
    assert not result.ok
    assert result.error_code == "tls_error"
    assert not result.permanent


# --- Outcomes ------------------------------------------------------------------------------


def test_bounce_is_token_invalid_and_the_connection_goes_on(fakes):
    adapter = EmailAdapter(ca_file=fakes.ca_file, timeout=5, connections_per_relay=1)
    credentials = fakes.email_credentials()
    try:
        adapter.send_batch(credentials, [_message(email_address())])  # connected
        before = fakes.smtp_stats()
        bounce, good = email_address("bounce"), email_address()
        results = adapter.send_batch(credentials, [_message(bounce), _message(good)])
    finally:
        adapter.close()
    assert not results[0].ok
    assert results[0].error_code == "smtp_550"
    assert results[0].permanent and results[0].token_invalid
    assert "5.1.1" in results[0].error_message and "RCPT" in results[0].error_message
    assert results[1].ok, results[1]
    after = fakes.smtp_stats()
    # RSET after the refusal, and the next message on the same connection.
    assert after["rset"] == before.get("rset", 0) + 1
    assert after["connections"] == before["connections"]
    assert len(fakes.smtp_messages(good)) == 1


def test_defer_is_temporary(email_adapter, fakes):
    result = _send_one(email_adapter, fakes.email_credentials(), _message(email_address("defer")))
    assert not result.ok
    assert result.error_code == "smtp_451"
    assert not result.permanent and not result.token_invalid
    assert "4.3.0" in result.error_message


def test_flaky_succeeds_when_retried(email_adapter, fakes):
    to = email_address("flaky1")
    first = _send_one(email_adapter, fakes.email_credentials(), _message(to))
    assert not first.ok and not first.permanent
    second = _send_one(email_adapter, fakes.email_credentials(), _message(to))
    assert second.ok, second


def test_reject_after_data_is_permanent_but_not_token_invalid(email_adapter, fakes):
    to = email_address("reject")
    result = _send_one(email_adapter, fakes.email_credentials(), _message(to))
    assert not result.ok
    assert result.error_code == "smtp_554"
    assert result.permanent and not result.token_invalid
    assert result.error_message.startswith("DATA 554 5.7.1")
    assert fakes.smtp_messages(to) == []


def test_421_is_temporary_and_the_next_message_reconnects(fakes):
    adapter = EmailAdapter(ca_file=fakes.ca_file, timeout=5, connections_per_relay=1)
    try:
        before = fakes.smtp_stats()["connections"]
        busy, good = email_address("busy"), email_address()
        results = adapter.send_batch(fakes.email_credentials(), [_message(busy), _message(good)])
    finally:
        adapter.close()
    assert results[0].error_code == "smtp_421" and not results[0].permanent
    assert results[1].ok, results[1]
    assert fakes.smtp_stats()["connections"] == before + 2


def test_a_connection_lost_mid_transaction_is_a_temporary_network_error(fakes):
    adapter = EmailAdapter(ca_file=fakes.ca_file, timeout=5, connections_per_relay=1)
    try:
        dropped, good = email_address("drop"), email_address()
        results = adapter.send_batch(fakes.email_credentials(), [_message(dropped), _message(good)])
    finally:
        adapter.close()
    assert results[0].error_code == "network_error" and not results[0].permanent
    assert results[1].ok, results[1]


def test_connections_the_relay_closed_while_idle_are_replaced(email_adapter, fakes):
    credentials = fakes.email_credentials()
    first = email_adapter.send_batch(credentials, [_message(email_address()) for _ in range(8)])
    assert all(r.ok for r in first)
    assert fakes.smtp_close_connections() >= 1
    again = email_adapter.send_batch(credentials, [_message(email_address()) for _ in range(8)])
    assert all(r.ok for r in again), [r for r in again if not r.ok]


@pytest.mark.parametrize("how", ["close", "421"])
def test_a_message_whose_mail_meets_a_closing_connection_is_sent_on_a_new_one(fakes, how):
    adapter = EmailAdapter(ca_file=fakes.ca_file, timeout=5, connections_per_relay=1)
    credentials = fakes.email_credentials()
    try:
        assert adapter.send_batch(credentials, [_message(email_address())])[0].ok
        before = fakes.smtp_stats()["connections"]
        fakes.smtp_fail_next_mail(how)
        to = email_address()
        result = _send_one(adapter, credentials, _message(to))
        assert result.ok, result
        assert fakes.smtp_stats()["connections"] == before + 1
        assert len(fakes.smtp_messages(to)) == 1
        # Twice in a row: sent again once only, then it fails temporarily.
        fakes.smtp_fail_next_mail(how, count=2)
        result = _send_one(adapter, credentials, _message(email_address()))
        assert not result.ok and not result.permanent
        assert result.error_code == ("network_error" if how == "close" else "smtp_421")
    finally:
        adapter.close()


def test_a_slow_reply_times_out_and_the_batch_goes_on(fakes):
    adapter = EmailAdapter(ca_file=fakes.ca_file, timeout=0.5, connections_per_relay=1)
    try:
        slow, good = email_address("slow"), email_address()
        results = adapter.send_batch(fakes.email_credentials(), [_message(slow), _message(good)])
    finally:
        adapter.close()
    assert results[0].error_code == "timeout" and not results[0].permanent
    assert results[1].ok, results[1]


def test_a_dead_server_is_a_temporary_network_error(email_adapter, fakes):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    credentials = fakes.email_credentials("none", port=port)
    results = email_adapter.send_batch(credentials, [_message(email_address()) for _ in range(6)])
    assert len(results) == 6
    for result in results:
        assert result.error_code == "network_error"
        assert not result.permanent and not result.token_invalid


# --- Refused before sending ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"title": "Hello\r\nBcc: victim@example.com"},
        {"parts": {"subject": "Hello\nX-Injected: yes"}},
        {"parts": {"from_name": "Shop\r\nReply-To: evil@example.com"}},
        {"title": "trailing line break\n"},
        {"title": "unicode line separator\u2028X-Injected: yes"},
    ],
)
def test_header_injection_is_refused_and_the_batch_goes_on(email_adapter, fakes, fields):
    bad, good = email_address(), email_address()
    results = email_adapter.send_batch(
        fakes.email_credentials(), [_message(bad, **fields), _message(good)]
    )
    assert not results[0].ok
    assert results[0].error_code == "header_injection"
    assert results[0].permanent and not results[0].token_invalid
    assert results[1].ok, results[1]
    assert fakes.smtp_messages(bad) == []


def test_an_unsubscribe_url_with_a_line_break_is_refused(email_adapter, fakes):
    message = _message(email_address(), unsubscribe_url="https://x.test/u\r\nBcc: a@b.test")
    result = _send_one(email_adapter, fakes.email_credentials(), message)
    assert result.error_code == "header_injection" and result.permanent


@pytest.mark.parametrize(
    ("token", "token_invalid"),
    [
        ("not-an-address", True),
        ("two words@example.com", True),
        ("x@example.com>\r\nRCPT TO:<y@example.com", True),
        ("ünïcode@example.com", False),
    ],
)
def test_an_unusable_address_is_refused(email_adapter, fakes, token, token_invalid):
    result = _send_one(email_adapter, fakes.email_credentials(), _message(token))
    assert result.error_code == "invalid_address"
    assert result.permanent
    assert result.token_invalid is token_invalid


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"host": "127.0.0.1", "port": 25, "security": "starttls"},  # no from_address
        {"host": "127.0.0.1", "from_address": "news@signal.test", "security": "ssl"},
        {"host": "127.0.0.1", "from_address": "not an address"},
        {"host": "127.0.0.1", "from_address": "a@b.test", "port": "many"},
    ],
)
def test_unusable_credentials_raise_a_configuration_error(email_adapter, values):
    from adapters.base import Credentials

    credentials = Credentials(key=f"bad-{uuid.uuid4()}", values=values)
    with pytest.raises(AdapterConfigurationError):
        email_adapter.send_batch(credentials, [_message(email_address())])


# --- Connections and volume ----------------------------------------------------------------


def test_many_messages_travel_over_few_connections(fakes):
    adapter = EmailAdapter(ca_file=fakes.ca_file, timeout=5, connections_per_relay=2)
    credentials = fakes.email_credentials()
    before = fakes.smtp_stats()["connections"]
    try:
        for _ in range(3):
            results = adapter.send_batch(
                credentials, [_message(email_address()) for _ in range(40)]
            )
            assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    finally:
        adapter.close()
    # 120 messages, two connections kept from the first batch to the last.
    assert fakes.smtp_stats()["connections"] - before == 2


def test_a_batch_of_500_is_delivered(email_adapter, fakes):
    messages = [
        _message(email_address("bulk"), unsubscribe_url=f"https://s.example.com/u/{i}")
        for i in range(500)
    ]
    before = fakes.smtp_stats()["by_prefix"].get("other", 0)
    results = email_adapter.send_batch(fakes.email_credentials(), messages)
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    assert len({r.provider_id for r in results}) == 500
    assert fakes.smtp_stats()["by_prefix"]["other"] - before == 500
    for i in (0, 499):
        received = _received(fakes, messages[i].token)
        assert received["list_unsubscribe"] == f"<https://s.example.com/u/{i}>"
        assert received["message_id"] == results[i].provider_id


# --- The outcome table and the message builder (no server needed) ---------------------------


@pytest.mark.parametrize(
    ("command", "code", "text", "permanent", "token_invalid"),
    [
        ("RCPT", 550, "5.1.1 <x@y>: user unknown", True, True),
        ("RCPT", 553, "5.1.3 bad address syntax", True, True),
        ("RCPT", 550, "mailbox unavailable", True, True),
        ("RCPT", 550, "5.2.1 mailbox disabled", True, True),
        ("RCPT", 550, "5.7.1 relaying denied", True, False),
        ("RCPT", 554, "5.7.1 policy", True, False),
        ("RCPT", 452, "4.2.2 mailbox full", False, False),
        ("RCPT", 421, "4.3.2 closing", False, False),
        ("MAIL", 550, "5.1.8 bad sender domain", True, False),
        ("MAIL", 451, "4.7.1 try later", False, False),
        ("DATA", 554, "5.7.1 spam", True, False),
        ("DATA", 552, "5.3.4 message too big", True, False),
        ("AUTH", 535, "5.7.8 Authentication credentials invalid", False, False),
        ("CONNECT", 554, "no SMTP service here", False, False),
    ],
)
def test_outcome_table(command, code, text, permanent, token_invalid):
    result = classify_smtp("m1", code, enhanced_status(text), text, command=command)
    assert not result.ok
    assert result.status_code == code
    assert result.error_code == ("smtp_auth_failed" if command == "AUTH" else f"smtp_{code}")
    assert result.permanent is permanent
    assert result.token_invalid is token_invalid
    assert result.error_message.startswith(f"{command} {code}")


def test_enhanced_status_is_read_from_the_reply_text():
    assert enhanced_status("5.1.1 <x@y>: user unknown") == "5.1.1"
    assert enhanced_status("4.3.0") == "4.3.0"
    assert enhanced_status("mailbox unavailable") is None
    assert enhanced_status("5.1.1x not one") is None


@pytest.mark.parametrize(
    "text",
    ["", "plain ASCII\n", "a\r\nb\rc\nd", "x" * 300, "héllo wörld\n", "안녕하세요 " * 40, "=3D\n"],
)
@pytest.mark.parametrize("html", [None, "<p>안녕 <b>hello</b></p>"])
def test_the_content_builder_makes_what_email_message_makes(text, html):
    fast = ContentBuilder("news@signal.test").content("Signal 뉴스", "Grüße", text, html)
    whole = build_content(
        from_address="news@signal.test",
        from_name="Signal 뉴스",
        subject="Grüße",
        text=text,
        html=html,
    )
    fast_message = email.message_from_bytes(fast, policy=email.policy.default)
    whole_message = email.message_from_bytes(whole, policy=email.policy.default)
    assert [name for name, _ in fast_message.items()] == [name for name, _ in whole_message.items()]
    assert str(fast_message["From"]) == str(whole_message["From"])
    assert str(fast_message["Subject"]) == "Grüße"
    for kind in ("plain", "html"):
        fast_part, whole_part = fast_message.get_body((kind,)), whole_message.get_body((kind,))
        assert (fast_part is None) == (whole_part is None)
        if fast_part is not None:
            assert fast_part.get_content().replace(
                "\r\n", "\n"
            ) == whole_part.get_content().replace("\r\n", "\n")
            assert not fast_part.defects
    lines = fast.split(b"\r\n")
    assert all(len(line) <= 998 and b"\r" not in line and b"\n" not in line for line in lines)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("To", "user@example.com"),
        ("Message-ID", "<0b6f8c1e-1a47-4b59-9d55-2f0f6a3f1e8e@signal.test>"),
        ("List-Unsubscribe", "<https://signal.example.com/u/1>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ],
)
def test_short_headers_are_folded_as_the_policy_folds_them(name, value):
    from adapters.email import POLICY

    assert fold_plain(name, value) == POLICY.fold_binary(
        name, POLICY.header_store_parse(name, value)[1]
    )


def test_long_headers_go_on_a_continuation_line():
    value = "<https://signal.example.com/u/" + "x" * 100 + ">"
    assert fold_plain("List-Unsubscribe", value) == f"List-Unsubscribe:\r\n {value}\r\n".encode()
