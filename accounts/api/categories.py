"""`/categories` (server key): the application's categories, by key. Parse, call one service
or selector, reply. `CategoryKeyField` is the `category` field of every body that names one
(messages, templates, campaigns)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import JSONValueField, PageQuery, ResultsCursorPagination, StrictSerializer, paginated
from core.languages import LANGUAGE_TAG, MAX_LANGUAGE_LENGTH
from core.openapi import NON_BLANK, error_response

from ..categories import (
    KEY_INVALID,
    MAX_NAME_LENGTH,
    MAX_TRANSLATIONS,
    category_create,
    category_delete,
    category_get,
    category_key_valid,
    category_list,
    category_update,
)
from ..models import CATEGORY_KEY_MAX_LENGTH, CATEGORY_KEY_PATTERN, Category
from ..services import actor_of

KEY_SCHEMA = {
    "type": "string",
    "pattern": CATEGORY_KEY_PATTERN,
    "maxLength": CATEGORY_KEY_MAX_LENGTH,
    "description": "A category's key: lower-case letters, digits, '-' and '_'.",
}
TRANSLATIONS_SCHEMA = {
    "type": "object",
    "description": "Language tag (e.g. ko, pt-BR) -> the name in that language, for the "
    "preference page. Tags are stored in their usual case; one language given twice (ko, KO) "
    "is refused.",
    "propertyNames": {"pattern": f"^{LANGUAGE_TAG}$", "maxLength": MAX_LANGUAGE_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": MAX_NAME_LENGTH, "pattern": NON_BLANK},
    "maxProperties": MAX_TRANSLATIONS,
}
KEY_PARAMETER = OpenApiParameter(
    "key",
    str,
    OpenApiParameter.PATH,
    pattern=CATEGORY_KEY_PATTERN,
    description="The category's key.",
)
NO_SUCH_CATEGORY = error_response("not_found: the application has no category with this key.")


@extend_schema_field(KEY_SCHEMA)
class CategoryKeyField(serializers.CharField):
    """The key of a category, exactly as given (no trimming: the pattern is the rule). Whether
    the application has such a category is the service's to say."""

    default_error_messages = {"key": KEY_INVALID}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", CATEGORY_KEY_MAX_LENGTH)
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not category_key_valid(value):
            self.fail("key")
        return value


@extend_schema_field(TRANSLATIONS_SCHEMA)
class TranslationsField(JSONValueField):
    """Any storable JSON: the service (accounts.categories.translations_clean) says what is
    wrong with it, for the API and the admin alike."""


class CategoryOutput(serializers.ModelSerializer):
    translations = serializers.DictField(child=serializers.CharField())

    class Meta:
        model = Category
        fields = [
            "key",
            "name",
            "required",
            "default_enabled",
            "translations",
            "created_at",
            "updated_at",
        ]


def _name(**kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=MAX_NAME_LENGTH,
        help_text="What recipients see, e.g. 'Offers and news'.",
        **kwargs,
    )


_REQUIRED_HELP = (
    "A required category (security codes, receipts) is never held back by preferences, quiet "
    "hours or the frequency cap."
)
_DEFAULT_HELP = "Whether a recipient who never chose gets messages of this category."


class CategoryCreateInput(StrictSerializer):
    key = CategoryKeyField(help_text="Unique in the application; it cannot be changed later.")
    name = _name()
    required = serializers.BooleanField(required=False, default=False, help_text=_REQUIRED_HELP)
    default_enabled = serializers.BooleanField(
        required=False, default=True, help_text=_DEFAULT_HELP
    )
    translations = TranslationsField(required=False, default=dict)


class CategoryUpdateInput(StrictSerializer):
    """Any subset of the fields; the key stays."""

    name = _name(required=False)
    required = serializers.BooleanField(required=False, help_text=_REQUIRED_HELP)
    default_enabled = serializers.BooleanField(required=False, help_text=_DEFAULT_HELP)
    translations = TranslationsField(
        required=False, help_text="Replaces the stored translations as a whole."
    )

    def to_internal_value(self, data):
        if isinstance(data, dict) and "key" in data:
            raise serializers.ValidationError(
                {"key": ["A category's key cannot be changed; create another category."]}
            )
        return super().to_internal_value(data)


class CategoryPagination(ResultsCursorPagination):
    ordering = ("key",)


class CategoryCollectionApi(APIView):
    pagination_class = CategoryPagination

    @extend_schema(
        operation_id="categories_list",
        parameters=[PageQuery],
        responses=CategoryOutput(many=True),
        description="The application's categories, by key.",
    )
    def get(self, request: Request) -> Response:
        PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        categories = category_list(application=request.auth.application)
        return paginated(request, self, categories, CategoryOutput)

    @extend_schema(
        operation_id="categories_create",
        request=CategoryCreateInput,
        responses={201: CategoryOutput},
        description="Creates a category. A taken key, or a 201st category, is a 400 "
        "validation_error on `key`.",
    )
    def post(self, request: Request) -> Response:
        data = CategoryCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        category = category_create(
            application=request.auth.application,
            actor=actor_of(request.auth),
            **data.validated_data,
        )
        return Response(CategoryOutput(category).data, status=status.HTTP_201_CREATED)


class CategoryDetailApi(APIView):
    @extend_schema(
        operation_id="categories_retrieve",
        parameters=[KEY_PARAMETER],
        responses={200: CategoryOutput, 404: NO_SUCH_CATEGORY},
    )
    def get(self, request: Request, key: str) -> Response:
        category = category_get(application=request.auth.application, key=key)
        return Response(CategoryOutput(category).data)

    @extend_schema(
        operation_id="categories_update",
        parameters=[KEY_PARAMETER],
        request=CategoryUpdateInput,
        responses={200: CategoryOutput, 404: NO_SUCH_CATEGORY},
        description="Changes any subset of name, required, default_enabled and translations; "
        "each change is in the audit log. The key cannot be changed.",
    )
    def put(self, request: Request, key: str) -> Response:
        category = category_get(application=request.auth.application, key=key)
        data = CategoryUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        category = category_update(
            category=category, actor=actor_of(request.auth), **data.validated_data
        )
        return Response(CategoryOutput(category).data)

    @extend_schema(
        operation_id="categories_destroy",
        parameters=[KEY_PARAMETER],
        responses={204: None, 404: NO_SUCH_CATEGORY},
        description="Deletes the category. Templates and campaigns that name it keep the name: "
        "a message sent with it (or with such a template) is then 400 validation_error on "
        "`category`, and a campaign run fails with that reason, until they name another "
        "category or none. Recipients' choices for the key stay, and apply again if a "
        "category with this key is created again.",
    )
    def delete(self, request: Request, key: str) -> Response:
        category = category_get(application=request.auth.application, key=key)
        category_delete(category=category, actor=actor_of(request.auth))
        return Response(status=status.HTTP_204_NO_CONTENT)
