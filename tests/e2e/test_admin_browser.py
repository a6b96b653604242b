"""The admin in a real browser: Debian's Chromium, headless, driven over the DevTools protocol,
logs in through the login form of the WSGI app (gunicorn, DEBUG off, static files from
WhiteNoise) and opens the console, every registered model's list and a change page of each
model that has a row, with data made through the services: an application, subscriptions of
several channels, a template with two versions, a completed campaign whose messages were
delivered, received and failed, and a recurring campaign still editable. A page fails on an
HTTP error status, a server error page, any console message or JavaScript exception, a
resource that did not load, or a figure it should show and does not."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from adapters.base import SendResult
from campaigns import services as campaign_services
from campaigns.models import CampaignRun, CampaignStatus
from campaigns.schedules import schedule_clean
from core.channels import SPECS
from messaging.delivery import rollups
from messaging.models import Message, MessageStatus
from messaging.services.messages import message_report_status
from messaging.signals import message_statuses_changed
from templates_app import services as template_services
from tests.conftest import application_with_keys, fcm_token, subscription_create

from .conftest import empty_broker, wait_for
from .inbox_support import Browser, Server

pytestmark = pytest.mark.e2e

PASSWORD = "a-long-test-password-7f3c"  # noqa: S105 (a test account's)


class ConsoleBrowser(Browser):
    """The inbox test's Chromium, also recording the browser's own log (resources that failed
    to load, CSP and network errors)."""

    def start(self) -> ConsoleBrowser:
        super().start()
        self.call("Log.enable")
        return self

    def open(self, url: str) -> None:
        """Navigates and waits for the new document (not the old one) to be loaded."""
        self.evaluate("window.__previous_page = true")
        self.call("Page.navigate", url=url)
        self.loaded(url)

    def loaded(self, what: str) -> None:
        wait_for(
            lambda: self.evaluate("!window.__previous_page && document.readyState === 'complete'"),
            timeout=30,
            what=f"{what} to load",
        )


@pytest.fixture
def web_server(worker_env, tmp_path):
    server = Server("wsgi", dict(worker_env), tmp_path / "gunicorn.log").start()
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path):
    chromium = ConsoleBrowser(tmp_path / "profile", tmp_path / "chromium.log").start()
    yield chromium
    chromium.stop()


def _transition(messages, status: str, code: str = "") -> None:
    """What delivery records for a batch: pending -> successful or failed, the signal that
    moves the run's counters, and the console's rollups (the providers answered in 120 ms)."""
    with transaction.atomic():
        _record(messages, status, code)
        results = {
            m.id: SendResult(
                message_id=str(m.id),
                ok=status == MessageStatus.SUCCESSFUL,
                error_code=code or None,
                permanent=bool(code),
                latency_ms=120.0,
            )
            for m in messages
        }
        rollups.add_batch(messages, results, timezone.now())


def _record(messages, status: str, code: str) -> None:
    transitions: Counter = Counter()
    for message in messages:
        if status == MessageStatus.SUCCESSFUL:
            message.succeed()
        else:
            message.fail()
        message.error_code = code
        message.save(update_fields=["status", "error_code"])
        transitions[(message.campaign_run_id, MessageStatus.PENDING, status)] += 1
    message_statuses_changed.send(sender=Message, transitions=transitions)


def make_data() -> dict:
    """The data every page shows; returns the objects the checks look at."""
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    Group.objects.create(name="campaign managers")
    application = application_with_keys("shop").application
    subscription_create(application, type="iOSPush", external_user_id="kim", country="KR")
    subscription_create(application, type="Email", token="kim@example.com", language="ko")
    subscription_create(application, type="SMS", token="+821012345678", tags={"plan": "gold"})
    subscription_create(application, type="AndroidPush", token=fcm_token())
    first = template_services.template_create(
        application=application,
        name="welcome",
        title_template="Hello {{user_name}}",
        body_template="<b>Welcome</b> {{user_name}}",
        default_language="en",
        translations={},
        data_template={},
    )
    template_services.template_update(
        template=first.template, body_template="<b>Welcome back</b> {{user_name}}"
    )
    campaign = campaign_services.campaign_create(
        application=application, name="summer-sale", title="Sale", body="Half price"
    )
    run = campaign_services.campaign_execute(campaign=campaign, actor="test")
    while campaign_services.run_fanout_step(run_id=run.pk):
        pass
    by_channel = {m.channel: m for m in Message.objects.filter(campaign_run_id=run.pk)}
    _transition([by_channel["iOSPush"]], MessageStatus.FAILED, "Unregistered")
    _transition(
        [by_channel["Email"], by_channel["SMS"], by_channel["AndroidPush"]],
        MessageStatus.SUCCESSFUL,
    )
    message_report_status(message=by_channel["SMS"], status=MessageStatus.RECEIVED, actor="test")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    weekly = campaign_services.campaign_create(
        application=application,
        name="weekly-digest",
        template=first.template,
        variables={"user_name": "Kim"},
        targeting_criteria={"countries": ["KR"], "channels": ["iOSPush"], "tags": {"a": "b"}},
        schedule=schedule_clean({"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"}),
    )
    return {
        "campaign": campaign,
        "weekly": weekly,
        "run": CampaignRun.objects.get(pk=run.pk),
        "failed": by_channel["iOSPush"],
        "template": first.template,
    }


def login(browser, server) -> None:
    browser.open(f"{server.url}/admin/login/?next=/admin/")
    browser.evaluate(
        "document.getElementById('id_username').value = 'root';"
        f"document.getElementById('id_password').value = {json.dumps(PASSWORD)};"
    )
    browser.evaluate("window.__previous_page = true")
    browser.click("input[type=submit]")
    browser.loaded("the page after logging in")
    assert browser.evaluate("location.pathname") == "/admin/", browser.evaluate("location.href")


def check_page(browser, url: str) -> str:
    """Opens a page and returns its HTML, failing on any error it shows or reports."""
    browser.console.clear()
    browser.exceptions.clear()
    browser.open(url)
    status = browser.evaluate("performance.getEntriesByType('navigation')[0].responseStatus")
    title = browser.evaluate("document.title")
    assert status == 200, f"{url}: HTTP {status} ({title})"
    assert "Server Error" not in title and "Page not found" not in title, f"{url}: {title}"
    assert browser.evaluate("!!document.querySelector('#content')"), f"{url}: no admin page"
    assert browser.exceptions == [], f"{url}: {browser.exceptions}"
    assert browser.console == [], f"{url}: {browser.console}"
    return browser.evaluate("document.documentElement.outerHTML")


def text(browser, selector: str) -> str | None:
    return browser.evaluate(
        f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || null"
    )


def test_every_admin_page_loads_without_an_error_in_a_real_browser(
    transactional_db, web_server, browser
):
    data = make_data()
    try:
        login(browser, web_server)
        check_page(browser, f"{web_server.url}/admin/")
        # The console: a row per channel that sent (from the rollups), the four queues, the
        # provider's error code. The session's workers may have added rows of their own.
        channels = browser.evaluate(
            "[...document.querySelectorAll('#console-channels tbody tr td:first-child')]"
            ".map(td => td.textContent.trim())"
        )
        for channel in ("iOSPush", "AndroidPush", "Email", "SMS"):
            assert SPECS[channel].label in channels, (channel, channels)
        assert browser.evaluate("document.querySelectorAll('#console-broker tbody tr').length") >= 5
        codes = browser.evaluate(
            "[...document.querySelectorAll('#console-errors tbody td a')].map(a => a.textContent)"
        )
        assert "Unregistered" in codes, codes
        assert browser.evaluate("!!document.querySelector('#console-channels svg')")

        opened = []
        for model, model_admin in admin.site._registry.items():
            opts = model._meta
            info = (opts.app_label, opts.model_name)
            check_page(browser, web_server.url + reverse("admin:{}_{}_changelist".format(*info)))
            row = model_admin.get_queryset(_request()).order_by("pk").first()
            if row is not None:
                url = reverse("admin:{}_{}_change".format(*info), args=[quote(row.pk)])
                check_page(browser, web_server.url + url)
                opened.append(opts.label)
        # Every model with data made here had its change page opened.
        for label in ("campaigns.Campaign", "campaigns.CampaignRun", "messaging.Message",
                      "messaging.Subscription", "templates_app.TemplateVersion"):  # fmt: skip
            assert label in opened, label

        # The completed campaign: the funnel counts what the providers took as delivered.
        campaign = data["campaign"]
        check_page(browser, f"{web_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
        assert text(browser, '#campaign-funnel td[data-stage="delivered"]') == "3"
        assert text(browser, '#campaign-funnel td[data-stage="received"]') == "1"
        assert text(browser, '#campaign-funnel td[data-stage="failed"]') == "1"
        assert text(browser, "#campaign-funnel .failure-code") == "Unregistered"
        # Its run's page, with the same funnel and a link back.
        run = data["run"]
        html = check_page(browser, f"{web_server.url}/admin/campaigns/campaignrun/{run.pk}/change/")
        assert text(browser, '#run-funnel td[data-stage="delivered"]') == "3"
        assert f"/admin/campaigns/campaign/{campaign.pk}/change/" in html
        # The run's messages, and the short ids that do not wrap.
        check_page(browser, f"{web_server.url}/admin/messaging/message/?campaign_run_id={run.pk}")
        assert browser.evaluate("document.querySelectorAll('#result_list tbody tr').length") == 4
        assert (
            browser.evaluate(
                "getComputedStyle(document.querySelector('#result_list .signal-id')).whiteSpace"
            )
            == "nowrap"
        )

        # The recurring campaign's form: its pickers (the admin's JavaScript) and next runs.
        weekly = data["weekly"]
        check_page(browser, f"{web_server.url}/admin/campaigns/campaign/{weekly.pk}/change/")
        assert browser.evaluate("!!document.getElementById('id_countries_from')")  # the filter
        assert browser.evaluate(
            "[...document.getElementById('id_countries_to').options].map(o => o.value)"
        ) == ["KR"]
        assert browser.evaluate("document.getElementById('id_schedule_preset').value") == (
            "0 9 * * 1"
        )
        assert browser.evaluate("document.querySelectorAll('#campaign-next-runs li').length") == 3
        assert "09:00 KST (Mon)" in text(browser, "#campaign-next-runs")
        # A preset fills the crontab fields (the page's script); typing switches to Custom.
        browser.evaluate(
            "const p = document.getElementById('id_schedule_preset');"
            "p.value = '0 9 * * 1-5'; p.dispatchEvent(new Event('change'));"
        )
        assert browser.evaluate("document.getElementById('id_cron_day_of_week').value") == "1-5"
        browser.evaluate(
            "const m = document.getElementById('id_cron_minute');"
            "m.value = '30'; m.dispatchEvent(new Event('input'));"
        )
        assert browser.evaluate("document.getElementById('id_schedule_preset').value") == "custom"
        assert browser.exceptions == [] and browser.console == []

        # The add page: choosing a template shows its variables in the variables field.
        check_page(browser, f"{web_server.url}/admin/campaigns/campaign/add/")
        browser.evaluate(
            "const t = document.getElementById('id_template');"
            f"t.value = '{data['template'].pk}'; t.dispatchEvent(new Event('change'));"
        )
        assert browser.evaluate("document.getElementById('id_variables').placeholder") == (
            "user_name="
        )
        assert browser.exceptions == [] and browser.console == []

        # The template's second version shows its diff.
        version = data["template"].current
        check_page(
            browser, f"{web_server.url}/admin/templates_app/templateversion/{version.pk}/change/"
        )
        diff = text(browser, "#version-diff table.diff").replace("\xa0", " ")
        assert "<b>Welcome back</b>" in diff  # the template's HTML shown as text
        assert browser.evaluate("document.querySelectorAll('#version-diff b').length") == 0
    finally:
        empty_broker()  # the fan-out handed the messages to the broker; no worker takes them


def _request():
    """A superuser's request, for the admins' get_queryset."""
    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.get(username="root")
    return request
