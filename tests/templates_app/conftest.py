"""Template data made through the real services."""

from __future__ import annotations

import pytest

from templates_app import services
from templates_app.models import TemplateVersion
from templates_app.rendering import compiled_cache


def template_payload(**overrides) -> dict:
    """A valid POST /templates body; `overrides` replace or (with value ...) drop fields."""
    body = {
        "name": "event-start",
        "title_template": "안녕 {{user_name}}",
        "body_template": "{{event_name}} starts on {{ start_date }}",
        "data_template": {"action": "open_screen", "event_id": "{{event_id}}"},
        "translations": {
            "en": {"title_template": "Hello {{user_name}}", "body_template": "{{event_name}}!"}
        },
        "default_language": "ko",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def template_create(application, **overrides) -> TemplateVersion:
    return services.template_create(application=application, **template_payload(**overrides))


@pytest.fixture(autouse=True)
def _empty_compiled_cache():
    compiled_cache.clear()
    yield
    compiled_cache.clear()
