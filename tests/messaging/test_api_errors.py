"""What every endpoint shares: authentication, scopes, the error shape, body limits, strict
input, the rate limit, and the schema and docs pages."""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections import Counter

import pytest
from django.test import override_settings

from accounts.api import throttling
from accounts.services import api_key_revoke
from core.api import BoundedJSONParser
from core.exceptions import PayloadTooLarge
from messaging.api import subscriptions as subscription_views
from messaging.models import Subscription
from tests.assertions import assert_error
from tests.conftest import api_client, apns_token, subscription_create

URL = "/api/v1/subscriptions"
MIB = 1024 * 1024

pytestmark = pytest.mark.django_db


# --- Authentication and scopes -------------------------------------------------------------------


def _every_endpoint(subscription_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("post", URL, {"type": "iOSPush", "token": apns_token(1)}),
        ("get", URL, None),
        ("get", f"{URL}/{subscription_id}", None),
        ("put", f"{URL}/{subscription_id}", {"enabled": False}),
        ("delete", f"{URL}/{subscription_id}", None),
        ("post", "/api/v1/users/identify", {"external_user_id": "u", "subscription_id": "x"}),
        ("post", "/api/v1/users/logout", {"subscription_id": subscription_id}),
        ("get", "/api/v1/users/u/subscriptions", None),
    ]


def _call(api, method: str, url: str, body: dict | None):
    if body is None:
        return getattr(api, method)(url)
    return getattr(api, method)(url, body, format="json")


def test_every_endpoint_needs_a_key(app, anonymous_api):
    subscription = subscription_create(app.application)

    for method, url, body in _every_endpoint(str(subscription.pk)):
        response = _call(anonymous_api, method, url, body)
        assert_error(response, 401, "authentication_failed")
        assert response["WWW-Authenticate"] == "X-API-Key", (method, url)
    subscription.refresh_from_db()
    assert subscription.enabled is True


@pytest.mark.parametrize("raw", ["sk_unknown", "", "ck_" + "x" * 43])
def test_an_unknown_key_is_401(app, raw):
    response = api_client(raw).get(URL)

    assert_error(response, 401, "authentication_failed")


def test_a_revoked_key_is_401_everywhere(app):
    subscription = subscription_create(app.application)
    api_key_revoke(api_key=app.server.api_key, actor="test")
    api_key_revoke(api_key=app.client.api_key, actor="test")

    for raw in (app.server.raw, app.client.raw):
        for method, url, body in _every_endpoint(str(subscription.pk)):
            assert_error(_call(api_client(raw), method, url, body), 401, "authentication_failed")
    assert Subscription.objects.filter(pk=subscription.pk, enabled=True).exists()


def test_revoking_one_key_leaves_the_others_working(app):
    api_key_revoke(api_key=app.client.api_key, actor="test")

    assert api_client(app.server.raw).get(URL).status_code == 200


def test_a_key_records_its_last_use(app, server_api):
    assert app.server.api_key.last_used_at is None

    server_api.get(URL)

    app.server.api_key.refresh_from_db()
    assert app.server.api_key.last_used_at is not None


def test_a_client_key_gets_403_on_server_only_endpoints(app, client_api):
    subscription = subscription_create(app.application, external_user_id="u")

    for method, url in [
        ("get", URL),
        ("delete", f"{URL}/{subscription.pk}"),
        ("get", "/api/v1/users/u/subscriptions"),
    ]:
        response = getattr(client_api, method)(url)
        assert_error(response, 403, "permission_denied")
        assert str(subscription.pk) not in response.content.decode()
    assert Subscription.objects.filter(pk=subscription.pk).exists()


# --- The error shape for what DRF never sees ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here",
        "/api/v1/subscriptions/not-a-uuid",
        "/api/v1/subscriptions/",
        "/api/v2/subscriptions",
    ],
)
def test_an_unknown_url_under_the_api_is_404_with_the_error_shape(server_api, path):
    assert_error(server_api.get(path), 404, "not_found")


def test_an_unknown_url_is_404_with_the_error_shape_without_a_key(anonymous_api):
    assert_error(anonymous_api.get("/api/v1/nothing-here"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", f"{URL}/00000000-0000-4000-8000-000000000000"),
        ("post", f"{URL}/00000000-0000-4000-8000-000000000000"),
        ("delete", URL),
        ("put", URL),
        ("get", "/api/v1/users/identify"),
        ("get", "/api/v1/users/logout"),
        ("post", "/api/v1/users/u/subscriptions"),
    ],
)
def test_a_wrong_method_is_405_with_the_error_shape(server_api, method, path):
    response = getattr(server_api, method)(path)

    assert_error(response, 405, "method_not_allowed")
    assert response.has_header("Allow")


