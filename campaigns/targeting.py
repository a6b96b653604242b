"""Targeting criteria: validated once, compiled into one indexed query over subscriptions."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from accounts.models import Application
from core.countries import is_country_code
from core.validation import MAX_JSON_BYTES, InputInvalid, check_json
from messaging.models import Subscription, SubscriptionType

KNOWN_KEYS = ("tags", "user_tags", "last_active_after", "countries", "languages", "channels")
# Tag criteria: the subscription's own tags, and the tags of the user it belongs to.
TAG_KEYS = ("tags", "user_tags")


class CriteriaInvalid(ValueError):
    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(str(errors))


def _string_list(value, name: str, errors: dict, check=None) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        errors[name] = ["A non-empty list of strings."]
        return []
    if check:
        bad = [v for v in value if not check(v)]
        if bad:
            errors[name] = [f"Not valid: {', '.join(bad)}."]
    return value


def criteria_clean(criteria) -> dict:
    """The criteria in canonical form; raises CriteriaInvalid naming every bad key."""
    if criteria is None:
        return {}
    if not isinstance(criteria, dict):
        raise CriteriaInvalid({"targeting_criteria": ["An object."]})
    try:  # every string reaches a query: none may hold what PostgreSQL refuses
        check_json(criteria, field="targeting_criteria", max_bytes=MAX_JSON_BYTES)
    except InputInvalid as exc:
        raise CriteriaInvalid(exc.errors) from exc
    errors: dict[str, list[str]] = {}
    for key in criteria:
        if key not in KNOWN_KEYS:
            errors[key] = [f"Unknown targeting key; known: {', '.join(KNOWN_KEYS)}."]
    clean: dict = {}
    for key in TAG_KEYS:
        if key not in criteria:
            continue
        tags = criteria[key]
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            errors[key] = ["An object of string -> string."]
        else:
            clean[key] = tags
    if "last_active_after" in criteria:
        value = criteria["last_active_after"]
        try:
            moment = parse_datetime(value) if isinstance(value, str) else None
        except ValueError:  # well formed but impossible, e.g. month 13
            moment = None
        if moment is None or moment.tzinfo is None:
            errors["last_active_after"] = ["An ISO 8601 date-time with a time zone."]
        else:
            clean["last_active_after"] = moment.isoformat()
    if "countries" in criteria:
        countries = _string_list(criteria["countries"], "countries", errors, is_country_code)
        clean["countries"] = sorted({c.upper() for c in countries})
    if "languages" in criteria:
        clean["languages"] = _string_list(criteria["languages"], "languages", errors)
    if "channels" in criteria:
        clean["channels"] = _string_list(
            criteria["channels"], "channels", errors, lambda v: v in SubscriptionType.values
        )
    if errors:
        raise CriteriaInvalid(errors)
    return clean


def audience(application: Application, criteria: dict) -> QuerySet[Subscription]:
    """The enabled subscriptions matching cleaned criteria, as one query.

    Tags use `@>` (the GIN jsonb_path_ops index) on PostgreSQL; user tags join each
    subscription's user and use the same kind of index on the users' tags (a subscription
    without a user has no user tags, so it never matches them); the other criteria use the
    (application, ...) b-tree indexes, and walking in id order uses the partial index on
    enabled subscriptions."""
    qs = Subscription.objects.filter(application=application, enabled=True)
    for key, field in (("tags", "tags"), ("user_tags", "user__tags")):
        if not criteria.get(key):
            continue
        if connection.vendor == "postgresql":
            qs = qs.filter(**{f"{field}__contains": criteria[key]})
        else:  # the SQLite fallback has no JSON containment
            qs = qs.filter(**{f"{field}__{k}": v for k, v in criteria[key].items()})
    if criteria.get("last_active_after"):
        qs = qs.filter(last_active_at__gte=datetime.fromisoformat(criteria["last_active_after"]))
    if criteria.get("countries"):
        qs = qs.filter(country__in=criteria["countries"])
    if criteria.get("languages"):
        languages = Q()
        for language in criteria["languages"]:
            # "ko" also matches "ko-KR".
            languages |= Q(language__iexact=language) | Q(language__istartswith=f"{language}-")
        qs = qs.filter(languages)
    if criteria.get("channels"):
        qs = qs.filter(type__in=criteria["channels"])
    return qs
