"""The KakaoTalk (NHN Cloud AlimTalk v2.3) adapter: what it sends and how it reads answers,
against a scripted stand-in of the dealer (exact requests, odd answers) and against the fake
dealer of `fakes` (templates, idempotency keys, fallback, results)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web

from adapters.base import Credentials, OutboundMessage
from adapters.kakao import (
    KAKAO_ERRORS,
    CredentialsInvalid,
    KakaoAdapter,
    KakaoDealerError,
    clean_credentials,
    content_of,
    wire,
)
from adapters.kakao import content as kakao_content

APP_KEY = "app-key-1"
SECRET = "secret-1"
SENDER_KEY = "s" * 40
KOREAN = "+821012345678"


# -- a scripted dealer --------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict | None


@dataclass
class Dealer:
    """Answers with `script(request)` -> (status, headers, JSON body or bytes[, delay])."""

    script: Callable[[Request], tuple] | None = None
    requests: list[Request] = field(default_factory=list)

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]


def accepted(request: Request, request_id: str = "req-1", code=lambda r: 0) -> tuple:
    """The dealer's 200 answer accepting every recipient (`code(recipient)`: its resultCode)."""
    results = [
        {
            "recipientSeq": seq,
            "recipientNo": recipient["recipientNo"],
            "resultCode": code(recipient),
            "resultMessage": "SUCCESS" if code(recipient) == 0 else "failed",
            "recipientGroupingKey": recipient.get("recipientGroupingKey"),
        }
        for seq, recipient in enumerate(request.body["recipientList"], start=1)
    ]
    return (
        200,
        {},
        {
            "header": {"resultCode": 0, "resultMessage": "success", "isSuccessful": True},
            "message": {
                "requestId": request_id,
                "senderGroupingKey": request.body.get("senderGroupingKey"),
                "sendResults": results,
            },
        },
    )


def refused(code: int, message: str = "refused", status: int = 200, headers=None) -> tuple:
    header = {"resultCode": code, "resultMessage": message, "isSuccessful": False}
    return status, headers or {}, {"header": header}


@contextlib.contextmanager
def dealer_server(dealer: Dealer) -> Iterator[str]:
    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        parsed = Request(
            method=request.method,
            path=request.path,
            query=dict(parse_qsl(urlsplit(str(request.rel_url)).query)),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=json.loads(raw) if raw else None,
        )
        dealer.requests.append(parsed)
        status, headers, body, *delay = dealer.script(parsed)
        if delay:
            await asyncio.sleep(delay[0])
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(status=status, headers=headers, body=data)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def dealer():
    state = Dealer(script=accepted)
    with dealer_server(state) as origin:
        state.origin = origin
        yield state


@pytest.fixture
def adapter(dealer):
    adapter = KakaoAdapter(endpoint=dealer.origin, timeout=2, concurrency=4)
    yield adapter
    adapter.close()


def creds(fallback: str | None = None, **values) -> Credentials:
    values = {"app_key": APP_KEY, "secret_key": SECRET, "sender_key": SENDER_KEY} | values
    if fallback:
        values["fallback_send_no"] = fallback
    return Credentials(key=f"kakao-{uuid.uuid4().hex}", values=values)


def message(token: str = KOREAN, template: str = "WELCOME_01", **fields) -> OutboundMessage:
    part = {"template_code": template, "variables": {"name": "Kim"}} | fields.pop("part", {})
    return OutboundMessage(
        message_id=str(uuid.uuid4()),
        token=token,
        title="Welcome",
        body="Hello Kim",
        parts=part,
        **fields,
    )


# -- content and credentials -------------------------------------------------------------------


def test_content_of_shows_the_template_parameters_buttons_and_fallback():
    part = {
        "template_code": "ORDER_01",
        "variables": {"name": "Kim", "count": 3},
        "buttons": [{"type": "WL", "name": "Open", "url_mobile": "https://example.com/o/1"}],
        "fallback_text": "주문이 접수되었습니다",
    }
    shown = content_of(
        title="Order", body="body", data={}, part=part, credentials={"fallback_send_no": "15881234"}
    )
    assert shown == {
        "template_code": "ORDER_01",
        "variables": {"name": "Kim", "count": "3"},
        "buttons": part["buttons"],
        "fallback_text": "주문이 접수되었습니다",
        "resend": {
            "isResend": True,
            "resendSendNo": "15881234",
            "resendType": "SMS",
            "resendContent": "주문이 접수되었습니다",
        },
    }
    assert KakaoAdapter.content_of(title="Order", body="body", data={}, part=part) == shown | {
        "resend": None
    }


