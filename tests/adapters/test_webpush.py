import asyncio
import base64
import contextlib
import email.utils
import threading
import time
import uuid

import http_ece
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from adapters import registry
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage
from adapters.webpush import (
    DEFAULT_TTL,
    MAX_PLAINTEXT,
    WebPushAdapter,
    classify_webpush,
    encrypt_payload,
    endpoint_problem,
    generate_vapid_keys,
    keys_problem,
    payload_of,
    topic_of,
    vapid_public_key_of,
)

DEFAULT_HOSTS = [
    "fcm.googleapis.com",
    ".push.services.mozilla.com",
    ".push.apple.com",
    ".notify.windows.com",
]
TEST_HOSTS = [*DEFAULT_HOSTS, "127.0.0.1"]


def _message(subscription, **fields):
    fields.setdefault("title", "Hello")
    fields.setdefault("body", "World")
    return OutboundMessage(
        message_id=str(uuid.uuid4()),
        token=subscription["endpoint"],
        keys=subscription["keys"],
        **fields,
    )


def _send_one(adapter, credentials, message):
    [result] = adapter.send_batch(credentials, [message])
    return result


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- Delivery over the wire --------------------------------------------------------------------


def test_a_message_is_delivered_and_decrypts_at_the_push_service(webpush, fakes):
    subscription = fakes.webpush_subscribe()
    message = _message(
        subscription,
        data={"screen": "home", "count": 3},
        parts={"url": "https://example.com/sale", "icon": "https://example.com/i.png"},
    )
    result = _send_one(webpush, fakes.webpush_credentials(), message)
    assert result.ok, result
    assert result.status_code == 201
    [stored] = fakes.webpush_messages(subscription["endpoint"])
    assert result.provider_id == f"{fakes.webpush_endpoint}/m/{stored['id']}"
    assert stored["payload"] == {
        "message_id": message.message_id,
        "title": "Hello",
        "body": "World",
        "data": {"screen": "home", "count": 3},
        "url": "https://example.com/sale",
        "icon": "https://example.com/i.png",
    }


def test_empty_url_and_icon_are_left_out_of_the_payload(webpush, fakes):
    subscription = fakes.webpush_subscribe()
    message = _message(subscription, parts={"url": "", "icon": None})
    assert _send_one(webpush, fakes.webpush_credentials(), message).ok
    [stored] = fakes.webpush_messages(subscription["endpoint"])
    assert set(stored["payload"]) == {"message_id", "title", "body", "data"}


def test_ttl_urgency_and_topic_headers(webpush, fakes):
    credentials = fakes.webpush_credentials()
    subscription = fakes.webpush_subscribe()
    sent = [
        _message(subscription, ttl=600, priority="high", collapse_id="promo-1"),
        _message(subscription),
        _message(subscription, ttl=10**9, collapse_id="other"),
    ]
    assert all(result.ok for result in webpush.send_batch(credentials, sent))
    stored = {
        m["payload"]["message_id"]: m for m in fakes.webpush_messages(subscription["endpoint"])
    }
    first, second, third = (stored[m.message_id] for m in sent)
    assert (first["ttl"], first["urgency"], first["topic"]) == (600, "high", "promo-1")
    assert (second["ttl"], second["urgency"], second["topic"]) == (DEFAULT_TTL, "normal", None)
    assert third["ttl"] == DEFAULT_TTL == 4 * 7 * 24 * 3600  # capped


def test_a_collapse_id_that_is_no_topic_is_sent_as_its_digest(webpush, fakes):
    credentials = fakes.webpush_credentials()
    subscription = fakes.webpush_subscribe()
    long_id = "summer-sale-2026-" + "x" * 40
    spaced_id = "promo 1"
    for collapse_id in (long_id, spaced_id):
        assert _send_one(webpush, credentials, _message(subscription, collapse_id=collapse_id)).ok
    topics = [m["topic"] for m in fakes.webpush_messages(subscription["endpoint"])]
    assert topics == [topic_of(long_id), topic_of(spaced_id)]
    for topic in topics:
        assert len(topic) == 32
        assert set(topic) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert topic_of(long_id) != topic_of(long_id + "y")
    assert topic_of("a" * 32) == "a" * 32


