"""A fake NHN Cloud KakaoTalk Bizmessage dealer (AlimTalk API v2.3) on loopback, cleartext
HTTP/1.1 (`fakes/http1.py`).

Every answer is the dealer's JSON: `{"header": {"resultCode", "resultMessage", "isSuccessful"},
...}`. As the dealer does, a request it refuses with a result code is still HTTP 200 with
`isSuccessful: false`; only a system failure is a 5xx (500 with `-9999`), and a path that is no
API is 404 with `-9998`. The project it knows is in `<state-dir>/kakao.json` (`app_key`,
`secret_key`, `sender_key`, `plus_friend_id`, `fallback_send_no`: the SMS sender number
registered for alternative delivery). Dates are the dealer's: Korea Standard Time (UTC+9),
`yyyy-MM-dd HH:mm` in queries, `yyyy-MM-dd HH:mm:ss` in answers.

API (`/alimtalk/v2.3/appkeys/{appkey}/...`, every call with `X-Secret-Key`):
- `POST .../messages` (sending replaced messages) checks, in this order: the app key (`-1000`),
  the secret key (`-1001`), `Content-Type: application/json` (`-9996`), a reused
  `X-NC-API-IDEMPOTENCY-KEY` of the last 10 minutes (`-1005`, nothing is delivered again), a
  JSON body (`-3002`), `senderKey` and `templateCode` present (`-2001`), `recipientList`
  present (`-2002`) with 1 to 1,000 recipients (`-2004`), a known sender key (`-2017`), a
  known template of that sender (`-3003`) that is approved, `TSC03` (`-3005`), a `requestDate`
  of `yyyy-MM-dd HH:mm` (`-2027`) not in the past (`-2025`) nor over 60 days ahead (`-2026`);
  a recipient number of kind "fail" makes the whole request 500 `-9999` (nothing kept). Then
  each recipient on its own, in `sendResults` (`recipientSeq` from 1, `recipientNo`,
  `resultCode`, `resultMessage`, `recipientGroupingKey`): a recipient number of up to 15
  digits, `+` and `-` (`-4019`), a `templateParameter` that fills every `#{variable}` of the
  template's text and button links (`-3004`), a rendered text of at most 1,300 characters
  (`-2019`), `buttons` whose `ordering` the template has (`-3033`), a `resendParameter` with
  `resendType` SMS or LMS when given (`-4200`); else `0` "SUCCESS" and the recipient is kept.
  The header is `0` when at least one recipient was accepted, else `-1031` (all recipients
  failed; `sendResults` still says why each). The answer carries `requestId` (one per request).
  A request with an idempotency key that got at least one recipient through keeps the key for
  10 minutes (`idempotency_seconds`).
- `GET .../messages/{requestId}/{recipientSeq}`: one message as the dealer returns it (`-1016`
  when there is none).
- `GET .../messages?requestId=...` or `startRequestDate`+`endRequestDate` (or
  `startCreateDate`+`endCreateDate`) (`-4103` without), filters `recipientNo`, `senderKey`,
  `templateCode`, `senderGroupingKey`, `recipientGroupingKey`, `messageStatus`, `resultCode`
  (`MRC01`/`MRC02`), `pageNum`/`pageSize`: `messageSearchResultResponse` {`messages`,
  `totalCount`}.
- `GET .../message-results?startUpdateDate=&endUpdateDate=` (both required, `-2001`; format
  `-4000`; at most 31 days apart, `-4003`) with `pageNum` (default 1) and `pageSize` (default
  15, at most 1,000, `-2005`): `messages` whose last change falls between the start minute and
  the end of the end minute, oldest change first. As the dealer's, this answer has no
  `totalCount`; `GET .../message-results/count` (same dates) answers `totalCount`.
- `GET .../senders/{senderKey}/templates` (`templateCode`, `templateName`, `templateStatus`,
  `pageNum`, `pageSize` as above): `templateListResponse` {`templates`, `totalCount`};
  `GET .../senders/{senderKey}/templates/{templateCode}`: `templates` (one object).
  An unknown sender key is `-2017`, an unknown template code `-3003`.

What happens to an accepted recipient depends on its number (normalized: `+82` 10... reads as
010..., hyphens dropped). A number marked at `POST /__numbers` has that kind; else the ranges
of `NUMBER_RANGES` decide; any other number is "delivered":

| kind | national number | final result |
|---|---|---|
| delivered | any other | `messageStatus` COMPLETED, `resultCode` "1000" |
| not_kakao_user | 0100001xxxx | FAILED "3019" (not a KakaoTalk user) |
| blocked | 0100002xxxx | FAILED "3020" (the user blocked AlimTalk) |
| slow | 0100003xxxx | the send request is answered after `slow_seconds` (2); then delivered |
| fail | 0100004xxxx | the whole send request answers 500 `-9999` |

Until `final_after` seconds (0.2) after the request (or its `requestDate`), a message is
`messageStatus` READY with no `resultCode`. A failed one whose request asked for alternative
delivery (`resendParameter.isResend` true and a `resendSendNo`) is resent as SMS/LMS: its
`resendStatus` goes RSC02 (a target of resending) -> RSC03 (resending) at the failure ->
RSC04 (resent, `resendResultCode` "0", a `resendRequestId`) `resend_after` seconds (0.1)
later, or RSC05 (`resendResultCode` "-1003") when the `resendSendNo` is not the registered
sender number; every other message has RSC01 (no target of resending).

Templates are kept in `<state-dir>/kakao_templates.json`, so they survive a restart; a new
state directory starts with `SEED_TEMPLATES` for the account's sender key: WELCOME_01 ("Hello
#{name}, welcome to Automata-Signal.", a WL button), ORDER_SHIPPED ("#{name}, your order
#{order_no} has shipped.", a WL button whose link has #{order_no}), both approved, and
REVIEW_01 (TSC02, under review).

Admin: `GET /__stats` (`requests`, `by_status`, `by_reason` = the header's result code,
`by_prefix` = the API called, and `recipients_accepted`, `recipients_refused`,
`duplicate_requests`, `accepted_<kind>`), `POST /__reset` (counters, kept messages and
idempotency keys; templates, marked numbers and settings stay), `POST /__templates`
`{"template_code", "text", "name"?, "buttons"?, "status"? ("TSC03"), "sender_key"? (the
account's; another one becomes a sender of the app key)}` registers (or replaces) a template,
`GET /__templates?sender_key=`, `DELETE /__templates` (all), `POST /__numbers {"recipient_no",
"kind"}` marks a number, `GET /__messages?recipientNo=&requestId=&templateCode=` lists the
accepted recipients (the last `MAX_KEPT`, 200,000; older requests are forgotten, also by the
APIs), oldest first (`requestId`, `recipientSeq`, `recipientNo`, `senderKey`, `templateCode`,
`content` = the rendered text, `templateParameter`, `buttons` (the template's, links rendered,
with the request's extras), `resendParameter`, `idempotencyKey`, `kind`, `requestDate`,
`createDate`, and the current `messageStatus`, `resultCode`, `resendStatus`), `GET /__config`
and `POST /__config` `{"slow_seconds", "final_after", "resend_after", "idempotency_seconds"}`,
`GET /__account`.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime
import functools
import itertools
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from fakes.http1 import HTTP1Protocol, Response
from fakes.state import KAKAO_TEMPLATES_FILE, FakeState, KakaoAccount, ensure_kakao_account
from fakes.stats import Stats

KST = datetime.timezone(datetime.timedelta(hours=9), "KST")
API_PREFIX = "/alimtalk/v2.3/appkeys/"
KINDS = ("delivered", "not_kakao_user", "blocked", "slow", "fail")
NUMBER_RANGES: dict[str, str] = {
    "0100001": "not_kakao_user",
    "0100002": "blocked",
    "0100003": "slow",
    "0100004": "fail",
}
SLOW_SECONDS = 2.0
FINAL_AFTER = 0.2  # seconds from the request (or its requestDate) to the final result
RESEND_AFTER = 0.1  # ... and from a Kakao failure to the SMS resend's result
IDEMPOTENCY_SECONDS = 600.0
MAX_RECIPIENTS = 1000
MAX_CONTENT = 1300
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 15
MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_KEPT = 200_000  # recipients kept (about 1 KB each); the oldest requests are forgotten past it
MAX_SCHEDULE_DAYS = 60

# The templates a new state directory starts with, approved unless said otherwise: what
# `make run`'s demo application can send right away.
SEED_TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "template_code": "WELCOME_01",
        "name": "Welcome",
        "text": "Hello #{name}, welcome to Automata-Signal.",
        "buttons": [{"type": "WL", "name": "Open", "linkMo": "https://example.com/"}],
    },
    {
        "template_code": "ORDER_SHIPPED",
        "name": "Order shipped",
        "text": "#{name}, your order #{order_no} has shipped.",
        "buttons": [
            {"type": "WL", "name": "Track", "linkMo": "https://example.com/orders/#{order_no}"}
        ],
    },
    {
        "template_code": "REVIEW_01",
        "name": "Under review",
        "text": "This template is still being reviewed, #{name}.",
        "status": "TSC02",
    },
)

# Kakao's delivery result codes (error-code.md, "Delivery Result Code").
DELIVERY_RESULTS = {
    "delivered": ("1000", "Success"),
    "slow": ("1000", "Success"),
    "not_kakao_user": ("3019", "Unable to send message: not a KakaoTalk user"),
    "blocked": ("3020", "Unable to send message: AlimTalk messages blocked"),
}
RESEND_STATUS_NAMES = {
    "RSC01": "No target of resending",
    "RSC02": "Target of resending",
    "RSC03": "Resending in progress",
    "RSC04": "Resending successful",
    "RSC05": "Resending failed",
}
TEMPLATE_STATUS_NAMES = {
    "TSC01": "Request",
    "TSC02": "Inspecting",
    "TSC03": "Approved",
    "TSC04": "Rejected",
}
# The dealer's result messages (error-code.md, "API response message").
MESSAGES = {
    0: "SUCCESS",
    -1000: "Invalid appKey.",
    -1001: "Invalid secretKey.",
    -1003: "Invalid Sms Sendno",
    -1005: "The same 'X-NC-API-IDEMPOTENCY-KEY' was used within the last 10 minute.",
    -1016: "It is not found any messages responding with that requestId or recipientSeq.",
    -1031: "All of receivers are failed to send.",
    -2001: "The '{}' must not be blank.",
    -2002: "The '{}' must not be null.",
    -2003: "The '{}' must be greater than or equal to {}.",
    -2004: "The '{}' must be between {} and {}.",
    -2005: "The '{}' must be less than or equal to {}.",
    -2017: "Not exist plus friend.",
    -2019: "The content that is replaced by the template parameters can not exceed 1,300 "
    "characters.",
    -2025: "You can not send messages on past dates. Please check `requestDate` again.",
    -2026: "You can not send messages after 90 days. Please check `requestDate` again.",
    -2027: "The 'requestDate' has invalid format.",
    -3002: "Field is not valid.",
    -3003: "Template does not exist.",
    -3004: "Please check template parameter.",
    -3005: "Please check template status.",
    -3033: "The button or quickReply is not exist in template.",
    -4000: "Invalid parameter",
    -4003: "Search is possible within 31 days.",
    -4019: "Invalid recipient number.",
    -4103: "RequestId or startRequestDate/endRequestDate is invalid.",
    -4200: "Resend Message is invalid.",
    -9996: "Only application/json Content-type is supported.",
    -9998: "Not exist API",
    -9999: "System error. Please inquire at support@toast.com.",
}

_VARIABLE = re.compile(r"#\{([^{}]+)\}")
_RECIPIENT_NO = re.compile(r"\+?[0-9][0-9-]{0,14}")
_MINUTE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")
_ALPHANUMERIC = string.ascii_letters + string.digits
_BUTTON_LINKS = ("linkMo", "linkPc", "schemeIos", "schemeAndroid")
_HEADER_CODE = re.compile(rb'\{"header": \{"resultCode": (-?\d+)')
_FAILING = frozenset(kind for kind, (code, _) in DELIVERY_RESULTS.items() if code != "1000")


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return status, (), json.dumps(payload, ensure_ascii=False).encode()


def _header(code: int, message: str | None = None) -> dict[str, Any]:
    return {
        "resultCode": code,
        "resultMessage": MESSAGES[code] if message is None else message,
        "isSuccessful": code == 0,
    }


def _refusal(code: int, *args: Any, status: int = 200) -> Response:
    """A header-only answer with the dealer's result code (its message filled with `args`)."""
    message = MESSAGES[code].format(*args) if args else MESSAGES[code]
    return _json({"header": _header(code, message)}, status)


