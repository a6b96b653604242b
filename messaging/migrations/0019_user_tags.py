from django.db import migrations, models

INDEX = "user_tags_gin"


def create_index(apps, schema_editor):
    # jsonb_path_ops GIN makes `user_tags` targeting (`tags @> {...}` on the user joined to
    # each subscription) an index scan, as migration 0002 does for subscription tags.
    # PostgreSQL only; the SQLite fallback has no GIN and does without.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON messaging_user USING gin (tags jsonb_path_ops)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("messaging", "0018_message_retry_of")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="tags",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(create_index, drop_index),
    ]
