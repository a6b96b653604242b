"""A fake Twilio Messages API on loopback (cleartext HTTP/1.1, `fakes/http1.py`).

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` checks, in Twilio's order:
- Basic auth `AccountSid:AuthToken` of the state's account (`twilio.json`), else 401 `20003`;
  the path's account must be that account, else 404 `20404`;
- form fields: `To` (400 `21604` if missing), `From` or `MessagingServiceSid` (400 `21603`),
  `To` in E.164 (400 `21211`), `From` equal to the account's number (400 `21606`),
  `MessagingServiceSid` equal to the account's service (404 `20404`), a `Body` (400 `21602`)
  of at most 1,600 characters (400 `21617`).
Then the `To` number decides (`NUMBER_RANGES`, `TEST_NUMBERS`):

| `To` | Answer |
|---|---|
| `+15005551xxx` | 400 `21211` invalid number |
| `+15005552xxx` | 400 `21614` not a mobile number |
| `+15005553xxx` | 400 `21610` unsubscribed recipient (replied STOP) |
| `+15005554xxx` | 429 `20429` Too Many Requests, `Retry-After: 2` |
| `+15005555xxx` | flaky: 2 attempts per number get 503 `20503`, `Retry-After: 1`; then 201 |
| `+15005556xxx` | 201, later status `undelivered` with `ErrorCode` 30003 |
| `+15005557xxx` | 400 `21612` not reachable via SMS |
| `+15005558xxx` | 400 `21408` region not enabled |
| `+15005559xxx` | 503 with a non-JSON body (a proxy's page): no Twilio code |
| `+15005560xxx` | slow: 201 after 2 seconds |
| `+15005550001` | 400 `21211` (this and the next four: Twilio's own test numbers) |
| `+15005550002` | 400 `21612` |
| `+15005550003` | 400 `21408` |
| `+15005550004` | 400 `21610` |
| `+15005550009` | 400 `21614` |
| any other E.164 number | 201, later status `delivered` |

A 201 carries the Message resource as Twilio returns it (`sid` "SM" + 32 hex digits, `status`
`queued`, or `accepted` with a Messaging Service, whose `num_segments` is then "0" and `from`
null). Its status then moves to `sent` after `SENT_AFTER` seconds and to `delivered` or
`undelivered` after `FINAL_AFTER` (read back with `GET .../Messages/{sid}.json`); when the
request named a `StatusCallback`, each step is POSTed there, form-encoded (`MessageSid`,
`SmsSid`, `AccountSid`, `From`, `To`, `MessageStatus`, `SmsStatus`, `ApiVersion`,
`MessagingServiceSid` if used, `ErrorCode` when undelivered), signed with
`X-Twilio-Signature` (`adapters.sms.twilio_signature`). A callback that fails or is not
answered 2xx is counted (`callback_failures`), never retried.

Admin: `GET /__stats` (`requests`, `by_status`, `by_reason` = Twilio code, `by_prefix` = the
number ranges above, `callbacks_sent`, `callback_failures`), `POST /__reset` (counters, flaky
attempts and received messages), `GET /__messages?to=NUMBER` (what was received for that
number, oldest first: `To`, `From`, `MessagingServiceSid`, `Body`, `StatusCallback`, and the
`sid` and current `status` of accepted ones; without `to`, everything).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import json
import re
import secrets
import time
from urllib.parse import parse_qsl

import aiohttp

from adapters.sms import API_VERSION, MAX_BODY_CHARS, twilio_signature
from adapters.sms_text import segments
from fakes.http1 import HTTP1Protocol, Response
from fakes.state import FakeState, ensure_twilio_account
from fakes.stats import Stats

# `To` prefixes (the last three digits are free, so tests can use fresh numbers).
NUMBER_RANGES: dict[str, str] = {
    "+15005551": "400 21211 invalid number",
    "+15005552": "400 21614 not a mobile number",
    "+15005553": "400 21610 unsubscribed recipient",
    "+15005554": "429 20429 Too Many Requests, Retry-After: 2",
    "+15005555": "flaky: the first 2 attempts per number get 503 20503, Retry-After: 1",
    "+15005556": "201, later undelivered (ErrorCode 30003)",
    "+15005557": "400 21612 not reachable via SMS",
    "+15005558": "400 21408 region not enabled",
    "+15005559": "503 without a Twilio error body",
    "+15005560": "201 after 2 seconds",
    "+15005550": "Twilio's test numbers (TEST_NUMBERS); others of the range succeed",
}
TEST_NUMBERS = {
    "+15005550001": "21211",
    "+15005550002": "21612",
    "+15005550003": "21408",
    "+15005550004": "21610",
    "+15005550009": "21614",
}
FLAKY_FAILURES = 2
SLOW_SECONDS = 2.0
SENT_AFTER = 0.05  # seconds from creation to `sent`
FINAL_AFTER = 0.1  # ... and to `delivered` / `undelivered`
UNDELIVERED_ERROR = "30003"  # Unreachable destination handset
MAX_KEPT = 200_000  # received messages kept for /__messages; all are forgotten past it
CALLBACK_TIMEOUT = 5.0

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_MESSAGE_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")
_RETRY_1 = (("Retry-After", "1"),)
_RETRY_2 = (("Retry-After", "2"),)
_WRONG_CREDENTIALS = "Your AccountSid or AuthToken was incorrect."
_CHALLENGE = (("WWW-Authenticate", 'Basic realm="Twilio API"'),)
_MESSAGES = {
    "20003": "Authenticate",
    "20429": "Too Many Requests",
    "20503": "Service Unavailable",
    "21211": "The 'To' number {to} is not a valid phone number.",
    "21408": "Permission to send an SMS has not been enabled for the region indicated by "
    "the 'To' number: {to}.",
    "21602": "Message body is required.",
    "21603": "A 'From' phone number is required.",
    "21604": "A 'To' phone number is required.",
    "21606": "The 'From' phone number provided ({sender}) is not a valid message-capable "
    "Twilio phone number for this destination/account.",
    "21610": "Attempt to send to unsubscribed recipient",
    "21612": "The 'To' phone number: {to}, is not currently reachable using the 'From' "
    "phone number: {sender} via SMS.",
    "21614": "'To' number is not a valid mobile number",
    "21617": "The concatenated message body exceeds the 1600 character limit.",
}


def _error(
    status: int, code: str, headers: tuple = (), *, to: str = "", sender: str = "", detail=None
) -> Response:
    """Twilio's error JSON: `code` (a number), `message`, `more_info`, `status`."""
    text = _MESSAGES.get(code, "")
    error = {
        "code": int(code),
        "message": text.format(to=to, sender=sender) if "{" in text else text,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    if detail:
        error["detail"] = detail
    return status, headers, json.dumps(error).encode()


@functools.lru_cache(maxsize=64)
def _fixed_error(status: int, code: str, headers: tuple = (), detail: str | None = None):
    return _error(status, code, headers, detail=detail)


def _not_found(path: str) -> Response:
    error = {
        "code": 20404,
        "message": f"The requested resource {path} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    return 404, (), json.dumps(error).encode()


_date_cache: list = [0, ""]


def _rfc2822_now() -> str:
    """Twilio's date format, e.g. `Thu, 24 Aug 2023 05:01:45 +0000` (built once a second)."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now))]
    return _date_cache[1]


class _Message:
    """One accepted message: what was sent, and how it ends."""

    __slots__ = ("sid", "to", "sender", "service", "body", "callback", "created", "date", "final")

    def __init__(self, sid, to, sender, service, body, callback, final) -> None:
        self.sid = sid
        self.to = to
        self.sender = sender
        self.service = service
        self.body = body
        self.callback = callback
        self.created = time.monotonic()
        self.date = _rfc2822_now()
        self.final = final  # "delivered" or "undelivered"

    def status(self) -> str:
        elapsed = time.monotonic() - self.created
        if elapsed < SENT_AFTER:
            return "accepted" if self.service and not self.sender else "queued"
        return "sent" if elapsed < FINAL_AFTER else self.final


class FakeTwilio:
    """The Messages API's checks, the number conventions, status callbacks and counters."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.account = ensure_twilio_account(state)
        self.stats = Stats(tuple(NUMBER_RANGES))
        credentials = f"{self.account.account_sid}:{self.account.auth_token}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._flaky_attempts: dict[str, int] = {}
        self._received: list[dict] = []
        self._by_sid: dict[str, _Message] = {}
        # Message sids: "SM" and 32 hex digits, a random per-process start and a counter.
        self._sids = itertools.count(secrets.randbits(63) << 64)
        self._session: aiohttp.ClientSession | None = None
        self._callbacks: set[asyncio.Task] = set()
        self._uri = f"/{API_VERSION}/Accounts/{self.account.account_sid}/Messages/"

    def reset(self) -> None:
        self.stats.reset()
        self._flaky_attempts.clear()
        self._received.clear()
        self._by_sid.clear()

    def protocol(self) -> asyncio.BaseProtocol:
        return HTTP1Protocol(self.handle, with_query=True)

    async def aclose(self) -> None:
        for task in list(self._callbacks):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes):
        if target.startswith(("http://", "https://")):
            # The absolute form a forward proxy relays (RFC 9112 3.2.2: servers accept it).
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path, _, query = target.partition("?")
        if method == "POST":
            match = _MESSAGES_PATH.match(path)
            if match:
                return self._create(match.group(1), path, headers, body)
            if path == "/__reset":
                self.reset()
                return 200, (), b"{}"
        elif method == "GET":
            if path == "/__stats":
                return 200, (), json.dumps(self.stats.snapshot()).encode()
            if path == "/__messages":
                return self._list(dict(parse_qsl(query)).get("to"))
            match = _MESSAGE_PATH.match(path)
            if match:
                return self._fetch(match.group(1), match.group(2), path, headers)
        return _not_found(path)

    def _authenticated(self, account: str, path: str, headers: dict[str, str]) -> Response | None:
        """The error answer when the request is not the account's, else None."""
        if headers.get("authorization") != self._authorization:
            return _fixed_error(
                401, "20003", _CHALLENGE, "Your AccountSid or AuthToken was incorrect."
            )
        if account != self.account.account_sid:
            return _not_found(path)
        return None

    def _create(self, account: str, path: str, headers: dict[str, str], body: bytes):
        refused = self._authenticated(account, path, headers)
        if refused is not None:
            self.stats.record(refused[0], _code_of(refused), "other")
            return refused
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        to = form.get("To", "")
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        text = form.get("Body", "")
        callback = form.get("StatusCallback", "")
        prefix = self.stats.prefix_of(to)
        if len(self._received) >= MAX_KEPT:
            self._received.clear()
            self._by_sid.clear()
        received = {
            "To": to,
            "From": sender or None,
            "MessagingServiceSid": service or None,
            "Body": text,
            "StatusCallback": callback or None,
        }
        self._received.append(received)
        answer = self._check(to, sender, service, text, path)
        if answer is None:
            answer = self._behaviour(to, prefix)
        if answer is not None:
            if isinstance(answer, tuple):
                self.stats.record(answer[0], _code_of(answer), prefix)
            return answer
        self.stats.record(201, None, prefix)
        return self._accept(received, to, sender, service, text, callback, prefix)

    def _check(self, to, sender, service, text, path) -> Response | None:
        if not to:
            return _fixed_error(400, "21604")
        if not sender and not service:
            return _fixed_error(400, "21603")
        if not _E164.match(to):
            return _error(400, "21211", to=to)
        if sender and sender != self.account.from_number:
            return _error(400, "21606", sender=sender)
        if service and service != self.account.messaging_service_sid:
            return _not_found(f"/v1/Services/{service}")
        if not text:
            return _fixed_error(400, "21602")
        if len(text) > MAX_BODY_CHARS:
            return _fixed_error(400, "21617")
        return None

    def _behaviour(self, to: str, prefix: str):
        """The error answer (or the slow success) the number provokes; None: plain success."""
        if prefix == "other":
            return None
        sender = self.account.from_number
        if prefix == "+15005550":
            code = TEST_NUMBERS.get(to)
            return _error(400, code, to=to, sender=sender) if code else None
        if prefix == "+15005551":
            return _error(400, "21211", to=to)
        if prefix == "+15005552":
            return _fixed_error(400, "21614")
        if prefix == "+15005553":
            return _fixed_error(400, "21610")
        if prefix == "+15005554":
            return _fixed_error(429, "20429", _RETRY_2)
        if prefix == "+15005555":
            attempts = self._flaky_attempts.get(to, 0) + 1
            self._flaky_attempts[to] = attempts
            if attempts <= FLAKY_FAILURES:
                return _fixed_error(503, "20503", _RETRY_1)
            return None
        if prefix == "+15005557":
            return _error(400, "21612", to=to, sender=sender)
        if prefix == "+15005558":
            return _error(400, "21408", to=to)
        if prefix == "+15005559":
            return 503, (), b"<html><body><h1>503 Service Unavailable</h1></body></html>"
        return None  # "+15005560" too: its success is answered late (`_accept`)

    def _accept(self, received, to, sender, service, text, callback, prefix):
        sid = f"SM{next(self._sids):032x}"
        final = "undelivered" if prefix == "+15005556" else "delivered"
        message = _Message(sid, to, sender, service, text, callback, final)
        self._by_sid[sid] = message
        received["sid"] = sid
        if callback:
            loop = asyncio.get_running_loop()
            loop.call_later(SENT_AFTER, self._callback, message, "sent")
            loop.call_later(FINAL_AFTER, self._callback, message, final)
        response = (201, (), self._resource(message, message.status()))
        if prefix == "+15005560":
            return _after(SLOW_SECONDS, response)
        return response

    def _resource(self, message: _Message, status: str) -> bytes:
        """The Message resource as Twilio's API returns it."""
        uri = self._uri + message.sid
        undelivered = status == "undelivered"
        resource = {
            "account_sid": self.account.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": message.date,
            "date_sent": None if status in ("queued", "accepted") else message.date,
            "date_updated": message.date,
            "direction": "outbound-api",
            "error_code": int(UNDELIVERED_ERROR) if undelivered else None,
            "error_message": "Unreachable destination handset" if undelivered else None,
            "from": message.sender or None,
            "messaging_service_sid": message.service or None,
            "num_media": "0",
            # Twilio reports 0 until a Messaging Service has picked the sender.
            "num_segments": str(segments(message.body)[1] if message.sender else 0),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }
        return json.dumps(resource).encode()

    def _fetch(self, account: str, sid: str, path: str, headers: dict[str, str]) -> Response:
        refused = self._authenticated(account, path, headers)
        if refused is not None:
            return refused
        message = self._by_sid.get(sid)
        if message is None:
            return _not_found(path)
        return 200, (), self._resource(message, message.status())

    def _list(self, to: str | None) -> Response:
        if to is not None:
            to = to.replace(" ", "+")  # an unencoded '+' in the query reads as a space
        found = []
        for received in self._received:
            if to is None or received["To"] == to:
                entry = dict(received)
                message = self._by_sid.get(entry.get("sid", ""))
                if message is not None:
                    entry["status"] = message.status()
                found.append(entry)
        return 200, (), json.dumps(found).encode()

    # --- status callbacks -------------------------------------------------------------------

    def _callback(self, message: _Message, status: str) -> None:
        task = asyncio.get_running_loop().create_task(self._post_callback(message, status))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _post_callback(self, message: _Message, status: str) -> None:
        params = {
            "AccountSid": self.account.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.sender or self.account.from_number,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if message.service:
            params["MessagingServiceSid"] = message.service
        if status == "undelivered":
            params["ErrorCode"] = UNDELIVERED_ERROR
        headers = {
            "X-Twilio-Signature": twilio_signature(
                self.account.auth_token, message.callback, params
            ),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            session = self._session
            if session is None or session.closed:
                session = self._session = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    trust_env=False,
                )
            async with session.post(message.callback, data=params, headers=headers) as response:
                await response.read()
                ok = 200 <= response.status < 300
        except asyncio.CancelledError:
            raise
        except Exception:  # any failure of the receiver's: counted, never fatal to the fake
            ok = False
        self.stats.extra["callbacks_sent" if ok else "callback_failures"] += 1


def _code_of(response: Response) -> str | None:
    try:
        return str(json.loads(response[2])["code"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP{response[0]}"


async def _after(seconds: float, response: Response) -> Response:
    await asyncio.sleep(seconds)
    return response


async def serve_twilio(app: FakeTwilio, host: str, port: int) -> asyncio.Server:
    """Listen for HTTP/1.1; `port` 0 picks a free one."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(app.protocol, host, port)
