"""The fake KakaoTalk dealer (NHN Cloud AlimTalk v2.3) answered with a plain HTTP client: each
check and its result code, the idempotency window, the final results and SMS resending, the
template list, the result updates and the single-message GET."""

import datetime
import json
import secrets
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from fakes import client
from fakes.kakao_server import KST, normalize_number

TEMPLATE = "KT_WELCOME"
TEXT = "Hello #{name}, your code is #{code}."


@pytest.fixture(scope="module", autouse=True)
def template(fakes):
    buttons = [{"type": "WL", "name": "Open", "url_mobile": "https://example.com/c/#{code}"}]
    return fakes.kakao_template(TEMPLATE, TEXT, buttons)


@pytest.fixture
def timings(fakes):
    """Set the dealer's timings for one test; the defaults come back afterwards."""
    before = client.request_json(fakes.kakao_endpoint, "GET", "/__config")
    yield fakes.kakao_configure
    fakes.kakao_configure(**before)


def _call(fakes, method, path, payload=None, *, headers=None, secret=None, raw=None):
    sent = {"Content-Type": "application/json;charset=UTF-8"}
    sent["X-Secret-Key"] = fakes.kakao_secret_key if secret is None else secret
    sent.update(headers or {})
    data = (
        raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    )
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        fakes.kakao_endpoint + path, data=data, method=method, headers=sent
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _base(fakes, app_key=None):
    return f"/alimtalk/v2.3/appkeys/{app_key or fakes.kakao_app_key}"


def _recipient(number, **parameters):
    parameters = parameters or {"name": "Kim", "code": "42"}
    return {"recipientNo": number, "templateParameter": parameters}


def _body(fakes, recipients, **fields):
    return {
        "senderKey": fakes.kakao_sender_key,
        "templateCode": TEMPLATE,
        "recipientList": recipients,
        **fields,
    }


def _send(fakes, recipients, *, key=None, **fields):
    headers = {"X-NC-API-IDEMPOTENCY-KEY": key} if key else {}
    return _call(
        fakes,
        "POST",
        _base(fakes) + "/messages",
        _body(fakes, recipients, **fields),
        headers=headers,
    )


def _code(answer):
    status, body = answer
    return status, body["header"]["resultCode"], body["header"]["isSuccessful"]


def _resend(fakes, send_no=None):
    return {
        "isResend": True,
        "resendType": "SMS",
        "resendContent": "Your code is 42",
        "resendSendNo": send_no or fakes.kakao_fallback_send_no,
    }


def _minute(moment):
    return moment.astimezone(KST).strftime("%Y-%m-%d %H:%M")


def _window(minutes_before=5, minutes_after=1):
    now = datetime.datetime.now(KST)
    start = now - datetime.timedelta(minutes=minutes_before)
    return _minute(start), _minute(now + datetime.timedelta(minutes=minutes_after))


# -- sending --


def test_an_accepted_request_answers_per_recipient_and_keeps_the_rendered_message(fakes):
    first, second = fakes.kakao_number(), fakes.kakao_number()
    recipients = [
        {
            **_recipient(first),
            "recipientGroupingKey": "g1",
            "buttons": [{"ordering": 1, "target": "out"}],
        },
        _recipient(second, name="Lee", code="7"),
    ]
    status, answer = _send(fakes, recipients, senderGroupingKey="batch-1")
    assert status == 200
    assert answer["header"] == {"resultCode": 0, "resultMessage": "SUCCESS", "isSuccessful": True}
    message = answer["message"]
    assert message["requestId"] and message["senderGroupingKey"] == "batch-1"
    assert message["sendResults"] == [
        {
            "recipientSeq": 1,
            "recipientNo": first,
            "resultCode": 0,
            "resultMessage": "SUCCESS",
            "recipientGroupingKey": "g1",
        },
        {
            "recipientSeq": 2,
            "recipientNo": second,
            "resultCode": 0,
            "resultMessage": "SUCCESS",
            "recipientGroupingKey": None,
        },
    ]
    [kept] = fakes.kakao_messages(first)
    assert kept["requestId"] == message["requestId"] and kept["recipientSeq"] == 1
    assert kept["content"] == "Hello Kim, your code is 42."
    assert kept["templateCode"] == TEMPLATE and kept["senderKey"] == fakes.kakao_sender_key
    assert kept["buttons"] == [
        {
            "ordering": 1,
            "type": "WL",
            "name": "Open",
            "linkMo": "https://example.com/c/42",
            "target": "out",
        }
    ]
    assert kept["resendParameter"] is None and kept["messageStatus"] == "READY"
    assert fakes.kakao_messages(second)[0]["content"] == "Hello Lee, your code is 7."
    # The national form of a number finds the same messages.
    assert fakes.kakao_messages(normalize_number(first)) == [kept]