def test_the_fallback_is_the_body_when_the_part_has_no_text_and_lms_past_90_bytes():
    body = "가" * 46  # 92 EUC-KR bytes
    shown = content_of(
        title="Notice 😀",
        body=body,
        data={},
        part={"template_code": "T"},
        credentials={"fallback_send_no": "0212345678"},
    )
    assert shown["resend"] == {
        "isResend": True,
        "resendSendNo": "0212345678",
        "resendType": "LMS",
        "resendContent": body,
        "resendTitle": "Notice",
    }


def test_the_fallback_is_cut_to_the_lms_limit_and_loses_what_euc_kr_cannot_send():
    text = "A😀" + "한" * 1500  # 3,001 bytes once the emoji is gone
    resend = kakao_content.resend_parameter(text=text, title="", send_no="1588")
    assert resend["resendType"] == "LMS"
    assert resend["resendContent"] == "A" + "한" * 999  # 1,999 bytes: one more would be 2,001
    assert kakao_content.euc_kr_length(resend["resendContent"]) <= 2000
    assert "resendTitle" not in resend
    abroad = kakao_content.resend_parameter(text=text, title="", send_no="1588", international=True)
    assert abroad["resendType"] == "SMS" and abroad["resendContent"] == "A" + "한" * 44


def test_recipient_numbers_korean_numbers_go_domestic():
    assert kakao_content.recipient_no("+821012345678") == "01012345678"
    assert kakao_content.recipient_no("+8201012345678") == "01012345678"
    assert kakao_content.recipient_no("+819012345678") == "+819012345678"


def test_template_variables_come_from_every_replaced_field_in_order():
    template = {
        "templateContent": "#{name}님, 주문 #{order} 접수. #{name}",
        "templateTitle": "#{total}",
        "buttons": [{"type": "WL", "name": "조회", "linkMo": "https://x.kr/#{order}/#{path}"}],
    }
    assert kakao_content.template_variables(kakao_content.template_texts(template)) == [
        "name",
        "order",
        "total",
        "path",
    ]


def test_clean_credentials():
    values = {
        "app_key": " k ",
        "secret_key": "s",
        "sender_key": "sk",
        "fallback_send_no": "1588-1234",
    }
    assert clean_credentials(values) == {
        "app_key": "k",
        "secret_key": "s",
        "sender_key": "sk",
        "fallback_send_no": "15881234",
    }
    assert KakaoAdapter.clean_credentials(values | {"fallback_send_no": ""}) == {
        "app_key": "k",
        "secret_key": "s",
        "sender_key": "sk",
    }
    assert KakaoAdapter.secret_fields == ("secret_key",)
    for bad, named in [
        (values | {"extra": 1}, "extra"),
        ({"app_key": "k", "secret_key": "s"}, "sender_key"),
        (values | {"secret_key": "a\nb"}, "secret_key"),
        (values | {"app_key": 5}, "app_key"),
        (values | {"fallback_send_no": "+82 10"}, "fallback_send_no"),
        (values | {"fallback_send_no": "12"}, "fallback_send_no"),
    ]:
        with pytest.raises(CredentialsInvalid, match=named):
            clean_credentials(bad)
    assert issubclass(CredentialsInvalid, ValueError)


def test_idempotency_key_depends_on_the_message_ids_only():
    ids = [str(uuid.uuid4()) for _ in range(5)]
    assert wire.idempotency_key(ids) == wire.idempotency_key(reversed(ids))
    assert wire.idempotency_key(ids) != wire.idempotency_key(ids[:4])
    assert len(wire.idempotency_key(ids)) == 64


def test_dealer_dates_are_korean_time_in_whole_minutes():
    moment = datetime.datetime(2026, 12, 6, 20, 15, 30, tzinfo=datetime.UTC)
    assert wire.dealer_date(moment) == "2026-12-07 05:15"
    assert wire.dealer_date(moment, round_up=True) == "2026-12-07 05:16"


def test_the_error_table_covers_the_codes_that_decide_outcomes():
    assert KAKAO_ERRORS["3019"].token_invalid and KAKAO_ERRORS["3019"].permanent
    assert KAKAO_ERRORS["3020"].token_invalid
    assert KAKAO_ERRORS["-5000"].token_invalid
    assert not KAKAO_ERRORS["-9999"].permanent
    assert KAKAO_ERRORS["-1001"].credential_rejected and not KAKAO_ERRORS["-1001"].permanent
    assert KAKAO_ERRORS["-3005"].permanent and not KAKAO_ERRORS["-3005"].token_invalid
    assert KakaoAdapter.errors is KAKAO_ERRORS


