"""Content rendered from a template keeps the limits of literal content, for single messages
and for campaigns (at create, update, preview and execute, and in the fan-out of a run)."""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import Campaign, CampaignStatus, RunStatus
from messaging.models import Message
from templates_app import services as template_services
from templates_app.models import TemplateVersion
from tests.assertions import assert_error
from tests.conftest import subscription_create

from .conftest import campaign_create, fanout, template_create

pytestmark = pytest.mark.django_db

TEN_TIMES = "{{a}}" * 10


def title_template(app, **overrides) -> TemplateVersion:
    fields = {"name": "ten", "title_template": TEN_TIMES, "data_template": {}, "translations": {}}
    return template_create(app.application, **(fields | overrides))


def test_a_rendered_title_over_the_limit_is_400_at_send(server_api, app):
    subscription = subscription_create(app.application)
    version = title_template(app)

    response = server_api.post(
        "/api/v1/messages",
        {
            "subscription_id": str(subscription.pk),
            "template_id": str(version.template_id),
            "variables": {"a": "x" * 10_000},  # 100 KB of title from a 10 KB variable
        },
        format="json",
    )

    assert assert_error(response, 400, "validation_error") == {
        "title": [
            f"The rendered title of template {version.template_id} is 100000 characters; "
            "the limit is 1000."
        ]
    }
    assert not Message.objects.exists()


def test_rendered_content_within_the_limits_is_sent(server_api, app):
    subscription = subscription_create(app.application)
    version = title_template(app)

    response = server_api.post(
        "/api/v1/messages",
        {
            "subscription_id": str(subscription.pk),
            "template_id": str(version.template_id),
            "variables": {"a": "x" * 100},
        },
        format="json",
    )

    assert response.status_code == 202, response.content
    assert Message.objects.get().title == "x" * 1000


def test_rendered_data_over_the_limit_is_400_naming_data(server_api, app):
    subscription = subscription_create(app.application)
    version = title_template(
        app, title_template="t", data_template={"k": [TEN_TIMES] * 4}, name="data"
    )

    response = server_api.post(
        "/api/v1/messages",
        {
            "subscription_id": str(subscription.pk),
            "template_id": str(version.template_id),
            "variables": {"a": "x" * 2_000},
        },
        format="json",
    )

    details = assert_error(response, 400, "validation_error")
    assert list(details) == ["data"]
    assert str(version.template_id) in details["data"][0]
    assert not Message.objects.exists()


def test_a_stored_data_template_nested_too_deep_is_400_not_a_crash(server_api, app):
    # Written before depth was bounded (the renderer recursed once per level).
    version = template_create(app.application, name="deep")
    deep: list = []
    for _ in range(200):
        deep = [deep]
    TemplateVersion.objects.filter(pk=version.pk).update(data_template={"a": deep})
    subscription = subscription_create(app.application)

    sent = server_api.post(
        "/api/v1/messages",
        {"subscription_id": str(subscription.pk), "template_id": str(version.template_id)},
        format="json",
    )
    rendered = server_api.post(f"/api/v1/templates/{version.template_id}/render", {}, format="json")

    for response in (sent, rendered):
        details = assert_error(response, 400, "validation_error")
        assert "nested more than 32 levels" in details["data_template"][0]


# --- Campaigns ---------------------------------------------------------------------------------


def test_a_campaign_whose_variables_render_over_the_limit_is_400(server_api, app):
    version = title_template(app)

    response = server_api.post(
        "/api/v1/campaigns",
        {"name": "c", "template_id": str(version.template_id), "variables": {"a": "y" * 500}},
        format="json",
    )

    details = assert_error(response, 400, "validation_error")
    assert details == {
        "title": [
            f"The rendered title of template {version.template_id} is 5000 characters; "
            "the limit is 1000."
        ]
    }
    assert not Campaign.objects.exists()


def test_every_language_of_the_template_is_checked(server_api, app):
    version = template_create(
        app.application,
        translations={"en": {"title_template": "Hello", "body_template": "{{event_name}}" * 3}},
    )

    response = server_api.post(
        "/api/v1/campaigns",
        {
            "name": "c",
            "template_id": str(version.template_id),
            "variables": {"event_name": "e" * 1_500},  # 1,500 in ko, 4,500 in en
        },
        format="json",
    )

    assert "body" in assert_error(response, 400, "validation_error")


def test_an_update_of_a_campaign_checks_its_rendered_content(server_api, app):
    version = title_template(app)
    campaign = campaign_create(app.application, template=version.template, variables={"a": "z"})

    response = server_api.put(
        f"/api/v1/campaigns/{campaign.pk}", {"variables": {"a": "z" * 101}}, format="json"
    )

    assert "title" in assert_error(response, 400, "validation_error")
    campaign.refresh_from_db()
    assert campaign.variables == {"a": "z"}


def test_preview_and_execute_refuse_content_the_template_changed_over_the_limit(server_api, app):
    subscription_create(app.application)
    version = title_template(app)
    campaign = campaign_create(
        app.application, template=version.template, variables={"a": "v" * 50}
    )
    template_services.template_update(template=version.template, title_template=TEN_TIMES * 3)

    preview = server_api.post(f"/api/v1/campaigns/{campaign.pk}/preview")
    execute = server_api.post(f"/api/v1/campaigns/{campaign.pk}/execute")

    for response in (preview, execute):
        assert "title" in assert_error(response, 400, "validation_error")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    assert not campaign.runs.exists()


def test_a_scheduled_run_whose_content_breaks_the_limits_fails_with_the_reason(app):
    for _ in range(3):
        subscription_create(app.application)
    version = title_template(app)
    campaign = campaign_create(
        app.application, template=version.template, variables={"a": "v" * 50}
    )
    template_services.template_update(template=version.template, title_template=TEN_TIMES * 3)

    run = services.campaign_execute(campaign=campaign, actor="test", trigger="scheduled_at")
    fanout(run.pk)

    run.refresh_from_db()
    campaign.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert f"The rendered title of template {version.template_id} is 1500 characters" in run.error
    assert campaign.status == CampaignStatus.FAILED
    assert not Message.objects.exists()


def test_the_admin_page_of_such_a_campaign_shows_the_reason(admin_client, app):
    version = title_template(app)
    campaign = campaign_create(
        app.application, template=version.template, variables={"a": "v" * 50}
    )
    template_services.template_update(template=version.template, title_template=TEN_TIMES * 3)

    response = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")

    assert response.status_code == 200
    assert "is 1500 characters; the limit is 1000." in response.content.decode()
