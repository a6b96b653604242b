"""Campaigns executed, paused, resumed and cancelled leave one audit row each, with the key,
the admin user or the system (a scheduled run from beat) as the actor."""

from __future__ import annotations

import pytest

from accounts import audit
from accounts.models import AuditEntry
from campaigns import tasks
from campaigns.models import Campaign, CampaignRun
from tests.conftest import subscription_create

from .conftest import campaign_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/campaigns"
CHANGELIST = "/admin/campaigns/campaign/"
CAMPAIGN_ACTIONS = (
    audit.CAMPAIGN_EXECUTED,
    audit.CAMPAIGN_PAUSED,
    audit.CAMPAIGN_RESUMED,
    audit.CAMPAIGN_CANCELLED,
)


def campaign_rows(campaign: Campaign) -> list[tuple[str, str]]:
    return [
        (entry.action, entry.actor)
        for entry in AuditEntry.objects.filter(
            object_type="campaign", object_id=str(campaign.pk)
        ).order_by("id")
    ]


@pytest.fixture
def audience(app):
    return [subscription_create(app.application) for _ in range(3)]


def test_the_api_audits_each_step_with_the_acting_key(app, server_api, audience):
    campaign = campaign_create(app.application)
    for step, status in (("execute", 202), ("pause", 200), ("resume", 202), ("cancel", 200)):
        response = server_api.post(f"{URL}/{campaign.pk}/{step}")
        assert response.status_code == status, response.content

    actor = f"api_key:{app.server.api_key.prefix}"
    assert campaign_rows(campaign) == [(action, actor) for action in CAMPAIGN_ACTIONS]
    executed = AuditEntry.objects.get(action=audit.CAMPAIGN_EXECUTED)
    run = CampaignRun.objects.get(campaign=campaign)
    assert executed.application_id == app.application.pk
    assert executed.api_key_id == app.server.api_key.pk
    assert executed.details == {"run_id": str(run.pk), "run_number": 1, "trigger": "execute"}
    cancelled = AuditEntry.objects.get(action=audit.CAMPAIGN_CANCELLED)
    assert cancelled.details == {"run_ids": [str(run.pk)]}


def test_a_refused_step_leaves_no_row(app, server_api):
    campaign = campaign_create(app.application)

    assert server_api.post(f"{URL}/{campaign.pk}/pause").status_code == 409

    assert campaign_rows(campaign) == []


def test_the_admin_audits_each_step_with_the_user(admin_client, app, audience):
    campaign = campaign_create(app.application)
    confirm = {"confirm": "yes"}
    assert admin_client.post(f"{CHANGELIST}{campaign.pk}/execute/", confirm).status_code == 302
    for action in ("pause_selected", "resume_selected"):
        admin_client.post(
            CHANGELIST, {"action": action, "_selected_action": [str(campaign.pk)], **confirm}
        )
    assert admin_client.post(f"{CHANGELIST}{campaign.pk}/cancel/", confirm).status_code == 302

    assert campaign_rows(campaign) == [(action, "admin:root") for action in CAMPAIGN_ACTIONS]


def test_a_scheduled_run_started_by_beat_is_audited_as_the_system(app, audience):
    campaign = campaign_create(app.application)

    run_id = tasks.start_scheduled_run(str(campaign.pk), "scheduled_at")

    assert run_id is not None
    assert campaign_rows(campaign) == [(audit.CAMPAIGN_EXECUTED, audit.SYSTEM)]
    entry = AuditEntry.objects.get(action=audit.CAMPAIGN_EXECUTED)
    assert entry.details["trigger"] == "scheduled_at" and entry.details["run_id"] == run_id
