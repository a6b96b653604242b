"""The fake Twilio answered with a plain HTTP client: its checks, the Message resource it
returns and the statuses a message moves through."""

import base64
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

import pytest

from fakes import twilio_server


def _number(prefix="+1415"):
    digits = 12 - len(prefix)
    return prefix + f"{uuid.uuid4().int % 10**digits:0{digits}d}"


def _call(fakes, method, path, form=None, *, user=None, password=None):
    user = fakes.sms_account_sid if user is None else user
    password = fakes.sms_auth_token if password is None else password
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        fakes.sms_endpoint + path,
        data=urlencode(form).encode() if form is not None else None,
        method=method,
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _messages_path(fakes, account=None):
    return f"/2010-04-01/Accounts/{account or fakes.sms_account_sid}/Messages.json"


def _send(fakes, form, **auth):
    return _call(fakes, "POST", _messages_path(fakes), form, **auth)


def test_a_created_message_has_twilios_shape(fakes):
    to = _number()
    status, message = _send(fakes, {"To": to, "From": fakes.sms_from, "Body": "a" * 161})
    assert status == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", message["sid"])
    assert message["account_sid"] == fakes.sms_account_sid
    assert message["api_version"] == "2010-04-01"
    assert (message["to"], message["from"], message["body"]) == (to, fakes.sms_from, "a" * 161)
    assert message["status"] == "queued"
    assert message["num_segments"] == "2"
    assert message["direction"] == "outbound-api"
    assert message["error_code"] is None and message["messaging_service_sid"] is None
    assert parsedate_to_datetime(message["date_created"]).tzinfo is not None
    uri = f"/2010-04-01/Accounts/{fakes.sms_account_sid}/Messages/{message['sid']}"
    assert message["uri"] == uri + ".json"
    assert message["subresource_uris"]["media"] == uri + "/Media.json"


def test_with_a_messaging_service_the_message_is_accepted_without_a_sender(fakes):
    form = {"To": _number(), "MessagingServiceSid": fakes.sms_messaging_service_sid, "Body": "hi"}
    status, message = _send(fakes, form)
    assert status == 201
    assert (message["status"], message["from"], message["num_segments"]) == ("accepted", None, "0")
    assert message["messaging_service_sid"] == fakes.sms_messaging_service_sid


def test_the_status_moves_on_to_delivered_or_undelivered(fakes):
    delivered, undelivered = _number(), _number("+15005556")
    sids = {}
    for to in (delivered, undelivered):
        _, message = _send(fakes, {"To": to, "From": fakes.sms_from, "Body": "hi"})
        sids[to] = message["sid"]
    time.sleep(twilio_server.FINAL_AFTER + 0.05)
    statuses = {}
    for to, sid in sids.items():
        path = f"/2010-04-01/Accounts/{fakes.sms_account_sid}/Messages/{sid}.json"
        status, message = _call(fakes, "GET", path)
        assert status == 200
        statuses[to] = (message["status"], message["error_code"])
    assert statuses == {delivered: ("delivered", None), undelivered: ("undelivered", 30003)}


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, "0" * 32), ("AC" + "0" * 32, None), ("", "")],
)
def test_wrong_credentials_are_20003(fakes, user, password):
    form = {"To": _number(), "From": fakes.sms_from, "Body": "hi"}
    status, error = _send(fakes, form, user=user, password=password)
    assert status == 401
    assert error["code"] == 20003 and error["status"] == 401
    assert error["more_info"] == "https://www.twilio.com/docs/errors/20003"


def test_another_accounts_path_is_not_found(fakes):
    path = _messages_path(fakes, account="AC" + "1" * 32)
    status, error = _call(fakes, "POST", path, {"To": _number(), "From": fakes.sms_from})
    assert (status, error["code"]) == (404, 20404)


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+15005550006", "Body": "hi"}, 21604),
        ({"To": "+14155550100", "Body": "hi"}, 21603),
        ({"To": "4155550100", "From": "+15005550006", "Body": "hi"}, 21211),
        ({"To": "+14155550100", "From": "+14155550000", "Body": "hi"}, 21606),
        ({"To": "+14155550100", "From": "+15005550006"}, 21602),
        ({"To": "+14155550100", "From": "+15005550006", "Body": "x" * 1601}, 21617),
    ],
)
def test_form_checks(fakes, form, code):
    status, error = _send(fakes, form)
    assert (status, error["code"], error["status"]) == (400, code, 400)
    assert error["message"]


def test_received_messages_are_listed_by_number_even_with_an_unencoded_plus(fakes):
    to = _number()
    _send(fakes, {"To": to, "From": fakes.sms_from, "Body": "one"})
    _send(fakes, {"To": to, "From": fakes.sms_from, "Body": "two"})
    with urllib.request.urlopen(f"{fakes.sms_endpoint}/__messages?to={to}", timeout=5) as answer:  # noqa: S310
        listed = json.loads(answer.read())
    assert [m["Body"] for m in listed] == ["one", "two"]
    assert [m["Body"] for m in fakes.sms_messages(to)] == ["one", "two"]