def test_a_thousand_recipients_are_one_request_and_one_more_is_refused(fakes):
    recipients = [_recipient(fakes.kakao_number()) for _ in range(1000)]
    status, answer = _send(fakes, recipients)
    assert (status, answer["header"]["resultCode"]) == (200, 0)
    assert [r["recipientSeq"] for r in answer["message"]["sendResults"]] == list(range(1, 1001))
    assert {r["resultCode"] for r in answer["message"]["sendResults"]} == {0}
    too_many = _send(fakes, recipients + [_recipient(fakes.kakao_number())])
    assert _code(too_many) == (200, -2004, False)
    assert too_many[1]["header"]["resultMessage"] == (
        "The 'recipientList' must be between 1 and 1000."
    )
    assert _code(_send(fakes, [])) == (200, -2004, False)


@pytest.mark.parametrize("secret", ["wrong", ""])
def test_a_wrong_secret_key_is_1001_on_every_api(fakes, secret):
    sender = fakes.kakao_sender_key
    send = _call(
        fakes,
        "POST",
        _base(fakes) + "/messages",
        _body(fakes, [_recipient(fakes.kakao_number())]),
        secret=secret,
    )
    listed = _call(fakes, "GET", _base(fakes) + f"/senders/{sender}/templates", secret=secret)
    start, end = _window()
    query = urlencode({"startUpdateDate": start, "endUpdateDate": end})
    results = _call(fakes, "GET", _base(fakes) + f"/message-results?{query}", secret=secret)
    for answer in (send, listed, results):
        assert _code(answer) == (200, -1001, False)
        assert answer[1]["header"]["resultMessage"] == "Invalid secretKey."


def test_an_unknown_app_key_is_1000(fakes):
    answer = _call(
        fakes,
        "POST",
        _base(fakes, "another-app-key") + "/messages",
        _body(fakes, [_recipient(fakes.kakao_number())]),
    )
    assert _code(answer) == (200, -1000, False)


def test_an_unknown_path_is_9998(fakes):
    status, answer = _call(fakes, "GET", _base(fakes) + "/nothing-here")
    assert (status, answer["header"]["resultCode"]) == (404, -9998)


def test_a_send_that_is_not_json_is_refused(fakes):
    headers = {"Content-Type": "text/plain"}
    body = json.dumps(_body(fakes, [_recipient(fakes.kakao_number())])).encode()
    answer = _call(fakes, "POST", _base(fakes) + "/messages", raw=body, headers=headers)
    assert _code(answer) == (200, -9996, False)
    answer = _call(fakes, "POST", _base(fakes) + "/messages", raw=b"{not json")
    assert _code(answer) == (200, -3002, False)


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"senderKey": ""}, -2001, "The 'senderKey' must not be blank."),
        ({"templateCode": None}, -2001, "The 'templateCode' must not be blank."),
        ({"recipientList": None}, -2002, "The 'recipientList' must not be null."),
        ({"senderKey": "0" * 40}, -2017, "Not exist plus friend."),
        ({"templateCode": "NO_SUCH_CODE"}, -3003, "Template does not exist."),
        ({"requestDate": "2026/01/01 10:00"}, -2027, "The 'requestDate' has invalid format."),
        ({"requestDate": "2020-01-01 10:00"}, -2025, None),
    ],
)
def test_request_checks(fakes, change, code, message):
    body = {**_body(fakes, [_recipient(fakes.kakao_number())]), **change}
    answer = _call(fakes, "POST", _base(fakes) + "/messages", body)
    assert _code(answer) == (200, code, False)
    if message:
        assert answer[1]["header"]["resultMessage"] == message
    assert "message" not in answer[1]


