"""Encryption at rest: what the database holds, the token digest, key rotation, and the
refusal to run with keys that cannot open the stored values."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings

from accounts.models import ChannelCredential
from accounts.services import application_create
from core import checks as core_checks
from core import crypto
from messaging import checks
from messaging.models import Subscription
from messaging.services.subscriptions import subscription_register
from tests.conftest import apns_token, subscription_create

pytestmark = pytest.mark.django_db

APNS_CREDENTIALS = {
    "auth": "token",
    "team_id": "TEAM123456",
    "key_id": "KEY1234567",
    "private_key": (
        "-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49-very-secret\n-----END PRIVATE KEY-----\n"
    ),
    "topic": "com.example.app",
    "sandbox": True,
}


def raw_row(table: str, pk, *columns: str) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s",  # noqa: S608
            [str(pk)],
        )
        return cursor.fetchone()


def credential_row(application, channel: str) -> ChannelCredential:
    return ChannelCredential.objects.get(application=application, channel=channel)


def raw_values(application, channel: str) -> str:
    """The stored ciphertext (read without the model, which would decrypt it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT values FROM accounts_channelcredential"
            " WHERE application_id = %s AND channel = %s",
            [str(application.pk), channel],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def stored(db):
    """An application with APNs credentials and a subscription, written under the current key."""
    application = application_create(name="enc", credentials={"iOSPush": APNS_CREDENTIALS})
    subscription = subscription_create(application, token=apns_token(7))
    return application, subscription


def test_the_token_is_not_stored_in_plain_text(stored):
    _application, subscription = stored

    token_column, digest_column = raw_row(
        "messaging_subscription", subscription.pk, "token", "token_digest"
    )

    assert apns_token(7) not in token_column
    assert token_column != apns_token(7)
    # It is a Fernet token under the configured key.
    key = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].encode())
    assert key.decrypt(token_column.encode()).decode() == apns_token(7)
    assert apns_token(7) not in digest_column
    # Reading through the model decrypts.
    assert Subscription.objects.get(pk=subscription.pk).token == apns_token(7)


def test_encrypting_the_same_token_twice_gives_different_ciphertexts(stored, db):
    _application, subscription = stored
    other = application_create(name="other")
    twin = subscription_create(other, token=apns_token(7))

    (first,) = raw_row("messaging_subscription", subscription.pk, "token")
    (second,) = raw_row("messaging_subscription", twin.pk, "token")

    assert first != second


def test_provider_credentials_are_not_stored_in_plain_text(stored):
    application, _subscription = stored

    apns_column = raw_values(application, "iOSPush")

    for secret in ("very-secret", "PRIVATE KEY", "TEAM123456", "com.example.app"):
        assert secret not in apns_column
    assert not ChannelCredential.objects.filter(channel="AndroidPush").exists()  # none stored
    assert credential_row(application, "iOSPush").values == APNS_CREDENTIALS


def test_the_token_digest_is_a_keyed_hmac_of_type_and_token(stored):
    _application, subscription = stored

    (digest,) = raw_row("messaging_subscription", subscription.pk, "token_digest")

    expected = hmac.new(
        settings.TOKEN_HMAC_KEY.encode(), f"iOSPush\x00{apns_token(7)}".encode(), hashlib.sha256
    ).hexdigest()
    assert digest == expected == crypto.token_digest("iOSPush", apns_token(7))
    # Not a bare hash that anyone could recompute from a known token.
    assert digest != hashlib.sha256(apns_token(7).encode()).hexdigest()
    assert crypto.token_digest("SMS", apns_token(7)) != digest
    with override_settings(TOKEN_HMAC_KEY="another-key"):
        assert crypto.token_digest("iOSPush", apns_token(7)) != digest


def test_rotate_encryption_keys_re_encrypts_under_the_new_key(stored, capsys):
    application, subscription = stored
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    (token_before,) = raw_row("messaging_subscription", subscription.pk, "token")
    apns_before = raw_values(application, "iOSPush")

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        call_command("rotate_encryption_keys")

    out = capsys.readouterr().out
    assert "accounts.ChannelCredential.values: 1 re-encrypted" in out
    assert "messaging.Subscription.token: 1 re-encrypted" in out
    (token_after,) = raw_row("messaging_subscription", subscription.pk, "token")
    apns_after = raw_values(application, "iOSPush")
    assert token_after != token_before and apns_after != apns_before
    assert Fernet(new_key.encode()).decrypt(token_after.encode()).decode() == apns_token(7)
    with pytest.raises(InvalidToken):
        Fernet(old_key.encode()).decrypt(token_after.encode())

    with override_settings(FIELD_ENCRYPTION_KEYS=[old_key]):
        with pytest.raises(crypto.DecryptionError):
            Subscription.objects.get(pk=subscription.pk)
        with pytest.raises(crypto.DecryptionError):
            credential_row(application, "iOSPush")
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        assert Subscription.objects.get(pk=subscription.pk).token == apns_token(7)
        assert credential_row(application, "iOSPush").values == APNS_CREDENTIALS
        # The digest does not depend on the encryption key: lookups still find the token.
        again, created = subscription_register(
            application=application, actor="test", type="iOSPush", token=apns_token(7)
        )
        assert (again.pk, created) == (subscription.pk, False)


