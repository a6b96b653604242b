"""Management commands: `create_application` (rotation is in test_encryption.py)."""

from __future__ import annotations

import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.models import ApiKey, Application, ChannelCredential, MessageQuota
from accounts.selectors import channel_credentials_get
from tests.assertions import assert_error
from tests.conftest import api_client, apns_token

pytestmark = pytest.mark.django_db


def stored(application_id, channel: str) -> dict:
    return channel_credentials_get(
        application=Application.objects.get(pk=application_id), channel=channel
    )


def raw_values(application_id, channel: str) -> str:
    """The stored ciphertext of a channel's credentials."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT values FROM accounts_channelcredential"
            " WHERE application_id = %s AND channel = %s",
            [application_id, channel],
        )
        return cursor.fetchone()[0]


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# What Apple's .p8 file holds: a P-256 private key in PKCS#8 PEM.
P8_KEY = pem(ec.generate_private_key(ec.SECP256R1()))
P8_BODY = P8_KEY.splitlines()[1]
SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "signal-test",
    "private_key_id": "abc123",
    "private_key": "-----BEGIN PRIVATE KEY-----\nfcm-secret-material\n-----END PRIVATE KEY-----\n",
    "client_email": "sender@signal-test.iam.gserviceaccount.com",
    "token_uri": "http://127.0.0.1:8089/token",
}


def create_application(*args: str) -> dict:
    """Runs the command; returns the JSON of its last output line."""
    out = io.StringIO()
    call_command("create_application", *args, stdout=out)
    last = out.getvalue().strip().splitlines()[-1]
    return json.loads(last)


@pytest.fixture
def p8_file(tmp_path):
    path = tmp_path / "AuthKey_KEY1234567.p8"
    path.write_text(P8_KEY)
    return str(path)


@pytest.fixture
def service_account_file(tmp_path):
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(SERVICE_ACCOUNT))
    return str(path)


def apns_args(p8: str) -> list[str]:
    return [
        "--apns-key-file",
        p8,
        "--apns-key-id",
        "KEY1234567",
        "--apns-team-id",
        "TEAM123456",
        "--apns-topic",
        "com.example.app",
    ]


def test_create_application_prints_the_id_and_both_keys():
    result = create_application("--name", "Shop")

    assert set(result) == {"id", "server_key", "client_key"}
    application = Application.objects.get(pk=result["id"])
    assert application.name == "Shop"
    assert not ChannelCredential.objects.filter(application=application).exists()
    assert MessageQuota.objects.filter(application=application).exists()
    keys = {k.scope: k for k in ApiKey.objects.filter(application=application)}
    assert set(keys) == {"server", "client"}
    assert result["server_key"].startswith(keys["server"].prefix)
    assert result["client_key"].startswith(keys["client"].prefix)
    # Only digests are stored.
    for api_key in keys.values():
        assert result["server_key"] != api_key.digest
        assert result["client_key"] != api_key.digest


def test_the_printed_keys_work_against_the_api():
    result = create_application("--name", "Shop")
    server, client = api_client(result["server_key"]), api_client(result["client_key"])

    registered = client.post(
        "/api/v1/subscriptions", {"type": "iOSPush", "token": apns_token(1)}, format="json"
    )
    listed = server.get("/api/v1/subscriptions")

    assert registered.status_code == 201, registered.json()
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["results"]] == [registered.json()["id"]]
    assert_error(client.get("/api/v1/subscriptions"), 403, "permission_denied")


def test_two_runs_make_two_applications_with_different_keys():
    first = create_application("--name", "A")
    second = create_application("--name", "A")

    assert first["id"] != second["id"]
    assert first["server_key"] != second["server_key"]
    assert first["client_key"] != second["client_key"]


def test_the_name_is_required():
    with pytest.raises(CommandError, match="--name"):
        call_command("create_application", stdout=io.StringIO())


def test_apns_credentials_are_stored_encrypted(p8_file):
    result = create_application("--name", "iOS app", *apns_args(p8_file), "--apns-sandbox")

    assert stored(result["id"], "iOSPush") == {
        "auth": "token",
        "key_id": "KEY1234567",
        "team_id": "TEAM123456",
        "topic": "com.example.app",
        "private_key": P8_KEY,
        "sandbox": True,
    }
    # The admin shows when they were set, in place of the key.
    assert ChannelCredential.objects.get(application_id=result["id"]).set_at is not None
    raw = raw_values(result["id"], "iOSPush")
    for secret in ("PRIVATE KEY", P8_BODY, "KEY1234567", "com.example.app"):
        assert secret not in raw


def test_apns_sandbox_defaults_to_false(p8_file):
    result = create_application("--name", "iOS app", *apns_args(p8_file))

    assert stored(result["id"], "iOSPush")["sandbox"] is False


@pytest.mark.parametrize(
    "drop", ["--apns-key-file", "--apns-key-id", "--apns-team-id", "--apns-topic"]
)
def test_apns_options_need_their_companions(p8_file, drop):
    args = apns_args(p8_file)
    index = args.index(drop)
    del args[index : index + 2]

    with pytest.raises(CommandError, match=drop):
        call_command("create_application", "--name", "x", *args, stdout=io.StringIO())

    assert not Application.objects.exists()


def test_a_missing_apns_key_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command(
            "create_application",
            "--name",
            "x",
            *apns_args(str(tmp_path / "missing.p8")),
            stdout=io.StringIO(),
        )

    assert not Application.objects.exists()


def test_an_apns_key_file_that_is_not_a_key_is_a_command_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")

    with pytest.raises(CommandError, match="not a PEM"):
        call_command(
            "create_application", "--name", "x", *apns_args(str(path)), stdout=io.StringIO()
        )

    assert not Application.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "-----BEGIN PRIVATE KEY-----\nMIGTAgEA-not-a-key\n-----END PRIVATE KEY-----\n",
            "not a PEM",
        ),
        (pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "not an EC"),
    ],
)
def test_an_apns_key_that_is_no_ec_private_key_is_a_command_error(tmp_path, content, message):
    path = tmp_path / "AuthKey.p8"
    path.write_text(content)

    with pytest.raises(CommandError, match=message):
        call_command(
            "create_application", "--name", "x", *apns_args(str(path)), stdout=io.StringIO()
        )

    assert not Application.objects.exists()


def test_a_binary_apns_key_file_is_a_command_error(tmp_path):
    path = tmp_path / "AuthKey.der"
    path.write_bytes(b"\x30\x81\x93\x02\x01\x00\xff\xfe")

    with pytest.raises(CommandError, match="Cannot read"):
        call_command(
            "create_application", "--name", "x", *apns_args(str(path)), stdout=io.StringIO()
        )

    assert not Application.objects.exists()


def test_fcm_credentials_are_stored_encrypted(service_account_file):
    result = create_application(
        "--name", "Android app", "--fcm-service-account", service_account_file
    )

    assert stored(result["id"], "AndroidPush") == {"service_account": SERVICE_ACCOUNT}
    assert stored(result["id"], "iOSPush") == {}
    raw = raw_values(result["id"], "AndroidPush")
    for secret in ("fcm-secret-material", "signal-test", "sender@"):
        assert secret not in raw


def test_both_providers_at_once(p8_file, service_account_file):
    result = create_application(
        "--name", "both", *apns_args(p8_file), "--fcm-service-account", service_account_file
    )

    assert stored(result["id"], "iOSPush")["key_id"] == "KEY1234567"
    assert stored(result["id"], "AndroidPush")["service_account"]["project_id"] == "signal-test"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Cannot read"),
        ("{not json", "is not JSON"),
        (json.dumps({"project_id": "p"}), "lacks client_email, private_key, token_uri"),
        (json.dumps({**SERVICE_ACCOUNT, "private_key": ""}), "lacks private_key"),
        (json.dumps([SERVICE_ACCOUNT]), "not a JSON object"),
        (json.dumps({**SERVICE_ACCOUNT, "type": "authorized_user"}), "not a service account"),
        ('"just a string"', "not a JSON object"),
    ],
)
def test_a_bad_fcm_service_account_is_a_command_error(tmp_path, content, message):
    path = tmp_path / "service-account.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(CommandError, match=message):
        call_command(
            "create_application",
            "--name",
            "x",
            "--fcm-service-account",
            str(path),
            stdout=io.StringIO(),
        )

    assert not Application.objects.exists()