@pytest.mark.parametrize("status", ["TSC01", "TSC02", "TSC04"])
def test_a_template_not_approved_is_3005(fakes, status):
    code = f"KT_{status}"
    fakes.kakao_template(code, "Hi #{name}", status=status)
    answer = _send(fakes, [_recipient(fakes.kakao_number(), name="x")], templateCode=code)
    assert _code(answer) == (200, -3005, False)


def test_recipient_checks_answer_per_recipient(fakes):
    good = fakes.kakao_number()
    recipients = [
        _recipient(good),
        _recipient("not-a-number"),
        _recipient(fakes.kakao_number(), name="Kim"),  # no #{code}
        {"recipientNo": fakes.kakao_number()},  # no templateParameter at all
        _recipient(fakes.kakao_number(), name="x" * 1300, code="1"),
        {**_recipient(fakes.kakao_number()), "buttons": [{"ordering": 2}]},
        {
            **_recipient(fakes.kakao_number()),
            "resendParameter": {**_resend(fakes), "resendType": "MMS"},
        },
    ]
    status, answer = _send(fakes, recipients)
    assert (status, answer["header"]["resultCode"]) == (200, 0)
    codes = [r["resultCode"] for r in answer["message"]["sendResults"]]
    assert codes == [0, -4019, -3004, -3004, -2019, -3033, -4200]
    messages = {r["resultCode"]: r["resultMessage"] for r in answer["message"]["sendResults"]}
    assert messages[-3004] == "Please check template parameter."
    assert messages[-4019] == "Invalid recipient number."
    request_id = answer["message"]["requestId"]
    assert [m["recipientNo"] for m in fakes.kakao_messages(request_id=request_id)] == [good]


def test_when_no_recipient_is_accepted_the_header_is_1031(fakes):
    status, answer = _send(fakes, [_recipient(fakes.kakao_number(), name="only")])
    assert answer["header"] == {
        "resultCode": -1031,
        "resultMessage": "All of receivers are failed to send.",
        "isSuccessful": False,
    }
    assert answer["message"]["sendResults"][0]["resultCode"] == -3004
    assert fakes.kakao_messages(request_id=answer["message"]["requestId"]) == []


def test_parameters_of_button_links_are_required_too(fakes):
    fakes.kakao_template(
        "KT_LINK",
        "Your order is ready.",
        [{"type": "WL", "name": "Track", "linkMo": "https://x.test/#{order}"}],
    )
    number = fakes.kakao_number()
    answer = _send(fakes, [_recipient(number, name="unused")], templateCode="KT_LINK")
    assert answer[1]["message"]["sendResults"][0]["resultCode"] == -3004
    answer = _send(fakes, [_recipient(number, order="A-1")], templateCode="KT_LINK")
    assert answer[1]["message"]["sendResults"][0]["resultCode"] == 0
    assert fakes.kakao_messages(number)[0]["buttons"][0]["linkMo"] == "https://x.test/A-1"


# -- idempotency --


def test_a_reused_idempotency_key_is_1005_and_delivers_nothing_again(fakes):
    number, key = fakes.kakao_number(), secrets.token_hex(16)
    first = _send(fakes, [_recipient(number)], key=key)
    assert _code(first) == (200, 0, True)
    again = _send(fakes, [_recipient(number)], key=key)
    assert again[1] == {
        "header": {
            "resultCode": -1005,
            "resultMessage": "The same 'X-NC-API-IDEMPOTENCY-KEY' was used within the last "
            "10 minute.",
            "isSuccessful": False,
        }
    }
    kept = fakes.kakao_messages(number)
    assert len(kept) == 1 and kept[0]["idempotencyKey"] == key
    # Another key is another request.
    assert _code(_send(fakes, [_recipient(number)], key=secrets.token_hex(16)))[1] == 0
    assert len(fakes.kakao_messages(number)) == 2
    assert fakes.kakao_stats()["duplicate_requests"] >= 1


def test_an_idempotency_key_is_kept_for_its_window_only(fakes, timings):
    timings(idempotency_seconds=0.3)
    number, key = fakes.kakao_number(), secrets.token_hex(16)
    assert _code(_send(fakes, [_recipient(number)], key=key))[1] == 0
    assert _code(_send(fakes, [_recipient(number)], key=key))[1] == -1005
    time.sleep(0.35)
    assert _code(_send(fakes, [_recipient(number)], key=key))[1] == 0
    assert len(fakes.kakao_messages(number)) == 2


