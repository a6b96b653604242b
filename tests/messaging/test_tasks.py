"""The queue a delivery task records for its attempts, whatever route the broker took."""

from types import SimpleNamespace

import pytest
from kombu.transport.native_delayed_delivery import calculate_routing_key

from messaging.tasks import _delivered_from


@pytest.mark.parametrize("countdown", [1, 5, 600, 2**27])
def test_a_task_delayed_in_rabbitmq_records_its_own_queue(countdown):
    routed = calculate_routing_key(countdown, "retry")
    assert routed != "retry"
    request = SimpleNamespace(delivery_info={"routing_key": routed})
    assert _delivered_from(request) == "retry"


def test_a_task_routed_directly_records_its_queue():
    assert _delivered_from(SimpleNamespace(delivery_info={"routing_key": "critical"})) == "critical"
    assert _delivered_from(SimpleNamespace(delivery_info=None)) is None