def test_a_message_with_the_same_topic_replaces_the_stored_one(webpush, fakes):
    credentials = fakes.webpush_credentials()
    subscription = fakes.webpush_subscribe()
    first = _message(subscription, collapse_id="score", body="1-0")
    second = _message(subscription, collapse_id="score", body="2-0")
    assert _send_one(webpush, credentials, first).ok
    assert _send_one(webpush, credentials, second).ok
    [stored] = fakes.webpush_messages(subscription["endpoint"])
    assert stored["payload"]["body"] == "2-0"


@pytest.mark.parametrize(("prefix", "status"), [("gone", 410), ("missing", 404)])
def test_a_dead_subscription_is_token_invalid(webpush, fakes, prefix, status):
    subscription = fakes.webpush_subscribe(prefix)
    result = _send_one(webpush, fakes.webpush_credentials(), _message(subscription))
    assert (result.ok, result.status_code, result.error_code) == (False, status, f"HTTP{status}")
    assert result.token_invalid and result.permanent


def test_an_unknown_subscription_is_token_invalid(webpush, fakes):
    subscription = fakes.webpush_subscribe()
    subscription = {**subscription, "endpoint": subscription["endpoint"] + "x"}
    result = _send_one(webpush, fakes.webpush_credentials(), _message(subscription))
    assert (result.status_code, result.token_invalid) == (404, True)


def test_flaky_push_service_is_temporary_and_honours_retry_after(webpush, fakes):
    credentials = fakes.webpush_credentials()
    subscription = fakes.webpush_subscribe("flaky2")
    for _ in range(2):
        result = _send_one(webpush, credentials, _message(subscription))
        assert (result.ok, result.status_code, result.error_code) == (False, 503, "HTTP503")
        assert not result.permanent and not result.token_invalid
        assert result.retry_after == 1.0
    assert _send_one(webpush, credentials, _message(subscription)).ok


@pytest.mark.parametrize(
    ("prefix", "status", "retry_after"), [("busy", 429, 1.0), ("err500", 500, None)]
)
def test_throttling_and_server_errors_are_temporary(webpush, fakes, prefix, status, retry_after):
    result = _send_one(
        webpush, fakes.webpush_credentials(), _message(fakes.webpush_subscribe(prefix))
    )
    assert (result.ok, result.status_code, result.permanent) == (False, status, False)
    assert result.retry_after == retry_after


def test_a_timeout_is_temporary(fakes):
    adapter = WebPushAdapter(["127.0.0.1"], timeout=0.3)
    try:
        result = _send_one(
            adapter, fakes.webpush_credentials(), _message(fakes.webpush_subscribe("slow"))
        )
    finally:
        adapter.close()
    assert (result.ok, result.error_code, result.permanent) == (False, "timeout", False)


def test_a_subscription_made_for_another_vapid_key_is_refused(webpush, fakes):
    ours = fakes.webpush_credentials()
    other = fakes.webpush_credentials()
    subscription = fakes.webpush_subscribe(application_server_key=ours.values["vapid_public_key"])
    refused = _send_one(webpush, other, _message(subscription))
    assert (refused.ok, refused.status_code, refused.error_code) == (False, 403, "HTTP403")
    assert refused.permanent and not refused.token_invalid
    assert "VAPID key mismatch" in refused.error_message
    assert "does not match" in refused.error_message  # the push service's own words
    assert _send_one(webpush, ours, _message(subscription)).ok


def test_credentials_whose_keys_do_not_match_are_unusable(webpush, fakes):
    ours, other = generate_vapid_keys(), generate_vapid_keys()
    values = {
        "vapid_private_key": ours["vapid_private_key"],
        "vapid_public_key": other["vapid_public_key"],
        "subject": "mailto:ops@example.com",
    }
    with pytest.raises(AdapterConfigurationError, match="not the public key"):
        _send_one(webpush, Credentials("mismatched", values), _message(fakes.webpush_subscribe()))


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"subject": "mailto:ops@example.com"}, "vapid_private_key"),
        ({"vapid_private_key": "not-a-key", "subject": "mailto:a@b.c"}, "unusable"),
        ({"vapid_private_key": _b64(b"\x01" * 31), "subject": "mailto:a@b.c"}, "32 octets"),
        ({"subject": ""}, "subject"),
        ({"subject": "ops@example.com"}, "subject"),
        ({"subject": "http://example.com"}, "subject"),
    ],
)
def test_missing_or_unusable_credentials(webpush, fakes, values, complaint):
    if "vapid_private_key" not in values and complaint == "subject":
        values = {**generate_vapid_keys(), **values}
    with pytest.raises(AdapterConfigurationError, match=complaint):
        _send_one(
            webpush,
            Credentials(f"bad-{uuid.uuid4()}", values),
            _message(fakes.webpush_subscribe()),
        )