def test_a_request_that_failed_does_not_use_up_its_key(fakes):
    number, key = fakes.kakao_number(), secrets.token_hex(16)
    fakes.kakao_mark(number, "fail")
    status, answer = _send(fakes, [_recipient(number)], key=key)
    assert (status, answer["header"]["resultCode"]) == (500, -9999)
    assert answer["header"]["isSuccessful"] is False
    assert fakes.kakao_messages(number) == []
    fakes.kakao_mark(number, "delivered")
    assert _code(_send(fakes, [_recipient(number)], key=key)) == (200, 0, True)
    assert len(fakes.kakao_messages(number)) == 1


# -- number kinds and final results --


def test_a_fail_number_fails_the_whole_request(fakes):
    good, failing = fakes.kakao_number(), fakes.kakao_number("fail")
    status, answer = _send(fakes, [_recipient(good), _recipient(failing)])
    assert status == 500
    assert answer["header"]["resultCode"] == -9999
    assert fakes.kakao_messages(good) == []


def test_a_slow_number_is_answered_late(fakes, timings):
    timings(slow_seconds=0.5)
    started = time.monotonic()
    answer = _send(fakes, [_recipient(fakes.kakao_number("slow"))])
    assert time.monotonic() - started >= 0.5
    assert _code(answer) == (200, 0, True)


def test_final_results_of_each_kind(fakes, timings):
    timings(final_after=0.3, resend_after=0.3)
    numbers = {
        kind: fakes.kakao_number(kind) for kind in ("delivered", "not_kakao_user", "blocked")
    }
    unregistered = fakes.kakao_number("blocked")
    recipients = [
        _recipient(numbers["delivered"]),
        {**_recipient(numbers["not_kakao_user"]), "resendParameter": _resend(fakes)},
        _recipient(numbers["blocked"]),
        {**_recipient(unregistered), "resendParameter": _resend(fakes, "0299999999")},
    ]
    status, answer = _send(fakes, recipients)
    assert status == 200
    request_id = answer["message"]["requestId"]
    path = _base(fakes) + f"/messages/{request_id}/"

    def result(seq):
        message = _call(fakes, "GET", path + str(seq))[1]["message"]
        fields = ("messageStatus", "resultCode", "resendStatus", "resendResultCode")
        return tuple(message[field] for field in fields)

    assert [result(seq) for seq in (1, 2, 3, 4)] == [
        ("READY", None, "RSC01", None),
        ("READY", None, "RSC02", None),
        ("READY", None, "RSC01", None),
        ("READY", None, "RSC02", None),
    ]
    time.sleep(0.35)
    assert [result(seq) for seq in (1, 2, 3, 4)] == [
        ("COMPLETED", "1000", "RSC01", None),
        ("FAILED", "3019", "RSC03", None),
        ("FAILED", "3020", "RSC01", None),
        ("FAILED", "3020", "RSC03", None),
    ]
    time.sleep(0.35)
    assert [result(seq) for seq in (1, 2, 3, 4)] == [
        ("COMPLETED", "1000", "RSC01", None),
        ("FAILED", "3019", "RSC04", "0"),
        ("FAILED", "3020", "RSC01", None),
        ("FAILED", "3020", "RSC05", "-1003"),
    ]
    message = _call(fakes, "GET", path + "2")[1]["message"]
    assert message["resendRequestId"] and message["resendStatusName"] == "Resending successful"
    assert message["content"] == "Hello Kim, your code is 42."
    assert message["recipientNo"] == numbers["not_kakao_user"]
    delivered = _call(fakes, "GET", path + "1")[1]["message"]
    assert delivered["receiveDate"] and delivered["resultCodeName"] == "Success"
    kept = fakes.kakao_messages(numbers["not_kakao_user"])[0]
    assert kept["resendParameter"] == _resend(fakes) and kept["kind"] == "not_kakao_user"


