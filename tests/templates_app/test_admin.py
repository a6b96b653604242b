"""The template editor in the admin: saving adds versions, and the change page previews."""

from __future__ import annotations

import json

import pytest

from templates_app.models import MessageTemplate, TemplateVersion

from .conftest import template_create

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/templates_app/messagetemplate/add/"


def change_url(template_id) -> str:
    return f"/admin/templates_app/messagetemplate/{template_id}/change/"


def form_data(**overrides) -> dict:
    data = {
        "name": "welcome",
        "title_template": "Hi {{name}}",
        "body_template": "Welcome, {{ name }}",
        "data_template": json.dumps({"screen": "home"}),
        "translations": json.dumps({"en": {"title_template": "", "body_template": "b"}}),
        "default_language": "ko",
        # the read-only versions inline's management form
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_the_change_page_loads_with_a_preview_of_the_current_version(admin_client, app):
    version = template_create(app.application)

    response = admin_client.get(change_url(version.template_id))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="template-preview"' in html
    # Without sample variables entered, each variable shows as its own name.
    assert "안녕 [user_name]" in html
    assert "{{user_name}}" in html  # the editable text itself


def test_the_preview_renders_sample_variables_and_a_language(admin_client, app):
    version = template_create(app.application)

    response = admin_client.get(
        change_url(version.template_id),
        {"preview_variables": json.dumps({"user_name": "<Kim>"}), "preview_language": "en-US"},
    )

    preview = response.context["preview"]
    assert preview["error"] is None
    assert (preview["rendered"].title, preview["rendered"].language) == ("Hello <Kim>", "en")
    assert preview["rendered"].missing_variables == ["event_id", "event_name"]
    html = response.content.decode()
    assert "Hello &lt;Kim&gt;" in html  # escaped, server-rendered
    assert "event_id, event_name" in html


def test_the_preview_can_show_an_old_version(admin_client, app):
    version = template_create(app.application)
    admin_client.post(change_url(version.template_id), form_data(name="event-start"))

    response = admin_client.get(change_url(version.template_id), {"preview_version": "1"})

    assert response.context["preview"]["rendered"].version == 1
    assert response.context["preview"]["versions"] == [2, 1]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"preview_variables": "{not json"}, "not valid JSON"),
        ({"preview_variables": "[1]"}, "JSON object"),
        ({"preview_language": "not a tag!"}, "not a language tag"),
        ({"preview_version": "99"}, "No such version"),
        ({"preview_variables": '{"name": "\\ud800"}'}, "Unpaired surrogate"),
    ],
)
def test_bad_preview_input_is_reported_on_the_page(admin_client, app, query, error):
    version = template_create(app.application)

    response = admin_client.get(change_url(version.template_id), query)

    assert response.status_code == 200
    assert error in response.context["preview"]["error"]


def test_adding_in_the_admin_creates_version_1(admin_client, app):
    response = admin_client.post(ADD_URL, form_data(application=str(app.application.pk)))

    assert response.status_code == 302, response.context["adminform"].form.errors
    template = MessageTemplate.objects.get()
    assert (template.name, template.current.version, template.current.title_template) == (
        "welcome",
        1,
        "Hi {{name}}",
    )


