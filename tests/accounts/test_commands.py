"""`set_channel_credentials`: stores a channel's credentials from a JSON file and prints them
with their secrets masked; everything it cannot use is a CommandError naming the problem."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.credentials import fingerprint
from accounts.models import ChannelCredential
from accounts.selectors import channel_credentials_get, channels_ready
from accounts.services import application_create
from adapters.webpush import generate_vapid_keys, vapid_public_key_of
from tests.admin_pages import p8_key, pem_body_lines

pytestmark = pytest.mark.django_db

PASSWORD = "smtp-Secret-9x"
AUTH_TOKEN = "twilioSecretToken77"
EMAIL = {"host": "smtp.example.com", "username": "relay", "password": PASSWORD,
         "from_address": "news@example.com"}  # fmt: skip
SMS = {"account_sid": "AC" + "1" * 32, "auth_token": AUTH_TOKEN, "from": "+15005550006"}


@pytest.fixture
def application():
    return application_create(name="command")


@pytest.fixture
def json_file(tmp_path):
    def write(values, name: str = "credentials.json") -> str:
        path = tmp_path / name
        path.write_text(values if isinstance(values, str) else json.dumps(values))
        return str(path)

    return write


def run(application_id, channel: str, path: str) -> tuple[str, dict]:
    """Runs the command; returns its whole output and the JSON of its last line."""
    out = io.StringIO()
    call_command(
        "set_channel_credentials",
        f"--application={application_id}",
        f"--channel={channel}",
        f"--file={path}",
        stdout=out,
    )
    output = out.getvalue()
    return output, json.loads(output.strip().splitlines()[-1])


def test_email_credentials_are_stored_and_printed_with_the_password_masked(application, json_file):
    output, shown = run(application.pk, "Email", json_file(EMAIL))

    stored = channel_credentials_get(application=application, channel="Email")
    assert stored["password"] == PASSWORD and stored["host"] == "smtp.example.com"
    assert PASSWORD not in output
    assert "password" not in shown
    assert shown["password (fingerprint)"] == fingerprint(PASSWORD)
    assert shown["application"] == str(application.pk) and shown["channel"] == "Email"
    assert shown["host"] == "smtp.example.com" and shown["username"] == "relay"
    assert shown["port"] == "587" and shown["security"] == "starttls"
    assert channels_ready(application=application)["Email"] is True


def test_sms_auth_token_is_masked(application, json_file):
    output, shown = run(application.pk, "SMS", json_file(SMS))

    assert channel_credentials_get(application=application, channel="SMS") == SMS
    assert AUTH_TOKEN not in output
    assert shown["auth_token (fingerprint)"] == fingerprint(AUTH_TOKEN)
    assert shown["account_sid"] == SMS["account_sid"] and shown["from"] == "+15005550006"


def test_webpush_empty_generates_keys_and_shows_only_the_public_one(application, json_file):
    output, shown = run(application.pk, "WebPush", json_file({}))

    stored = channel_credentials_get(application=application, channel="WebPush")
    assert vapid_public_key_of(stored["vapid_private_key"]) == stored["vapid_public_key"]
    assert stored["vapid_private_key"] not in output
    assert shown["vapid_public_key"] == stored["vapid_public_key"]
    assert shown["vapid_private_key (fingerprint)"] == fingerprint(stored["vapid_private_key"])
    assert "vapid_private_key" not in shown


def test_webpush_with_a_given_private_key_keeps_it(application, json_file):
    keys = generate_vapid_keys()

    output, shown = run(
        application.pk, "WebPush", json_file({"vapid_private_key": keys["vapid_private_key"]})
    )

    assert channel_credentials_get(application=application, channel="WebPush") == {
        **keys,
        "subject": "mailto:webpush@localhost",
    }
    assert keys["vapid_private_key"] not in output
    assert shown["vapid_public_key"] == keys["vapid_public_key"]


def test_ios_push_key_is_stored_as_a_channel_row_and_masked(application, json_file):
    key = p8_key()
    values = {"private_key": key, "key_id": "KEY1234567", "team_id": "TEAM123456",
              "topic": "com.example.app"}  # fmt: skip

    output, shown = run(application.pk, "iOSPush", json_file(values))

    assert channel_credentials_get(application=application, channel="iOSPush")["private_key"] == key
    assert not any(line in output for line in pem_body_lines(key))
    assert shown["private_key (fingerprint)"] == fingerprint(key)
    assert shown["key_id"] == "KEY1234567"


def test_setting_again_replaces(application, json_file):
    run(application.pk, "SMS", json_file(SMS))
    run(application.pk, "SMS", json_file({**SMS, "auth_token": "rotated-token"}))

    [row] = ChannelCredential.objects.all()
    assert row.values["auth_token"] == "rotated-token"


def test_a_dash_reads_the_credentials_from_stdin(application):
    read_end, write_end = os.pipe()
    saved_stdin = os.dup(0)
    try:
        os.write(write_end, json.dumps(SMS).encode())
        os.close(write_end)
        os.dup2(read_end, 0)
        output, shown = run(application.pk, "SMS", "-")
    finally:
        os.dup2(saved_stdin, 0)
        os.close(saved_stdin)
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.close(write_end)

    assert channel_credentials_get(application=application, channel="SMS") == SMS
    assert AUTH_TOKEN not in output and shown["channel"] == "SMS"


# --- Errors ------------------------------------------------------------------------------------


def refusal(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("set_channel_credentials", *args, stdout=io.StringIO())
    return str(caught.value)


def test_an_unknown_application_is_refused(db, json_file):
    missing = uuid.uuid4()

    message = refusal(f"--application={missing}", "--channel=SMS", f"--file={json_file(SMS)}")

    assert message == f"No application with id '{missing}'."
    assert not ChannelCredential.objects.exists()


def test_an_application_id_that_is_not_a_uuid_is_refused(db, json_file):
    message = refusal("--application=app-1", "--channel=SMS", f"--file={json_file(SMS)}")

    assert message == "No application with id 'app-1'."


def test_an_unknown_channel_is_refused_by_the_parser(application, json_file):
    message = refusal(
        f"--application={application.pk}", "--channel=Pigeon", f"--file={json_file(SMS)}"
    )

    assert "invalid choice: 'Pigeon'" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not JSON: "),
        ("[1, 2]", "must hold a JSON object."),
        ('"text"', "must hold a JSON object."),
        (b"\xff\xfe{}", "is not UTF-8 text."),
    ],
    ids=["not JSON", "a list", "a string", "not UTF-8"],
)
def test_a_file_that_is_not_a_json_object_is_refused(application, tmp_path, content, expected):
    path = tmp_path / "credentials.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)

    message = refusal(f"--application={application.pk}", "--channel=SMS", f"--file={path}")

    assert message.startswith(f"{str(path)!r} ") and expected in message, message
    assert not ChannelCredential.objects.exists()


def test_an_unreadable_file_is_refused(application, tmp_path):
    missing = tmp_path / "missing.json"

    message = refusal(f"--application={application.pk}", "--channel=SMS", f"--file={missing}")

    assert message == f"Cannot read {str(missing)!r}: No such file or directory"
    message = refusal(f"--application={application.pk}", "--channel=SMS", f"--file={tmp_path}")
    assert message == f"Cannot read {str(tmp_path)!r}: Is a directory"


@pytest.mark.parametrize(
    ("channel", "values", "expected"),
    [
        ("SMS", {**SMS, "from": "nope!"}, 'SMS "from" must be an E.164 number'),
        ("Email", {"host": "smtp.example.com"}, "Email credentials need 'from_address'."),
        ("WebPush", {"subject": "http://x"}, 'WebPush "subject" must be a mailto: or https://'),
        ("InAppMessage", {}, "InAppMessage takes no credentials."),
    ],
)
def test_invalid_credentials_are_refused_with_the_reason(
    application, json_file, channel, values, expected
):
    message = refusal(
        f"--application={application.pk}", f"--channel={channel}", f"--file={json_file(values)}"
    )

    assert message.startswith(expected)
    assert not ChannelCredential.objects.exists()
