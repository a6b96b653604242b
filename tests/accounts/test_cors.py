"""CORS on the API (django-cors-headers with accounts.cors): a browser's call with a client key
is readable by the origins its application lists, and only by them; a preflight (no key) is
answered for an origin some application lists."""

from __future__ import annotations

import time

import pytest

from accounts.audit import SYSTEM
from accounts.cors import listed_origins_forget
from accounts.services import application_settings_update
from tests.conftest import api_client

SHOP = "https://shop.example.com"
OTHER = "https://other.example.com"


@pytest.fixture(autouse=True)
def fresh_origins():
    listed_origins_forget()
    yield
    listed_origins_forget()


def allow(app, *origins: str) -> None:
    application_settings_update(
        application=app.application, actor=SYSTEM, allowed_origins=list(origins)
    )


def preflight(origin: str, path: str = "/api/v1/applications/current"):
    return api_client(None).options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-api-key",
    )


def test_a_listed_origin_reads_its_applications_answers_with_a_client_key(app, client_api):
    allow(app, SHOP)
    response = client_api.get("/api/v1/applications/current", HTTP_ORIGIN=SHOP)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP
    exposed = response["Access-Control-Expose-Headers"].lower()
    assert "retry-after" in exposed and "x-request-id" in exposed
    assert "origin" in response["Vary"].lower()
    assert "Access-Control-Allow-Credentials" not in response
    # Errors too: a client key calling a server-key endpoint gets a 403 the page can read.
    response = client_api.get("/api/v1/messages", HTTP_ORIGIN=SHOP)
    assert response.status_code == 403
    assert response["Access-Control-Allow-Origin"] == SHOP


def test_another_applications_origin_and_an_unlisted_one_get_no_cors_header(
    app, other_app, client_api
):
    allow(app, SHOP)
    allow(other_app, OTHER)
    for origin in (OTHER, "https://evil.example.com", "null", "https://shop.example.com:8443"):
        response = client_api.get("/api/v1/applications/current", HTTP_ORIGIN=origin)
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response, origin


def test_a_server_key_never_gets_a_cors_header(app, server_api):
    allow(app, SHOP)
    response = server_api.get("/api/v1/applications/current", HTTP_ORIGIN=SHOP)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


def test_a_request_without_a_key_or_with_an_unknown_one_gets_no_cors_header(app):
    allow(app, SHOP)
    for client in (api_client(None), api_client("ck_not-a-key")):
        response = client.get("/api/v1/applications/current", HTTP_ORIGIN=SHOP)
        assert response.status_code == 401
        assert "Access-Control-Allow-Origin" not in response


def test_an_unknown_api_path_follows_the_key_of_its_header(app, client_api):
    allow(app, SHOP)
    response = client_api.get("/api/v1/no-such-thing", HTTP_ORIGIN=SHOP)
    assert response.status_code == 404
    assert response["Access-Control-Allow-Origin"] == SHOP


def test_a_preflight_is_answered_for_an_origin_some_application_lists(app, other_app):
    allow(app, SHOP)
    allow(other_app, OTHER)
    for origin in (SHOP, OTHER):
        response = preflight(origin)
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == origin
        allowed = {name.strip() for name in response["Access-Control-Allow-Headers"].split(",")}
        assert {
            "x-api-key", "x-user-hash", "idempotency-key", "x-request-id", "content-type",
        } <= allowed  # fmt: skip
        assert "PUT" in response["Access-Control-Allow-Methods"]
    response = preflight("https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in response


def test_nothing_outside_the_api_gets_cors_headers(app, client):
    allow(app, SHOP)
    assert "Access-Control-Allow-Origin" not in preflight(SHOP, "/admin/login/")
    response = client.get("/admin/login/", HTTP_ORIGIN=SHOP)
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" not in client.get("/healthz", HTTP_ORIGIN=SHOP)


def test_the_preflights_origins_are_cached_and_a_change_is_seen_after_their_ttl(
    app, settings, django_assert_num_queries
):
    settings.CORS_ORIGINS_CACHE_SECONDS = 60
    assert "Access-Control-Allow-Origin" not in preflight(SHOP)
    allow(app, SHOP)
    with django_assert_num_queries(0):  # within the TTL: the cached set, no query
        assert "Access-Control-Allow-Origin" not in preflight(SHOP)

    settings.CORS_ORIGINS_CACHE_SECONDS = 0.3
    listed_origins_forget()
    assert preflight(SHOP)["Access-Control-Allow-Origin"] == SHOP
    allow(app, OTHER)
    time.sleep(0.4)
    assert "Access-Control-Allow-Origin" not in preflight(SHOP)
    assert preflight(OTHER)["Access-Control-Allow-Origin"] == OTHER
