"""What the asyncio-based adapters share: a synchronous `send_batch` that runs the batch on
this process's adapter event loop; one long-lived client per credential set (built, and the
environment's proxy settings read, on its first use; the least recently used closed past
`max_clients`); the one worker loop that sends a batch with a start deadline (`Batch`,
`AsyncBatchAdapter._run_workers`); the one resend after a refused credential is renewed
(`resend_after_renewal`); and one request with its timeout (`timed_request`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from cachetools import LRUCache

from adapters import registry
from adapters.base import Credentials, OutboundMessage, SendResult
from adapters.errors import ErrorClass, is_credential_rejected, local_failure
from adapters.transport.http2_client import Headers, Response

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Pool(Protocol):
    """What a client's `pool` offers: `HTTP2Pool` or `adapters.transport.http_client.HTTPPool`."""

    def request(self, headers: Headers, body: bytes) -> Awaitable[Response]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class ClosingLRU(LRUCache):
    """A `cachetools.LRUCache` that hands what it evicts to `on_evict` (to close it)."""

    def __init__(self, maxsize: int, on_evict: Callable[[Any], None]) -> None:
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self):
        key, value = super().popitem()
        self._on_evict(value)
        return key, value


class Batch:
    """The messages of one `send_batch`, taken one at a time by its workers, and their
    results. After `deadline` (time.monotonic()) `take()` starts nothing more; `stop(unsent)`
    ends the batch early. Whatever is left without a result at the end gets `unsent`'s
    result, or fails `timeout` (temporary): it goes back to the queue."""

    def __init__(
        self, message_ids: Sequence[str], deadline: float, todo: Iterable[int] | None = None
    ) -> None:
        """`todo`: the indexes to send (default: all of them)."""
        self.message_ids = message_ids
        self.results: list[SendResult | None] = [None] * len(message_ids)
        self.queue: deque[int] = deque(range(len(message_ids)) if todo is None else todo)
        self.deadline = deadline
        self.stopped = False
        # Why what is left goes unsent: set by stop(), or by a worker that gave up alone.
        self.unsent: Callable[[str], SendResult] | None = None

    def take(self) -> int | None:
        """The index of the next message to send, or None: nothing left, stopped, too late."""
        if self.stopped or not self.queue:
            return None
        if time.monotonic() > self.deadline:
            self.stop(_too_late)
            return None
        return self.queue.popleft()

    def again(self, index: int) -> None:
        """Put a message back in front, to be taken next."""
        self.queue.appendleft(index)

    def stop(self, unsent: Callable[[str], SendResult]) -> None:
        """Start nothing more; what is left gets `unsent(message_id)` (the first reason)."""
        self.stopped = True
        if self.unsent is None:
            self.unsent = unsent

    def finish(self) -> list[SendResult]:
        unsent = self.unsent or _not_sent_in_time
        return [
            result if result is not None else unsent(self.message_ids[index])
            for index, result in enumerate(self.results)
        ]


def _too_late(message_id: str) -> SendResult:
    return local_failure(message_id, "timeout", "not sent: the batch's time ran out before sending")


def _not_sent_in_time(message_id: str) -> SendResult:
    return local_failure(message_id, "timeout", "not sent within the batch's time")


