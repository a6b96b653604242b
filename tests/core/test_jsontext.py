"""core.jsontext.dumps: orjson's text, and the standard library's for what orjson refuses."""

from __future__ import annotations

import json

from core import jsontext


def test_the_text_holds_the_same_values():
    value = [{"id": "a", "n": 1, "f": 12.34, "none": None, "t": True, "s": '한글 "q"\n'}]
    assert json.loads(jsontext.dumps(value)) == value


def test_what_orjson_refuses_is_encoded_by_the_standard_library():
    value = {"big": 2**70, "nested": {"k": [2**65]}}
    assert json.loads(jsontext.dumps(value)) == value
