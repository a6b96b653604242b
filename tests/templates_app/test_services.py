"""The Python API that messages and campaigns use: template_get, the write services, render."""

from __future__ import annotations

import uuid

import pytest

from core.exceptions import NotFound
from templates_app import selectors, services
from templates_app.models import TemplateVersion
from templates_app.rendering import render

from .conftest import template_create, template_payload

pytestmark = pytest.mark.django_db


def test_template_get_returns_the_newest_version_in_one_query(app, django_assert_num_queries):
    first = template_create(app.application)
    services.template_update(template=first.template, **template_payload(title_template="v2"))

    with django_assert_num_queries(1):
        newest = selectors.template_get(application=app.application, template_id=first.template_id)
        assert (newest.version, newest.template.name, newest.template.current.version) == (
            2,
            "event-start",
            2,
        )


def test_template_get_reads_old_versions_and_refuses_unknown_ones(app):
    first = template_create(app.application)
    services.template_update(template=first.template, **template_payload())

    old = selectors.template_get(
        application=app.application, template_id=first.template_id, version=1
    )

    assert old.pk == first.pk
    with pytest.raises(NotFound, match="no version 3"):
        selectors.template_get(
            application=app.application, template_id=first.template_id, version=3
        )


@pytest.mark.parametrize("template_id", [uuid.uuid4(), "not-a-uuid", None])
def test_template_get_of_an_unknown_id_is_not_found(app, template_id):
    with pytest.raises(NotFound):
        selectors.template_get(application=app.application, template_id=template_id)


def test_template_get_never_returns_another_applications_template(app, other_app):
    theirs = template_create(other_app.application)

    with pytest.raises(NotFound):
        selectors.template_get(application=app.application, template_id=theirs.template_id)
    with pytest.raises(NotFound):
        selectors.template_get(
            application=app.application, template_id=theirs.template_id, version=1
        )


def test_deleted_templates_are_found_only_for_records(app):
    version = template_create(app.application)
    services.template_delete(template=version.template)

    with pytest.raises(NotFound):
        selectors.template_get(application=app.application, template_id=version.template_id)
    kept = selectors.template_get(
        application=app.application, template_id=version.template_id, include_deleted=True
    )
    assert kept.pk == version.pk


def test_updates_from_a_stale_object_still_number_versions_in_order(app):
    template = template_create(app.application).template
    stale = TemplateVersion.objects.get(pk=template.current_id).template

    services.template_update(template=template, **template_payload(body_template="two"))
    third = services.template_update(template=stale, **template_payload(body_template="three"))

    assert third.version == 3
    assert sorted(TemplateVersion.objects.values_list("version", flat=True)) == [1, 2, 3]


def test_the_services_refuse_invalid_content_without_writing(app):
    with pytest.raises(services.TemplateInvalid) as caught:
        services.template_create(
            application=app.application, **template_payload(body_template="{{ oops")
        )

    assert caught.value.code == "validation_error"
    assert "body_template" in caught.value.details
    assert TemplateVersion.objects.count() == 0


def test_render_of_a_fetched_version_records_its_number(app):
    version = template_create(app.application)
    services.template_update(
        template=version.template, **template_payload(title_template="v2 {{user_name}}")
    )

    newest = selectors.template_get(application=app.application, template_id=version.template_id)
    rendered = render(newest, {"user_name": "Kim"}, "ko-KR")

    assert (rendered.title, rendered.language, rendered.version) == ("v2 Kim", "ko", 2)
