"""The channel specs (core.channels.SPECS) and what is derived from them: the subscription
types, the token rules, and the part fields whose OpenAPI schema must take exactly what the
server takes, in messages, templates and campaigns alike."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft202012Validator
from rest_framework.exceptions import ValidationError as APIValidationError

from campaigns.api.serializers import CampaignInput
from core import channels
from core.channels import PART_FIELDS, SPECS, part_check, spec_of
from core.validation import InputInvalid
from messaging.api.serializers.messages import MessageCreateInput
from messaging.models import SubscriptionType
from templates_app.api.serializers import TemplateInput

# Values a client may send as a part's field: strings of every kind a field rule tells apart,
# and values of the other JSON types.
PROBES = [
    "",
    " ",
    "x",
    "Summer sale",
    "two\nlines",
    "carriage\rreturn",
    "a\x00b",
    "https://example.com/sale?id=1#top",
    "HTTP://example.com",
    "http://127.0.0.1:8000/x",
    "https://e.example/a%20b",
    "https://e.example/%zz",
    "https://a b",
    "https:///path",
    "ftp://example.com/x",
    "example.com",
    "javascript:alert(1)",
    "https://\u00e9.example/",
    "https://e.example/{{slug}}",
    "{{url}}",
    "{{ url }}?utm=1",
    "a\x00{{url}}",
    "한국어 텍스트",
    0,
    1.5,
    True,
    None,
    [],
    ["x"],
    {},
    {"name": "Kim"},
    {"name": 5},
    {"name": "a\x00"},
    {"a\x00": "x"},
    {"x" * 101: "v"},
    {"name": "x" * 1001},
    [{"type": "WL", "name": "Open", "url_mobile": "https://example.com/m"}],
    [{}],
    [{"name": "b"}] * 5,
    [{"name": "b"}] * 6,
    [{"name": 1}],
    [{"name": "a\x00"}],
    [{"x" * 51: "b"}],
    [{"name": {"nested": "x"}}],
    ["Open"],
    [1],
]


def _long_probes(schema: dict) -> list:
    """Strings at and just over a string field's limit, of plain text and of URL text."""
    limit = schema.get("maxLength")
    if limit is None:
        return []
    base = "https://example.com/"
    return [
        "x" * limit,
        "x" * (limit + 1),
        base + "a" * (limit - len(base)),
        base + "a" * (limit + 1 - len(base)),
        "{{u}}" + "a" * (limit - 5),
        "{{u}}" + "a" * (limit - 4),
    ]


@pytest.fixture(scope="module")
def document() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _part_schemas(document: dict, operation_id: str) -> dict[str, dict]:
    """The part schemas of an operation's request body, as the OpenAPI document states them."""
    for item in document["paths"].values():
        for operation in item.values():
            if operation["operationId"] == operation_id:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                while "$ref" in body:
                    name = body["$ref"].rsplit("/", 1)[1]
                    body = document["components"]["schemas"][name]
                return {name: body["properties"][name] for name in channels.PART_NAMES}
    raise AssertionError(f"no operation {operation_id}")


def _field_accepts(serializer_class, part: str, value) -> bool:
    """Whether the API's serializer takes `{part: value}` for this field."""
    field = serializer_class().fields[part]
    try:
        field.run_validation(value)
    except APIValidationError:
        return False
    return True


# operation -> (serializer of its body, whether its parts are templates)
OPERATIONS = {
    "messages_create": (MessageCreateInput, False),
    "templates_create": (TemplateInput, True),
    "templates_update": (TemplateInput, True),
    "campaigns_create": (CampaignInput, False),
    "campaigns_update": (CampaignInput, False),
}


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_every_part_field_schema_takes_exactly_what_the_server_takes(document, operation_id):
    serializer_class, templated = OPERATIONS[operation_id]
    schemas = _part_schemas(document, operation_id)
    disagreements = []
    for part, fields in PART_FIELDS.items():
        validator = Draft202012Validator(schemas[part])
        for key, field in fields.items():
            field_schema = schemas[part]["properties"][key]
            probes = PROBES + _long_probes(field_schema)
            probes += _long_probes(field_schema.get("additionalProperties") or {})
            for value in probes:
                body = {key: value}
                by_schema = validator.is_valid(body)
                by_server = _field_accepts(serializer_class, part, body)
                try:
                    field.checked(value, f"{part}.{key}", templated=templated)
                    by_field = True
                except InputInvalid:
                    by_field = False
                if not by_schema == by_server == by_field:
                    shown = value if len(repr(value)) < 80 else f"{repr(value)[:60]}..."
                    disagreements.append(
                        f"{part}.{key}={shown!r}: schema {by_schema}, server {by_server}, "
                        f"field {by_field}"
                    )
    assert not disagreements, "\n".join(disagreements)


