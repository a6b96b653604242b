"""The number of SQL statements of the API's send and of a delivery batch, whatever their
size: a query per message would show here. COPY (psycopg's copy(), used from
core.bulk.COPY_FROM_ROWS rows on) bypasses Django's cursor wrapper, so it is not
counted; it is one per table per batch."""

from __future__ import annotations

from collections import Counter

import pytest

from messaging import delivery
from messaging.models import Message, MessageStatus
from tests.conftest import subscription_create
from tests.messaging.test_delivery_pipeline import ids, ios_token, send

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("targets", "statements"),
    [
        # The API key with its application; the targets (one SELECT by ids); the messages
        # inserted with the quota's conditional UPDATE as a CTE (one statement).
        (1, 3),
        # The API key; the targets; then in a savepoint the messages by COPY (not counted)
        # and the quota's UPDATE: SAVEPOINT, UPDATE, RELEASE.
        (100, 5),
    ],
)
def test_a_send_takes_the_same_statements_for_any_number_of_targets(
    server_api, app, django_assert_num_queries, targets, statements
):
    subscriptions = [subscription_create(app.application) for _ in range(targets)]
    if targets == 1:
        body = {"subscription_id": str(subscriptions[0].pk), "title": "x"}
    else:
        body = {"subscription_ids": [str(s.pk) for s in subscriptions], "title": "x"}
    # A key's first request records its last_used_at (an UPDATE that later requests skip
    # for a while, messaging.services); the steady state is measured.
    assert server_api.post("/api/v1/messages", body, format="json").status_code == 202

    with django_assert_num_queries(statements):
        response = server_api.post("/api/v1/messages", body, format="json")

    assert response.status_code == 202, response.content
    assert Message.objects.count() == 2 * targets


@pytest.mark.parametrize("size", [1, 50])
def test_a_delivery_batch_takes_six_statements_for_any_size(
    fake_app, providers, django_assert_num_queries, size
):
    subscriptions = [subscription_create(fake_app, token=ios_token()) for _ in range(size)]
    messages = send(fake_app, subscriptions)

    # SAVEPOINT (deliver_batch's transaction, inside the test's); the claim (messages and
    # tokens, one SELECT ... FOR UPDATE); the applications' credentials; the statuses' UPDATE
    # from jsonb_to_recordset with the events' INSERT in the same statement, whatever the
    # batch's size; the delivery rollups' upsert (messaging.delivery.rollups); RELEASE
    # SAVEPOINT.
    with django_assert_num_queries(6):
        report = delivery.deliver_batch(ids(messages), queue="messages")

    assert (report.claimed, report.outcomes) == (size, Counter({"successful": size}))
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SUCCESSFUL}
