"""The OpenAPI document: valid OpenAPI 3.1, and saying what the API does (envelopes, errors,
keys, strict bodies). Built in-process, no server."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from core.channels import PART_FIELDS, PART_NAMES, SPECS, normalize_token, part_check
from core.validation import InputInvalid

LISTS = {
    "subscriptions_list",
    "users_subscriptions_list",
    "messages_list",
    "templates_list",
    "campaigns_list",
    "campaigns_runs_list",
    "categories_list",
}
# What a client key may call (API.md); everything else is 403 for it (a user's preferences
# too, unless the application has identity verification on).
CLIENT_KEY_OPERATIONS = {
    "subscriptions_create",
    "subscriptions_retrieve",
    "subscriptions_update",
    "users_identify",
    "users_logout",
    "messages_status_update",
    "applications_current",
    "inbox_list",
    "inbox_count",
    "inbox_item_read",
    "inbox_item_unread",
    "inbox_item_archive",
    "inbox_read_all",
}
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture(scope="module")
def operations(schema) -> dict[str, dict]:
    return {
        operation["operationId"]: operation
        for item in schema["paths"].values()
        for operation in item.values()
    }


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def json_schema(response_or_body: dict) -> dict:
    return response_or_body["content"]["application/json"]["schema"]


def test_the_document_is_valid_openapi_3_1(schema):
    validate_schema(schema)  # raises on any violation of the OpenAPI 3.1 meta-schema
    assert schema["openapi"] == "3.1.0"


def test_every_list_is_the_paginated_envelope_with_cursor_and_limit(schema, operations):
    for operation_id in LISTS:
        operation = operations[operation_id]
        envelope = resolve(schema, json_schema(operation["responses"]["200"]))
        assert envelope["required"] == ["results", "next"], operation_id
        assert envelope["properties"]["results"]["type"] == "array"
        assert envelope["properties"]["next"]["type"] == ["string", "null"]
        parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert parameters["cursor"]["type"] == "string", operation_id
        assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}


def test_the_error_component_is_the_contract_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    body = error["properties"]["error"]
    assert body["required"] == ["code", "message", "details"]
    assert body["properties"]["code"]["type"] == "string"
    assert body["properties"]["details"]["type"] == "object"


def test_every_error_response_is_the_error_component(operations):
    for operation_id, operation in operations.items():
        errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
        assert {"401", "429", "503"} <= set(errors), operation_id
        for code, response in errors.items():
            assert json_schema(response) == {"$ref": ERROR_REF}, (operation_id, code)
        for code in ("429", "503"):
            assert errors[code]["headers"]["Retry-After"]["required"] is True


def test_403_is_documented_exactly_where_client_keys_are_refused(operations):
    refused = {operation_id for operation_id, op in operations.items() if "403" in op["responses"]}
    assert refused == set(operations) - CLIENT_KEY_OPERATIONS


def test_operations_with_input_document_400_and_bodies_413(operations):
    for operation_id, operation in operations.items():
        has_query = any(p["in"] == "query" for p in operation.get("parameters", []))
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(operation["responses"]), operation_id
        elif has_query:
            assert "400" in operation["responses"], operation_id


def test_every_operation_needs_the_x_api_key(schema, operations):
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["ApiKeyAuth"]["description"],
    }
    for operation_id, operation in operations.items():
        assert operation["security"] == [{"ApiKeyAuth": []}], operation_id


IDEMPOTENT = ("messages_create", "campaigns_create", "messages_retry")


def test_idempotent_posts_take_the_header_and_document_422(operations):
    for operation_id in IDEMPOTENT:
        operation = operations[operation_id]
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in headers] == ["Idempotency-Key"]
        assert "422" in operation["responses"]
    assert not any(
        "422" in op["responses"]
        for operation_id, op in operations.items()
        if operation_id not in IDEMPOTENT
    )


def test_request_bodies_refuse_unknown_fields(schema, operations):
    for operation_id, operation in operations.items():
        if "requestBody" not in operation:
            continue
        body = resolve(schema, json_schema(operation["requestBody"]))
        variants = [resolve(schema, v) for v in body.get("oneOf", [body])]
        for variant in variants:
            assert variant["additionalProperties"] is False, operation_id


def test_bodies_that_refuse_an_empty_object_are_required(operations):
    for operation_id in ("messages_create", "subscriptions_create", "campaigns_create"):
        assert operations[operation_id]["requestBody"]["required"] is True


def test_post_messages_says_which_fields_it_needs_together(schema, operations):
    body = resolve(schema, json_schema(operations["messages_create"]["requestBody"]))
    targets, content, fallback_target, fallback_channels = body["allOf"]
    assert [form["required"] for form in targets["oneOf"]] == [
        ["subscription_id"],
        ["subscription_ids"],
        ["external_user_id"],
    ]
    assert len(content["oneOf"]) == 2
    assert {"required": ["external_user_id"]} in fallback_target["anyOf"]
    assert fallback_channels == {"not": {"required": ["fallback", "channels"]}}


def test_subscription_tokens_have_a_pattern_per_type(schema, operations):
    body = resolve(schema, json_schema(operations["subscriptions_create"]["requestBody"]))
    assert body["discriminator"]["propertyName"] == "type"
    samples = {kind: spec.token_rule.example for kind, spec in SPECS.items()}
    assert set(body["discriminator"]["mapping"]) == set(samples)
    for kind, ref in body["discriminator"]["mapping"].items():
        variant = resolve(schema, {"$ref": ref})
        assert resolve(schema, variant["properties"]["type"])["enum"] == [kind]
        pattern = variant["properties"]["token"]["pattern"]
        # What the pattern admits, the server takes.
        assert re.search(pattern, samples[kind]), kind
        assert normalize_token(kind, samples[kind])
    ios = resolve(schema, {"$ref": body["discriminator"]["mapping"]["iOSPush"]})
    assert not re.search(ios["properties"]["token"]["pattern"], "abc")  # odd, short


def test_ids_and_timestamps_have_formats(schema):
    message = schema["components"]["schemas"]["MessageDetailOutput"]["properties"]
    assert message["id"]["format"] == "uuid"
    assert message["created_at"]["format"] == "date-time"


def test_links_lead_from_created_objects_to_their_operations(operations):
    links = operations["subscriptions_create"]["responses"]["201"]["links"]
    assert links["GetSubscription"] == {
        "operationId": "subscriptions_retrieve",
        "description": "The subscription",
        "parameters": {"subscription_id": "$response.body#/id"},
    }
    assert {link["operationId"] for link in links.values()} <= set(operations)
    for operation_id in ("templates_create", "campaigns_create"):
        targets = {
            link["operationId"]
            for link in operations[operation_id]["responses"]["201"]["links"].values()
        }
        assert targets <= set(operations) and targets


# --- Channel parts -------------------------------------------------------------------------------


def _parts_of(schema: dict, node: dict) -> dict[str, dict]:
    properties = resolve(schema, node)["properties"]
    return {name: properties[name] for name in PART_NAMES}


@pytest.mark.parametrize(
    "operation_id",
    ["messages_create", "templates_create", "templates_update", "campaigns_create",
     "campaigns_update"],
)  # fmt: skip
def test_bodies_that_take_content_take_each_part_with_its_fields(schema, operations, operation_id):
    body = json_schema(operations[operation_id]["requestBody"])

    for name, part in _parts_of(schema, body).items():
        assert part["type"] == "object", (operation_id, name)
        assert part["additionalProperties"] is False
        assert set(part["properties"]) == set(PART_FIELDS[name]), (operation_id, name)


def test_outputs_show_the_parts_as_optional_keys(schema, operations):
    for operation_id in ("messages_retrieve", "templates_retrieve", "campaigns_retrieve"):
        output = resolve(schema, json_schema(operations[operation_id]["responses"]["200"]))
        assert set(PART_NAMES) <= set(output["properties"]), operation_id
        assert not set(PART_NAMES) & set(output.get("required", [])), operation_id
    rendered = resolve(schema, json_schema(operations["templates_render"]["responses"]["200"]))
    assert set(rendered["properties"]["parts"]["properties"]) == set(PART_NAMES)
    preview = resolve(schema, json_schema(operations["campaigns_preview"]["responses"]["200"]))
    item = resolve(schema, preview["properties"]["sample"]["items"])
    assert {"parts", "channel_content"} <= set(item["required"])
    # One form per channel, channels whose content looks alike sharing one (iOS and Android).
    named = [
        form["description"].partition(":")[0].split(", ")
        for form in item["properties"]["channel_content"]["oneOf"]
    ]
    assert sorted(kind for kinds in named for kind in kinds) == sorted(SPECS)


def test_a_literal_url_pattern_admits_what_the_server_takes(schema, operations):
    body = json_schema(operations["messages_create"]["requestBody"])
    pattern = _parts_of(schema, body)["web_push"]["properties"]["url"]["pattern"]
    for url in ("https://example.com/sale", "HTTP://example.com", "https://e.example/a%20b?q=1#t"):
        assert re.search(pattern, url), url
        assert part_check("web_push", {"url": url})
    for url in (
        "ftp://example.com", "https:///path", "https://a b", "example.com", "https://?x",
        "https://e.example/{{id}}", "https://\u00e9.example/", "https://e.example/%zz",
    ):  # fmt: skip
        assert not re.search(pattern, url), url
        with pytest.raises(InputInvalid):
            part_check("web_push", {"url": url})
    template_body = json_schema(operations["templates_create"]["requestBody"])
    assert "pattern" not in _parts_of(schema, template_body)["web_push"]["properties"]["url"]


# --- Preferences and categories -----------------------------------------------------------------


def test_preferences_document_who_may_call_them(operations):
    for operation_id in ("users_preferences_retrieve", "users_preferences_update"):
        responses = operations[operation_id]["responses"]
        assert {"400", "401", "403"} <= set(responses), operation_id
        assert "identity verification" in responses["403"]["description"]
        assert "X-User-Hash" in responses["401"]["description"]
    assert "404" in operations["users_preferences_retrieve"]["responses"]


def test_the_preferences_body_names_the_channels_and_zones_the_server_takes(schema, operations):
    body = resolve(schema, json_schema(operations["users_preferences_update"]["requestBody"]))
    assert body["additionalProperties"] is False
    properties = body["properties"]
    assert properties["channels"]["propertyNames"]["enum"] == list(SPECS)
    entry = properties["categories"]["additionalProperties"]
    assert set(entry["properties"]) == {"enabled", "channels"}
    assert entry["additionalProperties"] is False
    quiet = properties["quiet_hours"]
    assert set(quiet["properties"]) == {"start", "end", "timezone"}
    assert "Asia/Seoul" in quiet["properties"]["timezone"]["enum"]
    clock = quiet["properties"]["start"]["pattern"]
    for text in ("00:00", "09:30", "23:59"):
        assert re.search(clock, text), text
    for text in ("24:00", "9:30", "09:60", "09:30 ", "0930"):
        assert not re.search(clock, text), text


def test_a_category_key_has_one_pattern_wherever_it_is_taken(schema, operations):
    from accounts.categories import category_key_valid

    keys = []
    for operation_id in ("categories_create", "messages_create", "templates_create"):
        body = resolve(schema, json_schema(operations[operation_id]["requestBody"]))
        keys.append(
            body["properties"]["key" if operation_id == "categories_create" else "category"]
        )
    patterns = {key["pattern"] for key in keys}
    assert len(patterns) == 1 and {key["maxLength"] for key in keys} == {64}
    [pattern] = patterns
    for key in ("offers", "a", "news-2", "x_y", "0day"):
        assert re.search(pattern, key) and category_key_valid(key), key
    for key in ("Offers", "-a", "_a", "a b", "a.b", "ü", ""):
        assert not re.search(pattern, key) and not category_key_valid(key), key
    # ECMA's `$` is the end of the text; Python's would also match before a final newline.
    assert not category_key_valid("offers\n")
