"""A fake FCM HTTP v1 API and OAuth token endpoint on loopback (cleartext HTTP/1.1 and h2c).

`POST /token` exchanges a service-account JWT assertion (RS256) for an access token;
`POST /v1/projects/{project}/messages:send` checks the bearer token and the message shape and
answers like FCM. `GET /__stats`, `POST /__reset` and `POST /__revoke_tokens` serve tests.

One port speaks both protocols (`dual.py`): a connection that starts with the HTTP/2 client
preface is served by the HTTP/2 layer of `http2.py` (cleartext with prior knowledge, as the
adapter connects), any other by `http1.py`. Both hand every request to the same
`FakeFCM.handle`, so statuses, JSON bodies and Retry-After headers are the same; only the
framing differs.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
import secrets
import time
from urllib.parse import parse_qs

import jwt

from fakes.dual import DualProtocolConnection
from fakes.http1 import Response
from fakes.state import FCM_SERVICE_ACCOUNT_FILE, FakeState, load_fcm_public_key
from fakes.stats import Stats

# Registration-token prefixes that provoke a given answer.
TOKEN_PREFIXES: dict[str, str] = {
    "dead": "404 UNREGISTERED",
    "mismatch": "403 SENDER_ID_MISMATCH",
    "badtoken": "400 INVALID_ARGUMENT naming the registration token",
    "badarg": "400 INVALID_ARGUMENT about another field (not the token)",
    "flaky": "the first 2 attempts per token get 503 UNAVAILABLE, Retry-After: 1",
    "slow": "answers 200 after 2 seconds",
    "err500": "500 INTERNAL, always",
    "quota": "429 QUOTA_EXCEEDED, Retry-After: 1",
}
FLAKY_FAILURES = 2
SLOW_SECONDS = 2.0
ACCESS_TOKEN_SECONDS = 3600
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@functools.lru_cache(maxsize=512)
def _error(
    status: int,
    message: str,
    fcm_code: str | None = None,
    *,
    field: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> tuple[Response, str]:
    """Google's error JSON, and the reason the counters file it under (built once per error)."""
    details = []
    if fcm_code:
        details.append({"@type": _FCM_ERROR, "errorCode": fcm_code})
    if field:
        details.append(
            {"@type": _BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]}
        )
    error = {"code": status, "message": message, "status": _STATUS_NAMES[status]}
    if details:
        error["details"] = details
    response = (status, headers, json.dumps({"error": error}).encode())
    return response, fcm_code or _STATUS_NAMES[status]


_UNAUTHENTICATED = (
    401,
    "Request had invalid authentication credentials. Expected OAuth 2 access "
    "token, login cookie or other valid authentication credential.",
)
_RETRY_AFTER = (("Retry-After", "1"),)