def test_marked_numbers_and_number_forms(fakes):
    national = "0104" + f"{secrets.randbelow(10**7):07d}"  # no kakao_number() has this prefix
    fakes.kakao_mark(national, "blocked")
    e164 = "+82" + national[1:]
    hyphenated = f"{national[:3]}-{national[3:7]}-{national[7:]}"
    answer = _send(fakes, [_recipient(e164), _recipient(hyphenated)])
    assert _code(answer)[1] == 0
    kinds = [m["kind"] for m in fakes.kakao_messages(national)]
    assert kinds == ["blocked", "blocked"]


def test_the_single_message_get_of_an_unknown_message_is_1016(fakes):
    answer = _call(fakes, "GET", _base(fakes) + "/messages/20260101000000nothing/1")
    assert _code(answer) == (200, -1016, False)


def test_the_message_list_by_request_id(fakes):
    numbers = [fakes.kakao_number() for _ in range(3)]
    answer = _send(fakes, [_recipient(n) for n in numbers])
    request_id = answer[1]["message"]["requestId"]
    query = urlencode({"requestId": request_id, "pageSize": 2, "pageNum": 2})
    status, listed = _call(fakes, "GET", _base(fakes) + f"/messages?{query}")
    assert status == 200
    body = listed["messageSearchResultResponse"]
    assert body["totalCount"] == 3
    assert [m["recipientNo"] for m in body["messages"]] == numbers[2:]
    assert body["messages"][0]["content"] == "Hello Kim, your code is 42."
    assert _code(_call(fakes, "GET", _base(fakes) + "/messages")) == (200, -4103, False)


# -- result updates --


def test_result_updates_page_through_the_window(fakes, timings):
    timings(final_after=0.05, resend_after=0.05)
    client.reset_stats(fakes.kakao_endpoint)  # only this test's messages are in the window
    numbers = [fakes.kakao_number() for _ in range(5)]
    failed = fakes.kakao_number("not_kakao_user")
    answer = _send(
        fakes,
        [_recipient(n) for n in numbers]
        + [{**_recipient(failed), "resendParameter": _resend(fakes)}],
    )
    request_id = answer[1]["message"]["requestId"]
    time.sleep(0.2)
    start, end = _window()
    base = _base(fakes) + "/message-results?"
    seen = []
    for page in (1, 2, 3, 4):
        query = urlencode(
            {"startUpdateDate": start, "endUpdateDate": end, "pageNum": page, "pageSize": 2}
        )
        status, body = _call(fakes, "GET", base + query)
        assert (status, body["header"]["resultCode"]) == (200, 0)
        assert "totalCount" not in body
        seen.append(body["messages"])
    assert [len(page) for page in seen] == [2, 2, 2, 0]
    messages = [m for page in seen for m in page]
    assert {m["requestId"] for m in messages} == {request_id}
    assert sorted(m["recipientSeq"] for m in messages) == [1, 2, 3, 4, 5, 6]
    by_seq = {m["recipientSeq"]: m for m in messages}
    assert (by_seq[1]["messageStatus"], by_seq[1]["resultCode"]) == ("COMPLETED", "1000")
    assert (by_seq[6]["messageStatus"], by_seq[6]["resultCode"]) == ("FAILED", "3019")
    assert (by_seq[6]["resendStatus"], by_seq[6]["resendResultCode"]) == ("RSC04", "0")
    assert set(by_seq[1]) == {
        "requestId",
        "recipientSeq",
        "requestDate",
        "createDate",
        "receiveDate",
        "resendStatus",
        "resendStatusName",
        "resendResultCode",
        "resendRequestId",
        "messageStatus",
        "resultCode",
        "resultCodeName",
    }
    query = urlencode({"startUpdateDate": start, "endUpdateDate": end})
    status, counted = _call(fakes, "GET", _base(fakes) + f"/message-results/count?{query}")
    assert (status, counted["totalCount"]) == (200, 6)
    # A window that ended before the messages changed holds none of them.
    early = _window(minutes_before=30)[0]
    query = urlencode({"startUpdateDate": early, "endUpdateDate": _window(minutes_before=10)[0]})
    assert _call(fakes, "GET", base + query)[1]["messages"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"endUpdateDate": "2026-01-01 10:00"}, -2001),
        ({"startUpdateDate": "2026-01-01 10:00"}, -2001),
        ({"startUpdateDate": "2026-01-01", "endUpdateDate": "2026-01-02"}, -4000),
        ({"startUpdateDate": "2026-01-02 10:00", "endUpdateDate": "2026-01-01 10:00"}, -4000),
        ({"startUpdateDate": "2026-01-01 10:00", "endUpdateDate": "2026-03-01 10:00"}, -4003),
        (
            {
                "startUpdateDate": "2026-01-01 10:00",
                "endUpdateDate": "2026-01-01 11:00",
                "pageSize": 1001,
            },
            -2005,
        ),
        (
            {
                "startUpdateDate": "2026-01-01 10:00",
                "endUpdateDate": "2026-01-01 11:00",
                "pageNum": 0,
            },
            -2003,
        ),
    ],
)
def test_result_update_query_checks(fakes, params, code):
    answer = _call(fakes, "GET", _base(fakes) + f"/message-results?{urlencode(params)}")
    assert _code(answer) == (200, code, False)


