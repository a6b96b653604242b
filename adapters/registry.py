"""What lives once per process: the adapters built from settings, and the event loop they share.

Celery workers are synchronous prefork processes, while the provider clients are asyncio:
`run_in_loop()` hands a coroutine to one event loop running in a daemon thread, created lazily
and recreated in a forked child (the parent's thread does not survive the fork).
`get_adapter()` is the single seam tests use; `reset_adapters()` drops the cache.

Which class serves a subscription type is its channel spec's `adapter` (core.channels, which
registers the paths at start-up: this package imports nothing of ours), unless
`settings.CHANNEL_ADAPTERS` overrides it (a path, or None to turn the channel off).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import importlib.util
import os
import threading
from collections.abc import Coroutine, Mapping
from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.utils.module_loading import import_string

from adapters.base import AdapterConfigurationError, ChannelAdapter

T = TypeVar("T")

_lock = threading.Lock()
_adapters: dict[str, ChannelAdapter] = {}
_loop: asyncio.AbstractEventLoop | None = None
_default_paths: dict[str, str] = {}


class UnknownChannelError(AdapterConfigurationError):
    """No adapter is configured for this subscription type."""


def set_default_paths(paths: Mapping[str, str | None]) -> None:
    """Each subscription type's adapter class (dotted path; None: the channel has none) when
    settings.CHANNEL_ADAPTERS names none. The channel specs' paths, registered at start-up."""
    _default_paths.clear()
    _default_paths.update({kind: path for kind, path in paths.items() if path})


def adapter_path(subscription_type: str) -> str | None:
    """The dotted path of the adapter class that sends this subscription type, or None."""
    overrides = getattr(settings, "CHANNEL_ADAPTERS", None) or {}
    if subscription_type in overrides:
        return overrides[subscription_type]
    return _default_paths.get(subscription_type)


def adapter_available(subscription_type: str) -> bool:
    """Whether an adapter is named for this subscription type and its module is installed
    (without importing it)."""
    path = adapter_path(subscription_type)
    return path is not None and _module_exists(path.rpartition(".")[0])


@cache
def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package
        return False


def get_adapter(subscription_type: str) -> ChannelAdapter:
    """The adapter for a subscription type, built once per process from settings."""
    adapter = _adapters.get(subscription_type)
    if adapter is not None:
        return adapter
    with _lock:
        if subscription_type not in _adapters:
            _adapters[subscription_type] = _build(subscription_type)
        return _adapters[subscription_type]


def reset_adapters() -> None:
    """Forget the built adapters, e.g. after a test changed the provider settings, closing
    their connections (dropped open, aiohttp reports them unclosed when the process exits)."""
    with _lock:
        dropped = list(_adapters.values())
        _adapters.clear()
    _close(dropped)


def _build(subscription_type: str) -> ChannelAdapter:
    path = adapter_path(subscription_type)
    if path is None:
        raise UnknownChannelError(f"No adapter for subscription type {subscription_type!r}.")
    if not adapter_available(subscription_type):
        raise UnknownChannelError(
            f"The adapter of {subscription_type} ({path}) is not installed in this release."
        )
    adapter_class = import_string(path)
    # Each adapter picks its own settings (endpoints, CA file), so adding one needs no edit here.
    from_settings = getattr(adapter_class, "from_settings", None)
    return from_settings(settings) if from_settings else adapter_class()


def event_loop() -> asyncio.AbstractEventLoop:
    """This process's adapter event loop, started in a daemon thread on first use."""
    global _loop
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            started = threading.Event()
            new_loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(started.set)
                new_loop.run_forever()

            threading.Thread(target=run, name="adapters-event-loop", daemon=True).start()
            started.wait(timeout=10)
            _loop = new_loop
        return _loop


def run_in_loop(coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run a coroutine on the adapter loop from synchronous code and wait for its result."""
    future = asyncio.run_coroutine_threadsafe(coroutine, event_loop())
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise


def _close_adapters_at_exit() -> None:
    # Otherwise open HTTP sessions are reported as unclosed when the interpreter exits.
    _close(list(_adapters.values()))


def _close(adapters: list[ChannelAdapter]) -> None:
    if _loop is None or _loop.is_closed():
        return
    for adapter in adapters:
        close = getattr(adapter, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def _after_fork_in_child() -> None:
    # The loop's thread exists only in the parent; its clients' sockets belong to the parent
    # too. Start afresh; adapters notice the new loop and build new clients on it.
    global _loop, _lock
    _loop = None
    _lock = threading.Lock()
    _adapters.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_adapters_at_exit)