# -- sending, against the scripted dealer -------------------------------------------------------


def test_a_send_is_the_dealers_request_format(adapter, dealer):
    button = {"type": "BT", "name": "Chat", "chat_extra": "order=1", "target": "out"}
    sent = message(part={"buttons": [{"type": "WL", "name": "Open"}, button]})
    [result] = adapter.send_batch(creds(), [sent])
    assert result.ok, result
    assert result.provider_id == "req-1:1"
    assert result.status_code == 200
    [request] = dealer.posts()
    assert request.path == f"/alimtalk/v2.3/appkeys/{APP_KEY}/messages"
    assert request.headers["x-secret-key"] == SECRET
    assert request.headers["content-type"] == "application/json;charset=UTF-8"
    key = wire.idempotency_key([sent.message_id])
    assert request.headers["x-nc-api-idempotency-key"] == key
    assert request.body == {
        "senderKey": SENDER_KEY,
        "templateCode": "WELCOME_01",
        "senderGroupingKey": key,
        "recipientList": [
            {
                "recipientNo": "01012345678",
                "templateParameter": {"name": "Kim"},
                "buttons": [{"ordering": 2, "chatExtra": "order=1", "target": "out"}],
                "resendParameter": {"isResend": False},
                "recipientGroupingKey": sent.message_id,
            }
        ],
    }


def test_with_a_fallback_number_every_recipient_asks_for_the_sms_resend(adapter, dealer):
    korean = message(part={"fallback_text": "가" * 50})
    abroad = message(token="+819012345678", part={"fallback_text": "가" * 50})
    results = adapter.send_batch(creds(fallback="15881234"), [korean, abroad])
    assert all(result.ok for result in results)
    by_id = {r["recipientGroupingKey"]: r for r in dealer.posts()[0].body["recipientList"]}
    assert by_id[korean.message_id]["resendParameter"] == {
        "isResend": True,
        "resendSendNo": "15881234",
        "resendType": "LMS",
        "resendContent": "가" * 50,
        "resendTitle": "Welcome",
    }
    assert by_id[abroad.message_id]["recipientNo"] == "+819012345678"
    assert by_id[abroad.message_id]["resendParameter"] == {
        "isResend": True,
        "resendSendNo": "15881234",
        "resendType": "SMS",
        "resendContent": "가" * 45,
    }


def test_1500_recipients_are_two_requests_and_each_template_its_own(adapter, dealer):
    counter = iter(range(100))
    dealer.script = lambda request: accepted(request, request_id=f"req-{next(counter)}")
    batch = [message(token=f"+8210{index:08d}") for index in range(1500)]
    other = [message(template="OTHER_01") for _ in range(3)]
    results = adapter.send_batch(creds(), batch + other)
    assert [r.message_id for r in results] == [m.message_id for m in batch + other]
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    posts = dealer.posts()
    sizes = sorted((p.body["templateCode"], len(p.body["recipientList"])) for p in posts)
    assert sizes == [("OTHER_01", 3), ("WELCOME_01", 500), ("WELCOME_01", 1000)]
    # Each request's key is its own message ids', and every message is in exactly one.
    keys = {p.headers["x-nc-api-idempotency-key"] for p in posts}
    assert len(keys) == 3
    for post in posts:
        ids = [r["recipientGroupingKey"] for r in post.body["recipientList"]]
        assert post.headers["x-nc-api-idempotency-key"] == wire.idempotency_key(ids)
    assert len({r.provider_id for r in results}) == 1503


def test_a_message_without_a_template_code_fails_without_a_request(adapter, dealer):
    [result] = adapter.send_batch(creds(), [message(template="")])
    assert not result.ok and result.permanent and result.error_code == "missing_template_code"
    assert dealer.requests == []


