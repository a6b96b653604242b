"""The machinery the asyncio adapters share: the worker loop with its start deadline, the
one resend after a credential is renewed, and the client cache."""

import asyncio
import time

from adapters.asyncio_adapter import (
    AsyncBatchAdapter,
    Batch,
    ClosingLRU,
    RenewalFailed,
    resend_after_renewal,
)
from adapters.base import OutboundMessage, SendResult
from adapters.errors import error_table, failure, local_failure

TABLE = error_table("Test", [("refused", 401, False, False, True, "our credential")])


class _Adapter(AsyncBatchAdapter):
    channel = "Test"
    timeout = 0.2
    send_rounds = 3


def _messages(count):
    return [OutboundMessage(message_id=f"m{i}", token="t") for i in range(count)]


def test_no_message_starts_after_the_deadline_and_the_rest_fail_timeout():
    adapter = _Adapter()
    messages = _messages(6)
    sent = []

    async def send_one(message):
        sent.append(message.message_id)
        await asyncio.sleep(0.15)
        return SendResult(message_id=message.message_id, ok=True)

    started = time.monotonic()
    results = asyncio.run(adapter._each(messages, send_one, 1))
    assert time.monotonic() - started < adapter.send_rounds * adapter.timeout
    assert 2 <= len(sent) <= 4  # the deadline is 2 timeouts (0.4 s) away
    assert [r.ok for r in results] == [True] * len(sent) + [False] * (6 - len(sent))
    assert {r.error_code for r in results if not r.ok} == {"timeout"}
    assert not any(r.permanent for r in results)


def test_a_stopped_batch_gives_what_is_left_the_stopping_reason():
    batch = Batch(["a", "b", "c"], time.monotonic() + 60)
    assert batch.take() == 0
    batch.results[0] = SendResult(message_id="a", ok=True)
    batch.stop(lambda message_id: local_failure(message_id, "network_error", "down"))
    batch.stop(lambda message_id: local_failure(message_id, "timeout"))  # the first one wins
    assert batch.take() is None
    assert [r.error_code for r in batch.finish()] == [None, "network_error", "network_error"]


def test_again_puts_a_message_back_in_front():
    batch = Batch(["a", "b"], time.monotonic() + 60, todo=[1, 0])
    assert batch.take() == 1
    batch.again(1)
    assert [batch.take(), batch.take(), batch.take()] == [1, 0, None]


def test_rejected_credentials_are_renewed_once_and_only_their_messages_resent():
    messages = _messages(3)
    results = [
        SendResult(message_id="m0", ok=True),
        failure("m1", TABLE["refused"]),
        failure("m2", TABLE["refused"]),
    ]
    renewals = []

    async def renew():
        renewals.append(1)
        return "new"

    async def send(index, credential):
        return SendResult(message_id=messages[index].message_id, ok=True, provider_id=credential)

    results = asyncio.run(resend_after_renewal(results, messages, TABLE, renew, send))
    assert renewals == [1]
    assert [(r.ok, r.provider_id) for r in results] == [(True, None), (True, "new"), (True, "new")]


def test_a_failed_renewal_fails_the_rejected_messages_with_its_result():
    class Refused(RenewalFailed):
        def result(self, message_id):
            return local_failure(message_id, "network_error", "token endpoint down")

    async def renew():
        raise Refused

    async def send(index, credential):
        raise AssertionError("nothing is resent")

    messages = _messages(2)
    results = [SendResult(message_id="m0", ok=True), failure("m1", TABLE["refused"])]
    results = asyncio.run(resend_after_renewal(results, messages, TABLE, renew, send))
    assert [r.error_code for r in results] == [None, "network_error"]


def test_the_client_cache_closes_the_least_recently_used_past_its_size():
    closed = []
    cache = ClosingLRU(2, closed.append)
    cache["a"], cache["b"] = "A", "B"
    assert cache.get("a") == "A"  # now "b" is the least recently used
    cache["c"] = "C"
    assert closed == ["B"] and set(cache) == {"a", "c"}