def test_the_issue_examples_are_refused_by_the_template_schema_as_by_the_server(document):
    schemas = _part_schemas(document, "templates_create")
    for part, body in (("web_push", {"icon": ""}), ("in_app", {"action_url": ""})):
        assert not Draft202012Validator(schemas[part]).is_valid(body)
        with pytest.raises(InputInvalid):
            part_check(part, body, templated=True)
    # ...and a URL with a variable is checked once rendered, by both.
    body = {"url": "https://shop.example/{{slug}}"}
    assert Draft202012Validator(schemas["web_push"]).is_valid(body)
    assert part_check("web_push", body, templated=True) == body
    assert not Draft202012Validator(
        _part_schemas(document, "messages_create")["web_push"]
    ).is_valid(body)


def test_a_part_schema_lists_exactly_the_spec_fields(document):
    for operation_id in OPERATIONS:
        for part, schema in _part_schemas(document, operation_id).items():
            assert schema["additionalProperties"] is False
            assert list(schema["properties"]) == list(PART_FIELDS[part]), (operation_id, part)


def test_subscription_types_are_the_specs():
    assert SubscriptionType.choices == [(spec.type, spec.label) for spec in SPECS.values()]
    assert [member.name for member in SubscriptionType] == [s.name for s in SPECS.values()]
    assert SubscriptionType.KAKAOTALK == "KakaoTalk" == channels.KAKAOTALK
    assert tuple(SPECS) == channels.CHANNELS


def test_each_spec_is_complete():
    for kind, spec in SPECS.items():
        assert spec.type == kind and spec.name.isupper() and spec.label
        assert spec.token_help.endswith(".")
        assert spec.delivery in (channels.PROVIDER, channels.LOCAL)
        # Sent by a provider: an adapter and credentials; written locally: neither.
        assert (
            (spec.adapter is not None) == (spec.delivery == channels.PROVIDER) == spec.credentials
        )
        assert (spec.part is None) == (not spec.part_fields)
        assert spec_of(kind) is spec
    with pytest.raises(KeyError, match="known: iOSPush"):
        spec_of("Pager")


def test_adapter_paths_are_the_settings_ones():
    for kind, path in settings.CHANNEL_ADAPTERS.items():
        assert SPECS[kind].adapter == path, kind
    assert SPECS["Email"].adapter_class().__name__ == "EmailAdapter"
    with pytest.raises(LookupError):
        SPECS["InAppMessage"].adapter_class()


TOKENS = {
    "iOSPush": ("<" + "AB" * 32 + ">", "ab" * 32, "abc"),
    "AndroidPush": ("fcm-token:" + "x" * 30, "fcm-token:" + "x" * 30, "short"),
    "Email": ("Someone@Example.COM", "Someone@example.com", "someone"),
    "SMS": ("+82 10-1234-5678", "+821012345678", "01012345678"),
    "KakaoTalk": ("+82 (10) 1234 5678", "+821012345678", "+0123"),
    "InAppMessage": (" install-1 ", "install-1", "   "),
    "WebPush": (
        "https://fcm.googleapis.com/fcm/send/abc:def",
        "https://fcm.googleapis.com/fcm/send/abc:def",
        "https://evil.example/push",
    ),
}


@pytest.mark.parametrize("kind", SPECS)
def test_each_token_rule_normalizes_and_its_schema_agrees(kind):
    import re

    given, canonical, bad = TOKENS[kind]
    rule = SPECS[kind].token_rule
    assert rule(given) == canonical == channels.normalize_token(kind, given)
    with pytest.raises(ValidationError):
        rule(bad)
    schema = rule.schema()
    assert re.search(schema["pattern"], canonical)
    assert not re.search(schema["pattern"], bad)
