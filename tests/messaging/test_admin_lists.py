"""The message and subscription lists of the admin: the application column and filter, the
message search (ids, titles, campaigns by name), short ids that do not wrap, links between
messages, subscriptions and campaigns, and the app users' own name in the sidebar."""

from __future__ import annotations

import pytest

from campaigns import services as campaign_services
from campaigns.models import CampaignRun
from messaging.models import Message
from messaging.services.messages import Content, Delivery, message_send
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

MESSAGES = "/admin/messaging/message/"


def send(application, title: str) -> Message:
    [message] = message_send(
        application=application,
        subscriptions=[subscription_create(application)],
        content=Content(title=title, body="Body"),
        delivery=Delivery(),
    ).messages
    return message


def shown(response) -> set:
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


@pytest.fixture
def campaign_message(app):
    subscription_create(app.application)
    campaign = campaign_services.campaign_create(
        application=app.application, name="Black Friday", title="Deals", body="All day"
    )
    run = campaign_services.campaign_execute(campaign=campaign, actor="test")
    while campaign_services.run_fanout_step(run_id=run.pk):
        pass
    return Message.objects.get(campaign_run_id=run.pk)


def test_messages_are_listed_with_their_application_and_filtered_by_it(
    admin_client, app, other_app
):
    ours = send(app.application, "Ours")
    theirs = send(other_app.application, "Theirs")

    everything = admin_client.get(MESSAGES)
    filtered = admin_client.get(MESSAGES, {"application__id__exact": str(app.application.pk)})

    assert shown(everything) == {ours.pk, theirs.pk}
    assert shown(filtered) == {ours.pk}
    html = everything.content.decode()
    assert "column-application" in html and f">{other_app.application.name}<" in html


def test_subscriptions_are_listed_with_their_application_and_filtered_by_it(
    admin_client, app, other_app
):
    ours = subscription_create(app.application)
    subscription_create(other_app.application)

    response = admin_client.get(
        "/admin/messaging/subscription/", {"application__id__exact": str(app.application.pk)}
    )

    assert shown(response) == {ours.pk}
    assert "column-application" in response.content.decode()


def test_messages_are_found_by_title(admin_client, app):
    sale = send(app.application, "Summer sale starts")
    send(app.application, "Password reset")

    assert shown(admin_client.get(MESSAGES, {"q": "sale"})) == {sale.pk}


def test_messages_are_found_by_their_campaigns_name_or_id_and_run(
    admin_client, app, campaign_message
):
    send(app.application, "Unrelated")

    by_name = admin_client.get(MESSAGES, {"q": "friday"})
    by_id = admin_client.get(MESSAGES, {"q": str(campaign_message.campaign_id)})
    by_run = admin_client.get(MESSAGES, {"q": str(campaign_message.campaign_run_id)})
    by_filter = admin_client.get(MESSAGES, {"campaign_id": str(campaign_message.campaign_id)})

    for response in (by_name, by_id, by_run, by_filter):
        assert shown(response) == {campaign_message.pk}


def test_message_ids_are_short_with_the_whole_id_in_the_title(admin_client, app):
    message = send(app.application, "Hello")

    html = admin_client.get(MESSAGES).content.decode()

    full = str(message.pk)
    assert f'title="{full}">{full[:8]}…{full[-6:]}</' in html
    assert "core/admin_kit.css" in html  # monospace, no wrapping


def test_a_message_links_to_its_campaign_run_subscription_and_template_version(
    admin_client, app, campaign_message
):
    run = CampaignRun.objects.get(pk=campaign_message.campaign_run_id)

    html = admin_client.get(f"{MESSAGES}{campaign_message.pk}/change/").content.decode()
    subscription_page = admin_client.get(
        f"/admin/messaging/subscription/{campaign_message.subscription_id}/change/"
    ).content.decode()

    assert f'href="/admin/campaigns/campaign/{campaign_message.campaign_id}/change/"' in html
    assert f'href="/admin/campaigns/campaignrun/{run.pk}/change/"' in html
    assert f'href="{MESSAGES}?campaign_run_id={run.pk}"' in html
    assert (
        f'href="/admin/messaging/subscription/{campaign_message.subscription_id}/change/"' in html
    )
    assert f'href="{MESSAGES}?subscription={campaign_message.subscription_id}"' in subscription_page
    listed = admin_client.get(MESSAGES, {"subscription": str(campaign_message.subscription_id)})
    assert shown(listed) == {campaign_message.pk}


def test_the_apps_users_are_not_called_users_like_the_consoles(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert ">App users</a>" in html
    assert html.count(">Users</a>") == 1  # django.contrib.auth's