# -- templates --


def test_the_template_list_pages_and_filters(fakes):
    sender = secrets.token_hex(20)  # a sender of its own: only this test's templates
    for index, status in enumerate(["TSC03", "TSC03", "TSC01"]):
        fakes.kakao_template(
            f"T{index}",
            f"Text #{{v{index}}}",
            status=status,
            sender_key=sender,
            name=f"Name {index}",
        )
    path = _base(fakes) + f"/senders/{sender}/templates"
    status, first = _call(fakes, "GET", path + "?pageNum=1&pageSize=2")
    assert status == 200 and first["header"]["resultCode"] == 0
    listing = first["templateListResponse"]
    assert listing["totalCount"] == 3
    assert [t["templateCode"] for t in listing["templates"]] == ["T0", "T1"]
    template = listing["templates"][0]
    assert (template["templateName"], template["templateContent"]) == ("Name 0", "Text #{v0}")
    assert (template["status"], template["statusName"]) == ("TSC03", "Approved")
    assert template["senderKey"] == sender and template["buttons"] == []
    _, second = _call(fakes, "GET", path + "?pageNum=2&pageSize=2")
    assert [t["templateCode"] for t in second["templateListResponse"]["templates"]] == ["T2"]
    _, approved = _call(fakes, "GET", path + "?templateStatus=TSC03")
    assert approved["templateListResponse"]["totalCount"] == 2
    _, one = _call(fakes, "GET", path + "?templateCode=T1")
    assert [t["templateCode"] for t in one["templateListResponse"]["templates"]] == ["T1"]
    assert _code(_call(fakes, "GET", path + "?pageSize=1001")) == (200, -2005, False)


def test_the_default_page_of_the_template_list_is_15(fakes):
    sender = secrets.token_hex(20)
    for index in range(16):
        fakes.kakao_template(f"P{index:02d}", "Hi", sender_key=sender)
    _, listed = _call(fakes, "GET", _base(fakes) + f"/senders/{sender}/templates")
    assert len(listed["templateListResponse"]["templates"]) == 15
    assert listed["templateListResponse"]["totalCount"] == 16


def test_the_buttons_of_a_listed_template(fakes):
    path = _base(fakes) + f"/senders/{fakes.kakao_sender_key}/templates/{TEMPLATE}"
    status, answer = _call(fakes, "GET", path)
    assert status == 200
    assert answer["templates"]["templateCode"] == TEMPLATE
    assert answer["templates"]["buttons"] == [
        {"ordering": 1, "type": "WL", "name": "Open", "linkMo": "https://example.com/c/#{code}"}
    ]


def test_template_lookups_of_unknown_senders_and_codes(fakes):
    unknown_sender = _base(fakes) + f"/senders/{'1' * 40}/templates"
    assert _code(_call(fakes, "GET", unknown_sender)) == (200, -2017, False)
    unknown_code = _base(fakes) + f"/senders/{fakes.kakao_sender_key}/templates/NOPE"
    assert _code(_call(fakes, "GET", unknown_code)) == (200, -3003, False)


# -- admin --


def test_stats_count_requests_by_api_and_result(fakes):
    client.reset_stats(fakes.kakao_endpoint)
    _send(fakes, [_recipient(fakes.kakao_number()), _recipient(fakes.kakao_number(), name="x")])
    _call(
        fakes, "GET", _base(fakes) + f"/senders/{fakes.kakao_sender_key}/templates", secret="wrong"
    )
    stats = fakes.kakao_stats()
    assert stats["requests"] == 2
    assert stats["by_prefix"] == {"send": 1, "templates": 1}
    assert stats["by_reason"] == {"Success": 1, "-1001": 1}
    assert (stats["recipients_accepted"], stats["recipients_refused"]) == (1, 1)
    assert stats["accepted_delivered"] == 1


