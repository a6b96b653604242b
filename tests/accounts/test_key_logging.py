"""Log lines name an API key by its prefix and never hold a whole key: the request's lines
carry `api_key` (its first 11 characters) once the API has authenticated it, the next
request's lines do not, and a whole key written anywhere in a line (a URL, an access line's
query string, a traceback) is cut to its prefix."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import api_client

pytestmark = pytest.mark.django_db


def assert_no_whole_key(text: str, *keys: str) -> None:
    for key in keys:
        assert key not in text
        assert key[11:] not in text  # nor the secret part alone


def test_request_lines_carry_the_keys_prefix_and_never_the_key(app, log_lines, capfd):
    server, client = api_client(app.server.raw), api_client(app.client.raw)

    created = server.post("/api/v1/api-keys", {"scope": "client", "name": "x"}, format="json")
    refused = client.get("/api/v1/api-keys")  # a client key: 403, Django logs a warning
    server.delete(f"/api/v1/api-keys/{app.client.api_key.pk}")
    revoked = client.get("/api/v1/applications/current")  # 401
    unscoped = api_client(None).get("/api/v1/api-keys")  # after a request with a key
    misplaced = server.get(f"/api/v1/nowhere/{app.server.raw}")  # a key in a URL: 404

    assert (created.status_code, refused.status_code, revoked.status_code) == (201, 403, 401)
    assert (unscoped.status_code, misplaced.status_code) == (401, 404)
    new_key = created.json()["key"]
    lines = log_lines()
    by_event = {}
    for line in lines:
        by_event.setdefault(line["event"].split(":")[0], []).append(line)
    audited = [line for line in by_event["audit"] if line["action"] == "api_key.created"]
    assert [line["api_key"] for line in audited] == [app.server.raw[:11]]
    assert [line["api_key"] for line in by_event["Forbidden"]] == [app.client.raw[:11]]
    unauthorized = by_event["Unauthorized"]
    assert len(unauthorized) == 2
    assert all("api_key" not in line for line in unauthorized)  # none bound, none carried over
    (not_found,) = by_event["Not Found"]  # no API view: the key was not looked at
    assert not_found["event"] == f"Not Found: /api/v1/nowhere/{app.server.raw[:11]}…"
    everything = "\n".join(map(str, lines)) + capfd.readouterr().out
    assert_no_whole_key(everything, app.server.raw, app.client.raw, new_key)


def test_a_whole_key_is_cut_from_any_line(app, log_lines):
    raw = app.client.raw
    logging.getLogger("signal.access").info(
        '"GET /api/v1/inbox/stream?subscription_id=1&api_key=%s HTTP/1.1" 200', raw
    )
    try:
        raise ValueError(f"bad key {raw}")
    except ValueError:
        logging.getLogger("messaging.example").exception("failed with key=%s", raw)

    access, failed = log_lines()

    assert access["event"].endswith(f'api_key={raw[:11]}… HTTP/1.1" 200')
    assert failed["event"] == f"failed with key={raw[:11]}…"
    assert f"ValueError: bad key {raw[:11]}…" in failed["exception"]
    assert_no_whole_key(str([access, failed]), raw)


def test_words_that_look_like_a_prefix_are_left_alone(log_lines):
    text = "task_id sk_short ck_ desk_0123456789abcdefghijklmnopqrstuvwxyz"
    logging.getLogger("messaging.example").info(text)

    assert log_lines()[0]["event"] == text
