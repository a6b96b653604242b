"""Bad input from a careless or hostile client is a 4xx in the error shape naming the field,
never a 5xx: every endpoint that takes a body or a query string, fed what PostgreSQL cannot
store (NUL, lone surrogates), what is not JSON (NaN, 1e999, duplicate keys), what nests too
deep, forged cursors, naive or far-off timestamps, and out-of-range numbers."""

from __future__ import annotations

import base64
import io
import json

import pytest
from rest_framework import exceptions

from campaigns import services as campaign_services
from campaigns.models import Campaign
from core.api import MAX_BODY_DEPTH, BoundedJSONParser
from messaging.models import Message, Subscription
from templates_app import services as template_services
from tests.assertions import assert_error
from tests.conftest import apns_token, subscription_create

pytestmark = pytest.mark.django_db

NUL = "\x00"
LONE = "\ud800"  # a lone UTF-16 surrogate: json.dumps writes it as the escape \ud800
SUB, TPL = "{sub}", "{tpl}"  # filled in with the fixture's ids


@pytest.fixture
def ids(app) -> dict[str, str]:
    subscription = subscription_create(app.application, external_user_id="u1")
    template = template_services.template_create(
        application=app.application, name="t", title_template="Hi {{name}}"
    )
    campaign = campaign_services.campaign_create(
        application=app.application, name="c", title="Sale"
    )
    return {
        "sub": str(subscription.pk),
        "tpl": str(template.template_id),
        "campaign": str(campaign.pk),
        "token": apns_token(7),
    }


def nested(depth: int):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def msg(**fields) -> dict:
    return {"subscription_id": SUB, **fields}


def sub(**fields) -> dict:
    return {"type": "iOSPush", "token": "{token}", **fields}


def tpl(**fields) -> dict:
    return {"name": "n", "title_template": "a", **fields}


def cmp(**fields) -> dict:
    return {"name": "c", "title": "t", **fields}