def test_vapid_keys_are_in_the_browsers_format():
    keys = generate_vapid_keys()
    private, public = _unb64(keys["vapid_private_key"]), _unb64(keys["vapid_public_key"])
    assert len(private) == 32 and len(public) == 65 and public[0] == 4
    assert "=" not in keys["vapid_public_key"]
    assert vapid_public_key_of(keys["vapid_private_key"]) == keys["vapid_public_key"]
    derived = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
    point = derived.public_key().public_numbers()
    assert public == b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")


def test_a_payload_too_large_to_encrypt_is_not_sent(webpush, fakes):
    credentials = fakes.webpush_credentials()
    subscription = fakes.webpush_subscribe()
    base = _message(subscription, body="")
    filler = MAX_PLAINTEXT - len(payload_of(base))
    fits = _message(subscription, body="x" * filler)
    assert len(payload_of(fits)) == MAX_PLAINTEXT
    too_large = _message(subscription, body="x" * (filler + 1))
    fakes.reset()
    fitting, refused = webpush.send_batch(credentials, [fits, too_large])
    # The fitting one is exactly 4,096 octets encrypted: the fake refuses anything longer.
    assert fitting.ok, fitting
    assert (refused.ok, refused.error_code, refused.permanent) == (False, "payload_too_large", True)
    assert "4097" in refused.error_message
    assert fakes.webpush_stats()["requests"] == 1


def test_the_vapid_jwt_is_signed_once_and_reused(webpush, fakes):
    credentials = fakes.webpush_credentials()
    subscriptions = fakes.webpush_subscribe_many(30)
    before = fakes.webpush_stats().get("vapid_verifications", 0)
    for half in (subscriptions[:15], subscriptions[15:]):
        results = webpush.send_batch(credentials, [_message(s) for s in half])
        assert all(result.ok for result in results)
    tokens = {
        m["vapid_token"] for s in subscriptions for m in fakes.webpush_messages(s["endpoint"])
    }
    assert len(tokens) == 1
    assert fakes.webpush_stats()["vapid_verifications"] == before + 1
    claims = jwt.decode(tokens.pop(), options={"verify_signature": False})
    assert claims["aud"] == fakes.webpush_endpoint
    assert claims["sub"] == "mailto:ops@example.com"
    assert time.time() + 3600 < claims["exp"] <= time.time() + 24 * 3600


def test_a_batch_of_500_to_500_subscriptions(webpush, fakes):
    credentials = fakes.webpush_credentials()
    subscriptions = fakes.webpush_subscribe_many(500)
    fakes.reset()
    messages = [_message(s, data={"n": i}) for i, s in enumerate(subscriptions)]
    results = webpush.send_batch(credentials, messages)
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(result.ok for result in results), [r for r in results if not r.ok][:3]
    stats = fakes.webpush_stats()
    assert stats["by_status"] == {"201": 500}
    for index in (0, 137, 499):
        [stored] = fakes.webpush_messages(subscriptions[index]["endpoint"])
        assert stored["payload"]["data"] == {"n": index}


def test_one_result_per_message_in_order(webpush, fakes):
    ok = fakes.webpush_subscribe()
    gone = fakes.webpush_subscribe("gone")
    outside = {**ok, "endpoint": "https://evil.example.com/push/1"}
    keyless = {**ok, "keys": {}}
    results = webpush.send_batch(
        fakes.webpush_credentials(),
        [_message(ok), _message(gone), _message(outside), _message(keyless), _message(ok)],
    )
    assert [r.error_code for r in results] == [
        None,
        "HTTP410",
        "endpoint_not_allowed",
        "subscription_keys_invalid",
        None,
    ]
    assert results[3].permanent and not results[3].token_invalid


