"""POST/GET /templates, GET/PUT/DELETE /templates/{id} (with versions) and
POST /templates/{id}/render."""

from __future__ import annotations

import uuid

import pytest

from templates_app import selectors
from templates_app.models import MessageTemplate, TemplateVersion
from tests.assertions import assert_error

from .conftest import template_create, template_payload

URL = "/api/v1/templates"

pytestmark = pytest.mark.django_db


def detail_url(template_id, suffix: str = "") -> str:
    return f"{URL}/{template_id}{suffix}"


def counts() -> tuple[int, int]:
    return MessageTemplate.objects.count(), TemplateVersion.objects.count()


# --- Create, read, list ------------------------------------------------------------------------


def test_create_returns_201_with_version_1(server_api, app):
    response = server_api.post(URL, template_payload(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    template = MessageTemplate.objects.get()
    assert template.application == app.application
    assert body["id"] == str(template.pk)
    assert body["name"] == "event-start"
    assert (body["version"], body["latest_version"]) == (1, 1)
    assert body["title_template"] == "안녕 {{user_name}}"
    assert body["data_template"] == {"action": "open_screen", "event_id": "{{event_id}}"}
    assert body["translations"]["en"]["title_template"] == "Hello {{user_name}}"
    assert body["default_language"] == "ko"
    assert body["variables"] == ["event_id", "event_name", "start_date", "user_name"]
    assert body["created_at"] and body["version_created_at"]


def test_optional_fields_default_and_language_tags_are_normalized(server_api):
    response = server_api.post(
        URL,
        template_payload(
            data_template=...,
            translations={"EN_us": {"title_template": "", "body_template": "b"}},
            default_language="KO",
            title_template="",
        ),
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["data_template"] == {}
    assert body["default_language"] == "ko"
    assert list(body["translations"]) == ["en-US"]


def test_get_returns_the_template(server_api, app):
    template_id = template_create(app.application).template_id

    response = server_api.get(detail_url(template_id))

    assert response.status_code == 200
    assert response.json()["id"] == str(template_id)
    assert response.json()["version"] == 1


def test_list_is_paginated_newest_first_without_deleted_ones(server_api, app, other_app):
    first = template_create(app.application, name="a").template_id
    second = template_create(app.application, name="b").template_id
    deleted = template_create(app.application, name="c").template
    template_create(other_app.application, name="theirs")
    server_api.delete(detail_url(deleted.pk))

    page = server_api.get(URL, {"limit": 1}).json()
    rest = server_api.get(page["next"]).json()

    assert set(page) == {"results", "next"}
    assert [t["id"] for t in page["results"] + rest["results"]] == [str(second), str(first)]
    assert rest["next"] is None


def test_list_shows_each_template_in_its_newest_version(
    server_api, app, django_assert_max_num_queries
):
    template_id = template_create(app.application).template_id
    server_api.put(detail_url(template_id), template_payload(name="renamed"), format="json")
    for n in range(5):
        template_create(app.application, name=f"more-{n}")

    with django_assert_max_num_queries(6):  # auth, key touch, one page query
        response = server_api.get(URL)

    newest = {t["id"]: t for t in response.json()["results"]}[str(template_id)]
    assert (newest["name"], newest["version"], newest["latest_version"]) == ("renamed", 2, 2)


def test_list_rejects_unknown_query_parameters(server_api):
    assert_error(server_api.get(URL, {"colour": "red"}), 400, "validation_error")


# --- Versions ----------------------------------------------------------------------------------


def test_put_adds_a_version_and_keeps_the_old_one_readable(server_api, app):
    template_id = template_create(app.application).template_id

    response = server_api.put(
        detail_url(template_id),
        template_payload(name="renamed", title_template="New {{user_name}}"),
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["version"], response.json()["name"]) == (2, "renamed")
    assert TemplateVersion.objects.filter(template_id=template_id).count() == 2
    newest = server_api.get(detail_url(template_id)).json()
    old = server_api.get(detail_url(template_id), {"version": 1}).json()
    assert (newest["version"], newest["title_template"]) == (2, "New {{user_name}}")
    assert (old["version"], old["title_template"], old["name"]) == (
        1,
        "안녕 {{user_name}}",
        "event-start",
    )
    assert old["latest_version"] == 2


def test_each_put_raises_the_version_by_one(server_api, app):
    template_id = template_create(app.application).template_id

    versions = [
        server_api.put(detail_url(template_id), template_payload(), format="json").json()["version"]
        for _ in range(3)
    ]

    assert versions == [2, 3, 4]


def test_put_takes_any_subset_and_keeps_the_rest_in_a_new_version(server_api, app):
    first = template_create(app.application)

    response = server_api.put(
        detail_url(first.template_id), {"title_template": "Hi {{user_name}}"}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == 2 and body["title_template"] == "Hi {{user_name}}"
    for field in ("name", "body_template", "data_template", "translations", "default_language"):
        assert body[field] == getattr(first, field), field
    old = server_api.get(detail_url(first.template_id), {"version": 1}).json()
    assert old["title_template"] == first.title_template


@pytest.mark.parametrize(
    "change",
    [
        {"name": "renamed"},
        {"body_template": "New {{x}}"},
        {"data_template": {}},
        {"translations": {}},
        {"default_language": "en", "translations": {}},
        {},
    ],
)
def test_each_field_changes_alone(server_api, app, change):
    first = template_create(app.application)

    body = server_api.put(detail_url(first.template_id), change, format="json").json()

    assert body["version"] == 2
    for field in ("name", "title_template", "body_template", "data_template", "translations",
                  "default_language"):  # fmt: skip
        assert body[field] == change.get(field, getattr(first, field)), field


def test_post_without_a_default_language_is_in_english(server_api):
    response = server_api.post(
        URL, template_payload(default_language=..., translations=...), format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["default_language"] == "en"


def test_post_needs_only_a_name_and_a_title_or_a_body(server_api):
    for body in ({"name": "t1", "title_template": "Only a title"},
                 {"name": "t2", "body_template": "Only a body"}):  # fmt: skip
        response = server_api.post(URL, body, format="json")
        assert response.status_code == 201, response.json()

    details = assert_error(server_api.post(URL, {"name": "t3"}, format="json"), 400,
                           "validation_error")  # fmt: skip
    assert set(details) == {"title_template", "body_template"}


def test_an_unknown_version_is_404(server_api, app):
    template_id = template_create(app.application).template_id

    assert_error(server_api.get(detail_url(template_id), {"version": 2}), 404, "not_found")
    assert_error(server_api.get(detail_url(template_id), {"version": 0}), 400, "validation_error")
    assert_error(server_api.get(detail_url(template_id), {"version": "x"}), 400, "validation_error")


def test_delete_returns_204_and_hides_the_template_but_keeps_its_versions(server_api, app):
    version = template_create(app.application)

    response = server_api.delete(detail_url(version.template_id))

    assert response.status_code == 204
    assert_error(server_api.get(detail_url(version.template_id)), 404, "not_found")
    assert_error(server_api.delete(detail_url(version.template_id)), 404, "not_found")
    # Records that used a version still read it.
    kept = selectors.template_get(
        application=app.application,
        template_id=version.template_id,
        version=1,
        include_deleted=True,
    )
    assert kept.pk == version.pk
    # The name is free again.
    assert server_api.post(URL, template_payload(), format="json").status_code == 201


# --- Render ------------------------------------------------------------------------------------


def test_render_returns_the_contents_with_language_and_version(server_api, app):
    template_id = template_create(app.application).template_id

    response = server_api.post(
        detail_url(template_id, "/render"),
        {"variables": {"user_name": "Kim", "event_name": "Sale", "event_id": 7}, "language": "en"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "title": "Hello Kim",
        "body": "Sale!",
        "data": {"action": "open_screen", "event_id": "7"},
        "parts": {},
        "missing_variables": [],
        "language": "en",
        "version": 1,
    }


def test_render_falls_back_to_the_default_and_lists_missing_variables(server_api, app):
    template_id = template_create(app.application).template_id

    body = server_api.post(
        detail_url(template_id, "/render"), {"language": "ja"}, format="json"
    ).json()

    assert body["language"] == "ko"
    assert (body["title"], body["body"]) == ("안녕 ", " starts on ")
    assert body["missing_variables"] == ["event_id", "event_name", "start_date", "user_name"]


def test_render_uses_the_base_language(server_api, app):
    template_id = template_create(app.application).template_id

    body = server_api.post(
        detail_url(template_id, "/render"),
        {"variables": {"user_name": "Kim"}, "language": "en-US"},
        format="json",
    ).json()

    assert (body["language"], body["title"]) == ("en", "Hello Kim")


def test_render_after_put_uses_the_new_text_and_old_versions_can_be_rendered(server_api, app):
    template_id = template_create(app.application).template_id
    url = detail_url(template_id, "/render")
    variables = {"variables": {"user_name": "Kim"}}
    assert server_api.post(url, variables, format="json").json()["title"] == "안녕 Kim"

    server_api.put(
        detail_url(template_id),
        template_payload(title_template="바뀐 {{user_name}}"),
        format="json",
    )

    newest = server_api.post(url, variables, format="json").json()
    old = server_api.post(url, {**variables, "version": 1}, format="json").json()
    assert (newest["title"], newest["version"]) == ("바뀐 Kim", 2)
    assert (old["title"], old["version"]) == ("안녕 Kim", 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"variables": []}, "variables"),
        ({"language": "not a tag!"}, "language"),
        ({"version": 0}, "version"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_render_rejects_bad_input(server_api, app, body, field):
    template_id = template_create(app.application).template_id

    details = assert_error(
        server_api.post(detail_url(template_id, "/render"), body, format="json"),
        400,
        "validation_error",
    )

    assert field in details


def test_render_of_an_unknown_version_is_404(server_api, app):
    template_id = template_create(app.application).template_id

    response = server_api.post(detail_url(template_id, "/render"), {"version": 9}, format="json")

    assert_error(response, 404, "not_found")


# --- Access ------------------------------------------------------------------------------------


def _every_endpoint(template_id):
    return [
        ("get", detail_url(template_id), None),
        ("get", detail_url(template_id) + "?version=1", None),
        ("put", detail_url(template_id), template_payload(name="stolen")),
        ("delete", detail_url(template_id), None),
        ("post", detail_url(template_id, "/render"), {"variables": {}}),
    ]


def test_another_applications_template_is_404_on_every_endpoint(other_server_api, app):
    version = template_create(app.application)

    for method, url, body in _every_endpoint(version.template_id):
        response = getattr(other_server_api, method)(url, body, format="json")
        assert_error(response, 404, "not_found")
        assert "event-start" not in response.content.decode()
    assert str(version.template_id) not in other_server_api.get(URL).content.decode()
    template = MessageTemplate.objects.get()
    assert (template.name, template.deleted_at, template.current_id) == (
        "event-start",
        None,
        version.pk,
    )


def test_an_unknown_template_is_404(server_api):
    for method, url, body in _every_endpoint(uuid.uuid4()):
        assert_error(getattr(server_api, method)(url, body, format="json"), 404, "not_found")


def test_a_client_key_gets_403_on_every_endpoint(client_api, app):
    template_id = template_create(app.application).template_id

    for method, url, body in [
        ("post", URL, template_payload(name="other")),
        ("get", URL, None),
        *_every_endpoint(template_id),
    ]:
        response = getattr(client_api, method)(url, body, format="json")
        assert_error(response, 403, "permission_denied")
    assert counts() == (1, 1)


def test_no_key_is_401(anonymous_api):
    assert_error(anonymous_api.get(URL), 401, "authentication_failed")


# --- Bad input ---------------------------------------------------------------------------------

BAD_INPUT = [
    ({"title_template": "Hello {{name"}, ["title_template"], "never closed"),
    ({"body_template": "{{ }}"}, ["body_template"], "Empty variable"),
    ({"body_template": "stray }} here"}, ["body_template"], "Stray"),
    ({"title_template": "{{ 1abc }}"}, ["title_template"], "not a variable name"),
    ({"title_template": "{{ first name }}"}, ["title_template"], "not a variable name"),
    ({"data_template": ["{{a}}"]}, ["data_template"], "must be a JSON object"),
    ({"data_template": "text"}, ["data_template"], "must be a JSON object"),
    ({"data_template": {"a": [{"b": "{{x"}]}}, ["data_template"], "at a[0].b:"),
    ({"translations": ["en"]}, ["translations"], "object"),
    (
        {"translations": {"english!": {"body_template": "b"}}},
        ["translations", "english!"],
        "not a language tag",
    ),
    (
        {"translations": {"en": {"title_template": "t", "body_template": "b", "subject": "s"}}},
        ["translations", "en", "subject"],
        "Unknown field",
    ),
    (
        {"translations": {"en": {"data_template": {}}}},
        ["translations", "en", "body_template"],
        "a title_template or a body_template",
    ),
    (
        {"translations": {"en": {"title_template": "{{x", "body_template": "b"}}},
        ["translations", "en", "title_template"],
        "never closed",
    ),
    (
        {"translations": {"en": {"title_template": "", "body_template": "b", "data_template": 3}}},
        ["translations", "en", "data_template"],
        "JSON object",
    ),
    ({"translations": {"en": "Hello"}}, ["translations", "en"], "object"),
    (
        {"translations": {"ko": {"title_template": "", "body_template": "b"}}},
        ["translations", "ko"],
        "default language",
    ),
    (
        {
            "translations": {
                "en-us": {"title_template": "", "body_template": "b"},
                "en-US": {"title_template": "", "body_template": "b"},
            }
        },
        ["translations", "en-US"],
        "more than once",
    ),
    ({"default_language": "korean!"}, ["default_language"], "BCP 47"),
    ({"default_language": ""}, ["default_language"], ""),
    ({"name": ""}, ["name"], ""),
    ({"title_template": "", "body_template": ""}, ["body_template"], "a title_template or"),
    ({"title_template": None}, ["title_template"], "null"),
    ({"colour": "red"}, ["colour"], "Unknown field"),
]


def _messages_at(details: dict, path: list[str]) -> list[str]:
    node = details
    for key in path:
        assert isinstance(node, dict) and key in node, (path, details)
        node = node[key]
    assert isinstance(node, list) and node, (path, details)
    return node


# PUT takes any subset of the fields; POST needs a name.
POST_ONLY_BAD_INPUT = [
    ({"name": ...}, ["name"], "required"),
    ({"title_template": ..., "body_template": " "}, ["title_template"], "a title_template or"),
]


@pytest.mark.parametrize(("overrides", "path", "fragment"), BAD_INPUT + POST_ONLY_BAD_INPUT)
def test_bad_input_to_post_is_400_with_details_and_creates_nothing(
    server_api, overrides, path, fragment
):
    response = server_api.post(URL, template_payload(**overrides), format="json")

    details = assert_error(response, 400, "validation_error")
    assert any(fragment in message for message in _messages_at(details, path)), details
    assert counts() == (0, 0)


@pytest.mark.parametrize(("overrides", "path", "fragment"), BAD_INPUT)
def test_bad_input_to_put_is_400_with_details_and_changes_nothing(
    server_api, app, overrides, path, fragment
):
    version = template_create(app.application)

    response = server_api.put(
        detail_url(version.template_id), template_payload(**overrides), format="json"
    )

    details = assert_error(response, 400, "validation_error")
    assert any(fragment in message for message in _messages_at(details, path)), details
    assert counts() == (1, 1)
    assert MessageTemplate.objects.get().current_id == version.pk


def test_every_problem_is_reported_at_once(server_api):
    response = server_api.post(
        URL,
        template_payload(title_template="{{", body_template="}}", default_language="!"),
        format="json",
    )

    details = assert_error(response, 400, "validation_error")
    assert {"title_template", "body_template", "default_language"} <= set(details)


def test_a_duplicate_name_is_400_on_name_and_creates_nothing(server_api, app, other_app):
    template_create(app.application)
    template_create(other_app.application)  # names are per application

    details = assert_error(
        server_api.post(URL, template_payload(), format="json"), 400, "validation_error"
    )

    assert details == {"name": ["A template with this name already exists."]}
    assert counts() == (2, 2)


def test_renaming_to_a_taken_name_is_400_and_keeping_ones_own_name_is_fine(server_api, app):
    template_create(app.application, name="taken")
    mine = template_create(app.application, name="mine").template_id

    renamed = server_api.put(detail_url(mine), template_payload(name="taken"), format="json")
    kept = server_api.put(detail_url(mine), template_payload(name="mine"), format="json")

    assert assert_error(renamed, 400, "validation_error") == {
        "name": ["A template with this name already exists."]
    }
    assert kept.status_code == 200


def test_the_schema_documents_the_template_endpoints(server_api):
    schema = server_api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").content.decode()

    for operation in ("templates_create", "templates_list", "templates_update", "templates_render"):
        assert operation in schema
