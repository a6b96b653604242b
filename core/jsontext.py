"""JSON text of the delivery path's large documents (a batch's rows for one statement), with
orjson: 0.23 ms per 1,000 rows where the standard library takes 3.2 ms (bench/RESULTS.md,
"Throughput"). A value orjson refuses (an integer beyond 64 bits, a key that is not a string)
is encoded by the standard library instead: the text always holds the same values."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)