def test_saving_in_the_admin_adds_a_version(admin_client, app):
    version = template_create(app.application)

    response = admin_client.post(
        change_url(version.template_id), form_data(name="renamed", title_template="New {{x}}")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    template = MessageTemplate.objects.get()
    assert (template.name, template.current.version, template.current.title_template) == (
        "renamed",
        2,
        "New {{x}}",
    )
    assert TemplateVersion.objects.filter(template=template).count() == 2


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"title_template": "Hi {{name"}, "title_template", "never closed"),
        ({"data_template": "[1]"}, "data_template", "JSON object"),
        ({"translations": json.dumps({"xx!": {}})}, "translations", "not a language tag"),
        ({"default_language": "!"}, "default_language", "BCP 47"),
        ({"name": "taken"}, "name", "already exists"),
        ({"data_template": '{"screen": "a\\u0000"}'}, "data_template", "Null characters"),
        ({"data_template": '{"screen": "\\ud800"}'}, "data_template", "Unpaired surrogate"),
        ({"translations": '{"en": {"body_template": "\\u0000"}}'}, "translations", "Null"),
        ({"title_template": "Hi\x00"}, "title_template", "Null characters"),
    ],
)
def test_the_admin_refuses_invalid_templates(admin_client, app, overrides, field, fragment):
    template_create(app.application, name="taken")

    response = admin_client.post(
        ADD_URL, form_data(application=str(app.application.pk), **overrides)
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(fragment in message for message in errors[field]), errors
    assert MessageTemplate.objects.count() == 1


def test_deleting_in_the_admin_keeps_the_versions(admin_client, app):
    version = template_create(app.application)

    response = admin_client.post(
        f"/admin/templates_app/messagetemplate/{version.template_id}/delete/", {"post": "yes"}
    )

    assert response.status_code == 302
    template = MessageTemplate.objects.get()
    assert template.deleted_at is not None
    assert TemplateVersion.objects.filter(pk=version.pk).exists()
    assert admin_client.get("/admin/templates_app/messagetemplate/").context["cl"].result_count == 0


def test_the_delete_action_marks_the_selected_templates(admin_client, app):
    versions = [template_create(app.application, name=f"t{n}") for n in range(2)]

    response = admin_client.post(
        "/admin/templates_app/messagetemplate/",
        {
            "action": "delete_selected",
            "_selected_action": [str(v.template_id) for v in versions],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert MessageTemplate.objects.filter(deleted_at__isnull=True).count() == 0
    assert TemplateVersion.objects.count() == 2


# --- Channel parts ------------------------------------------------------------------------------

PARTS = {"email": {"subject": "Hi {{name}}", "html": "<p>{{name}}</p>"}, "sms": {"text": "Hi"}}


def test_the_admin_writes_the_parts_and_a_save_without_one_removes_it(admin_client, app):
    response = admin_client.post(
        ADD_URL, form_data(application=str(app.application.pk), parts=json.dumps(PARTS))
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    template = MessageTemplate.objects.get()
    assert template.current.parts == PARTS
    page = admin_client.get(change_url(template.pk))
    assert page.context["adminform"].form.initial["parts"] == PARTS

    response = admin_client.post(
        change_url(template.pk), form_data(parts=json.dumps({"email": PARTS["email"]}))
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    template.refresh_from_db()
    assert (template.current.version, template.current.parts) == (2, {"email": PARTS["email"]})


def test_the_preview_renders_the_parts(admin_client, app):
    version = template_create(app.application, parts={"sms": {"text": "<{{user_name}}>"}})

    response = admin_client.get(
        change_url(version.template_id), {"preview_variables": json.dumps({"user_name": "Kim"})}
    )

    assert response.context["preview"]["rendered"].parts == {"sms": {"text": "<Kim>"}}
    assert "&lt;Kim&gt;" in response.content.decode().split('class="preview-parts"')[1]


@pytest.mark.parametrize(
    ("parts", "fragment"),
    [
        ({"email": {"subject": "Hi {{name"}}, "email.subject: "),
        ({"email": {"subject": "a\nb"}}, "one line"),
        ({"fax": {"text": "x"}}, "Unknown channel part"),
        ({"web_push": {"url": "not a url"}}, "absolute http(s) URL"),
        ([1], "channel parts are an object"),
        ({"sms": {"text": "\u0000"}}, "Null characters"),
    ],
)
def test_the_admin_refuses_bad_parts(admin_client, app, parts, fragment):
    response = admin_client.post(
        ADD_URL, form_data(application=str(app.application.pk), parts=json.dumps(parts))
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(fragment in message for message in errors["parts"]), errors
    assert not MessageTemplate.objects.exists()


# --- Versions ----------------------------------------------------------------------------------


def test_a_version_page_shows_its_content_and_the_diff_against_the_version_before(
    admin_client, app
):
    first = template_create(app.application, body_template="<b>Welcome</b> {{ name }}")
    response = admin_client.post(
        change_url(first.template_id),
        form_data(
            body_template="<b>Welcome back</b> {{ name }}",
            parts=json.dumps({"sms": {"text": "Hi {{ name }}"}}),
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    second = TemplateVersion.objects.get(template_id=first.template_id, version=2)

    page = admin_client.get(f"/admin/templates_app/templateversion/{second.pk}/change/")
    oldest = admin_client.get(f"/admin/templates_app/templateversion/{first.pk}/change/")
    template_page = admin_client.get(change_url(first.template_id)).content.decode()

    assert page.status_code == 200
    html = page.content.decode()
    assert "&lt;b&gt;Welcome back&lt;/b&gt;" in html.split('class="signal-json version-body"')[1]
    assert "&quot;text&quot;: &quot;Hi {{ name }}&quot;" in html  # its channel parts
    diff = html.split('id="version-diff"')[1].split("</table>")[0]
    assert 'class="diff"' in diff and "version 1" in diff and "version 2" in diff
    # The changed line, escaped (never markup), the addition marked.
    assert '&lt;b&gt;Welcome<span class="diff_add">&nbsp;back</span>&lt;/b&gt;' in diff
    assert "<b>" not in diff
    assert "The first version: nothing to compare with." in oldest.content.decode()
    assert f"/admin/templates_app/templateversion/{second.pk}/change/" in template_page
    assert admin_client.get("/admin/templates_app/templateversion/add/").status_code == 403