def test_a_batch_sent_again_has_the_same_keys_and_minus_1005_counts_as_sent(adapter, dealer):
    known: dict[str, dict] = {}  # idempotency key -> the accepted answer

    def script(request: Request):
        if request.method == "GET":  # the message list, searched by senderGroupingKey
            answer = known.get(request.query.get("senderGroupingKey"))
            messages = [
                {
                    "requestId": answer["message"]["requestId"],
                    "recipientSeq": entry["recipientSeq"],
                    "recipientGroupingKey": entry["recipientGroupingKey"],
                    "messageStatus": "COMPLETED",
                }
                for entry in (answer["message"]["sendResults"] if answer else [])
            ]
            header = {"resultCode": 0, "resultMessage": "success", "isSuccessful": True}
            return (
                200,
                {},
                {
                    "header": header,
                    "messageSearchResultResponse": {
                        "messages": messages,
                        "totalCount": len(messages),
                    },
                },
            )
        key = request.headers["x-nc-api-idempotency-key"]
        if key in known:
            return refused(-1005, "The same 'X-NC-API-IDEMPOTENCY-KEY' was used within 10 min")
        status, headers, body = accepted(request, request_id=f"req-{len(known)}")
        known[key] = body
        return status, headers, body

    dealer.script = script
    batch = [message(token=f"+8210{index:08d}") for index in range(1200)]
    first = adapter.send_batch(creds(), batch)
    again = adapter.send_batch(creds(), list(reversed(batch)))
    posts = dealer.posts()
    assert len(posts) == 4
    first_keys = {p.headers["x-nc-api-idempotency-key"] for p in posts[:2]}
    assert first_keys == {p.headers["x-nc-api-idempotency-key"] for p in posts[2:]}
    assert all(r.ok for r in again)
    assert {r.error_code for r in again} == {"-1005"}
    # The provider ids of the first send, found again in the dealer's message list.
    assert {r.message_id: r.provider_id for r in again} == {
        r.message_id: r.provider_id for r in first
    }
    lookup = [r for r in dealer.requests if r.method == "GET"]
    assert lookup and lookup[0].path == f"/alimtalk/v2.3/appkeys/{APP_KEY}/messages"
    assert {"startRequestDate", "endRequestDate", "senderGroupingKey"} <= set(lookup[0].query)


def test_minus_1005_without_a_list_entry_is_still_sent(adapter, dealer):
    dealer.script = lambda request: (
        refused(-9999, status=500) if request.method == "GET" else refused(-1005)
    )
    [result] = adapter.send_batch(creds(), [message()])
    assert result.ok and result.provider_id is None and result.error_code == "-1005"


def test_per_recipient_codes_map_to_outcomes(adapter, dealer):
    codes = {"01000000001": -5000, "01000000002": -3301, "01000000003": -9999}
    dealer.script = lambda request: accepted(request, code=lambda r: codes.get(r["recipientNo"], 0))
    batch = [message(token="+82" + number[1:]) for number in [*codes, "01000000004"]]
    invalid, opted_out, system, fine = adapter.send_batch(creds(), batch)
    assert not invalid.ok and invalid.token_invalid and invalid.permanent
    assert invalid.error_code == "-5000" and invalid.provider_id.startswith("req-1:")
    assert opted_out.token_invalid
    assert not system.ok and not system.permanent and not system.token_invalid
    assert fine.ok and fine.provider_id.startswith("req-1:")
    # Sent sorted by message id (the same batch makes the same requests); matched back by
    # recipientGroupingKey.
    sent = dealer.posts()[0].body["recipientList"]
    assert [r["recipientGroupingKey"] for r in sent] == sorted(m.message_id for m in batch)


def test_not_a_kakao_user_at_request_time_is_token_invalid_only_without_fallback(adapter, dealer):
    dealer.script = lambda request: accepted(request, code=lambda r: 3019)
    [without] = adapter.send_batch(creds(), [message()])
    assert not without.ok and without.token_invalid and without.error_code == "3019"
    [with_fallback] = adapter.send_batch(creds(fallback="15881234"), [message()])
    assert with_fallback.ok and with_fallback.error_code == "3019"
    assert "SMS" in with_fallback.error_message


@pytest.mark.parametrize(
    ("code", "permanent"), [(-3003, True), (-3005, True), (-1001, False), (-2017, False)]
)
def test_a_refused_request_fails_each_of_its_messages(adapter, dealer, code, permanent):
    dealer.script = lambda request: refused(code)
    results = adapter.send_batch(creds(), [message(), message()])
    assert {(r.ok, r.error_code, r.permanent, r.token_invalid) for r in results} == {
        (False, str(code), permanent, False)
    }
    assert results[0].error_message == "refused"


def test_5xx_and_429_are_temporary_with_retry_after_in_seconds_or_as_a_date(adapter, dealer):
    dealer.script = lambda request: (503, {"Retry-After": "42"}, b"busy")
    [result] = adapter.send_batch(creds(), [message()])
    assert not result.ok and not result.permanent and result.retry_after == 42.0
    assert result.error_code == "HTTP503" and result.status_code == 503
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    dealer.script = lambda request: refused(-9999, status=429, headers={"Retry-After": later})
    [result] = adapter.send_batch(creds(), [message()])
    assert not result.ok and not result.permanent and 115 <= result.retry_after <= 121
    assert result.error_code == "-9999" and result.status_code == 429


