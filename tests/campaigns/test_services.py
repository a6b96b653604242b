"""The campaign rules live in the services: campaign_create, campaign_update and
campaign_validate refuse with domain errors naming the fields as the API does, whichever
interface calls them (the API's serializers and the admin's forms only parse)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignStatus
from core.exceptions import InvalidTransition, ValidationFailed
from tests.conftest import subscription_create

from .conftest import beat_rows, campaign_create, in_an_hour, template_create

pytestmark = pytest.mark.django_db


def refusal(call, **fields) -> dict:
    with pytest.raises(ValidationFailed) as caught:
        call(**fields)
    assert caught.value.code == "validation_error"
    return caught.value.details


def test_a_template_and_content_of_ones_own_are_refused_together(app):
    version = template_create(app.application)

    details = refusal(
        services.campaign_create,
        application=app.application,
        name="x",
        template=version.template,
        title="Sale",
        data={"a": "b"},
        parts={"sms": {"text": "x"}, "email": {}},
    )

    assert details == dict.fromkeys(["title", "data", "sms"], [services.BOTH_CONTENTS])
    assert not Campaign.objects.exists()


def test_scheduled_at_and_schedule_are_refused_together(app):
    details = refusal(
        services.campaign_create,
        application=app.application,
        name="x",
        title="Sale",
        scheduled_at=in_an_hour(),
        schedule={"crontab": "0 9 * * 1", "timezone": "UTC"},
    )

    assert details == {"schedule": [services.BOTH_SCHEDULES]}


def test_a_campaign_needs_content(app):
    details = refusal(services.campaign_create, application=app.application, name="x")

    assert details == {"non_field_errors": [services.NO_CONTENT]}
    assert not Campaign.objects.exists()


def test_an_update_that_leaves_no_content_is_refused(app):
    version = template_create(app.application)
    campaign = campaign_create(app.application, template=version.template)

    details = refusal(services.campaign_update, campaign=campaign, template=None)

    assert details == {"non_field_errors": [services.NO_CONTENT]}
    campaign.refresh_from_db()
    assert campaign.template_id == version.template_id


def test_an_update_adding_a_time_to_a_schedule_is_refused(app):
    campaign = campaign_create(
        app.application, schedule={"crontab": "0 9 * * 1", "timezone": "UTC"}
    )
    before = beat_rows()

    details = refusal(services.campaign_update, campaign=campaign, scheduled_at=in_an_hour())

    assert details == {"schedule": [services.BOTH_SCHEDULES]}
    campaign.refresh_from_db()
    assert campaign.scheduled_at is None
    assert beat_rows() == before


@pytest.mark.parametrize(
    ("moment", "fragment"),
    [
        (timedelta(minutes=-1), "Must be in the future."),
        (timedelta(days=366), "At most 365 days ahead"),
    ],
)
def test_scheduled_at_is_ahead_within_a_year(app, moment, fragment):
    details = refusal(
        services.campaign_create,
        application=app.application,
        name="x",
        title="Sale",
        scheduled_at=timezone.now() + moment,
    )

    [message] = details["scheduled_at"]
    assert fragment in message


def test_an_unchanged_time_that_has_passed_is_not_a_change(app):
    campaign = campaign_create(app.application, scheduled_at=in_an_hour())
    passed = timezone.now() - timedelta(minutes=5)
    Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=passed)

    updated = services.campaign_update(campaign=campaign, name="renamed", scheduled_at=passed)

    assert (updated.name, updated.scheduled_at) == ("renamed", passed)
    details = refusal(
        services.campaign_update, campaign=campaign, scheduled_at=passed - timedelta(minutes=1)
    )
    assert details == {"scheduled_at": ["Must be in the future."]}


def test_a_template_of_another_application_is_refused(app, other_app):
    foreign = template_create(other_app.application)

    details = refusal(
        services.campaign_create, application=app.application, name="x", template=foreign.template
    )

    assert details == {"template_id": [services.FOREIGN_TEMPLATE]}


def test_text_and_json_over_their_limits_are_refused(app):
    details = refusal(
        services.campaign_create,
        application=app.application,
        name="x",
        title="t" * 1001,
        data={"k": "v" * 70_000},
    )

    assert set(details) == {"title", "data"}


def test_validate_stores_nothing_and_refuses_as_the_writes_do(app):
    campaign = campaign_create(app.application)

    services.campaign_validate(application=app.application, title="Sale", name="x")
    services.campaign_validate(application=app.application, campaign=campaign, title="Other")
    details = refusal(
        services.campaign_validate,
        application=app.application,
        campaign=campaign,
        title="",
        body="",
    )

    assert details == {"non_field_errors": [services.NO_CONTENT]}
    assert Campaign.objects.count() == 1
    campaign.refresh_from_db()
    assert (campaign.title, campaign.body) == ("Sale", "Everything half price")


def test_validate_refuses_a_change_to_a_finished_campaign(app):
    campaign = campaign_create(app.application)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.COMPLETED)

    with pytest.raises(InvalidTransition):
        services.campaign_validate(application=app.application, campaign=campaign, name="late")


def test_a_fanout_step_names_its_campaign_in_its_log_lines(app, log_lines):
    """A step knows its run only; the lines written while it runs (and by the task around
    it) carry the run's campaign, read with the run (no query more, test_query_counts)."""
    subscription_create(app.application)
    campaign = campaign_create(app.application)
    run = services.campaign_execute(campaign=campaign, actor="test")

    assert services.run_fanout_step(run_id=run.pk, step=0) is False
    logging.getLogger("campaigns.tasks").warning("a line of the step's task")

    [line] = [line for line in log_lines() if line["event"] != "audit"]
    assert line["campaign_id"] == str(campaign.pk)
