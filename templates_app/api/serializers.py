"""Input and output serializers of the template endpoints.

Types are checked here; the template rules (syntax, language tags, translations) are checked
by the services, so that the admin and the API enforce the same ones.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.categories import CategoryKeyField
from core import api as api_kit
from core.api import (
    ChannelPartsField,
    JSONValueField,
    StrictQuerySerializer,
    StrictSerializer,
    channel_parts,
    parts_of,
)
from core.channels import PART_NAMES
from core.languages import LANGUAGE_TAG
from core.openapi import BLANK, NON_BLANK, RequestRules, WithChannelParts, part_schema
from core.validation import MAX_JSON_BYTES

from ..models import TemplateVersion
from ..rendering import MAX_LANGUAGE_LENGTH, compiled, normalize_language
from ..services import MAX_DATA_TEMPLATE_BYTES, MAX_TEXT_LENGTH, TRANSLATIONS_DEPTH

_JSON_OBJECT = {"type": "object", "additionalProperties": True}
# A title or a body with some text: what services.template_content_clean insists on.
_SOME_TEXT = {
    "anyOf": [
        {"required": [name], "properties": {name: {"pattern": NON_BLANK}}}
        for name in ("title_template", "body_template")
    ]
}
_TRANSLATIONS = {
    "type": "object",
    "description": "Language tag (not the default language) -> texts in that language.",
    "propertyNames": {"pattern": f"^{LANGUAGE_TAG}$", "maxLength": 35},
    "maxProperties": 200,
    "additionalProperties": {
        "type": "object",
        "description": "A title_template or a body_template (or both); a channel part "
        "overrides the default language's field by field.",
        "properties": {
            "title_template": {"type": "string", "maxLength": 10_000},
            "body_template": {"type": "string", "maxLength": 10_000},
            "data_template": _JSON_OBJECT,
            **{name: part_schema(name, templated=True) for name in PART_NAMES},
        },
        "additionalProperties": False,
        **_SOME_TEXT,
    },
}


@extend_schema_field(_JSON_OBJECT)
class JSONObjectField(JSONValueField):
    """Any JSON PostgreSQL can store; the service insists on an object and says where it is
    wrong."""

    def __init__(self, **kwargs):
        super().__init__(max_bytes=MAX_DATA_TEMPLATE_BYTES, **kwargs)


@extend_schema_field(_TRANSLATIONS)
class TranslationsField(JSONValueField):
    def __init__(self, **kwargs):
        super().__init__(max_depth=TRANSLATIONS_DEPTH, **kwargs)


class LanguageTagField(serializers.CharField):
    """A BCP 47 language tag such as `ko` or `en-US` (checked where it is used)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_LANGUAGE_LENGTH)
        super().__init__(**kwargs)


class LanguageTagFieldSchema(OpenApiSerializerFieldExtension):
    target_class = LanguageTagField

    def map_serializer_field(self, auto_schema, direction):
        # drf-spectacular adds the field's nullable, blank and length after this.
        return {"type": "string", "pattern": f"^{LANGUAGE_TAG}$"}


def _text_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=MAX_TEXT_LENGTH, trim_whitespace=False, **kwargs)


class TemplateParts(channel_parts(templated=True)):
    """The channel parts of a template, each string in them a template."""


_CATEGORY_HELP = (
    "The key of one of the application's categories: messages sent with the template are in "
    "it unless they name their own (an unknown key is 400 validation_error on `category`). It "
    "belongs to the template, not to a version."
)


class TemplateInput(StrictSerializer, TemplateParts):
    """POST: `name` and a title or a body template (or both); `default_language` is `en`
    unless given; channel parts optional."""

    name = serializers.CharField(max_length=200)
    title_template = _text_field(allow_blank=True, required=False, default="")
    body_template = _text_field(allow_blank=True, required=False, default="")
    data_template = JSONObjectField(required=False, default=dict)
    translations = TranslationsField(required=False, default=dict)
    default_language = LanguageTagField(required=False, default="en")
    category = CategoryKeyField(
        required=False, allow_null=True, help_text=_CATEGORY_HELP + " null: none."
    )

    def validate(self, attrs):
        attrs["parts"] = parts_of(attrs)
        return attrs