def test_an_unexpected_crash_is_500_with_the_error_shape(server_api, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("boom: secret internals")

    monkeypatch.setattr(subscription_views, "subscription_register", explode)

    response = server_api.post(URL, {"type": "iOSPush", "token": apns_token(1)}, format="json")

    assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.content.decode()


# --- Bodies ------------------------------------------------------------------------------------


def _oversized_body() -> bytes:
    body = json.dumps({"type": "iOSPush", "token": apns_token(1), "tags": {"x": "y" * MIB}})
    assert len(body) > MIB
    return body.encode()


def test_a_body_over_one_mib_is_413(server_api):
    response = server_api.generic("POST", URL, _oversized_body(), content_type="application/json")

    assert_error(response, 413, "payload_too_large")
    assert not Subscription.objects.exists()


def test_a_body_of_exactly_the_limit_is_not_413(server_api):
    body = json.dumps({"type": "iOSPush", "token": apns_token(1), "tags": {}})
    body = body[:-1] + " " * (MIB - len(body)) + "}"
    assert len(body.encode()) == MIB

    response = server_api.generic("POST", URL, body, content_type="application/json")

    assert response.status_code == 201, response.content[:300]


def test_the_limit_applies_to_every_api_path_even_unauthenticated(anonymous_api):
    response = anonymous_api.generic(
        "PUT", "/api/v1/nothing-here", _oversized_body(), content_type="application/json"
    )

    assert_error(response, 413, "payload_too_large")


def test_a_body_without_content_length_is_never_read(server_api):
    # Django reads no body without a Content-Length; only a server that marks the input as
    # ending by itself (gunicorn, for chunked bodies: signal_project/wsgi.py and
    # tests/signal_project/test_server_edges.py) gets one read. It must not create anything.
    response = server_api.generic(
        "POST", URL, _oversized_body(), content_type="application/json", CONTENT_LENGTH=""
    )

    assert_error(response, 400, "validation_error")
    assert not Subscription.objects.exists()


def test_the_json_parser_bounds_a_stream_without_content_length():
    with pytest.raises(PayloadTooLarge):
        BoundedJSONParser().parse(io.BytesIO(_oversized_body()), "application/json", {})
    assert BoundedJSONParser().parse(io.BytesIO(b'{"a": 1}'), "application/json", {}) == {"a": 1}


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"type": "iOSPush",}', b"\xff\xfe", b'{"a": 1} trailing']
)
def test_invalid_json_is_400(server_api, raw):
    response = server_api.generic("POST", URL, raw, content_type="application/json")

    assert_error(response, 400, "parse_error")
    assert not Subscription.objects.exists()


def test_a_body_that_is_not_an_object_is_400(server_api):
    response = server_api.post(URL, ["iOSPush"], format="json")

    assert "non_field_errors" in assert_error(response, 400, "validation_error")


def test_a_non_json_content_type_is_415(server_api):
    response = server_api.post(URL, {"type": "iOSPush", "token": apns_token(1)})  # multipart

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (URL, {"type": "iOSPush", "token": apns_token(1), "colour": "red"}, "colour"),
        (URL, {"type": "iOSPush", "token": apns_token(1), "application_id": "x"}, "application_id"),
        ("/api/v1/users/logout", {"subscription_id": apns_token(1), "user": "u"}, "user"),
        (
            "/api/v1/users/identify",
            {"external_user_id": "u", "subscription_id": "x", "force": True},
            "force",
        ),
    ],
)
def test_unknown_fields_are_400_naming_the_field(server_api, url, body, field):
    details = assert_error(server_api.post(url, body, format="json"), 400, "validation_error")

    assert details == {field: ["Unknown field."]}


def test_unknown_fields_of_a_subscription_update_are_400(server_api, app):
    subscription = subscription_create(app.application)

    response = server_api.put(
        f"{URL}/{subscription.pk}", {"enabled": False, "user_id": "x"}, format="json"
    )

    assert assert_error(response, 400, "validation_error") == {"user_id": ["Unknown field."]}
    subscription.refresh_from_db()
    assert subscription.enabled is True


def test_unknown_nested_fields_are_400(server_api):
    response = server_api.post(
        URL,
        {"type": "iOSPush", "token": apns_token(1), "device": {"model": "x", "ram": "8GB"}},
        format="json",
    )

    assert assert_error(response, 400, "validation_error") == {
        "device": {"ram": ["Unknown field."]}
    }


@pytest.mark.parametrize(
    ("url", "body", "field", "message"),
    [
        (URL, {"type": "iOSPush", "token": 12345}, "token", "Must be a JSON string."),
        (URL, {"type": "iOSPush", "token": apns_token(1), "tags": {"a": 1}}, "tags", "'a'"),
        ("/api/v1/users/logout", {"subscription_id": 7}, "subscription_id", "JSON string"),
        (
            "/api/v1/messages",
            {"external_user_id": "u", "title": "x", "ttl": "60"},
            "ttl",
            "JSON integer",
        ),
        (
            "/api/v1/messages",
            {"external_user_id": "u", "channels": ["SMS", 1]},
            "channels",
            "Item 1",
        ),
    ],
)
def test_values_of_another_json_type_are_400_not_coerced(server_api, url, body, field, message):
    details = assert_error(server_api.post(url, body, format="json"), 400, "validation_error")

    assert list(details) == [field]
    assert message in details[field][0]


