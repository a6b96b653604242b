import uuid

import pytest

from adapters.apns import APNsAdapter
from adapters.fcm import FCMAdapter
from adapters.webpush import WebPushAdapter
from fakes.process import running_fake_providers


@pytest.fixture(scope="session")
def fakes():
    with running_fake_providers() as providers:
        yield providers


@pytest.fixture
def apns(fakes):
    adapter = APNsAdapter(endpoint=fakes.apns_endpoint, ca_file=fakes.ca_file, timeout=5)
    yield adapter
    adapter.close()


@pytest.fixture
def fcm(fakes):
    adapter = FCMAdapter(endpoint=fakes.fcm_endpoint, timeout=5)
    yield adapter
    adapter.close()


def hex_token(prefix: str = "") -> str:
    """A fresh 64-hex-digit APNs token, so per-token fake state never leaks between tests."""
    return (prefix + uuid.uuid4().hex + uuid.uuid4().hex)[:64]


def fcm_token(prefix: str = "tok") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture
def webpush(fakes):
    adapter = WebPushAdapter(["127.0.0.1"], timeout=5)
    yield adapter
    adapter.close()
