"""The admin login's lockouts (django-axes, operations.admin_login): AXES_FAILURE_LIMIT wrong
passwords for a username from one address refuse that pair, even with the right password,
with a 429 page in the admin's look; other usernames and addresses log in; `axes_reset`
lifts it. The client's address is taken behind TRUSTED_PROXY_COUNT proxies."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory

from operations.admin_login import client_ip

PASSWORD = "a-long-test-password-5b1a"  # noqa: S105 (a test account's)


@pytest.fixture
def operators(db):
    User = get_user_model()
    return [
        User.objects.create_superuser(name, f"{name}@example.com", PASSWORD)
        for name in ("root", "second")
    ]


def login(username: str, password: str, *, address: str = "203.0.113.7", **headers):
    """The login form, fetched and posted as a browser does (CSRF enforced)."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=address)
    form = client.get("/admin/login/?next=/admin/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.content.decode())[1]
    return client.post(
        "/admin/login/?next=/admin/",
        {"csrfmiddlewaretoken": token, "username": username, "password": password},
        **headers,
    )


def fail(username: str, times: int, **kwargs) -> None:
    for _ in range(times):
        response = login(username, "wrong-password", **kwargs)
        assert response.status_code in (200, 429), response.status_code


def test_five_wrong_passwords_lock_the_username_out_of_that_address(operators, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    fail("root", 4)
    assert login("root", "wrong-password").status_code == 429  # the fifth locks
    response = login("root", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert 'id="login-locked"' in page and "Automata-Signal" in page  # the admin's look
    assert "axes_reset" in page
    assert int(response["Retry-After"]) == 15 * 60
    assert "sessionid" not in response.cookies


def test_another_username_and_another_address_still_log_in(operators):
    fail("root", 5)
    assert login("root", PASSWORD).status_code == 429
    response = login("second", PASSWORD)
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert login("root", PASSWORD, address="198.51.100.9").status_code == 302


def test_fewer_failures_than_the_limit_then_the_right_password_logs_in(operators):
    fail("root", 4)
    assert login("root", PASSWORD).status_code == 302
    fail("root", 4)  # the success reset the count
    assert login("root", PASSWORD).status_code == 302


def test_axes_reset_lifts_the_lockout(operators):
    fail("root", 5)
    assert login("root", PASSWORD).status_code == 429
    call_command("axes_reset")
    assert login("root", PASSWORD).status_code == 302


def test_the_limit_and_cool_off_come_from_the_settings(operators, settings):
    from datetime import timedelta

    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    fail("root", 2)
    response = login("root", PASSWORD)
    assert (response.status_code, response["Retry-After"]) == (429, "60")


def test_behind_a_proxy_the_lockout_follows_the_forwarded_client_address(operators, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    # The client wrote an X-Forwarded-For of its own: the proxy appended the real address.
    for _ in range(5):
        login(
            "root", "wrong-password", address=proxy,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{_}, 203.0.113.7",
        )  # fmt: skip
    locked = login("root", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert locked.status_code == 429
    # Another client behind the same proxy is not locked out.
    other = login("root", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert other.status_code == 302


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, "192.0.2.1", "10.0.0.2"),  # no proxy trusted: the connection's address
        (1, "", "10.0.0.2"),
        (1, "192.0.2.1, 203.0.113.7", "203.0.113.7"),
        (2, "192.0.2.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        (2, "203.0.113.7", "203.0.113.7"),  # fewer entries than proxies: the leftmost
        (1, "not-an-address", "10.0.0.2"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip(settings, count, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = count
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected
