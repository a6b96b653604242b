"""Web Push adapter: RFC 8030 push requests, payloads encrypted `aes128gcm` (RFC 8291), the
application server identified by VAPID (RFC 8292).

A subscription is the browser's push endpoint URL (the message's `token`) and its keys
(`{"p256dh", "auth"}`, base64url). The endpoint is a URL a client handed us, so before every
send it is checked against `WEB_PUSH_ALLOWED_HOSTS` (`endpoint_problem`): an endpoint that is
no longer acceptable fails permanently and nothing is sent to it.

Each message's payload, `{"message_id", "title", "body", "data", "url", "icon"}` as JSON, is
encrypted by http_ece with a fresh ECDH key pair and salt (one record of 4,096 octets: push
services accept 4,096 octets of body, so at most 3,993 octets of JSON). The VAPID JWT (ES256,
`aud` the endpoint's origin, `exp` 12 hours ahead) is signed once per origin and credential
set and reused until an hour before it expires; signing per message would cost more than the
encryption. Requests go through `adapters.transport.http_client.HTTPPool`, one per endpoint
origin (HTTP/2 where the push service speaks it, else HTTP/1.1; `HTTPS_PROXY` honoured), at
most `concurrency` at once per batch.
"""

from adapters.webpush.adapter import WebPushAdapter
from adapters.webpush.content import (
    DEFAULT_TTL,
    MAX_BODY,
    MAX_PLAINTEXT,
    content_of,
    encrypt_payload,
    payload_of,
    topic_of,
    ttl_of,
)
from adapters.webpush.errors import WEB_PUSH_ERRORS, classify_webpush
from adapters.webpush.subscription import endpoint_problem, keys_problem
from adapters.webpush.vapid import generate_vapid_keys, vapid_public_key_of

__all__ = [
    "DEFAULT_TTL",
    "MAX_BODY",
    "MAX_PLAINTEXT",
    "WEB_PUSH_ERRORS",
    "WebPushAdapter",
    "classify_webpush",
    "content_of",
    "encrypt_payload",
    "endpoint_problem",
    "generate_vapid_keys",
    "keys_problem",
    "payload_of",
    "topic_of",
    "ttl_of",
    "vapid_public_key_of",
]