# (method, path, body, the field the details must name; None: 404 not_found)
BODIES = [
    # NUL and lone surrogates inside JSON-valued fields, keys included
    ("POST", "messages", msg(data={"a": "x" + NUL}), "data"),
    ("POST", "messages", msg(data={"a": LONE}), "data"),
    ("POST", "messages", msg(data={"a" + NUL: 1}), "data"),
    ("POST", "messages", msg(data={LONE: 1}), "data"),
    ("POST", "messages", msg(data={"a": [[NUL]]}), "data"),
    ("POST", "messages", msg(template_id=TPL, variables={"name": NUL}), "variables"),
    ("POST", "messages", msg(template_id=TPL, variables={"n": {"m": LONE}}), "variables"),
    ("POST", "subscriptions", sub(tags={"a" + NUL: "b"}), "tags"),
    ("POST", "subscriptions", sub(tags={LONE: "b"}), "tags"),
    ("POST", "subscriptions", sub(tags={"a": LONE}), "tags"),
    ("POST", "subscriptions", sub(device={"model": NUL}), "device"),
    ("PUT", "subscriptions/{sub}", {"tags": {"a" + NUL: "b"}}, "tags"),
    ("POST", "templates", tpl(data_template={"a": NUL}), "data_template"),
    ("POST", "templates", tpl(data_template={LONE: "a"}), "data_template"),
    ("POST", "templates", tpl(translations={"ko": {"title_template": NUL}}), "translations"),
    ("PUT", "templates/{tpl}", {"data_template": {"a": LONE}}, "data_template"),
    ("POST", "templates/{tpl}/render", {"variables": {"name": NUL}}, "variables"),
    ("POST", "campaigns", {"name": "c", "data": {"a": NUL}}, "data"),
    ("POST", "campaigns", {"name": "c", "template_id": TPL, "variables": {"a": LONE}}, "variables"),
    ("POST", "campaigns", cmp(targeting_criteria={"tags": {"a" + NUL: "b"}}), "targeting_criteria"),
    ("POST", "campaigns", cmp(targeting_criteria={"tags": {"a": LONE}}), "targeting_criteria"),
    ("POST", "campaigns", cmp(targeting_criteria={"languages": [NUL]}), "targeting_criteria"),
    ("POST", "campaigns", cmp(schedule={"crontab": "0 9 * * 1", "timezone": LONE}), "schedule"),
    ("PUT", "campaigns/{campaign}", {"data": {"a": NUL}}, "data"),
    # plain strings
    ("POST", "messages", msg(title="a" + NUL), "title"),
    ("POST", "messages", msg(body=LONE), "body"),
    ("POST", "messages", {"external_user_id": "u" + NUL, "title": "x"}, "external_user_id"),
    ("POST", "subscriptions", {"type": "InAppMessage", "token": "a" + NUL}, "token"),
    ("POST", "subscriptions", {"type": "Email", "token": f"a{LONE}@example.com"}, "token"),
    ("POST", "users/identify", {"external_user_id": LONE, "subscription_id": SUB},
     "external_user_id"),
    ("POST", "templates", {"name": "n" + NUL, "title_template": "a"}, "name"),
    ("POST", "templates", {"name": "n", "body_template": LONE}, "body_template"),
    ("POST", "campaigns", cmp(name=LONE), "name"),
    # nesting: a field deeper than MAX_JSON_DEPTH, inside a body within MAX_BODY_DEPTH
    ("POST", "messages", msg(data={"a": nested(40)}), "data"),
    ("POST", "templates", tpl(data_template={"a": nested(40)}), "data_template"),
    ("POST", "campaigns", cmp(targeting_criteria={"tags": nested(40)}), "targeting_criteria"),
    # sizes and numbers
    ("POST", "messages", msg(data={"a": "x" * 70_000}), "data"),
    ("POST", "messages", msg(template_id=TPL, variables={"a": "x" * 70_000}), "variables"),
    ("POST", "messages", msg(title="x", ttl=10**30), "ttl"),
    ("POST", "campaigns", cmp(throttle_per_minute=10**30), "throttle_per_minute"),
    ("POST", "templates/{tpl}/render", {"version": 10**30}, None),  # no such version
    # ids that are not UUIDs
    ("POST", "messages", {"subscription_id": "x", "title": "x"}, "subscription_id"),
    ("POST", "messages", {"subscription_ids": [SUB, "x" + NUL], "title": "x"}, "subscription_ids"),
    ("POST", "messages", msg(template_id="nope"), "template_id"),
    ("POST", "users/logout", {"subscription_id": [SUB]}, "subscription_id"),
    ("POST", "campaigns", {"name": "c", "template_id": LONE}, "template_id"),
    # timestamps: a zone is required, far-off ones are refused
    ("POST", "messages", msg(title="x", send_after="2030-01-01T09:00:00"), "send_after"),
    ("POST", "messages", msg(title="x", send_after="4378-01-01T09:00:00Z"), "send_after"),
    ("POST", "messages", msg(title="x", send_after="2026-13-45T09:00:00Z"), "send_after"),
    ("POST", "campaigns", cmp(scheduled_at="2030-01-01T09:00:00"), "scheduled_at"),
    ("POST", "campaigns", cmp(scheduled_at="4378-01-01T09:00:00+09:00"), "scheduled_at"),
    ("PUT", "campaigns/{campaign}", {"scheduled_at": "4378-01-01T09:00:00Z"}, "scheduled_at"),
    (
        "POST", "campaigns",
        cmp(targeting_criteria={"last_active_after": "2026-01-01T00:00:00"}),
        "targeting_criteria",
    ),
    # channel parts: the same inside each part, named by the part's field
    ("POST", "messages", msg(title="x", email={"subject": "a" + NUL}), "email.subject"),
    ("POST", "messages", msg(title="x", sms={"text": LONE}), "sms.text"),
    ("POST", "messages", msg(title="x", kakao={"buttons": [{"name": NUL}]}), "kakao.buttons[0]"),
    ("POST", "messages", msg(title="x", kakao={"buttons": [nested(40)]}), "kakao.buttons[0]"),
    ("POST", "messages", msg(title="x", web_push={"url": "https://e.example/" + LONE}),
     "web_push.url"),
    ("POST", "messages", msg(title="x", in_app=[]), "in_app"),
    ("POST", "messages", msg(title="x", email={"html": "x" * 200_001}), "email.html"),
    ("POST", "templates", tpl(email={"subject": NUL}), "email.subject"),
    ("POST", "templates", tpl(translations={"ko": {"title_template": "a", "sms": {"text": LONE}}}),
     "translations"),
    ("PUT", "templates/{tpl}", {"web_push": {"icon": NUL}}, "web_push.icon"),
    ("POST", "campaigns", cmp(email={"from_name": LONE}), "email.from_name"),
    ("PUT", "campaigns/{campaign}", {"sms": {"text": NUL}}, "sms.text"),
    # bodies that are JSON but not an object
    ("POST", "messages", [], "non_field_errors"),
    ("POST", "messages", "x", "non_field_errors"),
    ("POST", "campaigns", None, "non_field_errors"),
    ("PUT", "templates/{tpl}", 1, "non_field_errors"),
]  # fmt: skip

