"""The migration that moves APNs and FCM credentials from Application's columns into
ChannelCredential rows, forward and back, on rows written the way the code before it wrote
them (through the historical models, in the encrypted field's stored form)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import ChannelCredential
from core.fields import EncryptedJSONField

BEFORE = [("accounts", "0002_channel_credentials")]
AFTER = [("accounts", "0004_remove_application_push_credentials")]

APNS = {"auth": "token", "key_id": "KEY1234567", "team_id": "TEAM123456", "sandbox": True,
        "topic": "com.example.app", "private_key": "-----BEGIN PRIVATE KEY-----\nk\n"}  # fmt: skip
FCM = {"service_account": {"project_id": "앱", "private_key": "-----BEGIN PRIVATE KEY-----\nf\n"}}
EMAIL = {"host": "smtp.example.com", "password": "p", "from_address": "a@example.com"}
SET_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

_field = EncryptedJSONField()


def stored_form(values: dict) -> str:
    """What the encrypted field writes to its column (a historical model sees a TextField)."""
    return _field.get_prep_value(values)


def read(ciphertext: str) -> dict:
    return _field.from_db_value(ciphertext, None, connection)


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_apps(transactional_db):
    """The database as it was before the move; migrated to the latest state afterwards."""
    try:
        yield migrate(BEFORE)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_push_credentials_move_to_rows_and_back(old_apps):
    Application = old_apps.get_model("accounts", "Application")
    OldCredential = old_apps.get_model("accounts", "ChannelCredential")
    both = Application.objects.create(
        name="both",
        apns_credentials=stored_form(APNS),
        apns_credentials_set_at=SET_AT,
        fcm_credentials=stored_form(FCM),
        fcm_credentials_set_at=SET_AT,
    )
    # Set before dates were kept: the row takes the application's creation time.
    undated = Application.objects.create(
        name="undated", apns_credentials="", fcm_credentials=stored_form(FCM)
    )
    none = Application.objects.create(name="none", apns_credentials="", fcm_credentials="")
    fresh = Application.objects.create(name="column default")  # "{}": nothing stored
    OldCredential.objects.create(
        application=both, channel="Email", values=stored_form(EMAIL), set_at=SET_AT
    )

    migrate(AFTER)

    rows = {
        (row.application_id, row.channel): (row.values, row.set_at)
        for row in ChannelCredential.objects.all()
    }
    assert rows == {
        (both.pk, "iOSPush"): (APNS, SET_AT),
        (both.pk, "AndroidPush"): (FCM, SET_AT),
        (both.pk, "Email"): (EMAIL, SET_AT),
        (undated.pk, "AndroidPush"): (FCM, undated.created_at),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'accounts_application'"
        )
        columns = {name for (name,) in cursor.fetchall()}
    assert not {c for c in columns if c.startswith(("apns_", "fcm_"))}

    old_apps = migrate(BEFORE)

    Application = old_apps.get_model("accounts", "Application")
    OldCredential = old_apps.get_model("accounts", "ChannelCredential")
    back = {a.pk: a for a in Application.objects.all()}
    assert (read(back[both.pk].apns_credentials), back[both.pk].apns_credentials_set_at) == (
        APNS,
        SET_AT,
    )
    assert (read(back[both.pk].fcm_credentials), back[both.pk].fcm_credentials_set_at) == (
        FCM,
        SET_AT,
    )
    assert read(back[undated.pk].fcm_credentials) == FCM
    assert back[undated.pk].fcm_credentials_set_at == undated.created_at
    for pk in (undated.pk, none.pk, fresh.pk):
        assert back[pk].apns_credentials == "" and back[pk].apns_credentials_set_at is None
    for pk in (none.pk, fresh.pk):
        assert back[pk].fcm_credentials == "" and back[pk].fcm_credentials_set_at is None
    assert list(OldCredential.objects.values_list("channel", flat=True)) == ["Email"]


def test_the_applications_column_wins_over_a_row_left_for_the_same_channel(old_apps):
    Application = old_apps.get_model("accounts", "Application")
    OldCredential = old_apps.get_model("accounts", "ChannelCredential")
    application = Application.objects.create(
        name="app", apns_credentials=stored_form(APNS), apns_credentials_set_at=SET_AT
    )
    OldCredential.objects.create(
        application=application, channel="iOSPush", values=stored_form({"stale": 1}), set_at=SET_AT
    )

    migrate(AFTER)

    assert ChannelCredential.objects.get().values == APNS