def test_an_endpoint_no_longer_allowed_is_not_sent_to(fakes):
    adapter = WebPushAdapter(DEFAULT_HOSTS, timeout=5)  # 127.0.0.1 not listed any more
    fakes.reset()
    try:
        result = _send_one(
            adapter, fakes.webpush_credentials(), _message(fakes.webpush_subscribe())
        )
    finally:
        adapter.close()
    assert (result.ok, result.error_code, result.permanent) == (False, "endpoint_not_allowed", True)
    assert "127.0.0.1 is not in WEB_PUSH_ALLOWED_HOSTS" in result.error_message
    assert not result.token_invalid
    assert fakes.webpush_stats()["requests"] == 0


def test_from_settings(settings):
    settings.WEB_PUSH_ALLOWED_HOSTS = ["fcm.googleapis.com", "127.0.0.1"]
    settings.WEB_PUSH_CONCURRENCY = 7
    settings.WEB_PUSH_TIMEOUT = 2.5
    adapter = WebPushAdapter.from_settings(settings)
    assert (adapter.allowed_hosts, adapter.concurrency, adapter.timeout) == (
        ("fcm.googleapis.com", "127.0.0.1"),
        7,
        2.5,
    )


# --- A redirect is an answer, not a new destination ----------------------------------------------


@contextlib.contextmanager
def _redirecting_server():
    """An HTTP/1.1 server on 127.0.0.1 answering 307 to a second one that counts its hits."""
    hits = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    ports = {}

    async def target(request):
        hits.append(request.path)
        return web.Response(status=201)

    async def start():
        target_app = web.Application()
        target_app.router.add_route("*", "/{tail:.*}", target)
        target_runner = web.AppRunner(target_app)
        await target_runner.setup()
        target_site = web.TCPSite(target_runner, "127.0.0.1", 0)
        await target_site.start()
        ports["target"] = target_runner.addresses[0][1]

        async def redirect(request):
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{ports['target']}/internal")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ports["redirect"] = runner.addresses[0][1]
        return [runner, target_runner]

    def run():
        asyncio.set_event_loop(loop)
        runners = loop.run_until_complete(start())
        ports["runners"] = runners
        started.set()
        loop.run_forever()
        for runner in runners:
            loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{ports['redirect']}", hits
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_redirect_is_not_followed(webpush, fakes):
    subscription = fakes.webpush_subscribe()
    with _redirecting_server() as (origin, hits):
        moved = {**subscription, "endpoint": f"{origin}/push/abc"}
        result = _send_one(webpush, fakes.webpush_credentials(), _message(moved))
    assert (result.ok, result.status_code, result.error_code) == (False, 307, "HTTP307")
    assert result.permanent
    assert hits == []


# --- The endpoint guard --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://fcm.googleapis.com/fcm/send/dXJ4d3:APA91bF",
        "https://fcm.googleapis.com/wp/dXJ4d3:APA91bF",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
        "https://web.push.apple.com/QGuQyavXutnMJLbgdqqPOiZYXBzP",
        "https://wns2-by3p.notify.windows.com/w/?token=BQYAAAB",
        "https://FCM.googleapis.com./fcm/send/abc",
        "http://127.0.0.1:8090/push/abc",
        "https://127.0.0.1:8090/push/abc",
    ],
)
def test_accepted_endpoints(url):
    assert endpoint_problem(url, TEST_HOSTS) is None


