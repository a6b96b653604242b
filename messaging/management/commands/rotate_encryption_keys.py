"""`rotate_encryption_keys`: re-encrypts every stored secret under the newest key."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from accounts.models import Application
from core import crypto
from core.fields import EncryptedJSONField, EncryptedTextField
from messaging.models import Subscription

BATCH = 1000


class Command(BaseCommand):
    help = (
        "Re-encrypts every encrypted column under the newest key of FIELD_ENCRYPTION_KEYS. "
        "Run it after prepending a new key; then the old keys can be removed."
    )

    def handle(self, *args, **opts):
        for model in (Application, Subscription):
            columns = [
                f.column
                for f in model._meta.fields
                if isinstance(f, EncryptedTextField | EncryptedJSONField)
            ]
            done = self._rotate(model._meta.db_table, model._meta.pk.column, columns)
            self.stdout.write(f"{model.__name__}: {done} rows re-encrypted")

    def _rotate(self, table: str, pk: str, columns: list[str]) -> int:
        # Raw SQL on the ciphertext: no decrypt-to-model round trip, and a value that no key
        # opens stops the run with DecryptionError instead of being overwritten.
        qn = connection.ops.quote_name
        select = (
            f"SELECT {qn(pk)}, {', '.join(qn(c) for c in columns)} FROM {qn(table)} "  # noqa: S608
            f"WHERE {qn(pk)} > %s ORDER BY {qn(pk)} LIMIT {BATCH}"
        )
        update = (
            f"UPDATE {qn(table)} SET {', '.join(f'{qn(c)} = %s' for c in columns)} "  # noqa: S608
            f"WHERE {qn(pk)} = %s"
        )
        last, done = "00000000-0000-0000-0000-000000000000", 0
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(select, [last])
                rows = cursor.fetchall()
                if not rows:
                    return done
                params = [
                    [crypto.rotate(v) if v else v for v in row[1:]] + [row[0]] for row in rows
                ]
                cursor.executemany(update, params)
            last, done = rows[-1][0], done + len(rows)
