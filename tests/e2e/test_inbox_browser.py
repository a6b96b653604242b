"""A real browser on the reference inbox client: Debian's Chromium, headless, driven over the
DevTools protocol, opens /inbox-demo/ laid out as `make run` lays it out: the page and the API
on the WSGI app (gunicorn), the SSE stream on the ASGI app (hypercorn) on another port, named by
INBOX_STREAM_URL. It receives a message live (the bell count goes up with no
reload), is clicked on it (a real mouse click) and shows it read, the count down, and the
message `received`."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from accounts.audit import SYSTEM
from accounts.services import application_settings_update
from messaging.models import Message

from .conftest import wait_for
from .inbox_support import Browser, Server, asgi_server_fixture  # noqa: F401 (asgi_server)
from .test_inbox import register, send

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def web_server(worker_env, asgi_server, tmp_path_factory):
    """The WSGI app with the demo on, its page pointing at the ASGI process for the stream."""
    env = {**worker_env, "INBOX_DEMO": "true", "INBOX_STREAM_URL": asgi_server.url}
    server = Server("wsgi", env, tmp_path_factory.mktemp("wsgi") / "gunicorn.log").start()
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path):
    chromium = Browser(tmp_path / "profile", tmp_path / "chromium.log").start()
    yield chromium
    chromium.stop()


def allow_the_page(application, web_server) -> None:
    """The page (web app) opens the stream on the ASGI app, another origin: the application
    lists the page's origin, as `make run` does for its demo (accounts.cors)."""
    application_settings_update(
        application=application, actor=SYSTEM, allowed_origins=[web_server.url]
    )


def text(browser, selector: str) -> str | None:
    return browser.evaluate(
        f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || null"
    )


def item_class(browser, message_id: str) -> str | None:
    return browser.evaluate(
        f"(document.querySelector('li[data-id=\"{message_id}\"]') || {{}}).className || null"
    )


def test_the_reference_page_receives_a_message_live_and_marks_it_read(
    live_app, web_server, browser
):
    allow_the_page(live_app, web_server)
    subscription = register(live_app)
    earlier = send(live_app, subscription, title="Already there")
    wait_for(
        lambda: Message.objects.filter(pk=earlier, status="successful").exists(),
        timeout=30,
        what="the first message to be delivered",
    )
    query = urllib.parse.urlencode(
        {"subscription_id": subscription, "api_key": live_app.client_key}
    )
    browser.navigate(f"{web_server.url}/inbox-demo/?{query}")

    # The page lists what is there, shows the bell's count and says it is live.
    wait_for(
        lambda: browser.evaluate("document.getElementById('connection').dataset.state") == "open",
        timeout=15,
        what="the page's stream to be open",
    )
    wait_for(lambda: item_class(browser, earlier), timeout=10, what="the first item listed")
    wait_for(lambda: text(browser, "#bell-count") == "1", timeout=5, what="the bell to show 1")
    assert "unread" in item_class(browser, earlier)

    # A message sent now appears without a reload, at the top, and the bell goes to 2.
    browser.evaluate("window.__loaded_once = true")
    message_id = send(
        live_app,
        subscription,
        title="Live from the test",
        body="Hello, browser",
        in_app={"action_url": "https://example.com/welcome"},
    )
    # Delivery first (a worker busy with a former test's leftovers may take a while), so that
    # what follows times the page alone: the live event must be on it within 10 s.
    wait_for(
        lambda: Message.objects.filter(pk=message_id, status="successful").exists(),
        timeout=30,
        what="the live message to be delivered",
    )
    wait_for(lambda: item_class(browser, message_id), timeout=10, what="the new item on the page")
    wait_for(lambda: text(browser, "#bell-count") == "2", timeout=5, what="the bell to show 2")
    assert browser.evaluate("window.__loaded_once") is True, "the page was reloaded"
    first = browser.evaluate("document.querySelector('#items li').dataset.id")
    assert first == message_id, "the newest item is at the top"
    assert text(browser, f'li[data-id="{message_id}"] .body') == "Hello, browser"

    # Clicking it marks it read: the item shows read, the bell goes down, the message is
    # `received`.
    browser.click(f'li[data-id="{message_id}"] .title')
    wait_for(
        lambda: "read" in (item_class(browser, message_id) or "").split(),
        timeout=10,
        what="the item to show read",
    )
    wait_for(lambda: text(browser, "#bell-count") == "1", timeout=5, what="the bell to show 1")
    wait_for(
        lambda: Message.objects.get(pk=message_id).status == "received",
        timeout=5,
        what="the message to be received",
    )
    assert Message.objects.get(pk=earlier).status == "successful"

    # "Mark all read" empties the bell.
    browser.click("#read-all")
    wait_for(lambda: text(browser, "#bell-count") == "0", timeout=5, what="the bell to show 0")
    wait_for(
        lambda: Message.objects.get(pk=earlier).status == "received",
        timeout=5,
        what="the first message to be received",
    )
    assert not browser.exceptions, browser.exceptions
    assert browser.evaluate("document.getElementById('error').textContent") == ""


def connection_state(browser) -> str:
    return browser.evaluate("document.getElementById('connection').dataset.state")


def test_the_page_reconnects_by_itself_after_a_restart_and_misses_nothing(
    live_app, web_server, asgi_server, browser
):
    allow_the_page(live_app, web_server)
    subscription = register(live_app)
    query = urllib.parse.urlencode(
        {"subscription_id": subscription, "api_key": live_app.client_key}
    )
    browser.navigate(f"{web_server.url}/inbox-demo/?{query}")
    wait_for(lambda: connection_state(browser) == "open", timeout=15, what="the stream open")
    before = send(live_app, subscription, title="Before the restart")
    wait_for(lambda: item_class(browser, before), timeout=10, what="the first item live")

    # The stream's server goes away: the page says so, and keeps trying.
    asgi_server.stop()
    wait_for(lambda: connection_state(browser) != "open", timeout=15, what="the page to notice")
    during = send(live_app, subscription, title="While the stream was down")
    wait_for(
        lambda: Message.objects.filter(pk=during, status="successful").exists(),
        timeout=30,
        what="the message sent meanwhile to be delivered",
    )
    assert not item_class(browser, during)

    # It comes back on the same port: the page reconnects by itself (no reload, no click) and
    # what was sent meanwhile shows up, counted.
    browser.evaluate("window.__not_reloaded = true")
    asgi_server.start()
    wait_for(lambda: connection_state(browser) == "open", timeout=30, what="the page to reconnect")
    wait_for(lambda: item_class(browser, during), timeout=10, what="the item sent meanwhile")
    wait_for(lambda: text(browser, "#bell-count") == "2", timeout=5, what="the bell to show 2")
    assert browser.evaluate("window.__not_reloaded") is True
    after = send(live_app, subscription, title="After the restart")
    wait_for(lambda: item_class(browser, after), timeout=10, what="live again after it")
    assert not browser.exceptions, browser.exceptions
