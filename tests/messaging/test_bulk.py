"""The small-insert statement that also carries the API's quota CTE."""

from __future__ import annotations

import uuid

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone

from core.bulk import copy_rows, insert_statement, uuid_array
from messaging.models import SubscriptionEvent
from tests.conftest import application_with_keys, subscription_create


def test_insert_statement_casts_each_value_to_its_column_type_and_keeps_json(db):
    application = application_with_keys("bulk").application
    subscription = subscription_create(application)
    details = {"nested": {"a": [1, 2]}, "text": "é"}
    copy_rows(
        SubscriptionEvent,
        ("subscription_id", "kind", "actor", "changes", "created_at"),
        [(subscription.pk, "updated", "test", details, timezone.now())] * 2,
    )
    rows = SubscriptionEvent.objects.filter(subscription=subscription, kind="updated")
    assert [e.changes for e in rows] == [details, details]


def test_a_too_long_value_is_refused_not_cut(db):
    application = application_with_keys("bulk-long").application
    subscription = subscription_create(application)
    sql, params = insert_statement(
        SubscriptionEvent,
        ("subscription_id", "kind", "actor", "changes", "created_at"),
        [(subscription.pk, "x" * 500, "test", {}, timezone.now())],
    )
    with pytest.raises(DataError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    assert not SubscriptionEvent.objects.filter(subscription=subscription, actor="test").exists()


def test_uuid_array_is_a_literal_of_uuids_only(db):
    ids = [uuid.uuid4(), uuid.uuid4()]
    literal = uuid_array([ids[0], str(ids[1])])
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::uuid[]", [literal])
        assert cursor.fetchone()[0] == ids
    assert uuid_array([]) == "{}"
    for bad in (["x"], [f"{ids[0]}}}"], [f"{ids[0]},NULL"], [f'"{ids[0]}"']):
        with pytest.raises(ValueError):
            uuid_array(bad)
