"""What a Web Push message carries: the JSON payload the service worker receives, encrypted
`aes128gcm` (RFC 8291) for one subscription, and its TTL and Topic headers."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.base import OutboundMessage
from adapters.webpush.vapid import b64url

DEFAULT_TTL = 4 * 7 * 24 * 3600  # seconds; also the most a push service is asked to keep one
RECORD_SIZE = 4096
MAX_BODY = 4096  # octets of encrypted body every push service accepts (RFC 8030 7.2)
# Body = salt (16) + rs (4) + idlen (1) + keyid (65-octet public key) + plaintext + 1 + tag 16.
MAX_PLAINTEXT = MAX_BODY - (16 + 4 + 1 + 65) - 1 - 16
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


def content_of(
    *,
    title: str,
    body: str,
    data: Mapping[str, Any],
    part: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the browser shows of this content: title, body, and the web_push part's url and
    icon (None when it has none). `payload_of` sends it, with the message id and data."""
    return {"title": title, "body": body, "url": part.get("url"), "icon": part.get("icon")}


def payload_of(message: OutboundMessage) -> bytes:
    """The JSON the service worker receives: message_id, title, body, data, and url and icon
    when the message has them (`content_of`)."""
    shown = content_of(
        title=message.title, body=message.body, data=message.data, part=message.parts or {}
    )
    payload: dict[str, Any] = {
        "message_id": message.message_id,
        "title": shown["title"],
        "body": shown["body"],
        "data": dict(message.data),
    }
    for name in ("url", "icon"):
        value = shown[name]
        if value:
            payload[name] = value
    # default=str: a value JSON has no type for (a date) is sent as its text, not a crash.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def topic_of(collapse_id: str) -> str:
    """The Topic header for a collapse id: itself when it is at most 32 characters of the
    base64url alphabet (RFC 8030 5.4), else 32 characters of base64url of its SHA-256."""
    if _TOPIC.fullmatch(collapse_id):
        return collapse_id
    return b64url(hashlib.sha256(collapse_id.encode()).digest()[:24])


def ttl_of(ttl: int | None) -> int:
    if ttl is None:
        return DEFAULT_TTL
    return max(0, min(int(ttl), DEFAULT_TTL))


def encrypt_payload(
    payload: bytes,
    p256dh: bytes,
    auth: bytes,
    *,
    private_key: ec.EllipticCurvePrivateKey | None = None,
    salt: bytes | None = None,
) -> bytes:
    """The `aes128gcm` body (RFC 8291) of a payload for one subscription: a fresh sender key
    pair and salt unless given (the RFC's example fixes both). ValueError: p256dh is not a
    point on the curve."""
    return http_ece.encrypt(
        payload,
        salt=salt if salt is not None else os.urandom(16),
        private_key=private_key or ec.generate_private_key(ec.SECP256R1()),
        dh=p256dh,
        auth_secret=auth,
        rs=RECORD_SIZE,
        version="aes128gcm",
    )