# Bodies that are not JSON as RFC 8259 has it, or nest beyond MAX_BODY_DEPTH: parse_error.
NOT_JSON = [
    '{"subscription_id": "{sub}", "data": {"a": NaN}}',
    '{"subscription_id": "{sub}", "data": {"a": Infinity}}',
    '{"subscription_id": "{sub}", "data": {"a": -Infinity}}',
    '{"subscription_id": "{sub}", "title": "x", "ttl": 1e999}',
    "1e999",
    '{"subscription_id": "{sub}", "subscription_id": "{sub}", "title": "x"}',
    '{"subscription_id": "{sub}", "data": {"a": 1, "a": 2}}',
    json.dumps(nested(MAX_BODY_DEPTH + 1)),
    "[" * 1_000 + "]" * 1_000,
    "[" * 100_000 + "]" * 100_000,
    json.dumps(msg(data={"a": nested(900)})),
]
POST_ENDPOINTS = [
    "messages",
    "subscriptions",
    "users/identify",
    "users/logout",
    "templates",
    "templates/{tpl}/render",
    "campaigns",
]


def _send(api, method: str, path: str, ids: dict, body=None, *, text: str = "", **headers):
    """`body` written as JSON (or the JSON `text` as it is), with the fixture's ids filled in."""
    url = "/api/v1/" + path.format(**ids)
    text = text or json.dumps(body)
    for name, value in ids.items():
        text = text.replace("{" + name + "}", value)
    body = text.encode("utf-8", "surrogatepass")
    return api.generic(method, url, body, content_type="application/json", **headers)


@pytest.mark.parametrize(("method", "path", "body", "field"), BODIES)
def test_a_bad_body_is_4xx_naming_the_field(server_api, ids, method, path, body, field):
    messages, campaigns = Message.objects.count(), Campaign.objects.count()

    response = _send(server_api, method, path, ids, body)

    if field is None:
        assert_error(response, 404, "not_found")
    else:
        details = assert_error(response, 400, "validation_error")
        assert field in details, details
    assert (Message.objects.count(), Campaign.objects.count()) == (messages, campaigns)


@pytest.mark.parametrize("path", POST_ENDPOINTS)
@pytest.mark.parametrize("text", NOT_JSON)
def test_a_body_that_is_not_strict_json_is_a_parse_error(server_api, ids, path, text):
    response = _send(server_api, "POST", path, ids, text=text)

    assert_error(response, 400, "parse_error")