def test_rotation_walks_every_row_in_batches(db, monkeypatch):
    from core import encryption

    monkeypatch.setattr(encryption, "BATCH", 2)
    application = application_create(name="many")
    made = [subscription_create(application, token=apns_token(n)) for n in range(5)]
    new_key = Fernet.generate_key().decode()

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, settings.FIELD_ENCRYPTION_KEYS[0]]):
        call_command("rotate_encryption_keys")
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        tokens = sorted(Subscription.objects.values_list("token", flat=True))

    assert tokens == sorted(s.token for s in made)


def test_rotation_stops_on_a_value_no_key_opens(stored):
    _application, subscription = stored
    (before,) = raw_row("messaging_subscription", subscription.pk, "token")
    stranger = Fernet.generate_key().decode()

    with (
        override_settings(FIELD_ENCRYPTION_KEYS=[stranger]),
        pytest.raises(crypto.DecryptionError),
    ):
        call_command("rotate_encryption_keys")

    (after,) = raw_row("messaging_subscription", subscription.pk, "token")
    assert after == before  # never overwritten with garbage


@pytest.fixture
def wrong_key(stored):
    with override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        yield stored


def test_reading_with_a_wrong_key_raises_decryption_error(wrong_key):
    _application, subscription = wrong_key

    with pytest.raises(crypto.DecryptionError, match="rotate_encryption_keys"):
        Subscription.objects.get(pk=subscription.pk)


def test_the_database_check_reports_e001_with_a_wrong_key(wrong_key, capsys):
    with pytest.raises(SystemCheckError) as excinfo:
        call_command("check", "--database", "default")

    assert "core.E001" in str(excinfo.value)


def test_the_database_check_passes_with_the_right_keys(stored, capsys):
    call_command("check", "--database", "default")

    assert "no issues" in capsys.readouterr().out
    assert core_checks.check_encryption_keys(None, databases=["default"]) == []


def test_verify_on_start_raises_with_a_wrong_key(wrong_key):
    with pytest.raises(crypto.DecryptionError):
        checks.verify_on_start()


def test_verify_on_start_passes_with_the_right_keys(stored):
    assert checks.verify_on_start() is None


def test_an_older_key_still_decrypts_before_rotation(stored):
    _application, subscription = stored

    with override_settings(
        FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode(), settings.FIELD_ENCRYPTION_KEYS[0]]
    ):
        assert Subscription.objects.get(pk=subscription.pk).token == apns_token(7)


@pytest.mark.parametrize("keys", [[], ["not-a-fernet-key"]])
def test_bad_key_settings_are_improperly_configured(keys):
    with override_settings(FIELD_ENCRYPTION_KEYS=keys), pytest.raises(ImproperlyConfigured):
        crypto.encrypt("x")


def test_json_credentials_round_trip_with_unicode(db):
    application = application_create(
        name="유니코드",
        credentials={"AndroidPush": {"service_account": {"project_id": "앱", "n": 1}}},
    )

    column = raw_values(application, "AndroidPush")

    assert "앱" not in column
    assert json.loads(crypto.decrypt(column)) == {"service_account": {"project_id": "앱", "n": 1}}
    assert credential_row(application, "AndroidPush").values == {
        "service_account": {"project_id": "앱", "n": 1}
    }


def test_an_unusable_proxy_variable_stops_the_process(monkeypatch, db):
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example:3128")  # only http:// proxies
    with pytest.raises(ImproperlyConfigured, match="https_proxy is unusable"):
        checks.verify_on_start()
    [error] = checks.check_proxies(None)
    assert error.id == "messaging.E002"


def test_a_usable_proxy_variable_passes(monkeypatch, db):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    assert checks.verify_on_start() is None and checks.check_proxies(None) == []
