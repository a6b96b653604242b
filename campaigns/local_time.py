"""Local-time delivery: a campaign's `delivery` {"local_time": "09:00"} gives each target its
message at the next 09:00 on the wall clock of the target's time zone (the subscription's,
else the campaign schedule's, else UTC).

Across a change of daylight saving time the wall clock is kept: a time the clock skips that
day (02:30 on a spring-forward night) is the first moment after the gap (03:00), and a time
it shows twice (01:30 on a fall-back night) is its first occurrence."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from core.validation import InputInvalid

LOCAL_TIME = "local_time"
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
DELIVERY_KEYS = (LOCAL_TIME,)


def delivery_clean(delivery) -> dict:
    """A campaign's `delivery` as stored: {"local_time": "HH:MM"}, or {} for none (also for
    None). Raises InputInvalid on the field `delivery`."""
    if not delivery:
        return {}
    if not isinstance(delivery, dict):
        raise InputInvalid('An object such as {"local_time": "09:00"}, or {}.', field="delivery")
    unknown = sorted(set(delivery) - set(DELIVERY_KEYS))
    if unknown:
        raise InputInvalid(
            f"Unknown field(s) {', '.join(unknown)}; only local_time.", field="delivery"
        )
    clock = delivery.get(LOCAL_TIME)
    if clock is None:
        return {}
    if not isinstance(clock, str) or not _CLOCK.match(clock):
        raise InputInvalid(
            f'local_time must be a wall-clock time "HH:MM" (00:00 to 23:59), not {clock!r}.',
            field="delivery",
        )
    return {LOCAL_TIME: clock}


def local_time_of(delivery: dict | None) -> time | None:
    """The wall-clock time of a stored `delivery`, None for none."""
    clock = (delivery or {}).get(LOCAL_TIME)
    return time.fromisoformat(clock) if clock else None


def _wall(day: date, clock: time, zone: tzinfo) -> datetime:
    """The instant (UTC) the wall clock of `zone` shows `clock` on `day`: the first
    occurrence of a time shown twice, the end of the gap for a time skipped."""
    moment = datetime.combine(day, clock, tzinfo=zone)  # fold=0: the first occurrence
    instant = moment.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == moment.replace(tzinfo=None):
        return instant
    # Skipped: fold=0 reads it with the offset before the gap, fold=1 with the one after;
    # the gap's end lies between the two instants. Offsets change on whole minutes.
    low = moment.replace(fold=1).astimezone(UTC)
    high = instant
    while high - low > timedelta(minutes=1):
        middle = (low + (high - low) / 2).replace(second=0, microsecond=0)
        if middle.astimezone(zone).replace(tzinfo=None) < moment.replace(tzinfo=None):
            low = middle  # before the gap
        else:
            high = middle
    return high


def next_local_time(clock: time, zone: tzinfo, after: datetime) -> datetime:
    """The first instant after `after` at which the wall clock of `zone` shows `clock`
    (aware, UTC)."""
    day = after.astimezone(zone).date()
    for offset in range(3):  # today, else tomorrow (a day after for a skipped-day zone)
        candidate = _wall(day + timedelta(days=offset), clock, zone)
        if candidate > after:
            return candidate
    raise AssertionError("unreachable: a wall-clock time recurs within three days")
