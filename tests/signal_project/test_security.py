"""HTTPS behind a TLS-terminating proxy: `check --deploy` with production settings, the
redirect of plain HTTP (the probes exempt), and the admin's login form posted through a proxy
that says the request was HTTPS (CSRF's Origin and Referer checks)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-test-password-9d2e"  # noqa: S105 (a test account's)
PUBLIC = "https://signal.example.com"
INTERNAL_HOST = "web:8000"  # the Host a proxy that does not pass the public one sends
PROXY_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# What the tests' own settings turn off (tests/settings.py) and production leaves at default.
_TEST_OVERRIDES = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")


def production_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _TEST_OVERRIDES and not name.startswith(("SECURE_", "CSRF_"))
    }
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "signal_project.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "signal.example.com",
        "PUBLIC_URL": PUBLIC,
        **extra,
    }


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env=production_env(),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNINGS:" not in output, output


def test_check_deploy_names_the_hsts_promises_an_operator_turns_off():
    """Turned off (a subdomain still on plain HTTP), each leaves its own warning only."""
    result = manage(
        "check",
        "--deploy",
        env=production_env(SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_HSTS_PRELOAD="false"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert sorted(set(re.findall(r"\((\w+\.[WE]\d+)\)", output))) == [
        "security.W005",
        "security.W021",
    ], output


def test_the_production_defaults_and_the_debug_ones():
    show = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_PROXY_SSL_HEADER, s.CSRF_TRUSTED_ORIGINS)"
    )
    production = manage("shell", "-c", show, env=production_env())
    assert production.stdout.split("\n")[-2] == (f"True 31536000 True True None ['{PUBLIC}']"), (
        production.stderr
    )
    debug = manage(
        "shell",
        "-c",
        show,
        env=production_env(
            DEBUG="true",
            PUBLIC_URL="",
            SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        ),
    )
    assert debug.stdout.split("\n")[-2] == (
        "False 0 False False ('HTTP_X_FORWARDED_PROTO', 'https') []"
    ), debug.stderr


@pytest.fixture
def https_settings(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.ALLOWED_HOSTS = ["signal.example.com", "web"]
    return settings


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_except_the_probes(https_settings, client):
    response = client.get("/api/v1/applications/current", HTTP_HOST="signal.example.com")
    assert response.status_code == 301
    assert response["Location"] == "https://signal.example.com/api/v1/applications/current"
    assert client.get("/admin/login/", HTTP_HOST="signal.example.com").status_code == 301
    for probe in ("/healthz", "/readyz", "/metrics"):
        response = client.get(probe, HTTP_HOST=INTERNAL_HOST)
        assert response.status_code != 301, probe
        assert response.status_code in (200, 503), (probe, response.status_code)


@pytest.mark.django_db
def test_the_proxys_header_makes_a_request_secure_only_when_configured(https_settings):
    forwarded = {"HTTP_HOST": "signal.example.com", "HTTP_X_FORWARDED_PROTO": "https"}
    # Not configured: a client's own X-Forwarded-Proto is not believed.
    assert Client().get("/admin/login/", **forwarded).status_code == 301
    https_settings.SECURE_PROXY_SSL_HEADER = PROXY_HEADER
    response = Client().get("/admin/login/", **forwarded)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == ("max-age=31536000; includeSubDomains; preload")


def _login_through_the_proxy(client: Client, *, origin: str = PUBLIC):
    """GET the login form and POST it as a browser at PUBLIC does, through a proxy that sends
    X-Forwarded-Proto: https and the upstream's own Host."""
    proxy = {"HTTP_HOST": INTERNAL_HOST, "HTTP_X_FORWARDED_PROTO": "https"}
    form = client.get("/admin/login/?next=/admin/", **proxy)
    assert form.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.content.decode())[1]
    return client.post(
        "/admin/login/?next=/admin/",
        {"csrfmiddlewaretoken": token, "username": "root", "password": PASSWORD},
        HTTP_ORIGIN=origin,
        HTTP_REFERER=f"{origin}/admin/login/?next=/admin/",
        **proxy,
    )


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def test_the_admin_login_works_behind_a_tls_proxy_with_the_public_origin_trusted(
    https_settings, operator
):
    https_settings.SECURE_PROXY_SSL_HEADER = PROXY_HEADER
    https_settings.CSRF_TRUSTED_ORIGINS = [PUBLIC]
    client = Client(enforce_csrf_checks=True)
    response = _login_through_the_proxy(client)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == "/admin/"
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["csrftoken"]["secure"] is True
    assert (
        client.get("/admin/", HTTP_HOST=INTERNAL_HOST, HTTP_X_FORWARDED_PROTO="https").status_code
        == 200
    )


def test_without_the_trusted_origin_the_login_is_refused_as_django_refuses_it(
    https_settings, operator
):
    https_settings.SECURE_PROXY_SSL_HEADER = PROXY_HEADER
    https_settings.CSRF_TRUSTED_ORIGINS = []
    response = _login_through_the_proxy(Client(enforce_csrf_checks=True))
    assert response.status_code == 403
    assert "CSRF" in response.content.decode()


def test_without_the_proxy_header_the_login_is_refused_too(https_settings, operator):
    """The request looks like plain HTTP to Django: an https Origin is not its own."""
    https_settings.SECURE_SSL_REDIRECT = False
    https_settings.CSRF_TRUSTED_ORIGINS = []
    response = _login_through_the_proxy(Client(enforce_csrf_checks=True))
    assert response.status_code == 403
