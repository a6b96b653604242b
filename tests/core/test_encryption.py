"""Key rotation and the start-up check find every encrypted column themselves: any model of
any app, whatever its primary key, including channel credentials."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, models
from django.test import override_settings
from django.utils import timezone

from accounts.models import ChannelCredential
from accounts.services import application_create
from core import crypto, encryption
from core.checks import check_encryption_keys
from core.fields import EncryptedJSONField, EncryptedTextField

pytestmark = pytest.mark.django_db

SMTP = {"host": "smtp.example.com", "port": 587, "username": "u", "password": "smtp-secret"}


def raw(table: str, pk_column: str, pk, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {table} WHERE {pk_column} = %s",  # noqa: S608
            [pk],
        )
        return cursor.fetchone()[0]


def opens(key: str, value: str) -> str:
    return Fernet(key.encode()).decrypt(value.encode()).decode()


@pytest.fixture
def vault_model():
    """A model that no app of ours has: a text primary key and two encrypted fields, its
    table made for the test and the model forgotten after it."""

    class Vault(models.Model):  # noqa: DJ008
        slug = models.CharField(primary_key=True, max_length=20)
        secret = EncryptedTextField(blank=True)
        document = EncryptedJSONField(blank=True, default=dict)
        note = models.TextField(blank=True)  # not encrypted: never touched

        class Meta:
            app_label = "core"
            db_table = "test_core_vault"

    with connection.schema_editor() as editor:
        editor.create_model(Vault)
    try:
        yield Vault
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(Vault)
        del apps.all_models["core"]["vault"]
        apps.clear_cache()


@pytest.fixture
def channel_credential(db):
    application = application_create(name="channels")
    return ChannelCredential.objects.create(
        application=application, channel="Email", values=SMTP, set_at=timezone.now()
    )


def test_every_encrypted_field_of_every_model_is_found(vault_model):
    found = {t.label: [f.name for f in t.fields] for t in encryption.encrypted_tables()}

    assert found["accounts.ChannelCredential"] == ["values"]
    assert found["messaging.Subscription"] == ["token", "keys"]
    assert found["core.Vault"] == ["secret", "document"]


def test_a_new_models_encrypted_fields_are_rotated(vault_model, capsys):
    old_key, new_key = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    for n in range(5):
        vault_model.objects.create(
            slug=f"v{n}", secret=f"secret-{n}", document={"n": n} if n % 2 else {}, note="plain"
        )

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        call_command("rotate_encryption_keys", batch=2)

    out = capsys.readouterr().out
    assert "core.Vault: 5 rows" in out
    assert "core.Vault.secret: 5 re-encrypted, 0 already under the newest key, 0 empty" in out
    assert "core.Vault.document: 2 re-encrypted, 0 already under the newest key, 3 empty" in out
    secret = raw("test_core_vault", "slug", "v3", "secret")
    assert opens(new_key, secret) == "secret-3"
    with pytest.raises(InvalidToken):
        opens(old_key, secret)
    assert raw("test_core_vault", "slug", "v3", "note") == "plain"
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        assert vault_model.objects.get(pk="v3").document == {"n": 3}
        assert vault_model.objects.get(pk="v2").document == {}


def test_channel_credentials_are_rotated(channel_credential, capsys):
    old_key, new_key = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    table = "accounts_channelcredential"
    before = raw(table, "id", channel_credential.pk, "values")

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
        call_command("rotate_encryption_keys")

    assert "accounts.ChannelCredential.values: 1 re-encrypted" in capsys.readouterr().out
    after = raw(table, "id", channel_credential.pk, "values")
    assert after != before
    assert "smtp-secret" in opens(new_key, after)
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):  # the old key dropped
        assert ChannelCredential.objects.get(pk=channel_credential.pk).values == SMTP


def test_a_second_run_rewrites_nothing(channel_credential, capsys):
    """Resumable: what is already under the newest key is left as it is."""
    new_key = Fernet.generate_key().decode()
    keys = [new_key, settings.FIELD_ENCRYPTION_KEYS[0]]
    with override_settings(FIELD_ENCRYPTION_KEYS=keys):
        call_command("rotate_encryption_keys")
        first = raw("accounts_channelcredential", "id", channel_credential.pk, "values")
        capsys.readouterr()
        call_command("rotate_encryption_keys", model=["accounts.ChannelCredential"])

    out = capsys.readouterr().out
    assert out.splitlines() == [
        "accounts.ChannelCredential: 1 rows",
        "  accounts.ChannelCredential.values: 0 re-encrypted, 1 already under the newest key, "
        "0 empty",
    ]
    assert raw("accounts_channelcredential", "id", channel_credential.pk, "values") == first


def test_an_unknown_model_is_refused(db):
    with pytest.raises(CommandError, match="accounts.ChannelCredential"):
        call_command("rotate_encryption_keys", model=["accounts.ApiKey"])


def test_the_check_opens_channel_credentials(channel_credential):
    stranger = Fernet.generate_key().decode()
    # Only a channel credential is stored under the key that goes away.
    with override_settings(FIELD_ENCRYPTION_KEYS=[stranger]):
        with pytest.raises(crypto.DecryptionError):
            encryption.verify_encrypted_values()
        [error] = check_encryption_keys(None, databases=["default"])
    assert error.id == "core.E001"
    assert check_encryption_keys(None, databases=["default"]) == []


def test_the_check_opens_a_new_models_values(vault_model):
    vault_model.objects.create(slug="only", secret="s")

    with (
        override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(crypto.DecryptionError),
    ):
        encryption.verify_encrypted_values()