def test_an_answer_that_names_no_recipient_is_temporary(adapter, dealer):
    dealer.script = lambda request: (200, {}, {"header": {"resultCode": 0, "isSuccessful": True}})
    [result] = adapter.send_batch(creds(), [message()])
    assert not result.ok and not result.permanent and result.error_code == "bad_answer"
    dealer.script = lambda request: (200, {}, b"<html>maintenance</html>")
    [result] = adapter.send_batch(creds(), [message()])
    assert not result.ok and not result.permanent and result.error_code == "bad_answer"


def _listing(request: Request, sent: list[dict]) -> tuple:
    """The dealer's message list answer with these recipients."""
    header = {"resultCode": 0, "resultMessage": "success", "isSuccessful": True}
    body = {"messages": sent, "totalCount": len(sent)}
    return 200, {}, {"header": header, "messageSearchResultResponse": body}


def test_a_timeout_is_temporary_and_the_retry_carries_the_same_key(adapter, dealer):
    def script(request: Request):
        if request.method == "GET":
            return _listing(request, [])  # the dealer lists nothing under the key
        return (*accepted(request), 3)  # past the adapter's 2 s

    dealer.script = script
    sent = message()
    [result] = adapter.send_batch(creds(), [sent])
    assert not result.ok and not result.permanent and result.error_code == "timeout"
    [lookup] = [r for r in dealer.requests if r.method == "GET"]
    assert lookup.query["senderGroupingKey"] == wire.idempotency_key([sent.message_id])
    dealer.script = lambda request: refused(-1005)
    [again] = adapter.send_batch(creds(), [sent])
    assert again.ok
    keys = [p.headers["x-nc-api-idempotency-key"] for p in dealer.posts()]
    assert keys == [wire.idempotency_key([sent.message_id])] * 2


def test_after_a_timeout_what_the_dealer_lists_under_the_key_is_sent(adapter, dealer):
    taken, refused_there = message(), message()
    listed = [{"requestId": "req-9", "recipientSeq": 4, "recipientGroupingKey": taken.message_id}]

    def script(request: Request):
        if request.method == "GET":
            return _listing(request, listed)
        return (*accepted(request), 3)

    dealer.script = script
    results = {r.message_id: r for r in adapter.send_batch(creds(), [taken, refused_there])}
    assert results[taken.message_id].ok
    assert results[taken.message_id].provider_id == "req-9:4"
    assert not results[refused_there.message_id].ok
    assert results[refused_there.message_id].error_code == "timeout"


# -- templates and results, against the scripted dealer -----------------------------------------


def _page(request: Request, items: list, name: str, total: bool = True) -> tuple:
    size, number = int(request.query["pageSize"]), int(request.query["pageNum"])
    page = items[(number - 1) * size : number * size]
    header = {"resultCode": 0, "resultMessage": "success", "isSuccessful": True}
    if name == "messages":
        return 200, {}, {"header": header, "messages": page}
    return 200, {}, {"header": header, name: {"templates": page, "totalCount": len(items)}}


def test_templates_reads_every_page(adapter, dealer):
    templates = [
        {
            "templateCode": f"T{index:04d}",
            "templateName": f"name {index}",
            "templateContent": "#{name}님 안녕하세요 #{code}",
            "templateTitle": "",
            "buttons": [{"ordering": 1, "type": "WL", "name": "Open", "linkMo": "https://x.kr"}],
            "status": "TSC03" if index % 2 else "TSC01",
        }
        for index in range(1500)
    ]
    dealer.script = lambda request: _page(request, templates, "templateListResponse")
    listed = adapter.templates(creds())
    assert len(listed) == 1500
    assert listed[1] == {
        "template_code": "T0001",
        "name": "name 1",
        "text": "#{name}님 안녕하세요 #{code}",
        "variables": ["name", "code"],
        "buttons": [{"ordering": 1, "type": "WL", "name": "Open", "url_mobile": "https://x.kr"}],
        "status": "TSC03",
        "details": {},
    }
    pages = [r.query for r in dealer.requests]
    assert [p["pageNum"] for p in pages] == ["1", "2"]
    assert (
        dealer.requests[0].path
        == f"/alimtalk/v2.3/appkeys/{APP_KEY}/senders/{SENDER_KEY}/templates"
    )
    assert dealer.requests[0].headers["x-secret-key"] == SECRET


