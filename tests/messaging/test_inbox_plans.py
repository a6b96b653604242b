"""The inbox's query plans, by EXPLAIN on a seeded table: 10,000 items in one inbox among
~200,000 in the application. Every state's page is a range read of its own partial index
with no sort (the LIMIT stops it at the page's end), and the count reads one InboxCount row
by primary key, never the items. At 1M items the plans are the same: each page reads its
~100 index entries (one more B-tree level at most) and the count one row, so both stay at
their 10,000-item cost; only a page far down a cursor costs more, by the index levels."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.inbox.selectors import inbox_count_get, inbox_item_list
from messaging.models import InboxCount
from tests.conftest import application_with_keys, subscription_create

pytestmark = pytest.mark.django_db

INBOX_ITEMS = 10_000
OTHER_INBOXES = 1_900  # x 100 items each
PAGE = 101  # a page of 100 and the look-ahead the cursor pagination reads

# message_id, application_id, subscription_id, created_at, read_at, archived_at per row; the
# target inbox's items: 7,000 unread, 2,000 read, 1,000 archived.
_SEED = """
WITH rows AS (
    SELECT gen_random_uuid() AS id, %(app)s::uuid AS app, sub,
           now() - n * interval '1 second' AS at,
           CASE WHEN n %% 10 IN (7, 8) THEN now() END AS read_at,
           CASE WHEN n %% 10 = 9 THEN now() END AS archived_at
    FROM (
        SELECT %(inbox)s::uuid AS sub, n FROM generate_series(1, %(inbox_items)s) n
        UNION ALL
        SELECT s.sub, n FROM (
            SELECT gen_random_uuid() AS sub FROM generate_series(1, %(others)s)
        ) s, generate_series(1, 100) n
    ) seeded
), messages AS (
    INSERT INTO messaging_message (id, application_id, subscription_id, channel, title, body,
        data, parts, priority, collapse_id, status, attempts, error_code, error_message,
        provider_id, created_at, sent_at)
    SELECT id, app, sub, 'InAppMessage', 'title', 'body', '{}', '{}', 'normal', '',
           'successful', 1, '', '', '', at, at
    FROM rows
    RETURNING id
)
INSERT INTO messaging_inboxitem (message_id, application_id, subscription_id, title, body,
    data, in_app, created_at, read_at, archived_at)
SELECT r.id, r.app, r.sub, 'title', 'body', '{}', '{}', r.at, r.read_at, r.archived_at
FROM rows r JOIN messages m ON m.id = r.id
"""


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """Seeded once for the module (committed), removed after it."""
    with django_db_blocker.unblock():
        app = application_with_keys("inbox-plans")
        subscription = _seed(app)
        yield subscription
        with connection.cursor() as cursor:
            for table in ("messaging_inboxitem", "messaging_message"):
                cursor.execute(
                    f"DELETE FROM {table} WHERE application_id = %s",  # noqa: S608
                    [str(app.application.pk)],
                )
        app.application.delete()


def _seed(app):
    subscription = subscription_create(app.application, type="InAppMessage", token="seeded")
    with connection.cursor() as cursor:
        cursor.execute(
            _SEED,
            {
                "app": str(app.application.pk),
                "inbox": str(subscription.pk),
                "inbox_items": INBOX_ITEMS,
                "others": OTHER_INBOXES,
            },
        )
        cursor.execute("ANALYZE messaging_inboxitem")
    InboxCount.objects.create(subscription=subscription, unread=7000, total=9000)
    return subscription


def plan(queryset) -> str:
    return queryset.order_by("-created_at")[:PAGE].explain()


@pytest.mark.parametrize(
    ("state", "index", "expected"),
    [
        ("unread", "inbox_sub_unread", 7000),
        ("read", "inbox_sub_read", 2000),
        ("archived", "inbox_sub_archived", 1000),
        ("all", "inbox_sub_all", 9000),
    ],
)
def test_each_state_pages_through_its_own_index_without_a_sort(seeded, state, index, expected):
    items = inbox_item_list(subscription=seeded, state=state)
    assert items.count() == expected

    text = plan(items)

    assert f"Index Scan using {index} on messaging_inboxitem" in text, text
    assert "Seq Scan" not in text and "Sort" not in text and "Bitmap" not in text, text


def test_a_later_page_is_a_range_of_the_same_index(seeded):
    items = inbox_item_list(subscription=seeded, state="all")
    middle = items.order_by("-created_at")[5000].created_at

    text = plan(items.filter(created_at__lt=middle))

    assert "Index Scan using inbox_sub_all" in text and "Sort" not in text, text


def test_the_count_reads_one_row_and_never_the_items(seeded):
    with CaptureQueriesContext(connection) as queries:
        assert inbox_count_get(subscription=seeded) == (7000, 9000)
    [query] = queries.captured_queries
    assert "messaging_inboxitem" not in query["sql"]
    text = InboxCount.objects.filter(subscription_id=seeded.pk).explain()
    assert "Index Scan using messaging_inboxcount_pkey" in text or "Index Only Scan" in text, text


def test_an_unknown_inbox_reads_no_items(seeded):
    assert not inbox_item_list(subscription=type(seeded)(pk=uuid.uuid4())).exists()
