"""The encrypted columns of every installed model, found rather than listed: the start-up check
that the configured keys open them, and their re-encryption under the newest key
(`manage.py rotate_encryption_keys`).

Both work on the ciphertext with plain SQL, never through the models: no decrypt-to-model round
trip, any primary key type (UUID, big integer, text, a one-to-one key), and a value that no key
opens stops the work with DecryptionError instead of being overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction

from core import crypto
from core.fields import EncryptedField

BATCH = 1000


@dataclass(frozen=True)
class EncryptedTable:
    """One model's table and its encrypted columns."""

    model: type[models.Model]
    fields: tuple[models.Field, ...]

    @property
    def label(self) -> str:
        return self.model._meta.label  # "accounts.ChannelCredential"


def encrypted_tables() -> list[EncryptedTable]:
    """Every concrete model of every installed app that has an encrypted field (a subclass of
    core.fields.EncryptedField), with those fields; sorted by model label."""
    tables = []
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or not meta.managed or meta.swapped:
            continue
        # local_concrete_fields: a child of multi-table inheritance rotates its own table's
        # columns, its parent's are rotated with the parent.
        found = tuple(f for f in meta.local_concrete_fields if isinstance(f, EncryptedField))
        if found:
            tables.append(EncryptedTable(model, found))
    return sorted(tables, key=lambda table: table.label)


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def verify_encrypted_values(sample: int = 20) -> None:
    """Decrypts the first `sample` rows (by primary key: an index walk, however many rows
    there are) of every encrypted column; raises DecryptionError on the first value that no
    configured key opens.

    Called when the web app and the workers start, so a wrong FIELD_ENCRYPTION_KEYS stops
    them at once instead of sending garbage to providers later."""
    with connection.cursor() as cursor:
        for table in encrypted_tables():
            meta = table.model._meta
            cursor.execute(
                f"SELECT {', '.join(_qn(f.column) for f in table.fields)}"  # noqa: S608 (names are ours)
                f" FROM {_qn(meta.db_table)} ORDER BY {_qn(meta.pk.column)} LIMIT %s",
                [sample],
            )
            for row in cursor.fetchall():
                for value in row:
                    if value:
                        crypto.decrypt(value)


@dataclass
class Rotated:
    """Counts for one encrypted column."""

    rewritten: int = 0  # re-encrypted under the newest key
    current: int = 0  # already under the newest key: left as it was
    empty: int = 0  # nothing stored


@dataclass
class TableReport:
    label: str
    rows: int = 0
    columns: dict[str, Rotated] = field(default_factory=dict)


def _newest_key_opens() -> Callable[[str], bool]:
    newest = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].strip().encode())

    def opens(value: str) -> bool:
        try:
            newest.decrypt(value.encode())
        except InvalidToken:
            return False
        return True

    return opens


def rotate_table(
    table: EncryptedTable,
    *,
    batch: int | None = None,
    progress: Callable[[TableReport], None] | None = None,
) -> TableReport:
    """Re-encrypts one table's encrypted columns under the newest key, `batch` rows per
    transaction, in primary-key order; `progress` is called with the running report after
    each batch.

    Resumable: each batch commits on its own, and a value the newest key already opens is not
    rewritten, so a run that stopped (or a second run) redoes no writes."""
    batch = batch or BATCH
    meta = table.model._meta
    pk, name = _qn(meta.pk.column), _qn(meta.db_table)
    columns = [f.column for f in table.fields]
    selected = ", ".join(_qn(c) for c in columns)
    first = f"SELECT {pk}, {selected} FROM {name} ORDER BY {pk} LIMIT {batch}"  # noqa: S608
    after = f"SELECT {pk}, {selected} FROM {name} WHERE {pk} > %s ORDER BY {pk} LIMIT {batch}"  # noqa: S608
    opens = _newest_key_opens()
    report = TableReport(table.label, columns={f.name: Rotated() for f in table.fields})
    counts = [report.columns[f.name] for f in table.fields]
    last = None
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(first if last is None else after, [] if last is None else [last])
            rows = cursor.fetchall()
            if not rows:
                return report
            updates: dict[tuple[str, ...], list[list]] = {}
            for key, *values in rows:
                changed = {}
                for column, count, value in zip(columns, counts, values, strict=True):
                    if not value:
                        count.empty += 1
                    elif opens(value):
                        count.current += 1
                    else:
                        changed[column] = crypto.rotate(value)
                        count.rewritten += 1
                if changed:
                    updates.setdefault(tuple(changed), []).append([*changed.values(), key])
            for changed_columns, params in updates.items():
                assignments = ", ".join(f"{_qn(c)} = %s" for c in changed_columns)
                cursor.executemany(
                    f"UPDATE {name} SET {assignments} WHERE {pk} = %s",  # noqa: S608
                    params,
                )
        last = rows[-1][0]
        report.rows += len(rows)
        if progress:
            progress(report)