def test_templates_with_refused_keys_raise(adapter, dealer):
    from adapters.base import AdapterConfigurationError

    dealer.script = lambda request: refused(-1001, "Invalid secretKey.")
    with pytest.raises(AdapterConfigurationError, match="secretKey"):
        adapter.templates(creds())
    dealer.script = lambda request: (502, {}, b"bad gateway")
    with pytest.raises(KakaoDealerError) as raised:
        adapter.templates(creds())
    assert raised.value.temporary


def test_results_reads_every_page_and_normalizes_outcomes(adapter, dealer):
    base = {"requestId": "r", "requestDate": "2026-12-07 05:10:00.0"}
    rows = [
        base
        | {
            "recipientSeq": 1,
            "messageStatus": "COMPLETED",
            "resultCode": "1000",
            "recipientGroupingKey": "m-1",
        },
        base
        | {
            "recipientSeq": 2,
            "messageStatus": "FAILED",
            "resultCode": "3019",
            "resendStatus": "RSC04",
            "resendStatusName": "재발송 성공",
        },
        base
        | {
            "recipientSeq": 3,
            "messageStatus": "FAILED",
            "resultCode": "3019",
            "resendStatus": "RSC05",
            "resendResultCode": "-2001",
        },
        base
        | {
            "recipientSeq": 4,
            "messageStatus": "FAILED",
            "resultCode": "3019",
            "resendStatus": "RSC01",
        },
        base
        | {
            "recipientSeq": 5,
            "messageStatus": "FAILED",
            "resultCode": "3019",
            "resendStatus": "RSC03",
        },
        base | {"recipientSeq": 6, "messageStatus": "READY", "resultCode": ""},
        base | {"recipientSeq": 7, "messageStatus": "FAILED", "resultCode": "3012"},
    ]
    filler = [base | {"recipientSeq": 100 + i, "messageStatus": "COMPLETED"} for i in range(1000)]
    dealer.script = lambda request: _page(request, rows + filler, "messages")
    since = datetime.datetime(2026, 12, 6, 20, 0, 10, tzinfo=datetime.UTC)
    until = datetime.datetime(2026, 12, 6, 20, 5, 10, tzinfo=datetime.UTC)
    results = adapter.results(creds(), since=since, until=until)
    assert len(results) == 1007
    assert [r["outcome"] for r in results[:7]] == [
        "delivered",
        "resent_sms",
        "resend_failed",
        "failed",
        "pending",
        "pending",
        "failed",
    ]
    assert results[0] == {
        "provider_id": "r:1",
        "message_id": "m-1",
        "recipient_no": None,
        "outcome": "delivered",
        "code": "1000",
        "resend_status": None,
        "token_invalid": False,
        "details": {"message_status": "COMPLETED", "request_date": "2026-12-07 05:10:00.0"},
    }
    assert results[2]["details"]["resend_result_code"] == "-2001"
    assert [r["token_invalid"] for r in results[:7]] == [
        False,
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    first = dealer.requests[0]
    assert first.path == f"/alimtalk/v2.3/appkeys/{APP_KEY}/message-results"
    assert first.query["startUpdateDate"] == "2026-12-07 05:00"
    assert first.query["endUpdateDate"] == "2026-12-07 05:06"
    assert [r.query["pageNum"] for r in dealer.requests] == ["1", "2"]


# -- against the fake dealer (fakes.kakao_server) -----------------------------------------------


@pytest.fixture
def kakao(fakes):
    adapter = KakaoAdapter(endpoint=fakes.kakao_endpoint, timeout=5, concurrency=4)
    yield adapter
    adapter.close()


def _template(fakes, text: str, **fields) -> str:
    code = f"T{uuid.uuid4().hex[:12]}"
    fakes.kakao_template(code, text, **fields)
    return code


def _to(fakes, code: str, kind: str = "delivered", **part) -> OutboundMessage:
    return message(token=fakes.kakao_number(kind), template=code, part=part)


def _results_of(kakao, credentials, results, *, wait: float = 5.0) -> dict[str, dict]:
    """The dealer's final results of these sends, by provider id, polled until none is
    pending."""
    wanted = {r.provider_id for r in results}
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=2)
    deadline = time.monotonic() + wait
    while True:
        until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
        found = {
            r["provider_id"]: r
            for r in kakao.results(credentials, since=since, until=until)
            if r["provider_id"] in wanted
        }
        done = len(found) == len(wanted)
        if done and all(r["outcome"] != "pending" for r in found.values()):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_fake_1500_recipients_in_two_requests_with_the_template_filled(kakao, fakes):
    code = _template(
        fakes,
        "#{name}님, 주문 #{order}이 접수되었습니다.",
        buttons=[
            {"type": "WL", "name": "주문 보기", "url_mobile": "https://shop.example/#{order}"}
        ],
    )
    batch = [
        message(
            token=fakes.kakao_number(),
            template=code,
            part={"variables": {"name": f"Kim{index}", "order": f"A-{index}"}},
        )
        for index in range(1500)
    ]
    results = kakao.send_batch(fakes.kakao_credentials(), batch)
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    request_ids = {r.provider_id.split(":")[0] for r in results}
    assert len(request_ids) == 2
    sizes = sorted(len(fakes.kakao_messages(request_id=rid)) for rid in request_ids)
    assert sizes == [500, 1000]
    [kept] = fakes.kakao_messages(batch[7].token)
    assert kept["content"] == "Kim7님, 주문 A-7이 접수되었습니다."
    assert f"{kept['requestId']}:{kept['recipientSeq']}" == results[7].provider_id
    assert kept["templateParameter"] == {"name": "Kim7", "order": "A-7"}
    same_request = [
        m.message_id
        for m, r in zip(batch, results, strict=True)
        if r.provider_id.startswith(kept["requestId"] + ":")
    ]
    assert kept["idempotencyKey"] == wire.idempotency_key(same_request)
    assert kept["resendParameter"]["isResend"] is True