def test_reset_forgets_messages_and_keys_but_keeps_templates(fakes):
    number, key = fakes.kakao_number(), secrets.token_hex(16)
    _send(fakes, [_recipient(number)], key=key)
    client.reset_stats(fakes.kakao_endpoint)
    assert fakes.kakao_messages(number) == []
    assert _code(_send(fakes, [_recipient(number)], key=key)) == (200, 0, True)


def test_credentials_of_the_fake(fakes):
    with_fallback = fakes.kakao_credentials()
    assert set(with_fallback.values) == {"app_key", "secret_key", "sender_key", "fallback_send_no"}
    assert with_fallback.values["sender_key"] == fakes.kakao_sender_key
    assert len(fakes.kakao_sender_key) == 40
    assert "fallback_send_no" not in fakes.kakao_credentials(fallback=False).values
    wrong = fakes.kakao_credentials(secret_key="wrong")
    assert wrong.values["secret_key"] == "wrong" and wrong.key != with_fallback.key
    assert fakes.kakao_endpoint == f"http://127.0.0.1:{fakes.kakao_port}"


def test_a_scheduled_request_waits_for_its_date(fakes, timings):
    timings(final_after=0.05)
    number = fakes.kakao_number()
    later = datetime.datetime.now(KST) + datetime.timedelta(minutes=3)
    answer = _send(fakes, [_recipient(number)], requestDate=_minute(later))
    assert _code(answer) == (200, 0, True)
    time.sleep(0.1)
    [kept] = fakes.kakao_messages(number)
    assert kept["messageStatus"] == "READY"
    assert kept["requestDate"] == _minute(later) + ":00"
    too_late = datetime.datetime.now(KST) + datetime.timedelta(days=61)
    answer = _send(fakes, [_recipient(number)], requestDate=_minute(too_late))
    assert _code(answer) == (200, -2026, False)


def test_a_new_state_directory_has_the_seed_templates_and_templates_survive_a_restart(tmp_path):
    from fakes.kakao_server import SEED_TEMPLATES, FakeKakao
    from fakes.state import ensure_state

    state = ensure_state(tmp_path)
    dealer = FakeKakao(state)
    headers = {"x-secret-key": dealer.account.secret_key}
    path = (
        f"/alimtalk/v2.3/appkeys/{dealer.account.app_key}/senders/{dealer.account.sender_key}"
        "/templates?pageSize=100"
    )

    def listed(fake):
        answer = json.loads(fake.handle("GET", path, headers, b"")[2])
        return {t["templateCode"]: t["status"] for t in answer["templateListResponse"]["templates"]}

    seeds = {seed["template_code"]: seed.get("status", "TSC03") for seed in SEED_TEMPLATES}
    assert (
        listed(dealer)
        == seeds
        == {
            "WELCOME_01": "TSC03",
            "ORDER_SHIPPED": "TSC03",
            "REVIEW_01": "TSC02",
        }
    )
    body = json.dumps({"template_code": "NEW_01", "text": "Hi #{name}"}).encode()
    assert dealer.handle("POST", "/__templates", {}, body)[0] == 200
    assert listed(FakeKakao(state)) == {**seeds, "NEW_01": "TSC03"}
    assert dealer.handle("DELETE", "/__templates", {}, b"")[0] == 200
    assert listed(FakeKakao(state)) == {}


def test_a_request_of_a_thousand_long_lms_fallbacks_passes_one_mebibyte(fakes):
    resend = {**_resend(fakes), "resendType": "LMS", "resendContent": "가" * 900}
    recipients = [
        {**_recipient(fakes.kakao_number()), "resendParameter": resend} for _ in range(1000)
    ]
    body = json.dumps(_body(fakes, recipients)).encode()
    assert len(body) > 1024 * 1024
    answer = _call(fakes, "POST", _base(fakes) + "/messages", raw=body)
    assert _code(answer) == (200, 0, True)
