"""Inserts of many rows, the pipeline's hottest SQL. On PostgreSQL: COPY for large batches
(an order of magnitude cheaper than an INSERT built by the ORM), one plain INSERT for a few
rows (COPY's extra round trips cost more there); the ORM on other databases."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection
from django.db.models import JSONField, Model
from django.db.models.fields import AutoFieldMixin

# Below this many rows one INSERT is cheaper than COPY's extra round trips.
COPY_FROM_ROWS = 20


def copy_models(objs: Sequence[Model]) -> None:
    """Inserts model instances as they are: their values are not pre-saved, so fields such as
    auto_now_add must already be set. Auto-increment keys come from the database."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs)
        return
    attnames = [f.attname for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    copy_rows(model, attnames, [tuple(getattr(obj, name) for name in attnames) for obj in objs])
    for obj in objs:  # as bulk_create leaves them: saved, so a later save() updates
        obj._state.adding = False
        obj._state.db = connection.alias


def copy_rows(model: type[Model], columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Inserts plain tuples into `columns` (attribute names) of `model`'s table; dicts go to
    JSON columns as JSON."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(model(**dict(zip(columns, row, strict=True))) for row in rows)
        return
    fields = [model._meta.get_field(name) for name in columns]
    table = model._meta.db_table
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    json_at = [i for i, f in enumerate(fields) if isinstance(f, JSONField)]
    encoded: dict[int, str] = {}  # rows often share one dict (a batch's content): encode once

    def prepared(row: tuple):
        if not json_at:
            return row
        row = list(row)
        for i in json_at:
            key = id(row[i])
            if key not in encoded:
                encoded[key] = json.dumps(row[i])
            row[i] = encoded[key]
        return row

    with connection.cursor() as cursor:
        if len(rows) < COPY_FROM_ROWS:
            one = "(" + ", ".join(["%s"] * len(fields)) + ")"
            sql = f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one] * len(rows))  # noqa: S608 (names are ours)
            cursor.execute(sql, [value for row in rows for value in prepared(row)])
            return
        sql = f"COPY {table} ({names}) FROM STDIN"  # noqa: S608 (names are ours)
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(prepared(row))
