import uuid

import pytest

from adapters.apns import APNsAdapter
from adapters.email import EmailAdapter
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
def sms(fakes):
    from adapters.sms import TwilioSMSAdapter

    adapter = TwilioSMSAdapter(endpoint=fakes.sms_endpoint, timeout=5)
    yield adapter
    adapter.close()


@pytest.fixture
def email_adapter(fakes):
    adapter = EmailAdapter(ca_file=fakes.ca_file, timeout=5, connections_per_relay=4)
    yield adapter
    adapter.close()


def phone(prefix: str = "+1415") -> str:
    """A fresh 11-digit E.164 number starting with `prefix` (e.g. a fake Twilio range)."""
    digits = 12 - len(prefix)
    return prefix + f"{uuid.uuid4().int % 10**digits:0{digits}d}"


def email_address(prefix: str = "user") -> str:
    """A fresh address at the fake relay, so per-address fake state never leaks between tests."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def webpush(fakes):
    adapter = WebPushAdapter(["127.0.0.1"], timeout=5)
    yield adapter
    adapter.close()
