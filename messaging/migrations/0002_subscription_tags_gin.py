from django.db import migrations

INDEX = "sub_tags_gin"


def create_index(apps, schema_editor):
    # jsonb_path_ops GIN makes `tags @> {...}` targeting an index scan. PostgreSQL only; the
    # SQLite fallback has no GIN and does without.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON messaging_subscription "
            "USING gin (tags jsonb_path_ops)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index)]
