"""Bulk writes of many rows, the pipeline's hottest SQL: PostgreSQL's COPY where available
(an order of magnitude cheaper than a multi-row INSERT built by the ORM), the ORM elsewhere."""

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
    if connection.vendor != "postgresql" or len(objs) < COPY_FROM_ROWS:
        model.objects.bulk_create(objs)
        return
    concrete = [f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in concrete)
    json_fields = {f.attname for f in concrete if isinstance(f, JSONField)}
    attnames = [f.attname for f in concrete]
    encoded: dict[int, str] = {}  # many rows share one content dict: encode it once

    def value(obj: Model, attname: str):
        raw = getattr(obj, attname)
        if attname in json_fields:
            key = id(raw)
            if key not in encoded:
                encoded[key] = json.dumps(raw)
            return encoded[key]
        return raw

    with connection.cursor() as cursor:
        sql = f"COPY {model._meta.db_table} ({columns}) FROM STDIN"  # noqa: S608 (names are ours)
        with cursor.cursor.copy(sql) as copy:
            for obj in objs:
                copy.write_row([value(obj, name) for name in attnames])
    for obj in objs:  # as bulk_create leaves them: saved, so a later save() updates
        obj._state.adding = False
        obj._state.db = connection.alias


def copy_rows(model: type[Model], columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Inserts plain tuples into `columns` (attribute names) of `model`'s table; dicts go to
    JSON columns as JSON."""
    if not rows:
        return
    if connection.vendor != "postgresql" or len(rows) < COPY_FROM_ROWS:
        model.objects.bulk_create(model(**dict(zip(columns, row, strict=True))) for row in rows)
        return
    fields = [model._meta.get_field(name) for name in columns]
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    json_at = [i for i, f in enumerate(fields) if isinstance(f, JSONField)]
    encoded: dict[int, str] = {}  # rows often share one dict (a batch's content): encode once

    def as_json(value) -> str:
        key = id(value)
        if key not in encoded:
            encoded[key] = json.dumps(value)
        return encoded[key]

    with connection.cursor() as cursor:
        sql = f"COPY {model._meta.db_table} ({names}) FROM STDIN"  # noqa: S608 (names are ours)
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                if json_at:
                    row = list(row)
                    for i in json_at:
                        row[i] = as_json(row[i])
                copy.write_row(row)
