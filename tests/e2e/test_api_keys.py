"""API keys against a real gunicorn with two worker processes and JSON logs: a key made over
the API works at once in either process, a revoked one (even the key that revoked itself) is
refused at once by both, and no line the server writes, its access log included, holds a
whole key; its lines name the key by its prefix."""

from __future__ import annotations

import json

import pytest

from accounts.models import AuditEntry
from bench.servers import free_port

from .processes import api, request, stack_processes, start_web

pytestmark = pytest.mark.e2e


@pytest.fixture
def web(e2e, worker_env, tmp_path):
    env = {**worker_env, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    processes = stack_processes(
        env, tmp_path, port=free_port(), name="keys",
        web_args=("--access-logfile", "-", "-w", "2"),
    )  # fmt: skip
    start_web(processes["web"])
    yield processes["web"]
    processes["web"].stop()


def test_keys_are_made_and_revoked_at_once_and_never_logged(live_app, web):
    status, made = api(web, live_app.server_key, "POST", "/api/v1/api-keys",
                       {"scope": "server", "name": "e2e"})  # fmt: skip
    assert status == 201, made
    new_key = made["key"]
    # Several requests, so both worker processes serve the key.
    for _ in range(6):
        assert api(web, new_key, "GET", "/api/v1/api-keys?active=true")[0] == 200

    status, _ = api(web, new_key, "DELETE", f"/api/v1/api-keys/{made['id']}")

    assert status == 204
    for _ in range(6):
        status, body = api(web, new_key, "GET", "/api/v1/api-keys")
        assert status == 401 and body["error"]["code"] == "authentication_failed"
    assert api(web, live_app.server_key, "GET", "/api/v1/api-keys")[0] == 200
    # A key where it does not belong: in a query string, which the access line holds.
    request(web, "", "GET", f"/api/v1/inbox/stream?subscription_id=x&api_key={live_app.client_key}")
    status, log = api(web, live_app.server_key, "GET", "/api/v1/audit-log?object_type=api_key")
    assert status == 200
    revoked, created = log["results"][:2]
    assert (revoked["action"], revoked["actor"]) == ("api_key.revoked", f"api_key:{made['prefix']}")
    assert (created["action"], created["actor"]) == (
        "api_key.created",
        f"api_key:{live_app.server_key[:11]}",
    )
    assert AuditEntry.objects.filter(action="api_key.revoked", object_id=made["id"]).count() == 1

    text = web.text()
    lines = [json.loads(line) for line in text.strip().splitlines()]
    for key in (live_app.server_key, live_app.client_key, new_key):
        assert key not in text and key[11:] not in text
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert len(access) >= 16
    keyed = [line for line in access if "/api/v1/api-keys" in line["event"]]
    assert {line.get("api_key") for line in keyed} >= {made["prefix"], live_app.server_key[:11]}
    refused = [line for line in access if '" 401 ' in line["event"]]
    assert refused and all("api_key" not in line for line in refused)
    (stream,) = [line for line in access if "inbox/stream" in line["event"]]
    assert f"api_key={live_app.client_key[:11]}…" in stream["event"]
