"""What makes a subscription usable: its endpoint, a URL a client handed us, checked
against the allowed push service hosts before every send (`endpoint_problem`), and its keys
(`keys_problem`)."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from adapters.webpush.vapid import b64url_decode

MAX_ENDPOINT_LENGTH = 2048


LOOPBACK = "127.0.0.1"


_HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_UNSAFE = re.compile(r"[^\x21-\x7e]")  # spaces, controls, non-ASCII


class AllowedHosts:
    def __init__(self, names: frozenset[str], suffixes: tuple[str, ...]) -> None:
        self.names = names
        self.suffixes = suffixes  # each starting with "."
        # (scheme, authority) -> (problem, origin): the verdict on a host, once per host.
        self.verdict = functools.lru_cache(maxsize=4096)(self._verdict)

    def _verdict(self, scheme: str, netloc: str) -> tuple[str | None, str]:
        return _check_authority(SplitResult(scheme, netloc, "", "", ""), self)

    @classmethod
    def of(cls, entries: Sequence[str]) -> AllowedHosts:
        names, suffixes = set(), []
        for entry in entries:
            entry = str(entry).strip().lower().rstrip(".")
            if len(entry) > 1 and entry.startswith("."):
                suffixes.append(entry)
            elif entry:
                names.add(entry)
        return cls(frozenset(names), tuple(suffixes))

    def allows(self, host: str) -> bool:
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)


def endpoint_problem(url: str, allowed_hosts: Sequence[str]) -> str | None:
    """Why a Web Push endpoint is not acceptable (a sentence), or None when it is.

    Acceptable: an absolute `https://` URL of at most 2,048 characters, without user info,
    whose host is an entry of `allowed_hosts` or a subdomain of a `.suffix` entry. IP
    addresses are refused, but for `127.0.0.1` when it is listed (development and tests), whose
    endpoints may also be `http://`."""
    return check_endpoint(url, AllowedHosts.of(allowed_hosts))[0]


def check_endpoint(url: Any, allowed: AllowedHosts) -> tuple[str | None, str, str]:
    """(problem, origin, path with query): the problem is None when the URL is acceptable."""
    if not isinstance(url, str) or not url:
        return "the endpoint is empty", "", ""
    if len(url) > MAX_ENDPOINT_LENGTH:
        return f"the endpoint is longer than {MAX_ENDPOINT_LENGTH:,} characters", "", ""
    if _UNSAFE.search(url):
        return "the endpoint contains spaces, control or non-ASCII characters", "", ""
    parts = urlsplit(url)
    problem, origin = allowed.verdict(parts.scheme, parts.netloc)
    if problem is not None:
        return problem, "", ""
    return None, origin, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _check_authority(parts: SplitResult, allowed: AllowedHosts) -> tuple[str | None, str]:
    """(problem, origin) of a URL's scheme and authority."""
    if parts.scheme not in ("https", "http"):
        return "the endpoint must be an https:// URL", ""
    if "@" in parts.netloc:
        return "the endpoint must not carry a user name or password", ""
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "the endpoint names no host", ""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the endpoint's port is not a number from 1 to 65535", ""
    default_port = 443 if parts.scheme == "https" else 80
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None or parts.netloc.startswith("["):
        if host == LOOPBACK and LOOPBACK in allowed.names:
            return None, origin  # development and tests: https:// or http://
        if host == LOOPBACK:
            return f"{LOOPBACK} is not in WEB_PUSH_ALLOWED_HOSTS", ""
        if address is None or not address.is_global:
            return f"the endpoint names a private, loopback or reserved address ({host})", ""
        return f"the endpoint names an IP address ({host}), not a push service's host", ""
    if not _HOST_NAME.fullmatch(host) or len(host) > 253:
        return f"the endpoint's host is not a valid host name ({host[:100]})", ""
    if _NUMERIC_LABEL.fullmatch(host.rpartition(".")[2]):
        # 2130706433, 0x7f.1, 127.1: resolvers read these as IPv4 addresses.
        return f"the endpoint names an IP address in another notation ({host})", ""
    if parts.scheme != "https":
        return f"the endpoint must be an https:// URL (http:// only for {LOOPBACK})", ""
    if not allowed.allows(host):
        return f"{host} is not a push service host allowed by WEB_PUSH_ALLOWED_HOSTS", ""
    return None, origin


def keys_problem(keys: Any) -> str | None:
    """Why a subscription's `keys` are unusable (a sentence), or None: `p256dh` must be the
    base64url of a 65-octet uncompressed P-256 point on the curve, `auth` of 16 octets."""
    if not isinstance(keys, Mapping):
        return "keys must be an object with p256dh and auth"
    try:
        p256dh = b64url_decode(keys.get("p256dh"))
    except ValueError:
        return "keys.p256dh is missing or not base64url"
    if len(p256dh) != 65 or p256dh[0] != 4:
        return "keys.p256dh must be a 65-octet uncompressed P-256 public key"
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        return "keys.p256dh is not a point on the P-256 curve"
    try:
        auth = b64url_decode(keys.get("auth"))
    except ValueError:
        return "keys.auth is missing or not base64url"
    if len(auth) != 16:
        return "keys.auth must be 16 octets"
    return None