class FakeFCM:
    """The token endpoint, the send endpoint's checks, the token-prefix behaviours, counters."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.stats = Stats(tuple(TOKEN_PREFIXES))
        self._public_key = load_fcm_public_key(state)
        self._access_tokens: dict[str, float] = {}  # token -> expiry
        self._flaky_attempts: dict[str, int] = {}
        # Message names: a random per-process prefix and a counter, 32 hex digits like a UUID.
        self._message_ids = itertools.count(secrets.randbits(63) << 64)
        self._name_format = (
            json.dumps({"name": f"projects/{state.project_id}/messages/"})[:-2].replace("%", "%%")
            + '%032x"}'
        ).encode()

    def reset(self) -> None:
        self.stats.reset()
        self._flaky_attempts.clear()

    def protocol(self) -> asyncio.BaseProtocol:
        return DualProtocolConnection(self.handle)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes):
        if method == "POST":
            if path.startswith("/v1/projects/") and path.endswith("/messages:send"):
                project = path[13:-14]
                if project and "/" not in project:
                    return self._send(project, headers, body)
            if path == "/token":
                return self._token(body)
            if path == "/__reset":
                self.reset()
                return 200, (), b"{}"
            if path == "/__revoke_tokens":
                self._access_tokens.clear()
                return 200, (), b"{}"
        elif method == "GET" and path == "/__stats":
            return 200, (), json.dumps(self.stats.snapshot()).encode()
        return _error(404, f"No route for {method} {path}")[0]

    def _token(self, body: bytes) -> Response:
        self.stats.extra["token_requests"] += 1
        form = parse_qs(body.decode("latin-1"))
        if form.get("grant_type") != [JWT_BEARER] or not form.get("assertion"):
            return 400, (), b'{"error": "unsupported_grant_type"}'
        try:
            claims = jwt.decode(
                form["assertion"][0],
                self._public_key,
                algorithms=["RS256"],
                # google-auth always names Google's endpoint, whatever the token_uri.
                audience=[GOOGLE_TOKEN_AUDIENCE, f"{_origin(self.state)}/token"],
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return 400, (), json.dumps({"error": "invalid_grant", "detail": str(exc)}).encode()
        if claims["iss"] != self.state.client_email:
            return 400, (), b'{"error": "invalid_grant"}'
        access_token = "fake." + secrets.token_urlsafe(24)
        self._access_tokens[access_token] = time.time() + ACCESS_TOKEN_SECONDS
        answer = {
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "token_type": "Bearer",
        }
        return 200, (), json.dumps(answer).encode()

    def _send(self, project: str, headers: dict[str, str], body: bytes):
        checked = self._check(project, headers, body)
        if not isinstance(checked, str):  # an error answer
            response, reason = checked
            self.stats.record(response[0], reason, "other")
            return response
        token = checked
        prefix = self.stats.prefix_of(token)
        if prefix == "other":
            self.stats.record(200, None, prefix)
            if self.stats.tracking:
                self.stats.track(token)
            return 200, (), self._name_format % next(self._message_ids)
        answer = self._behaviour(token, prefix)
        if not isinstance(answer, tuple):
            self.stats.record(200, "slow", prefix)
            return answer
        response, reason = answer
        self.stats.record(response[0], reason, prefix)
        if self.stats.tracking and response[0] == 200:
            self.stats.track(token)
        return response

    def _check(
        self, project: str, headers: dict[str, str], body: bytes
    ) -> tuple[Response, str] | str:
        """An error answer and its reason, or the message's registration token when valid."""
        scheme, _, access_token = headers.get("authorization", "").partition(" ")
        expiry = self._access_tokens.get(access_token)
        if expiry is None or expiry < time.time() or scheme.lower() != "bearer":
            return _error(*_UNAUTHENTICATED)
        if project != self.state.project_id:
            return _error(403, f"Permission denied on project {project}.")
        try:
            message = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Invalid JSON payload received.")
        if not isinstance(message, dict) or not isinstance(message.get("token"), str):
            return _error(400, "Recipient of the message is not set.", "INVALID_ARGUMENT")
        data = message.get("data") or {}
        if not isinstance(data, dict):
            return _error(400, "Invalid value at 'message.data'", field="message.data")
        for key, value in data.items():
            if not isinstance(value, str):
                return _error(
                    400,
                    f"Invalid value at 'message.data[{key}].value' (TYPE_STRING)",
                    field=f"message.data[{key}].value",
                )
        android = message.get("android") or {}
        priority = str(android.get("priority", "normal")).upper()
        if priority not in ("HIGH", "NORMAL"):
            return _error(400, "Invalid value at 'message.android.priority'")
        if "ttl" in android and not _TTL.match(str(android["ttl"])):
            return _error(
                400,
                "Invalid value at 'message.android.ttl' (type.googleapis.com/"
                "google.protobuf.Duration)",
            )
        return message["token"]

    def _behaviour(self, token: str, prefix: str):
        """The answer a prefixed token provokes: (response, reason), or an awaitable (slow)."""
        if prefix == "dead":
            return _error(404, "Requested entity was not found.", "UNREGISTERED")
        if prefix == "mismatch":
            return _error(403, "SenderId mismatch", "SENDER_ID_MISMATCH")
        if prefix == "badtoken":
            return _error(
                400,
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
                field="message.token",
            )
        if prefix == "badarg":
            return _error(
                400,
                "Invalid value at 'message.android.collapse_key'",
                "INVALID_ARGUMENT",
                field="message.android.collapse_key",
            )
        if prefix == "flaky":
            attempts = self._flaky_attempts.get(token, 0) + 1
            self._flaky_attempts[token] = attempts
            if attempts <= FLAKY_FAILURES:
                return _error(
                    503, "The service is unavailable.", "UNAVAILABLE", headers=_RETRY_AFTER
                )
        if prefix == "err500":
            return _error(500, "Internal error encountered.", "INTERNAL")
        if prefix == "quota":
            return _error(
                429,
                "Quota exceeded for quota metric 'Send requests'.",
                "QUOTA_EXCEEDED",
                headers=_RETRY_AFTER,
            )
        success: Response = (200, (), self._name_format % next(self._message_ids))
        if prefix == "slow":
            return _after(SLOW_SECONDS, success)
        return success, None


async def _after(seconds: float, response: Response) -> Response:
    await asyncio.sleep(seconds)
    return response


def _origin(state: FakeState) -> str:
    account = json.loads(state.path(FCM_SERVICE_ACCOUNT_FILE).read_text())
    return account["token_uri"].rsplit("/", 1)[0]


async def serve_fcm(app: FakeFCM, host: str, port: int) -> asyncio.Server:
    """Listen for cleartext HTTP/1.1 and h2c; `port` 0 picks a free one."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(app.protocol, host, port)
