"""Fixtures of the message tests: the fake providers of the e2e suite (one process for the
whole session) and adapters pointed at them, for delivery run in-process."""

from __future__ import annotations

import pytest

from accounts.models import Application
from accounts.services import application_create
from adapters import registry
from tests.e2e.conftest import fake_providers  # noqa: F401 (a fixture, re-exported)


@pytest.fixture
def providers(fake_providers, settings):  # noqa: F811
    """The adapters of this process talk to the fakes, whose counters start at 0."""
    settings.APNS_ENDPOINT = fake_providers.apns_endpoint
    settings.APNS_CA_FILE = fake_providers.ca_file
    settings.FCM_ENDPOINT = fake_providers.fcm_endpoint
    registry.reset_adapters()
    fake_providers.reset()
    yield fake_providers
    registry.reset_adapters()


@pytest.fixture
def fake_app(db, providers) -> Application:
    """An application holding the credentials the fake providers accept."""
    return application_create(
        name="fake-providers",
        credentials={
            "iOSPush": dict(providers.apns_credentials().values),
            "AndroidPush": dict(providers.fcm_credentials().values),
        },
    )
