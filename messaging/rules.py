"""The recipients' rules, applied where targets become messages (services.messages.
message_send: single sends, id lists, users, campaign fan-out and fallback hops alike).

A message of a non-required category goes only where the recipient's preferences let it:
- left out (`opted_out`) when the recipient turned the target's channel off, or the category
  off (else the category's `default_enabled`), or the category off on that channel;
- held when the recipient is inside their quiet hours at the time it would go (in the quiet
  hours' time zone, else the subscription's, else UTC): created pending with `send_after` at
  their end, never dropped;
- left out (`frequency_cap`) once the recipient had the application's `frequency_cap["max"]`
  capped messages within `per_seconds`, over all channels.
A message without a category follows none of them; a required category passes every one.

The recipient is the subscription's user, or the subscription itself when it belongs to no
user; its preferences are the user's (User.preferences) or the subscription's own.

Cost: one statement per batch, never a query per target: PostgreSQL evaluates each target's
preferences (only quiet hours come back to be computed here) and, with a cap, its INSERT ...
ON CONFLICT counts and grants the whole batch. The cap's rows are per
recipient (FrequencyWindow): two batches reaching one user at once serialise on that user's
row, so they never both take its last slot, and nothing else waits on them."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db import connection

from accounts.models import Application, Category
from core.bulk import uuid_array
from core.validation import InputInvalid
from core.zones import zone_of

from .models import FrequencyWindow, Subscription, User

# Why a target got no message: its subscription is disabled (POST /messages counts those as
# before), the recipient opted out, or the frequency cap is reached.
DISABLED, OPTED_OUT, FREQUENCY_CAP = "disabled", "opted_out", "frequency_cap"
SKIP_REASONS = (DISABLED, OPTED_OUT, FREQUENCY_CAP)
QUIET_HOURS = "quiet_hours"  # the reason a held message's event gives


@dataclass(frozen=True)
class Rules:
    """What applies to one send: its category's key (stored on each message), whether the
    recipients' rules apply (not for a required category), whether a recipient who never
    chose gets the category, and the application's cap as (max, per_seconds) or None."""

    category: str
    applies: bool
    default_enabled: bool = True
    cap: tuple[int, int] | None = None


def rules_for(*, application: Application, category: str | None) -> Rules | None:
    """The rules of a send in `category` (a key of the application's categories); None
    without one. An unknown key raises InputInvalid on the field `category`."""
    if not category:
        return None
    found = (
        Category.objects.filter(application=application, key=category)
        .values_list("required", "default_enabled")
        .first()
    )
    if found is None:
        raise InputInvalid(
            f"No category {category!r} in this application; create it with POST /categories.",
            field="category",
        )
    required, default_enabled = found
    return Rules(
        category=category,
        applies=not required,
        default_enabled=default_enabled,
        cap=frequency_cap_of(application),
    )


def frequency_cap_of(application: Application) -> tuple[int, int] | None:
    cap = application.frequency_cap
    if not cap:
        return None
    return int(cap["max"]), int(cap["per_seconds"])


@dataclass
class Decision:
    """What the rules made of a batch of targets: those that get a message, in their order;
    the held ones' `send_after` (the end of their quiet hours) by target pk; and how many
    were left out, by reason."""

    kept: list = field(default_factory=list)
    held: dict = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)


# --- Preferences -------------------------------------------------------------------------------

# Each target's recipient, time zone, whether its preferences refuse the send, and its quiet
# hours (jsonb, null mostly): evaluated in PostgreSQL, so no target's preferences are decoded
# in Python unless it has quiet hours. The same tests as opted_out().
_PREFERENCES = "CASE WHEN s.user_id IS NULL THEN s.preferences ELSE u.preferences END"
_TARGETS_SQL = (
    "SELECT s.id, COALESCE(s.user_id, s.id) AS recipient, s.timezone,"  # noqa: S608 (names are ours)
    " COALESCE(p -> 'channels' ->> s.type = 'false', false)"
    " OR NOT COALESCE((p -> 'categories' -> %(category)s ->> 'enabled')::boolean,"
    " %(default_enabled)s)"
    " OR COALESCE(p -> 'categories' -> %(category)s -> 'channels' ->> s.type = 'false', false)"
    " AS refused, p -> 'quiet_hours' AS quiet"
    f" FROM {Subscription._meta.db_table} s"
    f" LEFT JOIN {User._meta.db_table} u ON u.id = s.user_id"
    f" CROSS JOIN LATERAL (SELECT {_PREFERENCES} AS p) x"
    " WHERE s.id = ANY(%(ids)s::uuid[])"
)


def opted_out(preferences: dict, *, channel: str, category: str, default_enabled: bool) -> bool:
    """Whether `preferences` refuse a message of `category` on `channel`."""
    if preferences.get("channels", {}).get(channel) is False:
        return True
    chosen = preferences.get("categories", {}).get(category) or {}
    if not chosen.get("enabled", default_enabled):
        return True
    return chosen.get("channels", {}).get(channel) is False