class AsyncBatchAdapter:
    """Subclasses implement `_send_batch` (async) and `_build_client` (from credential values
    to a client whose `pool` is a `Pool`), and set `timeout` and `send_rounds`: how many
    timeouts one batch may spend at most (credential retries)."""

    channel: str
    send_rounds = 2
    timeout: float
    max_clients = 64  # credential sets with open connections; the least recently used goes

    def __init__(self) -> None:
        self._clients: ClosingLRU = self._new_clients()
        self._clients_loop: asyncio.AbstractEventLoop | None = None

    def send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        if not messages:
            return []
        return registry.run_in_loop(
            self._send_batch(credentials, messages), timeout=self.send_rounds * self.timeout + 30
        )

    def _start_deadline(self) -> float:
        """The time.monotonic() after which a batch starts no request: `send_rounds - 1`
        timeouts from now, so that the last requests started (each with its own timeout) end
        within `send_rounds` timeouts, send_batch's deadline. What is unsent then fails
        `timeout` and is retried."""
        return time.monotonic() + (self.send_rounds - 1) * self.timeout

    def _batch(
        self, messages: Sequence[OutboundMessage], todo: Iterable[int] | None = None
    ) -> Batch:
        return Batch([m.message_id for m in messages], self._start_deadline(), todo)

    async def _run_workers(
        self,
        batch: Batch,
        worker: Callable[[Batch], Awaitable[None]],
        count: int,
        *,
        time_limit: float | None = None,
    ) -> list[SendResult]:
        """`count` workers draw the batch's messages until it is done; after `time_limit`
        seconds (when given) the ones still running are cancelled. A worker that fails is a
        bug: logged, its message left to `Batch.finish`."""
        count = max(1, min(count, len(batch.queue)))
        if count == 1 and time_limit is None:
            await worker(batch)  # no task to create
            return batch.finish()
        tasks = [asyncio.ensure_future(worker(batch)) for _ in range(count)]
        done, pending = await asyncio.wait(tasks, timeout=time_limit)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in done:
            if task.exception() is not None:
                logger.error("%s worker failed", self.channel, exc_info=task.exception())
        return batch.finish()

    async def _each(
        self,
        messages: Sequence[OutboundMessage],
        send_one: Callable[[OutboundMessage], Awaitable[SendResult]],
        count: int,
    ) -> list[SendResult]:
        """The batch sent by `count` workers, one request at a time each (`send_one`)."""
        batch = self._batch(messages)
        results = batch.results

        async def worker(batch: Batch) -> None:
            while (index := batch.take()) is not None:
                results[index] = await send_one(messages[index])

        return await self._run_workers(batch, worker, count)

    def close(self) -> None:
        """Closes this process's connections (at shutdown; sending again reopens them)."""
        if self._clients_loop is not None and self._clients:
            registry.run_in_loop(self._close(), timeout=self.timeout)

    async def _close(self) -> None:
        clients, self._clients = self._clients, self._new_clients()
        for client in clients.values():
            await self._close_client(client)

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        raise NotImplementedError

    async def _close_client(self, client: Any) -> None:
        await client.pool.aclose()

    def _evict_client(self, client: Any) -> None:
        """A client pushed out of the cache (its credentials rotated, most likely)."""
        client.pool.close()

    def _build_client(self, values: Any) -> Any:
        raise NotImplementedError

    def _new_clients(self) -> ClosingLRU:
        return ClosingLRU(self.max_clients, self._evict_client)

    def _client(self, credentials: Credentials) -> Any:
        """The client of these credentials on this loop, built on first use."""
        loop = asyncio.get_running_loop()
        if self._clients_loop is not loop:  # first use, or a forked child's new loop
            self._clients = self._new_clients()
            self._clients_loop = loop
        client = self._clients.get(credentials.key)
        if client is None:
            client = self._clients[credentials.key] = self._build_client(credentials.values)
        return client


class RenewalFailed(Exception):
    """The credential could not be renewed: the rejected messages fail with this result."""

    def result(self, message_id: str) -> SendResult:
        raise NotImplementedError


async def resend_after_renewal(
    results: list[SendResult],
    messages: Sequence[OutboundMessage],
    errors: Mapping[str, ErrorClass],
    renew: Callable[[], Awaitable[T]],
    send: Callable[[int, T], Awaitable[SendResult]],
) -> list[SendResult]:
    """The one resend of a batch whose credential the provider refused: when any result is a
    `credential_rejected` error of the table, `renew()` gives a new credential and `send`
    (index, credential) sends each of those messages once more; if renewing fails with
    `RenewalFailed`, they get its result instead."""
    rejected = [i for i, result in enumerate(results) if is_credential_rejected(result, errors)]
    if not rejected:
        return results
    try:
        credential = await renew()
    except RenewalFailed as exc:
        for index in rejected:
            results[index] = exc.result(messages[index].message_id)
        return results
    retried = await asyncio.gather(*(send(index, credential) for index in rejected))
    for index, result in zip(rejected, retried, strict=True):
        results[index] = result
    return results


async def timed_requests(
    pool: Pool,
    items: Sequence[tuple[Headers, bytes]],
    *,
    timeout: float,
    message_ids: Sequence[str],
) -> list[tuple[Response, float] | SendResult]:
    """timed_request for many requests at once: the same answers and failures, in order.
    A pool that sends many at once (`request_many`: the HTTP/2 pool and client) gets them in
    one call; any other, one timed_request each."""
    many = getattr(pool, "request_many", None)
    if many is None:
        return list(
            await asyncio.gather(
                *(
                    timed_request(pool, headers, body, timeout=timeout, message_id=message_id)
                    for (headers, body), message_id in zip(items, message_ids, strict=True)
                )
            )
        )
    answers: list[tuple[Response, float] | SendResult] = []
    for outcome, message_id in zip(await many(items, timeout), message_ids, strict=True):
        if isinstance(outcome, tuple):
            answers.append(outcome)
        elif isinstance(outcome, TimeoutError):
            answers.append(local_failure(message_id, "timeout", str(outcome)))
        elif isinstance(outcome, OSError):
            answers.append(
                local_failure(message_id, "network_error", f"{type(outcome).__name__}: {outcome}")
            )
        else:
            raise outcome
    return answers


async def timed_request(
    pool: Pool, headers: Headers, body: bytes, *, timeout: float, message_id: str
) -> tuple[Response, float] | SendResult:
    """One request with a deadline: the answer and its latency in ms, or the message's local
    failure (`timeout`, `network_error`) when there was no answer."""
    started = time.perf_counter()
    try:
        # A deadline on this task, not wait_for's extra task per request.
        async with asyncio.timeout(timeout):
            response = await pool.request(headers, body)
    except TimeoutError:
        return local_failure(
            message_id,
            "timeout",
            f"no answer within {timeout} s",
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    except OSError as exc:
        return local_failure(
            message_id,
            "network_error",
            f"{type(exc).__name__}: {exc}",
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    return response, (time.perf_counter() - started) * 1000