def test_fake_refuses_a_missing_variable_and_an_unapproved_template(kakao, fakes):
    code = _template(fakes, "#{name}님 안녕하세요")
    [missing] = kakao.send_batch(fakes.kakao_credentials(), [_to(fakes, code, variables={})])
    assert not missing.ok and missing.permanent and missing.error_code == "-3004"
    pending = _template(fakes, "검수 중", status="TSC02")
    [unapproved] = kakao.send_batch(fakes.kakao_credentials(), [_to(fakes, pending)])
    assert not unapproved.ok and unapproved.permanent and unapproved.error_code == "-3005"
    [unknown] = kakao.send_batch(fakes.kakao_credentials(), [_to(fakes, "NO_SUCH_CODE")])
    assert not unknown.ok and unknown.permanent and unknown.error_code == "-3003"


def test_fake_a_refused_secret_key_is_temporary(kakao, fakes):
    code = _template(fakes, "#{name}님 안녕하세요")
    credentials = fakes.kakao_credentials(secret_key="wrong")
    [result] = kakao.send_batch(credentials, [_to(fakes, code)])
    assert not result.ok and not result.permanent and result.error_code == "-1001"


def test_fake_a_batch_sent_twice_is_delivered_once(kakao, fakes):
    code = _template(fakes, "#{name}님 안녕하세요")
    batch = [_to(fakes, code) for _ in range(1100)]
    first = kakao.send_batch(fakes.kakao_credentials(), batch)
    duplicates = fakes.kakao_stats().get("duplicate_requests", 0)
    again = kakao.send_batch(fakes.kakao_credentials(), batch[::-1])
    assert all(r.ok for r in first) and all(r.ok for r in again)
    assert {r.error_code for r in again} == {"-1005"}
    assert fakes.kakao_stats()["duplicate_requests"] == duplicates + 2
    assert {r.message_id: r.provider_id for r in again} == {
        r.message_id: r.provider_id for r in first
    }
    for sent in (batch[0], batch[-1]):
        assert len(fakes.kakao_messages(sent.token)) == 1


def test_fake_a_slow_request_is_found_under_its_key_and_its_retry_not_sent_again(fakes):
    kakao = KakaoAdapter(endpoint=fakes.kakao_endpoint, timeout=0.5)
    try:
        code = _template(fakes, "#{name}님 안녕하세요")
        sent = _to(fakes, code, "slow")
        [late] = kakao.send_batch(fakes.kakao_credentials(), [sent])
        [kept] = fakes.kakao_messages(sent.token)
        provider_id = f"{kept['requestId']}:{kept['recipientSeq']}"
        # No answer within 0.5 s, but the dealer's message list has it under the key.
        assert late.ok and late.provider_id == provider_id
        [again] = kakao.send_batch(fakes.kakao_credentials(), [sent])
        assert again.ok and again.error_code == "-1005" and again.provider_id == provider_id
        assert len(fakes.kakao_messages(sent.token)) == 1
    finally:
        kakao.close()


