import asyncio
import os

import pytest

from adapters import registry
from adapters.apns import APNsAdapter
from adapters.fcm import FCMAdapter


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.reset_adapters()
    yield
    registry.reset_adapters()


def test_adapters_are_built_from_settings_once(settings):
    settings.APNS_ENDPOINT = "https://127.0.0.1:8443"
    settings.APNS_CA_FILE = "/tmp/ca.pem"
    settings.FCM_ENDPOINT = "http://127.0.0.1:8089/"
    apns = registry.get_adapter("iOSPush")
    fcm = registry.get_adapter("AndroidPush")
    assert isinstance(apns, APNsAdapter) and isinstance(fcm, FCMAdapter)
    assert (apns.endpoint, apns.ca_file) == ("https://127.0.0.1:8443", "/tmp/ca.pem")
    assert fcm.endpoint == "http://127.0.0.1:8089"
    assert registry.get_adapter("iOSPush") is apns


def test_empty_apns_endpoint_means_apple(settings):
    settings.APNS_ENDPOINT = ""
    settings.APNS_CA_FILE = ""
    adapter = registry.get_adapter("iOSPush")
    assert adapter.endpoint is None and adapter.ca_file is None


def test_unknown_subscription_type_is_a_clear_error():
    with pytest.raises(registry.UnknownChannelError, match="CarrierPigeon"):
        registry.get_adapter("CarrierPigeon")


def test_email_adapter_is_built_from_settings(settings):
    from adapters.email import EmailAdapter

    settings.EMAIL_TIMEOUT = 12.5
    settings.EMAIL_CONNECTIONS_PER_RELAY = 3
    settings.SMTP_CA_FILE = "/tmp/ca.pem"
    adapter = registry.get_adapter("Email")
    assert isinstance(adapter, EmailAdapter) and adapter.channel == "Email"
    assert (adapter.timeout, adapter.connections_per_relay) == (12.5, 3)
    assert adapter.ca_file == "/tmp/ca.pem"


def test_a_forked_child_gets_its_own_event_loop():
    parent_loop = registry.event_loop()
    assert registry.run_in_loop(asyncio.sleep(0, result=1), timeout=5) == 1
    pid = os.fork()
    if pid == 0:  # child: the parent's loop thread does not exist here
        ok = False
        try:
            ok = registry.event_loop() is not parent_loop
            ok = ok and registry.run_in_loop(asyncio.sleep(0, result=2), timeout=5) == 2
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