@lru_cache(maxsize=256)
def _clock(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def quiet_until(quiet_hours: dict | None, subscription_timezone: str, at: dt.datetime):
    """The end of the quiet hours `at` falls in (aware, UTC), or None when it falls in none.
    The hours are wall-clock times in their own time zone, else the subscription's, else
    UTC; a window whose start is after its end spans midnight. Across a DST change the end
    is the wall-clock end of that night; an end in the repeated hour is its first occurrence,
    and an end inside the skipped hour is read with the offset before the change, so it moves
    forward by the gap (02:30 becomes 03:30 the night clocks go from 02:00 to 03:00): the
    hours last as long as the recipient asked for."""
    if not quiet_hours:
        return None
    start, end = _clock(quiet_hours["start"]), _clock(quiet_hours["end"])
    if start == end:
        return None
    zone = zone_of(quiet_hours.get("timezone") or subscription_timezone)
    local = at.astimezone(zone)
    now = local.time().replace(tzinfo=None)
    if start < end:
        if not start <= now < end:
            return None
        day = local.date()
    elif now >= start:
        day = local.date() + dt.timedelta(days=1)
    elif now < end:
        day = local.date()
    else:
        return None
    until = dt.datetime.combine(day, end, tzinfo=zone).astimezone(dt.UTC)
    # A wall-clock end inside a skipped hour maps to an instant that may precede `at`.
    return until if until > at else None


# --- Frequency cap -----------------------------------------------------------------------------

# Grants up to each recipient's free slots: missing rows are inserted, present ones locked (in
# recipient order, so two batches never deadlock), their stamps outside the window dropped and
# the granted ones appended; RETURNING says how many each got. Every SET expression reads the
# row as it was. With _TARGETS_SQL as a CTE `t`, one statement evaluates and counts a batch.
_KEPT = "ARRAY(SELECT s FROM unnest(w.sent) s WHERE s > %(since)s)"
_GRANT = f"LEAST(EXCLUDED.granted, GREATEST(0, %(max)s - cardinality({_KEPT})))"
_CAPPED_SQL = (
    f"WITH t AS ({_TARGETS_SQL}),"  # noqa: S608 (names are ours)
    " d AS (SELECT recipient, count(*)::int AS demand FROM t WHERE NOT refused GROUP BY recipient),"
    f" g AS (INSERT INTO {FrequencyWindow._meta.db_table} AS w"
    " (recipient, application_id, sent, granted)"
    " SELECT d.recipient, %(application)s,"
    " array_fill(%(now)s::timestamptz, ARRAY[LEAST(d.demand, %(max)s)]), LEAST(d.demand, %(max)s)"
    " FROM d ORDER BY d.recipient"
    f" ON CONFLICT (recipient) DO UPDATE SET granted = {_GRANT},"
    f" sent = {_KEPT} || array_fill(%(now)s::timestamptz, ARRAY[{_GRANT}])"
    " RETURNING recipient, granted)"
    " SELECT t.id, t.recipient, t.timezone, t.refused, t.quiet, g.granted"
    " FROM t LEFT JOIN g ON g.recipient = t.recipient"
)


# --- The rules ---------------------------------------------------------------------------------


def rules_apply(
    *,
    application: Application,
    rules: Rules,
    targets: Sequence,
    now: dt.datetime,
    send_after_for: Callable[[Any], dt.datetime | None],
) -> Decision:
    """Applies `rules` to `targets` (objects with `pk` and `type`, in the order messages
    would be made); `send_after_for(target)` is when it would go (None: now). One statement
    per batch (see the module docstring for the rules). Runs in the caller's transaction: a
    batch that rolls back gives its cap slots back."""
    if not rules.applies or not targets:
        return Decision(kept=list(targets))
    params = {
        "ids": uuid_array(str(t.pk) for t in targets),
        "category": rules.category,
        "default_enabled": rules.default_enabled,
    }
    if rules.cap is not None:
        maximum, per_seconds = rules.cap
        sql = _CAPPED_SQL
        params |= {
            "application": application.pk,
            "now": now,
            "since": now - dt.timedelta(seconds=per_seconds),
            "max": maximum,
        }
    else:
        sql = _TARGETS_SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = {row[0]: row for row in cursor.fetchall()}
    decision = Decision()
    granted: dict = {}
    for target in targets:
        row = found.get(target.pk)
        if row is None:  # deleted meanwhile: claimed as such, as without rules
            decision.kept.append(target)
            continue
        _pk, recipient, timezone, refused, quiet = row[:5]
        if refused:
            decision.skipped[OPTED_OUT] += 1
            continue
        if rules.cap is not None:
            left = granted.setdefault(recipient, row[5] or 0)
            if left <= 0:
                decision.skipped[FREQUENCY_CAP] += 1
                continue
            granted[recipient] = left - 1
        decision.kept.append(target)
        if quiet is not None:
            at = send_after_for(target) or now
            until = quiet_until(_json(quiet), timezone, max(at, now))
            if until is not None:
                decision.held[target.pk] = until
    return decision


def _json(value) -> dict:
    # Django's cursor leaves jsonb as text (JSONField decodes it in from_db_value).
    if isinstance(value, str):
        value = json.loads(value)
    return value or {}