def test_fake_a_failing_dealer_is_temporary(kakao, fakes):
    code = _template(fakes, "#{name}님 안녕하세요")
    ok, failing = _to(fakes, code), _to(fakes, code, "fail")
    results = kakao.send_batch(fakes.kakao_credentials(), [ok, failing])
    assert {(r.ok, r.status_code, r.error_code, r.permanent) for r in results} == {
        (False, 500, "-9999", False)
    }
    assert fakes.kakao_messages(ok.token) == []  # the whole request failed; a retry sends it


@pytest.mark.parametrize(("kind", "code"), [("not_kakao_user", "3019"), ("blocked", "3020")])
def test_fake_not_reachable_on_kakao_resends_as_sms_with_a_fallback_number(
    kakao, fakes, kind, code
):
    template = _template(fakes, "#{name}님 안녕하세요")
    with_fallback = fakes.kakao_credentials()
    sent = [_to(fakes, template, kind, fallback_text="[SMS] 안녕하세요"), _to(fakes, template)]
    results = kakao.send_batch(with_fallback, sent)
    # Accepted at request time: only the final result knows the number is not on KakaoTalk.
    assert all(r.ok for r in results)
    [kept] = fakes.kakao_messages(sent[0].token)
    assert kept["resendParameter"] == {
        "isResend": True,
        "resendSendNo": fakes.kakao_fallback_send_no,
        "resendType": "SMS",
        "resendContent": "[SMS] 안녕하세요",
    }
    final = _results_of(kakao, with_fallback, results)
    fallback, delivered = (final[r.provider_id] for r in results)
    assert fallback["outcome"] == "resent_sms" and fallback["code"] == code
    assert fallback["resend_status"] == "RSC04" and not fallback["token_invalid"]
    assert delivered["outcome"] == "delivered" and delivered["code"] == "1000"
    assert fallback["message_id"] in (sent[0].message_id, None)


@pytest.mark.parametrize(("kind", "code"), [("not_kakao_user", "3019"), ("blocked", "3020")])
def test_fake_not_reachable_on_kakao_without_a_fallback_number_is_token_invalid(
    kakao, fakes, kind, code
):
    template = _template(fakes, "#{name}님 안녕하세요")
    credentials = fakes.kakao_credentials(fallback=False)
    sent = _to(fakes, template, kind)
    [result] = kakao.send_batch(credentials, [sent])
    assert result.ok
    # The request said `isResend: false` (the scripted dealer's test shows it): no resend kept.
    assert fakes.kakao_messages(sent.token)[0]["resendParameter"] is None
    final = _results_of(kakao, credentials, [result])[result.provider_id]
    assert final["outcome"] == "failed" and final["code"] == code
    assert final["resend_status"] in ("RSC01", None)
    assert final["token_invalid"]
    error = KakaoAdapter.errors[final["code"]]
    assert error.token_invalid and error.permanent


def test_fake_an_unregistered_fallback_number_fails_the_resend(kakao, fakes):
    template = _template(fakes, "#{name}님 안녕하세요")
    credentials = fakes.kakao_credentials(fallback_send_no="0299998888")
    [result] = kakao.send_batch(credentials, [_to(fakes, template, "not_kakao_user")])
    final = _results_of(kakao, credentials, [result])[result.provider_id]
    assert final["outcome"] == "resend_failed" and final["resend_status"] == "RSC05"
    assert final["details"]["resend_result_code"] == "-1003"


def test_fake_templates_lists_the_sender_keys_templates(kakao, fakes):
    code = _template(
        fakes,
        "#{name}님, #{day} 예약이 확정되었습니다.",
        buttons=[{"type": "WL", "name": "예약 보기", "url_mobile": "https://r.example/#{id}"}],
    )
    pending = _template(fakes, "검수 중인 #{thing}", status="TSC01")
    listed = {t["template_code"]: t for t in kakao.templates(fakes.kakao_credentials())}
    assert listed[code]["text"] == "#{name}님, #{day} 예약이 확정되었습니다."
    assert listed[code]["variables"] == ["name", "day", "id"]
    assert listed[code]["status"] == "TSC03"
    [button] = listed[code]["buttons"]
    assert button["type"] == "WL" and button["url_mobile"] == "https://r.example/#{id}"
    assert button["ordering"] == 1
    assert listed[pending]["status"] == "TSC01"
    assert listed[pending]["variables"] == ["thing"]
