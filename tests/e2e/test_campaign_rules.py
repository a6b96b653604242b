"""Campaigns under the recipients' rules, end to end with real workers and the fake
providers: local-time delivery across time zones, two campaigns sharing a frequency cap, and
opted-out users."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Count
from django.utils import timezone

from accounts.models import Category
from campaigns.models import CampaignRun
from core import crypto
from messaging import delivery
from messaging.models import Message, MessageStatus, Subscription, User

from .conftest import wait_for
from .test_campaigns import api, campaign_status, create_campaign

pytestmark = pytest.mark.e2e

ZONES = ("Asia/Seoul", "Europe/Berlin", "America/New_York")


def users_with_subscriptions(app, count: int, *, prefix: str = "u") -> list[Subscription]:
    """`count` users, each with one iOS subscription (tokens encrypted and digested as the
    service does)."""
    users = User.objects.bulk_create(
        User(application=app, external_user_id=f"{prefix}{i}") for i in range(count)
    )
    rows = []
    for i, user in enumerate(users):
        token = f"{0xE2E0000 + i:064x}"
        rows.append(
            Subscription(
                application=app,
                user=user,
                type="iOSPush",
                token=token,
                token_digest=crypto.token_digest("iOSPush", token),
                last_active_at=timezone.now(),
            )
        )
    return Subscription.objects.bulk_create(rows)


def run_of(campaign_id) -> CampaignRun:
    return CampaignRun.objects.get(campaign_id=campaign_id)


def next_wall_clock(clock: str, zone: ZoneInfo, after: datetime) -> datetime:
    """Independently of campaigns.local_time: the first `clock` (HH:MM) on `zone`'s wall
    clock after `after` (no DST change falls in the next days of these zones' tests)."""
    hours, minutes = map(int, clock.split(":"))
    local = after.astimezone(zone)
    candidate = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    while candidate <= local:
        candidate = (candidate + timedelta(days=1)).replace(hour=hours, minute=minutes)
    return candidate.astimezone(UTC)


def sweeping(predicate):
    """The predicate, after a sweep (beat does not run in the tests)."""

    def check():
        delivery.pending_sweep()
        return predicate()

    return check


def test_local_time_delivery_sends_each_zone_at_its_own_hour(live_app, fake_providers):
    # The next minute on Seoul's clock: Seoul's target is due within a minute, the others
    # hours later. Not in a minute's last seconds: the run starts after its hour otherwise.
    if timezone.now().second >= 50:
        time.sleep(61 - timezone.now().second)
    seoul = ZoneInfo(ZONES[0])
    clock = (timezone.now().astimezone(seoul) + timedelta(minutes=1)).strftime("%H:%M")
    targets = users_with_subscriptions(live_app, len(ZONES))
    for subscription, zone in zip(targets, ZONES, strict=True):
        Subscription.objects.filter(pk=subscription.pk).update(timezone=zone)
    by_zone = {zone: s.pk for s, zone in zip(targets, ZONES, strict=True)}
    campaign = create_campaign(
        live_app, name="morning", title="Good morning", body="Local", delivery={"local_time": clock}
    )
    assert campaign["delivery"] == {"local_time": clock}
    response = api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/execute")
    assert response.status_code == 202
    wait_for(lambda: run_of(campaign["id"]).fanout_done, timeout=30, what="the fan-out")
    run = run_of(campaign["id"])
    messages = {m.subscription_id: m for m in Message.objects.filter(campaign_run_id=run.pk)}
    for zone, subscription_id in by_zone.items():
        expected = next_wall_clock(clock, ZoneInfo(zone), run.started_at)
        assert messages[subscription_id].send_after == expected, zone
    assert run.scheduled == 3

    seoul_message = messages[by_zone[ZONES[0]]].pk
    wait_for(
        sweeping(lambda: Message.objects.get(pk=seoul_message).status == MessageStatus.SUCCESSFUL),
        timeout=90,
        what="Seoul's message at its hour",
    )
    assert Message.objects.get(pk=seoul_message).sent_at >= messages[by_zone[ZONES[0]]].send_after
    later = [messages[by_zone[zone]].pk for zone in ZONES[1:]]
    assert set(Message.objects.filter(pk__in=later).values_list("status", flat=True)) == {
        MessageStatus.PENDING
    }
    detail = api(live_app.server_key).get(f"/api/v1/campaigns/{campaign['id']}").json()
    assert detail["status"] == "running"
    assert detail["latest_run"]["status"] == "running"
    assert detail["latest_run"]["waiting"] == 2
    assert (detail["stats"]["pending"], detail["stats"]["successful"]) == (2, 1)
    assert fake_providers.apns_stats()["requests"] == 1

    # Their hour comes (moved into the past): the sweep hands them over, the run completes.
    Message.objects.filter(pk__in=later).update(send_after=timezone.now() - timedelta(seconds=1))
    wait_for(
        sweeping(lambda: campaign_status(campaign["id"]) == "completed"),
        timeout=60,
        what="the campaign to complete",
    )
    run.refresh_from_db()
    assert (run.successful, run.pending, run.scheduled) == (3, 0, 3)
    detail = api(live_app.server_key).get(f"/api/v1/campaigns/{campaign['id']}").json()
    assert detail["latest_run"]["waiting"] == 0
    assert fake_providers.apns_stats()["requests"] == 3


def test_two_campaigns_in_one_capped_category_give_each_user_one_message(live_app):
    Category.objects.create(application=live_app, key="offers", name="Offers")
    live_app.frequency_cap = {"max": 1, "per_seconds": 3600}
    live_app.save(update_fields=["frequency_cap"])
    users = 600
    targets = users_with_subscriptions(live_app, users)
    ids = []
    for name in ("spring", "summer"):
        ids.append(
            create_campaign(live_app, name=name, title=name, body="Sale", category="offers")["id"]
        )
    client = api(live_app.server_key)
    for campaign_id in ids:  # both fan out at once, batch by batch
        assert client.post(f"/api/v1/campaigns/{campaign_id}/execute").status_code == 202

    wait_for(
        lambda: all(campaign_status(c) == "completed" for c in ids),
        timeout=120,
        what="both campaigns to complete",
    )

    per_subscription = Counter(
        dict(
            Message.objects.filter(campaign_id__in=ids)
            .values_list("subscription_id")
            .annotate(n=Count("id"))
            .values_list("subscription_id", "n")
        )
    )
    assert set(per_subscription) == {s.pk for s in targets}
    assert set(per_subscription.values()) == {1}
    assert Message.objects.filter(campaign_id__in=ids, status="successful").count() == users
    stats = [client.get(f"/api/v1/campaigns/{c}").json()["stats"] for c in ids]
    assert sum(s["skipped_by_reason"]["frequency_cap"] for s in stats) == users
    assert sum(s["skipped"] for s in stats) == users
    assert sum(s["targeted"] for s in stats) == 2 * users
    assert all(s["skipped_by_reason"]["opted_out"] == 0 for s in stats)


def test_opted_out_users_get_nothing_and_are_counted(live_app, fake_providers):
    Category.objects.create(application=live_app, key="offers", name="Offers")
    targets = users_with_subscriptions(live_app, 10)
    opted_out = targets[:4]
    User.objects.filter(pk__in=[s.user_id for s in opted_out[:2]]).update(
        preferences={"categories": {"offers": {"enabled": False}}}
    )
    User.objects.filter(pk__in=[s.user_id for s in opted_out[2:]]).update(
        preferences={"channels": {"iOSPush": False}}
    )
    campaign = create_campaign(live_app, name="news", title="News", body="!", category="offers")
    api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/execute")

    wait_for(
        lambda: campaign_status(campaign["id"]) == "completed",
        timeout=60,
        what="the campaign to complete",
    )

    detail = api(live_app.server_key).get(f"/api/v1/campaigns/{campaign['id']}").json()
    assert detail["stats"]["skipped"] == 4
    assert detail["stats"]["skipped_by_reason"] == {"opted_out": 4, "frequency_cap": 0}
    assert (detail["stats"]["targeted"], detail["stats"]["successful"]) == (10, 6)
    reached = set(
        Message.objects.filter(campaign_id=campaign["id"]).values_list("subscription_id", flat=True)
    )
    assert reached == {s.pk for s in targets[4:]}
    assert fake_providers.apns_stats()["requests"] == 6
