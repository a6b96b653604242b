"""`python -m fakes --host H --track-tokens`: every fake listens on H (its TLS certificate and
the FCM token URI name it), and APNs and FCM count each token they accepted and the client
address that sent it, so a test can find a message delivered twice and who sent what."""

from __future__ import annotations

import uuid

import pytest

from adapters.apns import APNsAdapter
from adapters.base import OutboundMessage
from adapters.fcm import FCMAdapter
from fakes.process import running_fake_providers
from fakes.state import ensure_state

HOST = "127.0.0.2"  # on Linux the whole of 127/8 is loopback: another address, no setup


def message(token: str) -> OutboundMessage:
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, title="t", body="b")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    with running_fake_providers(
        state_dir=tmp_path_factory.mktemp("fakes-host"), host=HOST, track_tokens=True
    ) as running:
        yield running


def test_every_fake_listens_on_the_host_and_apns_fcm_count_each_token(fakes):
    assert fakes.apns_endpoint.startswith(f"https://{HOST}:")
    assert fakes.fcm_endpoint.startswith(f"http://{HOST}:")
    assert fakes.smtp_host == HOST and fakes.kakao_endpoint.startswith(f"http://{HOST}:")
    fakes.reset()
    apns = APNsAdapter(endpoint=fakes.apns_endpoint, ca_file=fakes.ca_file, timeout=5)
    fcm = FCMAdapter(endpoint=fakes.fcm_endpoint, timeout=5)
    try:
        ios = "abcd" + uuid.uuid4().hex * 2
        android = f"tok-{uuid.uuid4().hex}"
        # The certificate names HOST (TLS verifies), the token URI too (the OAuth token).
        assert all(r.ok for r in apns.send_batch(fakes.apns_credentials(), [message(ios)] * 2))
        assert all(r.ok for r in fcm.send_batch(fakes.fcm_credentials(), [message(android)]))
    finally:
        apns.close()
        fcm.close()
    apns_stats, fcm_stats = fakes.apns_stats(), fakes.fcm_stats()
    assert apns_stats["tokens"] == {ios: 2} and fcm_stats["tokens"] == {android: 1}
    # The adapters connect from the loopback address the kernel picks for HOST.
    assert sum(apns_stats["peers"].values()) == 2 and all(apns_stats["peers"])
    fakes.reset()
    assert fakes.apns_stats()["tokens"] == {}


def test_without_tracking_no_tokens_are_kept(tmp_path):
    with running_fake_providers(state_dir=tmp_path) as fakes:
        assert "tokens" not in fakes.fcm_stats()


def test_a_state_directory_whose_certificate_does_not_name_the_host_is_refused(tmp_path):
    ensure_state(tmp_path)  # made for 127.0.0.1 only
    with pytest.raises(ValueError, match="does not name 10.0.0.9"):
        ensure_state(tmp_path, host="10.0.0.9")
    assert ensure_state(tmp_path, host="127.0.0.1")