def _kst(epoch: float) -> str:
    """A moment as the dealer writes it, to the second in KST."""
    return _kst_second(int(epoch))


@functools.lru_cache(maxsize=4096)
def _kst_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, KST).strftime("%Y-%m-%d %H:%M:%S")


def _minute(text: str) -> float | None:
    """Epoch seconds of a dealer date `yyyy-MM-dd HH:mm` (KST), None when it is not one."""
    if not _MINUTE.fullmatch(text):
        return None
    try:
        moment = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=KST)
    except ValueError:
        return None
    return moment.timestamp()


def normalize_number(number: str) -> str:
    """The national form the fake files a number under: hyphens and spaces dropped, `+82`
    read as the trunk prefix 0 (`+821012345678` -> `01012345678`)."""
    digits = number.replace("-", "").replace(" ", "")
    if digits.startswith("+82"):
        digits = "0" + digits[3:]
    return digits


def variables_of(text: str) -> list[str]:
    """The `#{name}`s of a template text, in order of first appearance."""
    return list(dict.fromkeys(_VARIABLE.findall(text or "")))


def render(text: str, parameters: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda match: parameters.get(match.group(1), match.group(0)), text)


@dataclass
class Template:
    sender_key: str
    code: str
    name: str
    text: str
    buttons: list[dict[str, Any]]
    status: str
    created: float
    variables: list[str] = field(default_factory=list)

    def resource(self, plus_friend_id: str) -> dict[str, Any]:
        """The template as the dealer's template list returns it."""
        date = _kst(self.created)
        return {
            "plusFriendId": plus_friend_id,
            "senderKey": self.sender_key,
            "plusFriendType": "NORMAL",
            "templateCode": self.code,
            "kakaoTemplateCode": self.code,
            "templateName": self.name,
            "templateMessageType": "BA",
            "templateEmphasizeType": "NONE",
            "templateContent": self.text,
            "templateExtra": None,
            "templateAd": None,
            "templateTitle": None,
            "templateSubtitle": None,
            "templateHeader": None,
            "templateItem": None,
            "templateItemHighlight": None,
            "templateRepresentLink": None,
            "templateImageName": None,
            "templateImageUrl": None,
            "buttons": self.buttons,
            "quickReplies": [],
            "comments": [],
            "status": self.status,
            "statusName": TEMPLATE_STATUS_NAMES.get(self.status, self.status),
            "securityFlag": False,
            "categoryCode": "999999",
            "createDate": date,
            "updateDate": date,
        }


