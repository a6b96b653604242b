"""Inserts of many rows, the pipeline's hottest SQL. On PostgreSQL: COPY for large batches
(an order of magnitude cheaper than an INSERT built by the ORM), one plain INSERT for a few
rows (COPY's extra round trips cost more there); the ORM on other databases."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

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
    with connection.cursor() as cursor:
        if len(rows) < COPY_FROM_ROWS:
            sql, params = insert_statement(model, columns, rows)
            cursor.execute(sql, params)
            return
        fields = [model._meta.get_field(name) for name in columns]
        names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        sql = f"COPY {model._meta.db_table} ({names}) FROM STDIN"  # noqa: S608 (names are ours)
        with cursor.cursor.copy(sql) as copy:
            for row in _json_encoded(fields, rows):
                copy.write_row(row)


_UUID_LIST = re.compile(r"[0-9a-fA-F-]{32,36}(?:,[0-9a-fA-F-]{32,36})*")


def uuid_array(ids: Iterable) -> str:
    """Ids as a PostgreSQL array literal, for `%s::uuid[]`: one string, where psycopg would
    adapt a Python list element by element (1.7 ms against 0.2 ms for 500 ids). Only hex
    digits and hyphens get into the literal (ValueError otherwise); PostgreSQL then parses
    each element as a uuid."""
    joined = ",".join(map(str, ids))
    if joined and not _UUID_LIST.fullmatch(joined):
        raise ValueError("not a list of UUIDs")
    return "{" + joined + "}"


def insert_statement(
    model: type[Model], columns: Sequence[str], rows: Sequence[tuple], *, where: str = ""
) -> tuple[str, dict]:
    """`INSERT INTO table (cols) SELECT * FROM (VALUES ...) AS v [WHERE ...]` and its named
    parameters (PostgreSQL). The values are cast to their columns' types, so they can stand
    in a SELECT; `where` may then make the insert conditional on the rest of a statement."""
    fields, names, types = _insert_columns(model, tuple(columns))
    params: dict[str, object] = {}
    tuples = []
    for r, row in enumerate(_json_encoded(fields, rows)):
        cells = []
        for c, value in enumerate(row):
            params[f"v{r}_{c}"] = value
            cells.append(f"%(v{r}_{c})s::{types[c]}")
        tuples.append("(" + ", ".join(cells) + ")")
    sql = (
        f"INSERT INTO {model._meta.db_table} ({names})"  # noqa: S608 (names are ours)
        f" SELECT * FROM (VALUES {', '.join(tuples)}) AS v {where}"
    )
    return sql, params


def cast_types(model: type[Model], columns: Sequence[str]) -> list[str]:
    """The types `columns` (attribute names) of `model` are cast to in the statements built
    here: the columns' own, varchar without its length."""
    return _insert_columns(model, tuple(columns))[2]


@lru_cache(maxsize=64)
def _insert_columns(model: type[Model], columns: tuple[str, ...]) -> tuple[list, str, list[str]]:
    """The fields, quoted column names and cast types of `columns` (Django builds a field's
    db_type anew on every call: 6 % of a POST /messages before this cache)."""
    fields = [model._meta.get_field(name) for name in columns]
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    types = [_VARCHAR_LENGTH.sub("varchar", f.db_type(connection)) for f in fields]
    return fields, names, types


# A cast to varchar(n) would cut a longer value silently; to varchar it is stored (or
# refused) by the column's own type, as a plain INSERT is.
_VARCHAR_LENGTH = re.compile(r"^varchar\(\d+\)$")


def _json_encoded(fields: Sequence, rows: Sequence[tuple]) -> Iterator[Sequence]:
    """The rows with their JSON columns' dicts as JSON text; rows often share one dict (a
    batch's content), so each is encoded once."""
    json_at = [i for i, f in enumerate(fields) if isinstance(f, JSONField)]
    if not json_at:
        yield from rows
        return
    encoded: dict[int, str] = {}
    for row in rows:
        row = list(row)
        for i in json_at:
            key = id(row[i])
            if key not in encoded:
                encoded[key] = json.dumps(row[i])
            row[i] = encoded[key]
        yield row
