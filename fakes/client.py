"""Read and reset the fake providers' counters, for tests and benchmarks."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit


def _call(endpoint: str, method: str, path: str, *, ca_file: str | None, timeout: float):
    url = urlsplit(endpoint)
    if url.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        # The fake APNs answers HTTP/1.1 admin requests only when ALPN asks for it.
        context.set_alpn_protocols(["http/1.1"])
        connection = http.client.HTTPSConnection(
            url.hostname, url.port, context=context, timeout=timeout
        )
    else:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(method, path, body=b"" if method == "POST" else None)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {endpoint}{path} answered {response.status}")
        return json.loads(body or b"{}")
    finally:
        connection.close()


def call(
    endpoint: str, method: str, path: str, *, ca_file: str | None = None, timeout: float = 5.0
) -> Any:
    """One admin request to a fake (`path` may hold a query string); its JSON answer."""
    return _call(endpoint, method, path, ca_file=ca_file, timeout=timeout)


def fetch_stats(
    endpoint: str, *, ca_file: str | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """A fake's counters: requests, by_status, by_reason, by_prefix (FCM: token_requests)."""
    return _call(endpoint, "GET", "/__stats", ca_file=ca_file, timeout=timeout)


def reset_stats(endpoint: str, *, ca_file: str | None = None, timeout: float = 5.0) -> None:
    """Zero a fake's counters and its flaky-token attempt counts."""
    _call(endpoint, "POST", "/__reset", ca_file=ca_file, timeout=timeout)


def revoke_fcm_access_tokens(endpoint: str, *, timeout: float = 5.0) -> None:
    """Make the fake FCM forget every access token it issued, so the next send gets a 401."""
    _call(endpoint, "POST", "/__revoke_tokens", ca_file=None, timeout=timeout)


def fetch_sms_messages(endpoint: str, to: str | None = None, *, timeout: float = 5.0) -> list:
    """What the fake Twilio received (for one `To` number, or all), oldest first."""
    path = "/__messages" if to is None else f"/__messages?to={quote(to, safe='')}"
    return _call(endpoint, "GET", path, ca_file=None, timeout=timeout)


def request_json(
    endpoint: str, method: str, path: str, payload: Any = None, *, timeout: float = 30.0
) -> Any:
    """One JSON request to a cleartext fake (`payload` sent as the JSON body when given) and
    its parsed JSON answer; RuntimeError when the status is not 200."""
    url = urlsplit(endpoint)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        body = json.dumps(payload).encode() if payload is not None else b""
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=body if method != "GET" else None, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {endpoint}{path} answered {response.status}: {answer}")
        return json.loads(answer or b"null")
    finally:
        connection.close()