@pytest.mark.parametrize(
    ("url", "hosts", "why"),
    [
        ("https://evil.com/push/1", TEST_HOSTS, "not a push service host"),
        ("http://fcm.googleapis.com/fcm/send/abc", TEST_HOSTS, "https://"),
        ("ftp://fcm.googleapis.com/fcm/send/abc", TEST_HOSTS, "https://"),
        ("fcm.googleapis.com/fcm/send/abc", TEST_HOSTS, "https://"),
        ("/fcm/send/abc", TEST_HOSTS, "https://"),
        ("https://10.0.0.1/push", [*TEST_HOSTS, "10.0.0.1"], "private"),
        ("https://169.254.169.254/latest/meta-data", [*TEST_HOSTS, "169.254.169.254"], "private"),
        ("https://192.168.1.1/push", TEST_HOSTS, "private"),
        ("https://8.8.8.8/push", [*TEST_HOSTS, "8.8.8.8"], "IP address"),
        ("https://[::1]/push", TEST_HOSTS, "private"),
        ("https://[::1]/push", [*TEST_HOSTS, "::1"], "private"),
        ("https://[::ffff:127.0.0.1]/push", TEST_HOSTS, "private"),
        ("https://[fd00:ec2::254]/push", TEST_HOSTS, "private"),
        ("http://127.0.0.2:8090/push", TEST_HOSTS, "private"),
        ("http://127.0.0.1:8090/push/abc", DEFAULT_HOSTS, "127.0.0.1 is not in"),
        ("https://2130706433/push", TEST_HOSTS, "another notation"),
        ("https://0x7f.0.0.1/push", TEST_HOSTS, "another notation"),
        ("https://127.1/push", TEST_HOSTS, "another notation"),
        ("https://user:pw@fcm.googleapis.com/fcm/send/abc", TEST_HOSTS, "user name"),
        ("https://fcm.googleapis.com@evil.com/x", TEST_HOSTS, "user name"),
        ("https://evil.com\\@fcm.googleapis.com/x", TEST_HOSTS, "user name"),
        ("https://evilpush.services.mozilla.com.attacker.com/x", TEST_HOSTS, "not a push"),
        ("https://evilpush.services.mozilla.com/x", TEST_HOSTS, "not a push"),
        ("https://push.services.mozilla.com.evil.com/x", TEST_HOSTS, "not a push"),
        ("https://fcm.googleapis.com.evil.com/x", TEST_HOSTS, "not a push"),
        ("https://xfcm.googleapis.com/x", TEST_HOSTS, "not a push"),
        ("https://fcm.googleapis.com/" + "a" * 2030, TEST_HOSTS, "2,048"),
        ("https://fcm.googleapis.com/fcm send", TEST_HOSTS, "spaces"),
        ("https://fcm.googleapis\n.com/x", TEST_HOSTS, "control"),
        ("https://fcm.googleapis.com:99999/x", TEST_HOSTS, "port"),
        ("https://fcm.googleapis.com:0/x", TEST_HOSTS, "port"),
        ("https://fcm_googleapis.com/x", TEST_HOSTS, "host name"),
        ("https:///push", TEST_HOSTS, "no host"),
        ("", TEST_HOSTS, "empty"),
    ],
)
def test_refused_endpoints(url, hosts, why):
    problem = endpoint_problem(url, hosts)
    assert problem is not None and why in problem, problem


def test_an_endpoint_of_exactly_2048_characters_is_accepted():
    url = "https://fcm.googleapis.com/fcm/send/"
    assert endpoint_problem(url + "a" * (2048 - len(url)), TEST_HOSTS) is None
    assert endpoint_problem(url + "a" * (2049 - len(url)), TEST_HOSTS) is not None


# --- Subscription keys ---------------------------------------------------------------------------


def _browser_keys():
    private = ec.generate_private_key(ec.SECP256R1())
    point = private.public_key().public_numbers()
    raw = b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")
    return raw, {"p256dh": _b64(raw), "auth": _b64(b"\x07" * 16)}


def test_keys_problem_accepts_a_browsers_keys(fakes):
    assert keys_problem(fakes.webpush_subscribe()["keys"]) is None
    raw, keys = _browser_keys()
    assert keys_problem(keys) is None
    padded = {"p256dh": base64.urlsafe_b64encode(raw).decode(), "auth": keys["auth"] + "=="}
    assert keys_problem(padded) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda raw, keys: {**keys, "p256dh": _b64(raw[:64])}, "65-octet"),
        (lambda raw, keys: {**keys, "p256dh": _b64(b"\x02" + raw[1:33])}, "65-octet"),
        (lambda raw, keys: {**keys, "p256dh": _b64(raw[:-1] + bytes([raw[-1] ^ 1]))}, "curve"),
        (lambda raw, keys: {**keys, "p256dh": "not base64!"}, "base64url"),
        (lambda raw, keys: {**keys, "p256dh": None}, "p256dh"),
        (lambda raw, keys: {**keys, "p256dh": base64.b64encode(raw).decode() + "/+"}, "base64url"),
        (lambda raw, keys: {**keys, "auth": _b64(b"\x01" * 15)}, "16 octets"),
        (lambda raw, keys: {"p256dh": keys["p256dh"]}, "auth"),
        (lambda raw, keys: "p256dh", "object"),
    ],
)
def test_keys_problem_refuses(change, why):
    raw, keys = _browser_keys()
    problem = keys_problem(change(raw, keys))
    assert problem is not None and why in problem, problem


