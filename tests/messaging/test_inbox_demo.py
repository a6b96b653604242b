"""The reference inbox client's page: development only, its settings rendered into it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.http import Http404
from django.test import RequestFactory

from messaging import inbox_demo


def config_of(html: str) -> dict:
    pattern = r'<script id="inbox-demo-config" type="application/json">(.*?)</script>'
    found = re.search(pattern, html)
    assert found, html
    return json.loads(found.group(1))


def test_it_is_404_unless_debug_or_inbox_demo(settings):
    settings.DEBUG, settings.INBOX_DEMO = False, False
    with pytest.raises(Http404):
        inbox_demo.inbox_demo(RequestFactory().get("/inbox-demo/"))
    assert not inbox_demo.enabled()


def test_the_route_is_not_there_in_production(client, settings):
    settings.DEBUG, settings.INBOX_DEMO = False, False
    assert client.get("/inbox-demo/").status_code == 404


@pytest.mark.parametrize("flags", [(True, False), (False, True)])
def test_it_serves_the_page_with_the_query_prefilled_and_the_stream_url(settings, flags):
    settings.DEBUG, settings.INBOX_DEMO = flags
    settings.INBOX_STREAM_URL = "http://127.0.0.1:8001/"
    request = RequestFactory().get(
        "/inbox-demo/",
        {"subscription_id": "sub-1", "api_key": "ck_x", "user_hash": "</script><b>x"},
    )
    response = inbox_demo.inbox_demo(request)
    assert response.status_code == 200
    html = response.content.decode()
    assert config_of(html) == {
        "stream_url": "http://127.0.0.1:8001",
        "api_url": "/api/v1",
        "subscription_id": "sub-1",
        "api_key": "ck_x",
        "user_hash": "</script><b>x",
    }
    assert "</script><b>x" not in html  # escaped, not markup
    assert "messaging/inbox_demo.js" in html
    assert "http" not in html.split("<body>")[1].replace("http://127.0.0.1:8001", "")  # no CDN


def test_the_script_is_a_static_file_with_no_outside_reference():
    path = finders.find("messaging/inbox_demo.js")
    assert path
    script = Path(path).read_text(encoding="utf-8")
    assert "new EventSource(" in script
    assert "/inbox/stream" in script and "/inbox/count" in script and "/read-all" in script
    assert not re.search(r"https?://", script)
