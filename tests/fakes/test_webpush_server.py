"""The fake push service refuses what a real one refuses, so that the adapter's tests mean
something: raw requests built here, one flaw at a time."""

import base64
import http.client
import json
import time
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.webpush import encrypt_payload, generate_vapid_keys


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(keys: dict) -> ec.EllipticCurvePrivateKey:
    raw = _unb64(keys["vapid_private_key"])
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def _authorization(origin: str, keys: dict | None = None, **claims) -> str:
    keys = keys or generate_vapid_keys()
    payload = {"aud": origin, "exp": int(time.time()) + 3600, "sub": "mailto:a@example.com"}
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    token = jwt.encode(payload, _key(keys), algorithm="ES256")
    return f"vapid t={token}, k={keys['vapid_public_key']}"


def _body(subscription: dict, payload: bytes = b'{"title": "hi"}') -> bytes:
    keys = subscription["keys"]
    return encrypt_payload(payload, _unb64(keys["p256dh"]), _unb64(keys["auth"]))


def _push(endpoint: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
    url = urlsplit(endpoint)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        connection.request("POST", url.path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _valid_headers(fakes, **changes) -> dict:
    headers = {
        "Authorization": _authorization(fakes.webpush_endpoint),
        "TTL": "60",
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
    }
    headers.update(changes)
    return {name: value for name, value in headers.items() if value is not None}


def test_a_valid_push_is_stored_and_answered_201(fakes):
    subscription = fakes.webpush_subscribe()
    status, headers, _ = _push(
        subscription["endpoint"], _valid_headers(fakes, Urgency="low"), _body(subscription)
    )
    assert status == 201
    assert headers["Location"].startswith(f"{fakes.webpush_endpoint}/m/")
    [stored] = fakes.webpush_messages(subscription["endpoint"])
    assert (stored["payload"], stored["ttl"], stored["urgency"]) == ({"title": "hi"}, 60, "low")


def _refusal(fakes, headers_changes=None, body=None, subscription=None):
    subscription = subscription or fakes.webpush_subscribe()
    headers = _valid_headers(fakes, **(headers_changes or {}))
    status, _, answer = _push(
        subscription["endpoint"], headers, _body(subscription) if body is None else body
    )
    return status, json.loads(answer)


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "https://fcm.googleapis.com"}, "audience"),
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"exp": int(time.time()) + 25 * 3600}, "24 hours"),
        ({"sub": None}, "sub"),
        ({"sub": "ops@example.com"}, "sub"),
    ],
)
def test_a_bad_vapid_jwt_is_401(fakes, claims, why):
    authorization = _authorization(fakes.webpush_endpoint, **claims)
    status, error = _refusal(fakes, {"Authorization": authorization})
    assert (status, error["errno"], error["error"]) == (401, 109, "Unauthorized")
    assert why in error["message"].lower()


def test_a_jwt_signed_by_another_key_than_k_is_401(fakes):
    signer, named = generate_vapid_keys(), generate_vapid_keys()
    token = jwt.encode(
        {"aud": fakes.webpush_endpoint, "exp": int(time.time()) + 60, "sub": "mailto:a@b.c"},
        _key(signer),
        algorithm="ES256",
    )
    authorization = f"vapid t={token}, k={named['vapid_public_key']}"
    assert _refusal(fakes, {"Authorization": authorization})[0] == 401


@pytest.mark.parametrize(
    "authorization", [None, "Bearer abc", "WebPush eyJ0eXAiOiJKV1QifQ", "vapid t=abc"]
)
def test_a_missing_or_other_authorization_is_401(fakes, authorization):
    assert _refusal(fakes, {"Authorization": authorization})[0] == 401


@pytest.mark.parametrize(
    ("changes", "errno"),
    [
        ({"TTL": None}, 111),
        ({"TTL": "-1"}, 111),
        ({"TTL": "soon"}, 111),
        ({"Urgency": "urgent"}, 111),
        ({"Topic": "a" * 33}, 113),
        ({"Topic": "has space"}, 113),
        ({"Content-Encoding": "aesgcm"}, 110),
        ({"Content-Encoding": None}, 110),
    ],
)
def test_bad_headers_are_400(fakes, changes, errno):
    status, error = _refusal(fakes, changes)
    assert (status, error["errno"]) == (400, errno)


def test_a_body_encrypted_for_another_subscription_is_400(fakes):
    other = fakes.webpush_subscribe()
    status, error = _refusal(fakes, body=_body(other))
    assert (status, error["errno"]) == (400, 110)


def test_a_body_over_4096_octets_is_413(fakes):
    subscription = fakes.webpush_subscribe()
    body = _body(subscription, b"x" * 3994)
    assert len(body) == 4097
    assert _refusal(fakes, body=body, subscription=subscription)[0] == 413


def test_a_subscription_bound_to_a_key_refuses_others_with_403(fakes):
    ours = generate_vapid_keys()
    subscription = fakes.webpush_subscribe(application_server_key=ours["vapid_public_key"])
    assert _refusal(fakes, subscription=subscription)[0] == 403
    authorization = _authorization(fakes.webpush_endpoint, ours)
    status, _, _ = _push(
        subscription["endpoint"],
        _valid_headers(fakes, Authorization=authorization),
        _body(subscription),
    )
    assert status == 201


def test_flaky_n_fails_n_times(fakes):
    subscription = fakes.webpush_subscribe("flaky3")
    statuses = []
    for _ in range(4):
        status, headers, _ = _push(
            subscription["endpoint"], _valid_headers(fakes), _body(subscription)
        )
        statuses.append((status, headers.get("Retry-After")))
    assert statuses == [(503, "1")] * 3 + [(201, None)]


def test_subscribe_many_and_the_counters(fakes):
    made = fakes.webpush_subscribe_many(3, prefix="gone")
    assert len({s["endpoint"] for s in made}) == 3
    assert all("/push/gone-" in s["endpoint"] for s in made)
    fakes.reset()
    for subscription in made:
        assert _push(subscription["endpoint"], _valid_headers(fakes), b"")[0] == 410
    stats = fakes.webpush_stats()
    assert (stats["by_status"], stats["by_prefix"]) == ({"410": 3}, {"gone": 3})


def test_messages_of_an_unknown_endpoint_is_404(fakes):
    with pytest.raises(RuntimeError, match="404"):
        fakes.webpush_messages(f"{fakes.webpush_endpoint}/push/nobody")