def test_the_parser_bounds_nesting_while_decoding():
    parser = BoundedJSONParser()
    for depth in (MAX_BODY_DEPTH + 1, 10_000, 1_000_000 // 2):
        raw = ("[" * depth + "]" * depth).encode()
        with pytest.raises(exceptions.ParseError, match=f"more than {MAX_BODY_DEPTH} levels"):
            parser.parse(io.BytesIO(raw), "application/json", {})
    deepest = json.dumps(nested(MAX_BODY_DEPTH)).encode()
    assert parser.parse(io.BytesIO(deepest), "application/json", {}) == nested(MAX_BODY_DEPTH)


# --- Query strings and paths ---------------------------------------------------------------------

LISTS = [
    "messages",
    "subscriptions",
    "campaigns",
    "templates",
    "users/u1/subscriptions",
    "campaigns/{campaign}/runs",
]
FORGED_CURSORS = [
    "cD0yMDI2",  # base64 of "p=2026": a position that is no timestamp
    base64.b64encode(b"p=\x00").decode(),
    base64.b64encode(b"o=1&p=2026-13-45T00:00:00Z").decode(),
    "garbage",
    "%00",
    "%ED%A0%80",
]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", FORGED_CURSORS)
def test_a_forged_cursor_is_400_naming_the_cursor(server_api, ids, path, cursor):
    response = server_api.get(f"/api/v1/{path.format(**ids)}?cursor={cursor}")

    assert "cursor" in assert_error(response, 400, "validation_error")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["abc", "0", "-1", "100000", "1.5", "%00", "9" * 40])
def test_a_limit_outside_1_to_1000_is_400(server_api, ids, path, limit):
    response = server_api.get(f"/api/v1/{path.format(**ids)}?limit={limit}")

    assert "limit" in assert_error(response, 400, "validation_error")


@pytest.mark.parametrize("path", LISTS)
def test_an_unknown_query_parameter_is_400(server_api, ids, path):
    response = server_api.get(f"/api/v1/{path.format(**ids)}?colour=red")

    assert assert_error(response, 400, "validation_error") == {"colour": ["Unknown field."]}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("messages?status=%00", "status"),
        ("messages?campaign_id=%00", "campaign_id"),
        ("messages?subscription_id=x", "subscription_id"),
        ("subscriptions?country=%00", "country"),
        ("subscriptions?language=a%00", "language"),
        ("subscriptions?enabled=maybe", "enabled"),
        ("templates/{tpl}?version=%00", "version"),
        ("templates/{tpl}?version=-3", "version"),
    ],
)
def test_garbage_in_a_query_parameter_is_400_naming_it(server_api, ids, query, field):
    response = server_api.get("/api/v1/" + query.format(**ids))

    assert field in assert_error(response, 400, "validation_error")


def test_a_nul_in_a_user_id_in_the_path_is_400(server_api, ids):
    response = server_api.get("/api/v1/users/u%001/subscriptions")

    assert "external_user_id" in assert_error(response, 400, "validation_error")


def test_a_valid_cursor_still_pages(server_api, app):
    for n in range(3):
        subscription_create(app.application, token=apns_token(100 + n))

    first = server_api.get("/api/v1/subscriptions?limit=2").json()
    second = server_api.get(first["next"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1
    assert Subscription.objects.count() == 3


def test_an_overlong_idempotency_key_is_400(server_api, ids):
    response = _send(
        server_api, "POST", "messages", ids, msg(title="x"), HTTP_IDEMPOTENCY_KEY="k" * 300
    )

    assert "Idempotency-Key" in assert_error(response, 400, "validation_error")
    assert not Message.objects.exists()


def test_an_overlong_url_is_414_in_the_error_shape(server_api, settings):
    response = server_api.get("/api/v1/subscriptions?x=" + "a" * settings.API_MAX_URL_BYTES)

    assert_error(response, 414, "uri_too_long")


def test_json_field_errors_say_where_the_value_is(server_api, ids):
    response = _send(server_api, "POST", "messages", ids, msg(data={"a": [1, {"b": "x" + NUL}]}))

    assert assert_error(response, 400, "validation_error") == {
        "data": [
            "The string at data.a[1].b contains a NUL character (U+0000), which cannot be stored."
        ]
    }


def test_good_json_fields_still_arrive_intact(server_api, ids):
    data = {"screen": "home", "n": [1, 2.5, True, None], "nested": {"k": "한국어 ✓"}}

    response = server_api.post(
        "/api/v1/messages", {"subscription_id": ids["sub"], "data": data}, format="json"
    )

    assert response.status_code == 202, response.content
    assert Message.objects.get().data == data
    assert json.loads(response.content)["messages"][0]["status"] == "pending"