class TemplateUpdate(StrictSerializer, TemplateParts):
    """PUT: any subset of the fields; the others keep their current values. A channel part
    given replaces the stored one (`{}` removes it); the parts not given stay."""

    name = serializers.CharField(max_length=200, required=False)
    title_template = _text_field(allow_blank=True, required=False)
    body_template = _text_field(allow_blank=True, required=False)
    data_template = JSONObjectField(required=False)
    translations = TranslationsField(required=False)
    default_language = LanguageTagField(required=False)
    category = CategoryKeyField(
        required=False, allow_null=True, help_text=_CATEGORY_HELP + " null removes it."
    )

    def validate(self, attrs):
        if parts := parts_of(attrs):
            attrs["parts"] = parts
        return attrs


class TemplateInputRules(RequestRules):
    target_class = TemplateInput
    rules = _SOME_TEXT


class TemplateUpdateRules(RequestRules):
    """Both texts given and both blank is refused; one given blank is refused only when the
    stored other one is blank too, which a schema cannot see."""

    target_class = TemplateUpdate
    rules = {
        "not": {
            "required": ["title_template", "body_template"],
            "properties": {
                "title_template": {"pattern": BLANK},
                "body_template": {"pattern": BLANK},
            },
        }
    }


class TemplateVersionQuery(StrictQuerySerializer):
    version = serializers.IntegerField(required=False, min_value=1)


class TemplateListQuery(StrictQuerySerializer):
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class TemplateOutput(serializers.ModelSerializer):
    """A template version; its channel parts as top-level keys (only the ones it has)."""

    id = serializers.UUIDField(source="template_id")
    latest_version = serializers.IntegerField(source="template.current.version")
    data_template = JSONObjectField()
    translations = TranslationsField()
    variables = serializers.SerializerMethodField()
    category = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="template.created_at")
    version_created_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = TemplateVersion
        fields = [
            "id",
            "name",
            "version",
            "latest_version",
            "title_template",
            "body_template",
            "data_template",
            "translations",
            "default_language",
            "variables",
            "category",
            "created_at",
            "version_created_at",
        ]

    def to_representation(self, version: TemplateVersion) -> dict:
        return super().to_representation(version) | version.parts

    @extend_schema_field({"type": ["string", "null"]})
    def get_category(self, version: TemplateVersion) -> str | None:
        """The template's category key (whichever version is shown); null for none."""
        return version.template.category or None

    def get_variables(self, version: TemplateVersion) -> list[str]:
        """Every variable the version uses, in any language."""
        return sorted(compiled(version).variables)


class TemplateOutputParts(WithChannelParts):
    target_class = TemplateOutput
    templated = True


class RenderInput(StrictSerializer):
    variables = api_kit.JSONObjectField(max_bytes=MAX_JSON_BYTES, required=False, default=dict)
    language = LanguageTagField(required=False, allow_null=True, allow_blank=True)
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="A version to render; the newest when left out."
    )

    def validate_language(self, value: str | None) -> str | None:
        if value and normalize_language(value) is None:
            raise serializers.ValidationError("A language is a BCP 47 tag such as 'ko' or 'en-US'.")
        return value or None


class RenderedOutput(serializers.Serializer):
    title = serializers.CharField()
    body = serializers.CharField()
    data = JSONObjectField()
    parts = ChannelPartsField(help_text="The channel parts, rendered (only the ones it has).")
    missing_variables = serializers.ListField(child=serializers.CharField())
    language = serializers.CharField(help_text="The language whose texts were used.")
    version = serializers.IntegerField(help_text="The template version rendered.")
