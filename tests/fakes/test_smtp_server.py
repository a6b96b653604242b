"""The fake SMTP relay's conventions, spoken to with the standard library's smtplib."""

import smtplib
import ssl
import uuid

import pytest

from fakes import client
from fakes.state import ensure_state, load_smtp_account

MESSAGE = (
    "From: Shop <shop@signal.test>\r\n"
    "To: {to}\r\n"
    "Subject: Hello\r\n"
    "List-Unsubscribe: <https://signal.example.com/u/1>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: text/plain; charset="utf-8"\r\n'
    "\r\n"
    "First line\r\n"
    ".a line starting with a dot\r\n"
)


def _address(prefix="user"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def account(fakes):
    return load_smtp_account(ensure_state(fakes.state_dir))


@pytest.fixture
def tls_context(fakes):
    return ssl.create_default_context(cafile=fakes.ca_file)


@pytest.fixture
def smtp(fakes, account, tls_context):
    """A STARTTLS session, logged in."""
    with smtplib.SMTP(fakes.smtp_host, fakes.smtp_port, timeout=5) as session:
        session.starttls(context=tls_context)
        session.login(*account)
        yield session


def _rcpt(session, to):
    session.mail("shop@signal.test")
    return session.rcpt(to)


def test_starttls_before_auth_and_auth_only_under_tls(fakes, account, tls_context):
    with smtplib.SMTP(fakes.smtp_host, fakes.smtp_port, timeout=5) as session:
        session.ehlo()
        assert session.has_extn("starttls")
        assert session.has_extn("enhancedstatuscodes")
        assert not session.has_extn("auth")
        session.starttls(context=tls_context)
        session.ehlo()
        assert not session.has_extn("starttls")
        assert set(session.esmtp_features["auth"].upper().split()) >= {"PLAIN", "LOGIN"}
        code, _ = session.login(*account)
        assert code == 235


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_wrong_password_gets_535_5_7_8(fakes, account, tls_context, mechanism):
    with smtplib.SMTP(fakes.smtp_host, fakes.smtp_port, timeout=5) as session:
        session.starttls(context=tls_context)
        session.ehlo()
        session.user, session.password = account[0], "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            session.auth(mechanism, getattr(session, f"auth_{mechanism.lower()}"))
        assert refused.value.smtp_code == 535
        assert refused.value.smtp_error.startswith(b"5.7.8")


def test_implicit_tls_offers_auth_at_once(fakes, account, tls_context):
    with smtplib.SMTP_SSL(
        fakes.smtp_host, fakes.smtps_port, context=tls_context, timeout=5
    ) as session:
        session.ehlo()
        assert session.has_extn("auth")
        assert not session.has_extn("starttls")
        assert session.login(*account)[0] == 235
        to = _address()
        session.sendmail("shop@signal.test", [to], MESSAGE.format(to=to))
    [received] = fakes.smtp_messages(to)
    assert received["tls"] is True and received["auth"] == account[0]


def test_an_accepted_message_is_kept_parsed(fakes, smtp, account):
    to = _address()
    refused = smtp.sendmail("shop@signal.test", [to], MESSAGE.format(to=to))
    assert refused == {}
    [received] = fakes.smtp_messages(to)
    assert received["envelope_from"] == "shop@signal.test"
    assert received["envelope_to"] == [to]
    assert received["from"] == "Shop <shop@signal.test>"
    assert received["to"] == to
    assert received["subject"] == "Hello"
    assert received["list_unsubscribe"] == "<https://signal.example.com/u/1>"
    assert received["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert received["text"] == "First line\r\n.a line starting with a dot\r\n"
    assert received["html"] is None
    assert ["Subject", "Hello"] in received["headers"]
    assert received["tls"] is True and received["auth"] == account[0]
    assert fakes.smtp_messages(_address()) == []


def test_bounce_is_550_5_1_1_at_rcpt(smtp):
    code, text = _rcpt(smtp, _address("bounce"))
    assert (code, text[:5]) == (550, b"5.1.1")


def test_defer_is_always_451_4_3_0(smtp):
    to = _address("defer")
    for _ in range(3):
        code, text = _rcpt(smtp, to)
        assert (code, text[:5]) == (451, b"4.3.0")
        smtp.rset()


@pytest.mark.parametrize(("prefix", "failures"), [("flaky", 2), ("flaky3", 3), ("flaky1", 1)])
def test_flaky_fails_n_times_then_accepts(smtp, prefix, failures):
    to = _address(prefix)
    for _ in range(failures):
        assert _rcpt(smtp, to)[0] == 451
        smtp.rset()
    assert _rcpt(smtp, to)[0] == 250


def test_reject_is_accepted_at_rcpt_and_refused_after_data(fakes, smtp):
    to = _address("reject")
    assert _rcpt(smtp, to)[0] == 250
    code, text = smtp.data(MESSAGE.format(to=to))
    assert (code, text[:5]) == (554, b"5.7.1")
    assert fakes.smtp_messages(to) == []


def test_busy_answers_421_and_closes(smtp):
    code, text = _rcpt(smtp, _address("busy"))
    assert (code, text[:5]) == (421, b"4.3.2")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()


def test_drop_closes_without_a_reply(smtp):
    with pytest.raises(smtplib.SMTPServerDisconnected):
        _rcpt(smtp, _address("drop"))


def test_a_data_line_over_1000_octets_is_refused(fakes, smtp):
    to = _address()
    assert _rcpt(smtp, to)[0] == 250
    code, _ = smtp.data("Subject: long\r\n\r\n" + "x" * 1200 + "\r\n")
    assert code == 500
    assert fakes.smtp_messages(to) == []


def test_stats_count_and_reset_clears(fakes, smtp):
    smtp.sendmail("shop@signal.test", [_address()], MESSAGE.format(to="x@example.com"))
    _rcpt(smtp, _address("bounce"))
    stats = fakes.smtp_stats()
    assert stats["by_prefix"]["other"] >= 1 and stats["by_prefix"]["bounce"] >= 1
    assert stats["by_status"]["250"] >= 1 and stats["by_status"]["550"] >= 1
    assert stats["connections"] >= 1 and stats["auth_succeeded"] >= 1
    assert stats["kept"] >= 1
    fakes.reset()
    stats = fakes.smtp_stats()
    assert stats["requests"] == 0 and stats["kept"] == 0
    assert fakes.smtp_messages() == []


def test_close_connections_ends_open_sessions(fakes, smtp):
    assert smtp.noop()[0] == 250
    assert fakes.smtp_close_connections() >= 1
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()


def test_unknown_admin_path_is_404(fakes):
    with pytest.raises(RuntimeError, match="answered 404"):
        client.call(fakes.smtp_admin_endpoint, "GET", "/nope")
    assert client.call(fakes.smtp_admin_endpoint, "GET", "/__messages?to=nobody@x.test") == {
        "messages": []
    }


def test_fail_next_mail_closes_or_answers_421(fakes, smtp, account, tls_context):
    fakes.smtp_fail_next_mail("421")
    code, text = smtp.mail("shop@signal.test")
    assert (code, text[:5]) == (421, b"4.3.2")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    fakes.smtp_fail_next_mail("close")
    with smtplib.SMTP(fakes.smtp_host, fakes.smtp_port, timeout=5) as session:
        session.starttls(context=tls_context)
        session.login(*account)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            session.mail("shop@signal.test")