# --- The wire format is RFC 8291's ---------------------------------------------------------------

# RFC 8291, Appendix A: the user agent's and the application server's keys, the salt and the
# resulting message body, as published.
RFC8291 = {
    "plaintext": b"When I grow up, I want to be a watermelon",
    "as_private": "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
    "as_public": (
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
    ),
    "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "ua_public": (
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
    ),
    "salt": "DGv6ra1nlYgDCS1FRnbzlw",
    "auth_secret": "BTBZMqHH6r4Tts7J_aSIgg",
    "body": (
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
    ),
}


def _private_key(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(_unb64(b64), "big"), ec.SECP256R1())


def test_encryption_matches_rfc_8291_appendix_a():
    as_private = _private_key(RFC8291["as_private"])
    assert vapid_public_key_of(RFC8291["as_private"]) == RFC8291["as_public"]
    body = encrypt_payload(
        RFC8291["plaintext"],
        _unb64(RFC8291["ua_public"]),
        _unb64(RFC8291["auth_secret"]),
        private_key=as_private,
        salt=_unb64(RFC8291["salt"]),
    )
    assert _b64(body) == RFC8291["body"]
    # And the user agent reads the RFC's body back with its own keys.
    plain = http_ece.decrypt(
        _unb64(RFC8291["body"]),
        private_key=_private_key(RFC8291["ua_private"]),
        auth_secret=_unb64(RFC8291["auth_secret"]),
        version="aes128gcm",
    )
    assert plain == RFC8291["plaintext"]


def test_each_message_has_its_own_sender_key_and_salt():
    raw, keys = _browser_keys()
    first = encrypt_payload(b"same", raw, _unb64(keys["auth"]))
    second = encrypt_payload(b"same", raw, _unb64(keys["auth"]))
    assert first[:16] != second[:16]  # salt
    assert first[21:86] != second[21:86]  # the sender's ephemeral public key
    assert first[16:20] == (4096).to_bytes(4, "big") and first[20] == 65


def test_the_registry_builds_it_from_the_settings():
    registry.reset_adapters()
    try:
        adapter = registry.get_adapter("WebPush")
    finally:
        registry.reset_adapters()
    assert isinstance(adapter, WebPushAdapter)
    assert "127.0.0.1" in adapter.allowed_hosts and "fcm.googleapis.com" in adapter.allowed_hosts


@pytest.mark.parametrize("protocol", ["h2", "http/1.1"])
def test_either_protocol_the_push_service_speaks(fakes, protocol):
    adapter = WebPushAdapter(["127.0.0.1"], timeout=5)
    if protocol == "http/1.1":  # as after a probe found an HTTP/1.1-only push service
        adapter._protocols[fakes.webpush_endpoint] = protocol
    subscription = fakes.webpush_subscribe()
    try:
        results = adapter.send_batch(
            fakes.webpush_credentials(), [_message(subscription, ttl=5) for _ in range(3)]
        )
        assert adapter._pools[fakes.webpush_endpoint].protocol == protocol
    finally:
        adapter.close()
    assert all(result.ok for result in results)
    assert [m["ttl"] for m in fakes.webpush_messages(subscription["endpoint"])] == [5, 5, 5]


def test_retry_after_as_seconds_or_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    by_date = classify_webpush("m", 503, {b"retry-after": when.encode()}, b"")
    assert 28 <= by_date.retry_after <= 31
    assert classify_webpush("m", 429, {b"retry-after": b"7"}, b"").retry_after == 7.0
    assert classify_webpush("m", 503, {b"retry-after": b"soon"}, b"").retry_after is None
    # A permanent refusal carries no retry_after, whatever the header says.
    assert classify_webpush("m", 410, {b"retry-after": b"7"}, b"").retry_after is None


def test_unlisted_statuses_are_permanent_below_500():
    assert classify_webpush("m", 418, {}, b"").permanent
    assert not classify_webpush("m", 599, {}, b"").permanent
    assert classify_webpush("m", 202, {b"location": b"/m/1"}, b"").provider_id == "/m/1"
