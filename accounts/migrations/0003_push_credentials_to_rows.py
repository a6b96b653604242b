"""APNs and FCM credentials move from Application's columns into ChannelCredential rows
("iOSPush", "AndroidPush"), like every other channel's.

Both places hold the same stored form, encrypted JSON (core.fields.EncryptedJSONField; a
historical model sees it as the TextField it deconstructs to), so the ciphertext is copied as
it is: nothing is decrypted, and no key is needed. Reversible: the reverse moves the rows back
into the columns (which the reverse of the next migration has re-created)."""

from django.db import migrations

# (channel, credentials column, column of when they were set)
PUSH = (
    ("iOSPush", "apns_credentials", "apns_credentials_set_at"),
    ("AndroidPush", "fcm_credentials", "fcm_credentials_set_at"),
)


def _stored(value) -> bool:
    # "" is what the field stores for no credentials; "{}" is what a column re-added by a
    # migration (TextField, default=dict) holds before anything is written to it.
    return bool(value) and value != "{}"


def columns_to_rows(apps, schema_editor):
    Application = apps.get_model("accounts", "Application")
    ChannelCredential = apps.get_model("accounts", "ChannelCredential")
    fields = ["pk", "created_at"] + [name for _channel, *names in PUSH for name in names]
    for row in Application.objects.values(*fields).iterator(chunk_size=1000):
        for channel, column, set_at in PUSH:
            if not _stored(row[column]):
                continue
            # The column is what sending read: it wins over a row an older version left.
            ChannelCredential.objects.update_or_create(
                application_id=row["pk"],
                channel=channel,
                defaults={"values": row[column], "set_at": row[set_at] or row["created_at"]},
            )


def rows_to_columns(apps, schema_editor):
    Application = apps.get_model("accounts", "Application")
    ChannelCredential = apps.get_model("accounts", "ChannelCredential")
    empty = {
        name: (None if name.endswith("_set_at") else "") for _c, *names in PUSH for name in names
    }
    Application.objects.update(**empty)
    for channel, column, set_at in PUSH:
        rows = ChannelCredential.objects.filter(channel=channel)
        for row in rows.values("application_id", "values", "set_at").iterator(chunk_size=1000):
            Application.objects.filter(pk=row["application_id"]).update(
                **{column: row["values"], set_at: row["set_at"]}
            )
        rows.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_channel_credentials"),
    ]

    operations = [
        migrations.RunPython(columns_to_rows, rows_to_columns),
    ]
