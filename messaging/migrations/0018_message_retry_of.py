from django.db import migrations, models
from django.db.models import Q

INDEX = models.Index(fields=["retry_of"], condition=Q(retry_of__isnull=False), name="msg_retry_of")


def create_index(apps, schema_editor):
    # CONCURRENTLY on PostgreSQL: the message table is the largest and delivery writes it
    # all the time; a plain CREATE INDEX would hold its writes for the whole scan.
    model = apps.get_model("messaging", "Message")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(model, INDEX, concurrently=True)
    else:
        schema_editor.add_index(model, INDEX)


def drop_index(apps, schema_editor):
    model = apps.get_model("messaging", "Message")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(model, INDEX, concurrently=True)
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("messaging", "0017_user_verbose_name_app_users"),
    ]

    operations = [
        # Nullable without a default: PostgreSQL adds it without rewriting the table.
        migrations.AddField(
            model_name="message",
            name="retry_of",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="message", index=INDEX)],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
