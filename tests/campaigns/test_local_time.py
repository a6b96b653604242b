"""Local-time delivery (campaigns.local_time): the next wall-clock time in a zone, across
daylight saving time, and the `delivery` field's rules."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from campaigns.local_time import delivery_clean, local_time_of, next_local_time
from core.validation import InputInvalid
from core.zones import zone_of

SEOUL = ZoneInfo("Asia/Seoul")  # +09:00, no daylight saving time
NEW_YORK = ZoneInfo("America/New_York")  # -05:00 / -04:00
BERLIN = ZoneInfo("Europe/Berlin")  # +01:00 / +02:00


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # 08:00 in Seoul: 09:00 is an hour away, today.
        (SEOUL, utc(2026, 6, 1, 23, 0), utc(2026, 6, 2, 0, 0)),
        # 09:00 in Seoul exactly: the next one is tomorrow's.
        (SEOUL, utc(2026, 6, 2, 0, 0), utc(2026, 6, 3, 0, 0)),
        # Summer in New York (-04:00) and in Berlin (+02:00).
        (NEW_YORK, utc(2026, 6, 1, 14, 0), utc(2026, 6, 2, 13, 0)),  # 10:00: tomorrow
        (BERLIN, utc(2026, 6, 1, 6, 0), utc(2026, 6, 1, 7, 0)),
        # Winter: the same wall clock is an hour later in UTC.
        (NEW_YORK, utc(2026, 1, 10, 12, 0), utc(2026, 1, 10, 14, 0)),
        (BERLIN, utc(2026, 1, 10, 6, 0), utc(2026, 1, 10, 8, 0)),
    ],
)
def test_the_next_local_time_in_three_zones(zone, after, expected):
    assert next_local_time(time(9, 0), zone, after) == expected
    assert next_local_time(time(9, 0), zone, after).astimezone(zone).time() == time(9, 0)


def test_across_a_change_of_offset_the_wall_clock_is_kept():
    # Saturday 09:00 in New York is EST; Sunday 09:00, after the clocks went forward, EDT.
    saturday = utc(2026, 3, 7, 15, 0)  # 10:00 EST
    assert next_local_time(time(9, 0), NEW_YORK, saturday) == utc(2026, 3, 8, 13, 0)
    # Berlin goes back on 25 October 2026: 09:00 on the 25th is CET (+01:00).
    assert next_local_time(time(9, 0), BERLIN, utc(2026, 10, 24, 8, 0)) == utc(2026, 10, 25, 8, 0)


def test_a_time_the_clock_skips_is_the_first_moment_after_the_gap():
    # 8 March 2026 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
    before = utc(2026, 3, 8, 5, 0)  # 00:00 EST
    assert next_local_time(time(2, 30), NEW_YORK, before) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT
    # Berlin on 29 March 2026: 02:00 CET jumps to 03:00 CEST.
    moment = next_local_time(time(2, 0), BERLIN, utc(2026, 3, 28, 23, 0))
    assert moment == utc(2026, 3, 29, 1, 0)
    assert moment.astimezone(BERLIN).time() == time(3, 0)
    # Lord Howe Island moves by half an hour: 02:15 is skipped, 02:30 follows.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    moment = next_local_time(time(2, 15), lord_howe, utc(2026, 10, 3, 12, 0))
    assert moment.astimezone(lord_howe).time() == time(2, 30)


def test_a_time_the_clock_shows_twice_is_its_first_occurrence():
    # 1 November 2026 in New York: 01:00-02:00 EDT, then 01:00-02:00 EST again.
    moment = next_local_time(time(1, 30), NEW_YORK, utc(2026, 11, 1, 4, 0))
    assert moment == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert moment.astimezone(NEW_YORK).utcoffset().total_seconds() == -4 * 3600
    # Past the first, the next is the next day's, not the repeated one.
    assert next_local_time(time(1, 30), NEW_YORK, moment) == utc(2026, 11, 2, 6, 30)


@pytest.mark.parametrize("name", ["", None, "Mars/Olympus_Mons", "../etc/passwd", "UTC"])
def test_a_missing_or_unknown_time_zone_is_utc(name):
    assert zone_of(name) is UTC or zone_of(name).utcoffset(utc(2026, 1, 1)).total_seconds() == 0
    assert next_local_time(time(9, 0), zone_of(name), utc(2026, 1, 1, 10, 0)) == utc(
        2026, 1, 2, 9, 0
    )


def test_delivery_is_a_local_time_or_nothing():
    assert delivery_clean({"local_time": "09:00"}) == {"local_time": "09:00"}
    assert delivery_clean({"local_time": "23:59"}) == {"local_time": "23:59"}
    assert delivery_clean({}) == {} and delivery_clean(None) == {}
    assert delivery_clean({"local_time": None}) == {}
    assert local_time_of({"local_time": "07:05"}) == time(7, 5)
    assert local_time_of({}) is None
    for wrong in ("24:00", "9:00", "09:60", "09:00:00", 900, "noon"):
        with pytest.raises(InputInvalid) as raised:
            delivery_clean({"local_time": wrong})
        assert raised.value.field == "delivery"
    for wrong in ({"local_time": "09:00", "days": [1]}, ["09:00"], "09:00"):
        with pytest.raises(InputInvalid):
            delivery_clean(wrong)
