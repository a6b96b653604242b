"""Shared factories and fixtures: applications and keys made by the real services, and API
clients that authenticate with `X-API-Key`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, Application
from accounts.services import NewApiKey, api_key_create, application_create
from messaging.models import Subscription
from messaging.services.subscriptions import SYSTEM, subscription_register

_sequence = itertools.count(1)


@dataclass(frozen=True)
class AppWithKeys:
    application: Application
    server: NewApiKey
    client: NewApiKey


def application_with_keys(name: str = "") -> AppWithKeys:
    """An application with one server and one client key, made the way production makes them."""
    application = application_create(name=name or f"app-{next(_sequence)}")
    return AppWithKeys(
        application=application,
        server=api_key_create(application=application, scope=ApiKey.Scope.SERVER, name="server"),
        client=api_key_create(application=application, scope=ApiKey.Scope.CLIENT, name="client"),
    )


def api_client(raw_key: str | None = None) -> APIClient:
    """An APIClient that sends `raw_key` as X-API-Key on every request (none if None)."""
    client = APIClient()
    if raw_key is not None:
        client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def apns_token(n: int | None = None) -> str:
    """A valid APNs device token: 64 lowercase hex digits, different for each n."""
    return f"{n if n is not None else next(_sequence):064x}"


def fcm_token(n: int | None = None) -> str:
    return f"fcm-token:APA91b{n if n is not None else next(_sequence):0140d}"


def subscription_create(
    application: Application,
    *,
    type: str = "iOSPush",
    token: str | None = None,
    external_user_id: str | None = None,
    tags: dict | None = None,
    **profile,
) -> Subscription:
    """A subscription registered through the service (token already normalized)."""
    subscription, created = subscription_register(
        application=application,
        actor=SYSTEM,
        type=type,
        token=token if token is not None else apns_token(),
        external_user_id=external_user_id,
        tags=tags,
        **profile,
    )
    assert created
    return subscription


@pytest.fixture
def app(db) -> AppWithKeys:
    return application_with_keys("first")


@pytest.fixture
def other_app(db) -> AppWithKeys:
    return application_with_keys("second")


@pytest.fixture
def server_api(app) -> APIClient:
    return api_client(app.server.raw)


@pytest.fixture
def client_api(app) -> APIClient:
    return api_client(app.client.raw)


@pytest.fixture
def other_server_api(other_app) -> APIClient:
    return api_client(other_app.server.raw)


@pytest.fixture
def other_client_api(other_app) -> APIClient:
    return api_client(other_app.client.raw)


@pytest.fixture
def anonymous_api() -> APIClient:
    return api_client(None)


@pytest.fixture
def log_lines():
    """The JSON lines (as dicts) that the root logger and Django's loggers write during the
    test, formatted as LOG_FORMAT=json formats them (core.logging)."""
    import io
    import json
    import logging

    from core.logging import formatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    # Django's loggers do not propagate to the root (they have the handler of their own).
    loggers = [logging.getLogger(), logging.getLogger("django")]
    for logger in loggers:
        logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger in loggers:
        logger.removeHandler(handler)


# The admin's pages, as a superuser (replaces pytest-django's fixtures of the same names, so
# that the actor the admin records is "admin:root").
@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", None)


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client
