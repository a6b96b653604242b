"""Targeting criteria: their canonical form, their errors, the exact audience they select, and
the GIN index the tags query uses on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from campaigns.targeting import CriteriaInvalid, audience, criteria_clean
from core import crypto
from messaging.models import Subscription, User
from messaging.services.subscriptions import subscription_disable
from messaging.services.users import user_tags_update
from tests.conftest import fcm_token, subscription_create

pytestmark = pytest.mark.django_db


# --- criteria_clean ----------------------------------------------------------------------------


def test_every_key_comes_back_in_canonical_form():
    clean = criteria_clean(
        {
            "tags": {"plan": "gold", "tier": "1"},
            "user_tags": {"tier": "vip"},
            "last_active_after": "2026-10-01T09:00:00+09:00",
            "countries": ["kr", "JP", "KR"],
            "languages": ["ko", "en-US"],
            "channels": ["iOSPush", "AndroidPush"],
        }
    )

    assert clean == {
        "tags": {"plan": "gold", "tier": "1"},
        "user_tags": {"tier": "vip"},
        "last_active_after": "2026-10-01T09:00:00+09:00",
        "countries": ["JP", "KR"],  # upper case, sorted, once each
        "languages": ["ko", "en-US"],
        "channels": ["iOSPush", "AndroidPush"],
    }


@pytest.mark.parametrize("empty", [None, {}])
def test_no_criteria_means_everyone(empty):
    assert criteria_clean(empty) == {}


def test_a_z_suffix_is_kept_as_utc():
    assert criteria_clean({"last_active_after": "2026-10-01T00:00:00Z"}) == {
        "last_active_after": "2026-10-01T00:00:00+00:00"
    }


@pytest.mark.parametrize(
    ("criteria", "key"),
    [
        ({"segment": "vip"}, "segment"),
        ({"tags": ["plan", "gold"]}, "tags"),
        ({"tags": {"plan": 1}}, "tags"),
        ({"tags": {"plan": None}}, "tags"),
        ({"tags": {"plan": {"nested": "x"}}}, "tags"),
        ({"user_tags": ["tier", "vip"]}, "user_tags"),
        ({"user_tags": {"tier": 1}}, "user_tags"),
        ({"user_tags": {"tier": None}}, "user_tags"),
        ({"countries": ["KOR"]}, "countries"),
        ({"countries": ["K1"]}, "countries"),
        ({"countries": "KR"}, "countries"),
        ({"countries": []}, "countries"),
        ({"countries": [82]}, "countries"),
        ({"languages": "ko"}, "languages"),
        ({"languages": [None]}, "languages"),
        ({"channels": ["Pigeon"]}, "channels"),
        ({"channels": "iOSPush"}, "channels"),
        ({"last_active_after": "2026-10-01T00:00:00"}, "last_active_after"),  # no zone
        ({"last_active_after": "yesterday"}, "last_active_after"),
        ({"last_active_after": 1760000000}, "last_active_after"),
        ({"last_active_after": "2026-13-45T00:00:00Z"}, "last_active_after"),
    ],
)
def test_a_bad_criterion_is_named(criteria, key):
    with pytest.raises(CriteriaInvalid) as caught:
        criteria_clean(criteria)

    assert list(caught.value.errors) == [key]
    assert all(isinstance(m, str) and m for m in caught.value.errors[key])


def test_every_bad_key_is_named_at_once():
    with pytest.raises(CriteriaInvalid) as caught:
        criteria_clean({"tags": {"a": 1}, "countries": ["KOR"], "age": 3})

    assert set(caught.value.errors) == {"tags", "countries", "age"}


def test_criteria_must_be_an_object():
    with pytest.raises(CriteriaInvalid) as caught:
        criteria_clean(["tags"])

    assert list(caught.value.errors) == ["targeting_criteria"]


# --- audience ----------------------------------------------------------------------------------


def _ids(queryset) -> set:
    return set(queryset.values_list("pk", flat=True))


def test_tags_match_by_containment_of_every_given_tag(app, other_app):
    gold_kr = subscription_create(app.application, tags={"plan": "gold", "region": "kr"})
    gold_kr_more = subscription_create(
        app.application, tags={"plan": "gold", "region": "kr", "beta": "1"}
    )
    subscription_create(app.application, tags={"plan": "gold"})
    subscription_create(app.application, tags={"plan": "silver", "region": "kr"})
    subscription_create(app.application)
    subscription_create(other_app.application, tags={"plan": "gold", "region": "kr"})

    found = audience(app.application, criteria_clean({"tags": {"plan": "gold", "region": "kr"}}))

    assert _ids(found) == {gold_kr.pk, gold_kr_more.pk}


def _tag_user(application, external_user_id: str, **tags) -> None:
    user_tags_update(application=application, external_user_id=external_user_id, tags=tags)


def test_user_tags_match_the_subscriptions_of_users_with_every_given_tag(app, other_app):
    vip_phone = subscription_create(app.application, external_user_id="kim")
    vip_mail = subscription_create(
        app.application, type="Email", token="kim@example.com", external_user_id="kim"
    )
    _tag_user(app.application, "kim", tier="vip", city="Seoul")
    subscription_create(app.application, external_user_id="lee")
    _tag_user(app.application, "lee", tier="basic", city="Seoul")
    subscription_create(app.application, external_user_id="park")  # a user without tags
    # The user's tags, not the subscription's, are what user_tags reads.
    subscription_create(app.application, tags={"tier": "vip"})
    subscription_create(other_app.application, external_user_id="kim")
    _tag_user(other_app.application, "kim", tier="vip")
    disabled = subscription_create(app.application, external_user_id="kim")
    subscription_disable(subscription_id=disabled.pk, reason="test")

    found = audience(app.application, criteria_clean({"user_tags": {"tier": "vip"}}))

    assert _ids(found) == {vip_phone.pk, vip_mail.pk}
    both = criteria_clean({"user_tags": {"tier": "vip"}, "channels": ["Email"]})
    assert _ids(audience(app.application, both)) == {vip_mail.pk}
    with_subscription_tags = criteria_clean(
        {"user_tags": {"city": "Seoul"}, "tags": {"tier": "vip"}}
    )
    assert _ids(audience(app.application, with_subscription_tags)) == set()


def test_last_active_after_includes_its_own_instant(app):
    boundary = datetime(2026, 10, 1, tzinfo=UTC)
    at_it, after_it, before_it, never = (subscription_create(app.application) for _ in range(4))
    for subscription, moment in [
        (at_it, boundary),
        (after_it, boundary + timedelta(microseconds=1)),
        (before_it, boundary - timedelta(microseconds=1)),
        (never, None),
    ]:
        Subscription.objects.filter(pk=subscription.pk).update(last_active_at=moment)

    # The same instant written in Seoul time.
    found = audience(
        app.application, criteria_clean({"last_active_after": "2026-10-01T09:00:00+09:00"})
    )

    assert _ids(found) == {at_it.pk, after_it.pk}


def test_countries_match_in_any_case_given(app):
    kr = subscription_create(app.application, country="KR")
    jp = subscription_create(app.application, country="JP")
    subscription_create(app.application, country="US")
    subscription_create(app.application)

    found = audience(app.application, criteria_clean({"countries": ["kr", "jp"]}))

    assert _ids(found) == {kr.pk, jp.pk}


def test_a_base_language_matches_its_regional_variants(app):
    ko = subscription_create(app.application, language="ko")
    ko_kr = subscription_create(app.application, language="ko-KR")
    subscription_create(app.application, language="kok")  # Konkani, not Korean
    subscription_create(app.application, language="en")
    subscription_create(app.application)

    assert _ids(audience(app.application, criteria_clean({"languages": ["ko"]}))) == {
        ko.pk,
        ko_kr.pk,
    }
    # A regional criterion is that region only.
    assert _ids(audience(app.application, criteria_clean({"languages": ["ko-KR"]}))) == {ko_kr.pk}


def test_channels_select_subscription_types(app):
    ios = subscription_create(app.application, type="iOSPush")
    android = subscription_create(app.application, type="AndroidPush", token=fcm_token())
    subscription_create(app.application, type="Email", token="kim@example.com")

    found = audience(app.application, criteria_clean({"channels": ["iOSPush", "AndroidPush"]}))

    assert _ids(found) == {ios.pk, android.pk}


def test_disabled_subscriptions_and_other_applications_are_left_out(app, other_app):
    kept = subscription_create(app.application, tags={"plan": "gold"})
    disabled = subscription_create(app.application, tags={"plan": "gold"})
    subscription_disable(subscription_id=disabled.pk, reason="test")
    subscription_create(other_app.application, tags={"plan": "gold"})

    assert _ids(audience(app.application, {})) == {kept.pk}
    assert _ids(audience(app.application, criteria_clean({"tags": {"plan": "gold"}}))) == {kept.pk}


def test_all_criteria_together_are_and_ed(app):
    match = subscription_create(
        app.application, tags={"plan": "gold"}, country="KR", language="ko-KR"
    )
    subscription_create(app.application, tags={"plan": "gold"}, country="KR", language="en")
    subscription_create(app.application, tags={"plan": "gold"}, country="JP", language="ko")
    subscription_create(
        app.application, type="Email", token="a@example.com", tags={"plan": "gold"}, country="KR"
    )

    found = audience(
        app.application,
        criteria_clean(
            {
                "tags": {"plan": "gold"},
                "countries": ["KR"],
                "languages": ["ko"],
                "channels": ["iOSPush"],
                "last_active_after": "2000-01-01T00:00:00Z",
            }
        ),
    )

    assert _ids(found) == {match.pk}


# --- The index -----------------------------------------------------------------------------------


def test_the_tags_query_uses_the_gin_index(app):
    assert connection.vendor == "postgresql"
    wanted = subscription_create(app.application, tags={"plan": "gold", "region": "kr"})
    # Filler rows, inserted in bulk (registering 2000 devices one by one adds nothing here).
    Subscription.objects.bulk_create(
        Subscription(
            application=app.application,
            type="iOSPush",
            token=f"{n:064x}",
            token_digest=crypto.token_digest("iOSPush", f"{n:064x}"),
            tags={"plan": "silver" if n % 2 else "bronze", "n": str(n)},
        )
        for n in range(10_000, 12_000)
    )
    queryset = audience(app.application, criteria_clean({"tags": {"plan": "gold"}}))
    sql, params = queryset.query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_subscription")
        # On a table this small the planner may well prefer a scan; the question is whether
        # the index can serve the query at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "sub_tags_gin" in plan, plan
    assert _ids(queryset) == {wanted.pk}


def test_the_user_tags_query_can_use_the_users_gin_index(app):
    assert connection.vendor == "postgresql"
    wanted = subscription_create(app.application, external_user_id="kim")
    _tag_user(app.application, "kim", tier="vip")
    # Filler users, each with a subscription, inserted in bulk.
    users = User.objects.bulk_create(
        User(application=app.application, external_user_id=f"u{n}", tags={"tier": "basic"})
        for n in range(2000)
    )
    Subscription.objects.bulk_create(
        Subscription(
            application=app.application,
            user=user,
            type="iOSPush",
            token=f"{n:064x}",
            token_digest=crypto.token_digest("iOSPush", f"{n:064x}"),
        )
        for n, user in enumerate(users, 10_000)
    )
    queryset = audience(app.application, criteria_clean({"user_tags": {"tier": "vip"}}))
    sql, params = queryset.query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_user")
        cursor.execute("ANALYZE messaging_subscription")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "user_tags_gin" in plan, plan
    assert _ids(queryset) == {wanted.pk}