class _Request:
    """One accepted send request: its recipients share the times their results change."""

    __slots__ = (
        "request_id",
        "app_key",
        "sender_key",
        "template_code",
        "template",
        "sender_grouping_key",
        "idempotency_key",
        "created",
        "request_date",
        "due",
        "resend_due",
        "recipients",
    )

    def __init__(self, request_id, app_key, sender_key, template_code, grouping, key, created):
        self.request_id = request_id
        self.app_key = app_key
        self.sender_key = sender_key
        self.template_code = template_code
        self.template: Template | None = None
        self.sender_grouping_key = grouping
        self.idempotency_key = key
        self.created = created
        self.request_date = created
        self.due = created  # when the Kakao result is known
        self.resend_due = created  # ... and the SMS resend's
        self.recipients: list[_Recipient] = []


class _Recipient:
    __slots__ = (
        "request",
        "seq",
        "number",
        "normalized",
        "kind",
        "content",
        "parameters",
        "extras",
        "resend",
        "resend_ok",
        "grouping_key",
        "resend_request_id",
    )

    def __init__(self, request, seq, number, kind, content, parameters, extras, resend, grouping):
        self.request: _Request = request
        self.seq = seq
        self.number = number
        self.normalized = normalize_number(number)
        self.kind = kind
        self.content = content
        self.parameters = parameters
        self.extras: dict | None = extras  # the request's button fields, by ordering
        self.resend: dict[str, Any] | None = resend  # only when a resend was asked for
        self.resend_ok = False
        self.grouping_key = grouping
        self.resend_request_id = ""

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The template's buttons with their links rendered and the request's fields added
        (built when read: most are never read)."""
        parameters = self.parameters
        extras = self.extras or {}
        buttons = []
        for button in self.request.template.buttons:
            rendered = {
                name: render(value, parameters) if name in _BUTTON_LINKS and value else value
                for name, value in button.items()
            }
            rendered.update(extras.get(button.get("ordering"), {}))
            buttons.append(rendered)
        return buttons

    def changed_at(self, now: float) -> float:
        """When this message last changed (epoch, <= now)."""
        request = self.request
        if now < request.due:
            return request.created
        if self.resend is not None and self.kind in _FAILING and now >= request.resend_due:
            return request.resend_due
        return request.due

    def state(self, now: float) -> tuple[float, dict[str, Any]]:
        """When this message last changed (epoch, <= now) and its result fields then."""
        request = self.request
        resend = self.resend is not None
        if now < request.due:
            status = "RSC02" if resend else "RSC01"
            return request.created, {
                "receiveDate": None,
                "resendStatus": status,
                "resendStatusName": RESEND_STATUS_NAMES[status],
                "resendResultCode": None,
                "resendRequestId": None,
                "messageStatus": "READY",
                "resultCode": None,
                "resultCodeName": None,
            }
        code, name = DELIVERY_RESULTS[self.kind]
        failed = code != "1000"
        changed = request.due
        resend_code = resend_request = None
        if failed and resend:
            if now < request.resend_due:
                status = "RSC03"
            else:
                changed = request.resend_due
                status = "RSC04" if self.resend_ok else "RSC05"
                resend_code = "0" if self.resend_ok else "-1003"
                resend_request = self.resend_request_id
        else:
            status = "RSC01"
        return changed, {
            "receiveDate": None if failed else _kst(request.due),
            "resendStatus": status,
            "resendStatusName": RESEND_STATUS_NAMES[status],
            "resendResultCode": resend_code,
            "resendRequestId": resend_request,
            "messageStatus": "FAILED" if failed else "COMPLETED",
            "resultCode": code,
            "resultCodeName": name,
        }


class FakeKakao:
    """The dealer's checks, the kept messages and their results, templates, counters."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.account: KakaoAccount = ensure_kakao_account(state)
        self.stats = Stats(())
        self.config = {
            "slow_seconds": SLOW_SECONDS,
            "final_after": FINAL_AFTER,
            "resend_after": RESEND_AFTER,
            "idempotency_seconds": IDEMPOTENCY_SECONDS,
        }
        self.senders: set[str] = {self.account.sender_key}
        self.templates: dict[tuple[str, str], Template] = {}
        self.marked: dict[str, str] = {}  # normalized number -> kind
        self._ids = itertools.count(secrets.randbelow(10**6))
        self._load_templates()
        self.reset()

    def reset(self) -> None:
        self.stats.reset()
        self._requests: list[_Request] = []  # in order of `created`
        self._by_id: dict[str, _Request] = {}
        self._idempotency: dict[tuple[str, str], float] = {}  # (app key, key) -> expiry
        self._kept = 0
        self._pages: dict[tuple, tuple[float, list]] = {}

    def protocol(self) -> HTTP1Protocol:
        # 1,000 recipients with LMS fallback texts can pass the default 1 MiB.
        return HTTP1Protocol(self.handle, with_query=True, max_body=MAX_REQUEST_BYTES)

    # -- routing --

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes):
        path, _, query = target.partition("?")
        if path.startswith(API_PREFIX):
            return self._api(method, path[len(API_PREFIX) :], query, headers, body)
        if path.startswith("/__"):
            return self._admin(method, path, query, body)
        return _refusal(-9998, status=404)

    def _api(self, method: str, rest: str, query: str, headers: dict[str, str], body: bytes):
        parts = [unquote(part) for part in rest.split("/")]
        app_key, route = parts[0], parts[1:]
        name = self._route_name(method, route)
        if name is None:
            answer = _refusal(-9998, status=404)
        elif app_key != self.account.app_key:
            answer = _refusal(-1000)
        elif headers.get("x-secret-key") != self.account.secret_key:
            answer = _refusal(-1001)
        elif name == "send":
            return self._send(app_key, headers, body)
        else:
            params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
            if name == "message":
                answer = self._message(route[1], route[2])
            elif name == "messages":
                answer = self._list_messages(params)
            elif name == "results":
                answer = self._results(app_key, params)
            elif name == "results_count":
                answer = self._results(app_key, params, count=True)
            elif name == "templates":
                answer = self._templates(route[1], params)
            else:
                answer = self._template(route[1], route[3])
        self._record(answer, name or "unknown")
        return answer

    @staticmethod
    def _route_name(method: str, route: list[str]) -> str | None:
        if route == ["messages"]:
            return {"POST": "send", "GET": "messages"}.get(method)
        if method != "GET":
            return None
        if len(route) == 3 and route[0] == "messages":
            return "message"
        if route == ["message-results"]:
            return "results"
        if route == ["message-results", "count"]:
            return "results_count"
        if len(route) == 3 and route[0] == "senders" and route[2] == "templates":
            return "templates"
        if len(route) == 4 and route[0] == "senders" and route[2] == "templates":
            return "template"
        return None

    def _record(self, answer: Response, name: str, code: int | None = None) -> None:
        """Count an answer under its header's result code (read from it unless given)."""
        if code is None:
            # Every answer opens with its header: no need to parse a page of a thousand.
            found = _HEADER_CODE.match(answer[2])
            code = int(found.group(1)) if found else None
        reason = f"HTTP{answer[0]}" if code is None else str(code)
        self.stats.record(answer[0], None if reason == "0" else reason, name)

    # -- sending --

    def _send(self, app_key: str, headers: dict[str, str], body: bytes):
        answer, kinds = self._send_checked(app_key, headers, body)
        self._record(answer, "send", code=0 if answer[0] == 200 and kinds else None)
        if "slow" in kinds and answer[0] == 200:
            return _after(self.config["slow_seconds"], answer)
        return answer

    def _send_checked(self, app_key: str, headers: dict[str, str], body: bytes):
        if not headers.get("content-type", "").lower().startswith("application/json"):
            return _refusal(-9996), ()
        now = time.time()
        key = headers.get("x-nc-api-idempotency-key", "")
        if key:
            expiry = self._idempotency.get((app_key, key))
            if expiry is not None and expiry > now:
                self.stats.extra["duplicate_requests"] += 1
                return _refusal(-1005), ()
        try:
            request = json.loads(body)
        except ValueError:
            return _refusal(-3002), ()
        if not isinstance(request, dict):
            return _refusal(-3002), ()
        for name in ("senderKey", "templateCode"):
            if not isinstance(request.get(name), str) or not request[name].strip():
                return _refusal(-2001, name), ()
        recipients = request.get("recipientList")
        if recipients is None:
            return _refusal(-2002, "recipientList"), ()
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            return _refusal(-2004, "recipientList", 1, MAX_RECIPIENTS), ()
        sender_key = request["senderKey"]
        if sender_key not in self.senders:
            return _refusal(-2017), ()
        template = self.templates.get((sender_key, request["templateCode"]))
        if template is None:
            return _refusal(-3003), ()
        if template.status != "TSC03":
            return _refusal(-3005), ()
        start = now
        request_date = request.get("requestDate")
        if request_date:
            scheduled = _minute(str(request_date))
            if scheduled is None:
                return _refusal(-2027), ()
            if scheduled < now - now % 60 - 60:
                return _refusal(-2025), ()
            if scheduled > now + MAX_SCHEDULE_DAYS * 86400:
                return _refusal(-2026), ()
            start = max(now, scheduled)
        kinds = [
            self._kind(str(r.get("recipientNo", ""))) if isinstance(r, dict) else "delivered"
            for r in recipients
        ]
        if "fail" in kinds:
            return _refusal(-9999, status=500), ()

        request_id = self._request_id(now)
        kept = _Request(
            request_id,
            app_key,
            sender_key,
            template.code,
            request.get("senderGroupingKey"),
            key or None,
            now,
        )
        kept.template = template
        kept.request_date = start
        kept.due = start + self.config["final_after"]
        kept.resend_due = kept.due + self.config["resend_after"]
        results = []
        for seq, (recipient, kind) in enumerate(zip(recipients, kinds, strict=True), start=1):
            code, accepted = self._recipient(kept, seq, recipient, kind, template)
            number = recipient.get("recipientNo") if isinstance(recipient, dict) else None
            results.append(
                {
                    "recipientSeq": seq,
                    "recipientNo": number,
                    "resultCode": code,
                    "resultMessage": MESSAGES[code],
                    "recipientGroupingKey": (
                        recipient.get("recipientGroupingKey")
                        if isinstance(recipient, dict)
                        else None
                    ),
                }
            )
            if accepted is not None:
                kept.recipients.append(accepted)
                self.stats.extra[f"accepted_{kind}"] += 1
        accepted_count = len(kept.recipients)
        self.stats.extra["recipients_accepted"] += accepted_count
        self.stats.extra["recipients_refused"] += len(recipients) - accepted_count
        if accepted_count:
            self._keep(kept)
            if key:
                self._idempotency[app_key, key] = now + self.config["idempotency_seconds"]
                if len(self._idempotency) > 100_000:
                    self._idempotency = {k: v for k, v in self._idempotency.items() if v > now}
        if not accepted_count:
            kinds = []  # counted under the header's code
        answer = {
            "header": _header(0 if accepted_count else -1031),
            "message": {
                "requestId": request_id,
                "senderGroupingKey": request.get("senderGroupingKey"),
                "sendResults": results,
            },
        }
        return _json(answer), kinds

    def _recipient(self, kept: _Request, seq: int, recipient: Any, kind: str, template: Template):
        """The recipient's result code, and what is kept of it when accepted."""
        if not isinstance(recipient, dict):
            return -3002, None
        number = recipient.get("recipientNo")
        if not isinstance(number, str) or not _RECIPIENT_NO.fullmatch(number):
            return -4019, None
        parameters = recipient.get("templateParameter") or {}
        if not isinstance(parameters, dict):
            return -3004, None
        parameters = {str(k): "" if v is None else str(v) for k, v in parameters.items()}
        if any(name not in parameters for name in template.variables):
            return -3004, None
        content = render(template.text, parameters)
        if len(content) > MAX_CONTENT:
            return -2019, None
        extras = recipient.get("buttons") or []
        if not isinstance(extras, list) or not all(isinstance(b, dict) for b in extras):
            return -3002, None
        orderings = {button.get("ordering") for button in template.buttons}
        if any(button.get("ordering") not in orderings for button in extras):
            return -3033, None
        resend = recipient.get("resendParameter")
        if resend is not None and not isinstance(resend, dict):
            return -4200, None
        if resend and resend.get("resendType") not in (None, "SMS", "LMS"):
            return -4200, None
        by_order = {button.get("ordering"): button for button in extras} if extras else None
        wants_resend = bool(resend and resend.get("isResend") and resend.get("resendSendNo"))
        accepted = _Recipient(
            kept,
            seq,
            number,
            kind,
            content,
            parameters,
            by_order,
            resend if wants_resend else None,
            recipient.get("recipientGroupingKey"),
        )
        if wants_resend:
            accepted.resend_ok = resend.get("resendSendNo") == self.account.fallback_send_no
            accepted.resend_request_id = self._request_id(kept.created)
        return 0, accepted

    def _kind(self, number: str) -> str:
        normalized = normalize_number(number)
        kind = self.marked.get(normalized)
        if kind is None:
            kind = NUMBER_RANGES.get(normalized[:7], "delivered")
        return kind

    def _request_id(self, now: float) -> str:
        """The dealer's shape: the KST time to the second, then random letters and a counter."""
        stamp = datetime.datetime.fromtimestamp(now, KST).strftime("%Y%m%d%H%M%S")
        noise = "".join(_ALPHANUMERIC[byte % 62] for byte in secrets.token_bytes(5))
        return f"{stamp}{noise}{next(self._ids) % 10**6:06d}"

    def _keep(self, request: _Request) -> None:
        self._requests.append(request)
        self._by_id[request.request_id] = request
        self._kept += len(request.recipients)
        while self._kept > MAX_KEPT and len(self._requests) > 1:
            dropped = self._requests.pop(0)
            self._by_id.pop(dropped.request_id, None)
            self._kept -= len(dropped.recipients)
        self._pages.clear()

    # -- reading messages --

    def _full(self, recipient: _Recipient, now: float) -> dict[str, Any]:
        """A message as the dealer's single-message GET returns it."""
        request = recipient.request
        _, result = recipient.state(now)
        return {
            "requestId": request.request_id,
            "recipientSeq": recipient.seq,
            "plusFriendId": self.account.plus_friend_id,
            "senderKey": request.sender_key,
            "templateCode": request.template_code,
            "recipientNo": recipient.number,
            "content": recipient.content,
            "templateTitle": None,
            "templateSubtitle": None,
            "templateExtra": None,
            "templateAd": None,
            "templateHeader": None,
            "templateItem": None,
            "templateItemHighlight": None,
            "templateRepresentLink": None,
            "requestDate": _kst(request.request_date),
            "createDate": _kst(request.created),
            **result,
            "createUser": None,
            "buttons": recipient.buttons,
            "quickReplies": [],
            "messageOption": None,
            "senderGroupingKey": request.sender_grouping_key,
            "recipientGroupingKey": recipient.grouping_key,
        }

    def _message(self, request_id: str, seq: str) -> Response:
        request = self._by_id.get(request_id)
        found = None
        if request is not None and seq.isdigit():
            found = next((r for r in request.recipients if r.seq == int(seq)), None)
        if found is None:
            return _refusal(-1016)
        return _json({"header": _header(0), "message": self._full(found, time.time())})

    def _list_messages(self, params: dict[str, str]) -> Response:
        page_num, page_size, refusal = _paging(params)
        if refusal is not None:
            return refusal
        request_id = params.get("requestId", "")
        if request_id:
            request = self._by_id.get(request_id)
            requests = [request] if request is not None else []
            window = None
        else:
            names = (
                ("startRequestDate", "endRequestDate")
                if params.get("startRequestDate")
                else ("startCreateDate", "endCreateDate")
            )
            start, end = _minute(params.get(names[0], "")), _minute(params.get(names[1], ""))
            if start is None or end is None or start > end:
                return _refusal(-4103)
            window = (names[0] == "startRequestDate", start, end + 60)
            requests = self._requests
        now = time.time()
        wanted_number = normalize_number(params.get("recipientNo", ""))
        status = params.get("messageStatus", "")
        result = params.get("resultCode", "")
        found = []
        for request in requests:
            if window is not None:
                moment = request.request_date if window[0] else request.created
                if not window[1] <= moment < window[2]:
                    continue
            if params.get("senderKey") and request.sender_key != params["senderKey"]:
                continue
            if params.get("templateCode") and request.template_code != params["templateCode"]:
                continue
            grouping = params.get("senderGroupingKey")
            if grouping and request.sender_grouping_key != grouping:
                continue
            for recipient in request.recipients:
                if wanted_number and recipient.normalized != wanted_number:
                    continue
                grouping = params.get("recipientGroupingKey")
                if grouping and recipient.grouping_key != grouping:
                    continue
                _, state = recipient.state(now)
                if status and state["messageStatus"] != status:
                    continue
                if result and result != ("MRC01" if state["resultCode"] == "1000" else "MRC02"):
                    continue
                found.append((recipient, state))
        page = found[(page_num - 1) * page_size : page_num * page_size]
        messages = [
            {
                "requestId": r.request.request_id,
                "recipientSeq": r.seq,
                "plusFriendId": self.account.plus_friend_id,
                "senderKey": r.request.sender_key,
                "templateCode": r.request.template_code,
                "recipientNo": r.number,
                "content": r.content,
                "requestDate": _kst(r.request.request_date),
                "createDate": _kst(r.request.created),
                "receiveDate": s["receiveDate"],
                "resendStatus": s["resendStatus"],
                "resendStatusName": s["resendStatusName"],
                "messageStatus": s["messageStatus"],
                "resultCode": s["resultCode"],
                "resultCodeName": s["resultCodeName"],
                "createUser": None,
                "senderGroupingKey": r.request.sender_grouping_key,
                "recipientGroupingKey": r.grouping_key,
            }
            for r, s in page
        ]
        return _json(
            {
                "header": _header(0),
                "messageSearchResultResponse": {"messages": messages, "totalCount": len(found)},
            }
        )

    def _results(self, app_key: str, params: dict[str, str], *, count: bool = False) -> Response:
        """Query Updates of Message Result (and its count)."""
        for name in ("startUpdateDate", "endUpdateDate"):
            if not params.get(name):
                return _refusal(-2001, name)
        start, end = _minute(params["startUpdateDate"]), _minute(params["endUpdateDate"])
        if start is None or end is None or start > end:
            return _refusal(-4000)
        if end - start > 31 * 86400:
            return _refusal(-4003)
        page_num, page_size, refusal = _paging(params)
        if refusal is not None:
            return refusal
        updates = self._updates(app_key, start, end + 60, params.get("alimtalkMessageType", ""))
        if count:
            return _json({"header": _header(0), "totalCount": len(updates)})
        now = time.time()
        page = [
            (item[3], item[3].state(now)[1])
            for item in updates[(page_num - 1) * page_size : page_num * page_size]
        ]
        messages = [
            {
                "requestId": r.request.request_id,
                "recipientSeq": r.seq,
                "requestDate": _kst(r.request.request_date),
                "createDate": _kst(r.request.created),
                "receiveDate": s["receiveDate"],
                "resendStatus": s["resendStatus"],
                "resendStatusName": s["resendStatusName"],
                "resendResultCode": s["resendResultCode"],
                "resendRequestId": s["resendRequestId"],
                "messageStatus": s["messageStatus"],
                "resultCode": s["resultCode"],
                "resultCodeName": s["resultCodeName"],
            }
            for r, s in page
        ]
        return _json({"header": _header(0), "messages": messages})

    def _updates(self, app_key: str, start: float, end: float, message_type: str) -> list:
        """The messages whose last change is in [start, end), oldest change first; one list
        per window is reused for a second, so the pages of one poll agree."""
        if message_type == "AUTH":
            return []
        now = time.time()
        cache_key = (app_key, start, end)
        cached = self._pages.get(cache_key)
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        # A request's messages change at `created`, `due` and `resend_due`, all after
        # `created` and at most `final_after + resend_after` (as configured then) later.
        horizon = start - 2 * (self.config["final_after"] + self.config["resend_after"]) - 60
        first = bisect.bisect_left(self._requests, horizon, key=lambda r: r.created)
        found = []
        for request in self._requests[first:]:
            if request.created >= end:
                break
            if request.app_key != app_key:
                continue
            for recipient in request.recipients:
                changed = recipient.changed_at(now)
                if start <= changed < end:
                    found.append((changed, request.request_id, recipient.seq, recipient))
        found.sort(key=lambda item: item[:3])
        if len(self._pages) > 64:
            self._pages.clear()
        self._pages[cache_key] = (now, found)
        return found

    # -- templates --

    def _templates(self, sender_key: str, params: dict[str, str]) -> Response:
        if sender_key not in self.senders:
            return _refusal(-2017)
        page_num, page_size, refusal = _paging(params)
        if refusal is not None:
            return refusal
        found = [
            t
            for (sender, _), t in sorted(self.templates.items())
            if sender == sender_key
            and (not params.get("templateCode") or t.code == params["templateCode"])
            and (not params.get("templateName") or params["templateName"] in t.name)
            and (not params.get("templateStatus") or t.status == params["templateStatus"])
        ]
        page = found[(page_num - 1) * page_size : page_num * page_size]
        plus_friend = self.account.plus_friend_id
        body = {
            "header": _header(0),
            "templateListResponse": {
                "templates": [t.resource(plus_friend) for t in page],
                "totalCount": len(found),
            },
        }
        return _json(body)

    def _template(self, sender_key: str, code: str) -> Response:
        if sender_key not in self.senders:
            return _refusal(-2017)
        template = self.templates.get((sender_key, code))
        if template is None:
            return _refusal(-3003)
        body = {"header": _header(0), "templates": template.resource(self.account.plus_friend_id)}
        return _json(body)

    # -- admin --

    def _admin(self, method: str, path: str, query: str, body: bytes) -> Response:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if method == "GET":
            if path == "/__stats":
                return _json(self.stats.snapshot())
            if path == "/__messages":
                return _json({"messages": self._received(params)})
            if path == "/__templates":
                sender = params.get("sender_key") or self.account.sender_key
                listed = [
                    t.resource(self.account.plus_friend_id)
                    for (s, _), t in sorted(self.templates.items())
                    if s == sender
                ]
                return _json({"templates": listed})
            if path == "/__config":
                return _json(self.config)
            if path == "/__numbers":
                return _json({"numbers": self.marked})
            if path == "/__account":
                return _json(
                    {
                        "app_key": self.account.app_key,
                        "secret_key": self.account.secret_key,
                        "sender_key": self.account.sender_key,
                        "plus_friend_id": self.account.plus_friend_id,
                        "fallback_send_no": self.account.fallback_send_no,
                    }
                )
        elif method == "POST":
            if path == "/__reset":
                self.reset()
                return _json({})
            try:
                payload = json.loads(body) if body.strip() else {}
                if not isinstance(payload, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                return _json({"error": f"a JSON object, please: {exc}"}, 400)
            if path == "/__templates":
                return self._register_template(payload)
            if path == "/__numbers":
                return self._mark(payload)
            if path == "/__config":
                return self._configure(payload)
        elif method == "DELETE" and path == "/__templates":
            self.templates.clear()
            self.senders = {self.account.sender_key}
            self._save_templates()
            return _json({})
        return _json({"error": f"no admin route {method} {path}"}, 404)

    def _load_templates(self) -> None:
        """The templates of the state directory (kept across restarts); a new state directory
        starts with `SEED_TEMPLATES` for the account's sender key."""
        path = self.state.path(KAKAO_TEMPLATES_FILE)
        if path.exists():
            stored = json.loads(path.read_text())
        else:
            stored = [{**seed, "sender_key": self.account.sender_key} for seed in SEED_TEMPLATES]
        for payload in stored:
            self._register_template(payload, save=False)
        if not path.exists():
            self._save_templates()

    def _save_templates(self) -> None:
        stored = [
            {
                "sender_key": t.sender_key,
                "template_code": t.code,
                "name": t.name,
                "text": t.text,
                "buttons": t.buttons,
                "status": t.status,
                "created": t.created,
            }
            for t in self.templates.values()
        ]
        path = self.state.path(KAKAO_TEMPLATES_FILE)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, ensure_ascii=False, indent=1))
        tmp.replace(path)

    def _register_template(self, payload: dict[str, Any], *, save: bool = True) -> Response:
        code = payload.get("template_code")
        text = payload.get("text")
        if not isinstance(code, str) or not code or len(code) > 20:
            return _json({"error": "template_code: 1 to 20 characters"}, 400)
        if not isinstance(text, str) or not text:
            return _json({"error": "text: the template's content"}, 400)
        status = payload.get("status") or "TSC03"
        if status not in TEMPLATE_STATUS_NAMES:
            return _json({"error": f"status: one of {sorted(TEMPLATE_STATUS_NAMES)}"}, 400)
        buttons = payload.get("buttons") or []
        if not isinstance(buttons, list) or not all(isinstance(b, dict) for b in buttons):
            return _json({"error": "buttons: a list of objects"}, 400)
        buttons = [{"ordering": i, **b} for i, b in enumerate(buttons, start=1)]
        sender = payload.get("sender_key") or self.account.sender_key
        template = Template(
            sender_key=sender,
            code=code,
            name=str(payload.get("name") or code),
            text=text,
            buttons=buttons,
            status=status,
            created=float(payload.get("created") or time.time()),
        )
        link_variables = [
            name
            for button in buttons
            for link in _BUTTON_LINKS
            for name in variables_of(str(button.get(link) or ""))
        ]
        template.variables = list(dict.fromkeys(variables_of(text) + link_variables))
        self.senders.add(sender)
        self.templates[sender, code] = template
        if save:
            self._save_templates()
        return _json({"template": template.resource(self.account.plus_friend_id)})

    def _mark(self, payload: dict[str, Any]) -> Response:
        number, kind = payload.get("recipient_no"), payload.get("kind")
        if not isinstance(number, str) or not number or kind not in KINDS:
            return _json({"error": f"recipient_no and kind (one of {list(KINDS)})"}, 400)
        normalized = normalize_number(number)
        self.marked[normalized] = kind
        return _json({"recipient_no": normalized, "kind": kind})

    def _configure(self, payload: dict[str, Any]) -> Response:
        for name, value in payload.items():
            if name not in self.config:
                return _json({"error": f"unknown setting {name}"}, 400)
            if not isinstance(value, int | float) or value < 0:
                return _json({"error": f"{name}: a number of seconds >= 0"}, 400)
        self.config.update({name: float(value) for name, value in payload.items()})
        return _json(self.config)

    def _received(self, params: dict[str, str]) -> list[dict[str, Any]]:
        number = params.get("recipientNo") or params.get("recipient_no") or ""
        wanted = normalize_number(number) if number else ""
        request_id = params.get("requestId", "")
        template_code = params.get("templateCode", "")
        now = time.time()
        found = []
        requests = [self._by_id[request_id]] if request_id in self._by_id else self._requests
        if request_id and request_id not in self._by_id:
            requests = []
        for request in requests:
            if template_code and request.template_code != template_code:
                continue
            for recipient in request.recipients:
                if wanted and recipient.normalized != wanted:
                    continue
                _, state = recipient.state(now)
                found.append(
                    {
                        "requestId": request.request_id,
                        "recipientSeq": recipient.seq,
                        "recipientNo": recipient.number,
                        "senderKey": request.sender_key,
                        "templateCode": request.template_code,
                        "content": recipient.content,
                        "templateParameter": recipient.parameters,
                        "buttons": recipient.buttons,
                        "resendParameter": recipient.resend,
                        "idempotencyKey": request.idempotency_key,
                        "requestDate": _kst(request.request_date),
                        "createDate": _kst(request.created),
                        "kind": recipient.kind,
                        "messageStatus": state["messageStatus"],
                        "resultCode": state["resultCode"],
                        "resendStatus": state["resendStatus"],
                    }
                )
        return found


def _paging(params: dict[str, str]) -> tuple[int, int, Response | None]:
    """`pageNum` (>= 1, default 1) and `pageSize` (1 to 1,000, default 15), and the refusal
    when they are not."""
    values = {}
    for name, default in (("pageNum", 1), ("pageSize", DEFAULT_PAGE_SIZE)):
        text = params.get(name, "")
        if not text:
            values[name] = default
            continue
        try:
            values[name] = int(text)
        except ValueError:
            return 1, 1, _refusal(-4000)
        if values[name] < 1:
            return 1, 1, _refusal(-2003, name, 1)
    if values["pageSize"] > MAX_PAGE_SIZE:
        return 1, 1, _refusal(-2005, "pageSize", MAX_PAGE_SIZE)
    return values["pageNum"], values["pageSize"], None


async def _after(seconds: float, response: Response) -> Response:
    await asyncio.sleep(seconds)
    return response


async def serve_kakao(app: FakeKakao, host: str, port: int) -> asyncio.Server:
    """Listen for HTTP/1.1; `port` 0 picks a free one."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(app.protocol, host, port)
