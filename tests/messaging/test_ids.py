"""messaging.ids.uuid7: RFC 9562 version 7 layout, ordered by its milliseconds."""

from __future__ import annotations

import time

from messaging.ids import uuid7


def test_the_layout_is_version_7_with_the_rfc_variant():
    for _ in range(200):
        value = uuid7()
        assert value.version == 7
        assert value.variant == "specified in RFC 4122"


def test_the_first_48_bits_are_the_unix_milliseconds_given_or_now():
    assert uuid7(1_700_000_000_123).int >> 80 == 1_700_000_000_123
    before = time.time_ns() // 1_000_000
    now = uuid7().int >> 80
    assert before <= now <= time.time_ns() // 1_000_000


def test_ids_of_later_milliseconds_sort_after_earlier_ones():
    ids = [uuid7(1_700_000_000_000 + step) for step in range(0, 1000, 7)]
    assert ids == sorted(ids)
    assert str(ids[0]) < str(ids[-1])  # as text too (PostgreSQL compares uuid bytes)
