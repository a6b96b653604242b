"""What the asyncio-based adapters share: a synchronous `send_batch` that runs the batch on
this process's adapter event loop, and one long-lived client per credential set (built, and
the environment's proxy settings read, on its first use)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from h2.exceptions import H2Error

from adapters import registry
from adapters.base import Credentials, OutboundMessage, SendResult
from adapters.errors import local_failure
from adapters.http2_client import Headers, Response


class Pool(Protocol):
    """What a client's `pool` offers: `HTTP2Pool` or `adapters.http_client.HTTPPool`."""

    def request(self, headers: Headers, body: bytes) -> Awaitable[Response]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class AsyncBatchAdapter:
    """Subclasses implement `_send_batch` (async) and `_build_client` (from credential values
    to a client whose `pool` is a `Pool`), and set `timeout` and `send_rounds`: how many
    timeouts one batch may spend at most (credential retries)."""

    send_rounds = 2
    timeout: float
    max_clients = 64  # credential sets with open connections; the oldest goes first

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
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

    def close(self) -> None:
        """Closes this process's connections (at shutdown; sending again reopens them)."""
        if self._clients_loop is not None and self._clients:
            registry.run_in_loop(self._close(), timeout=self.timeout)

    async def _close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await self._close_client(client)

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        raise NotImplementedError

    async def _close_client(self, client: Any) -> None:
        await client.pool.aclose()

    def _build_client(self, values: Any) -> Any:
        raise NotImplementedError

    def _client(self, credentials: Credentials) -> Any:
        """The client of these credentials on this loop, built on first use."""
        loop = asyncio.get_running_loop()
        if self._clients_loop is not loop:  # first use, or a forked child's new loop
            self._clients = {}
            self._clients_loop = loop
        client = self._clients.get(credentials.key)
        if client is None:
            if len(self._clients) >= self.max_clients:
                # Credentials rotate (the key has a content digest): drop the oldest client.
                self._clients.pop(next(iter(self._clients))).pool.close()
            client = self._clients[credentials.key] = self._build_client(credentials.values)
        return client


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
    except (OSError, H2Error) as exc:
        return local_failure(
            message_id,
            "network_error",
            f"{type(exc).__name__}: {exc}",
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    return response, (time.perf_counter() - started) * 1000