def test_a_subscription_update_takes_enabled_only_as_a_json_boolean(server_api, app):
    subscription = subscription_create(app.application)

    response = server_api.put(f"{URL}/{subscription.pk}", {"enabled": 0}, format="json")

    assert assert_error(response, 400, "validation_error") == {
        "enabled": ["Must be a JSON boolean."]
    }
    subscription.refresh_from_db()
    assert subscription.enabled is True


def test_query_parameters_are_still_converted_from_text(server_api):
    response = server_api.get(URL, {"enabled": "true", "limit": "5"})

    assert response.status_code == 200


# --- Rate limit --------------------------------------------------------------------------------


@override_settings(API_RATE_LIMIT=3)
def test_the_rate_limit_answers_429_with_retry_after(server_api):
    outcomes: list[tuple[int, int, int]] = []  # (second at start, second at end, status)
    responses = []
    for _ in range(10):
        start = int(time.time())
        response = server_api.get(URL)
        outcomes.append((start, int(time.time()), response.status_code))
        responses.append(response)

    assert {status for _, _, status in outcomes} <= {200, 429}
    limited = [r for r in responses if r.status_code == 429]
    assert limited, outcomes
    for response in limited:
        assert_error(response, 429, "rate_limited")
        assert response["Retry-After"] == "1"
    # A request wholly inside one second counts in that second's window.
    per_second = Counter(start for start, end, status in outcomes if status == 200 and start == end)
    assert max(per_second.values(), default=0) <= 3, outcomes


@override_settings(API_RATE_LIMIT=3)
def test_the_rate_limit_counts_exactly_per_key_in_one_window(app, other_app, monkeypatch):
    monkeypatch.setattr(throttling, "clock", lambda: 1_900_000_000.25)
    server, client = api_client(app.server.raw), api_client(app.client.raw)

    statuses = [server.get(URL).status_code for _ in range(5)]
    # Other keys, even of the same application, have their own count.
    created = client.post(URL, {"type": "iOSPush", "token": apns_token(1)}, format="json")
    other_status = api_client(other_app.server.raw).get(URL).status_code

    assert statuses == [200, 200, 200, 429, 429]
    assert created.status_code == 201
    assert other_status == 200
    limited = server.get(URL)
    assert_error(limited, 429, "rate_limited")
    assert limited["Retry-After"] == "1"  # ceil(0.75 s)


@override_settings(API_RATE_LIMIT=3)
def test_the_next_window_is_open_again(server_api, monkeypatch):
    now = [1_900_000_000.5]
    monkeypatch.setattr(throttling, "clock", lambda: now[0])
    for _ in range(3):
        assert server_api.get(URL).status_code == 200
    assert server_api.get(URL).status_code == 429

    now[0] += 1

    assert server_api.get(URL).status_code == 200


@override_settings(API_RATE_LIMIT=1)
def test_unauthenticated_requests_are_not_counted(server_api, anonymous_api, monkeypatch):
    monkeypatch.setattr(throttling, "clock", lambda: 1_900_000_000.5)
    for _ in range(3):
        assert_error(anonymous_api.get(URL), 401, "authentication_failed")

    assert server_api.get(URL).status_code == 200
    assert_error(server_api.get(URL), 429, "rate_limited")


def test_requests_pass_uncounted_while_the_rate_limit_store_does_not_answer(
    server_api, settings, monkeypatch
):
    settings.API_RATE_LIMIT = 1
    monkeypatch.setattr(throttling, "clock", lambda: 1_900_000_000.5)
    with socket.socket() as closed:  # a port nothing listens on: Redis is down
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.CACHE_URL = f"redis://127.0.0.1:{port}/0"
    throttling._redis.cache_clear()
    monkeypatch.setitem(throttling._state, "skip_until", 0.0)
    try:
        statuses = [server_api.get(URL).status_code for _ in range(3)]
    finally:
        throttling._redis.cache_clear()

    assert statuses == [200, 200, 200]  # over the limit of 1, but nothing could count them


# --- Schema and docs ---------------------------------------------------------------------------


def test_the_schema_is_an_openapi_3_document_with_the_api_key_scheme(anonymous_api):
    response = anonymous_api.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes[
        "ApiKeyAuth"
    ].items()
    paths = schema["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/subscriptions"])
    assert {"get", "put", "delete"} <= set(paths["/api/v1/subscriptions/{subscription_id}"])
    assert "post" in paths["/api/v1/users/identify"]
    assert "post" in paths["/api/v1/users/logout"]
    assert "get" in paths["/api/v1/users/{external_user_id}/subscriptions"]
    create = paths["/api/v1/subscriptions"]["post"]
    assert {"ApiKeyAuth": []} in create["security"]
    assert {"200", "201"} <= set(create["responses"])


def test_the_schema_is_served_as_yaml_by_default(anonymous_api):
    response = anonymous_api.get("/api/v1/schema/")

    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_the_docs_page_loads_and_uses_no_cdn(anonymous_api):
    response = anonymous_api.get("/api/v1/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert "/api/v1/schema/" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("drf_spectacular_sidecar" in asset for asset in assets), assets
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), asset
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs", "googleapis"):
        assert cdn not in html
