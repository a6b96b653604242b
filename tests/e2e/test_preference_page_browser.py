"""The preference page in a real browser: an e-mail of a category goes out through a real
Celery worker to the fake SMTP relay; the page its List-Unsubscribe link leads to is opened
in Debian's Chromium (headless, driven over the DevTools protocol) on the WSGI app (gunicorn,
DEBUG off), the category is switched off with a real mouse click and the form saved (with its
CSRF token, under the page's Content-Security-Policy); the next e-mail of that category to the
user is left out as `opted_out`."""

from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest

from accounts.models import Category
from accounts.services import channel_credentials_set
from messaging.models import User

from .conftest import wait_for
from .inbox_support import Server
from .test_admin_browser import ConsoleBrowser
from .test_channels import api, finished, register

pytestmark = pytest.mark.e2e


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


def send_offer(app) -> dict:
    response = api(app.server_key).post(
        "/api/v1/messages",
        {
            "external_user_id": "kim",
            "title": "Spring sale",
            "body": "20% off",
            "category": "offers",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    return response.json()


def checked(browser, selector: str) -> bool | None:
    return browser.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).checked")


def test_a_category_switched_off_on_the_page_stops_its_emails(
    live_app, fake_providers, web_server, browser
):
    channel_credentials_set(
        application=live_app,
        channel="Email",
        values=dict(fake_providers.email_credentials().values),
    )
    Category.objects.create(
        application=live_app, key="offers", name="Offers and news", translations={"ko": "혜택"}
    )
    to = f"kim-{uuid.uuid4().hex[:12]}@example.com"
    register(live_app, "Email", to, external_user_id="kim")

    first = send_offer(live_app)
    ids = [m["id"] for m in first["messages"]]
    assert len(ids) == 1
    wait_for(finished(ids, ("successful",)), what="the first e-mail to be sent")
    [mail] = fake_providers.smtp_messages(to)
    assert mail["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    link = urllib.parse.urlsplit(mail["list_unsubscribe"].strip("<>"))
    assert link.path.startswith("/preferences/") and link.path.endswith("/unsubscribe")

    # The whole page of the same recipient: the link less its one-click part, on the WSGI app.
    browser.console.clear()
    browser.open(web_server.url + link.path.removesuffix("/unsubscribe"))
    assert browser.evaluate("document.title") == "Notification preferences"
    assert browser.evaluate("document.querySelector('h1').textContent") == (
        "Notification preferences"
    )
    assert checked(browser, "#category-offers") is True
    assert checked(browser, "#channel-Email") is True

    browser.click("#category-offers")
    assert checked(browser, "#category-offers") is False
    browser.evaluate("window.__previous_page = true")
    browser.click("#save")
    browser.loaded("the saved page")

    assert browser.evaluate("!!document.getElementById('saved')") is True
    assert checked(browser, "#category-offers") is False
    assert browser.console == [], browser.console  # no CSP refusal, no failed resource
    assert not browser.exceptions, browser.exceptions
    assert User.objects.get(application=live_app, external_user_id="kim").preferences == {
        "categories": {"offers": {"enabled": False}}
    }

    # The next e-mail of the category to the user is left out.
    second = send_offer(live_app)
    assert second["messages"] == []
    assert second["skipped_by_reason"]["opted_out"] == 1
    assert len(fake_providers.smtp_messages(to)) == 1
