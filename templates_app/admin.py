"""The campaign managers' template editor: every save is a new version (through the same
services as the API), old versions are listed, and the change page previews a rendering."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django import forms
from django.contrib import admin
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from core.admin_kit import (
    EMPTY,
    AdminMedia,
    ReadOnlyAdmin,
    StorableJSONField,
    StorableTextForm,
    linked,
)
from core.channels import KAKAOTALK, PART_NAMES
from core.exceptions import ApplicationError
from core.validation import untrusted_text_problem

from . import selectors, services
from .kakao import kakao_preview
from .models import KakaoTemplate, MessageTemplate, TemplateVersion
from .rendering import compiled, normalize_language, render

CONTENT_FIELDS = (
    "title_template",
    "body_template",
    "data_template",
    "translations",
    "default_language",
    "parts",
)


def _messages(problems: Any, path: str = "") -> list[str]:
    """TemplateInvalid details (lists, or dicts of them by language and field) as flat form
    messages that name where each problem is."""
    if isinstance(problems, dict):
        return [
            message
            for key, value in problems.items()
            for message in _messages(value, f"{path}.{key}" if path else str(key))
        ]
    return [f"{path}: {problem}" if path else str(problem) for problem in problems]


class MessageTemplateForm(StorableTextForm):
    title_template = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    body_template = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 4}))
    data_template = StorableJSONField(required=False, initial=dict)
    translations = StorableJSONField(
        required=False,
        initial=dict,
        help_text='{"en": {"title_template": "...", "body_template": "...", '
        '"data_template": {...}, "email": {"subject": "..."}}}; data_template and the '
        "channel parts are optional (a part's fields not given keep the default language's).",
    )
    default_language = forms.CharField(max_length=35, help_text="e.g. ko, en, en-US")
    parts = StorableJSONField(
        required=False,
        initial=dict,
        label="Channel parts",
        help_text='{"email": {"subject": "...", "html": "<p>...</p>", "from_name": "..."}, '
        '"sms": {"text": "..."}, "kakao": {"template_code": "...", "variables": {...}, '
        '"buttons": [...], "fallback_text": "..."}, "web_push": {"url": "...", "icon": "..."}, '
        '"in_app": {"image_url": "...", "action_url": "..."}}; each part and field optional, '
        "{{ variables }} allowed in every string.",
    )

    class Meta:
        model = MessageTemplate
        fields = ["application", "name", "category"]
        help_texts = {
            "category": "The key of one of the application's categories: messages sent with "
            "this template are in it unless they name their own. Empty: none."
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = None if self.instance._state.adding else self.instance.current
        if current is not None:
            for field in CONTENT_FIELDS:
                self.initial.setdefault(field, getattr(current, field))

    def clean(self):
        cleaned = super().clean()
        adding = self.instance._state.adding
        application = cleaned.get("application") if adding else self.instance.application
        name = (cleaned.get("name") or "").strip()
        if (
            application
            and name
            and selectors.template_name_taken(
                application=application, name=name, exclude=None if adding else self.instance
            )
        ):
            self.add_error("name", services.NAME_TAKEN)
        category = cleaned.get("category")
        if application and category and "category" not in self.errors:
            try:
                cleaned["category"] = services.category_clean(
                    application=application, category=category
                )
            except services.TemplateInvalid as exc:
                self.add_error("category", exc.details["category"])
        if any(field in self.errors for field in CONTENT_FIELDS):
            return cleaned
        try:
            content = services.template_content_clean(
                **{field: cleaned.get(field) for field in CONTENT_FIELDS}
            )
        except services.TemplateInvalid as exc:
            for field, problems in exc.details.items():
                if field in self.fields:
                    self.add_error(field, _messages(problems))
                else:  # a part's field, e.g. `email.subject`
                    self.add_error("parts", _messages({field: problems}))
        else:
            cleaned.update(content)
        return cleaned


class TemplateVersionInline(admin.TabularInline):
    model = TemplateVersion
    fk_name = "template"
    extra = 0
    fields = ["version", "name", "default_language", "title_template", "created_at"]
    readonly_fields = fields
    ordering = ["-version"]
    can_delete = False
    show_change_link = True  # each version's page shows its content and its diff
    verbose_name_plural = "versions (every save adds one; messages keep the one they used)"

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    Media = AdminMedia
    list_display = ["name", "application", "category", "current_version", "updated_at"]
    list_filter = ["application"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "current_version", "created_at", "updated_at"]
    inlines = [TemplateVersionInline]
    change_form_template = "admin/templates_app/messagetemplate/change_form.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(deleted_at__isnull=True)
            .select_related("application", "current")
        )

    def get_fields(self, request, obj=None):
        head = ["application", "name", "category"]
        if obj:
            head = ["id", *head]
        tail = ["current_version", "created_at", "updated_at"] if obj else []
        return [*head, *CONTENT_FIELDS, *tail]

    def get_readonly_fields(self, request, obj=None):
        # A template stays with its application: its versions are that application's records.
        return [*self.readonly_fields, "application"] if obj else self.readonly_fields

    @admin.display(description="version")
    def current_version(self, obj: MessageTemplate) -> int | None:
        return obj.current.version if obj.current else None

    def save_model(self, request, obj, form, change):
        content = {field: form.cleaned_data[field] for field in CONTENT_FIELDS}
        if change:
            # The form holds every part: one left out is removed.
            content["parts"] = {name: content["parts"].get(name, {}) for name in PART_NAMES}
            services.template_update(
                template=obj, name=obj.name, category=form.cleaned_data["category"], **content
            )
            return
        version = services.template_create(
            application=obj.application,
            name=obj.name,
            category=form.cleaned_data["category"],
            **content,
        )
        obj.pk = version.template_id
        obj.refresh_from_db()

    def get_deleted_objects(self, objs, request):
        # Deleting only marks templates; their versions stay for the records that used them,
        # so the protected versions do not block it.
        objs = list(objs)
        return [str(obj) for obj in objs], {self.opts.verbose_name_plural: len(objs)}, set(), []

    def delete_model(self, request, obj):
        services.template_delete(template=obj)

    def delete_queryset(self, request, queryset):
        for template in queryset:
            services.template_delete(template=template)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "preview": self._preview(request, object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _preview(self, request, object_id) -> dict | None:
        """Renders the current version (or `preview_version`) with the sample variables and
        language given in the query string."""
        template = self.get_object(request, object_id)
        if template is None or template.current is None:
            return None
        preview: dict[str, Any] = {"error": None, "rendered": None}
        try:
            number = int(request.GET.get("preview_version") or template.current.version)
            version = selectors.template_get(
                application=template.application, template_id=template.pk, version=number
            )
        except (ValueError, ApplicationError):
            preview["error"] = "No such version."
            version = template.current
            version.template = template
        names = sorted(compiled(version).variables)
        raw = request.GET.get("preview_variables")
        if raw is None:
            raw = json.dumps({name: f"[{name}]" for name in names}, indent=2, ensure_ascii=False)
        language = request.GET.get("preview_language", "").strip()
        preview.update(
            variables_json=raw,
            language=language,
            version=version.version,
            versions=list(template.versions.values_list("version", flat=True)),
            languages=[version.default_language, *version.translations],
        )
        try:
            variables = json.loads(raw or "{}")
        except ValueError as exc:
            preview["error"] = f"The sample variables are not valid JSON: {exc}"
            return preview
        if not isinstance(variables, dict):
            preview["error"] = "The sample variables must be a JSON object."
            return preview
        problem = untrusted_text_problem(variables)
        if problem:
            # The page is UTF-8: a lone surrogate rendered into it would fail the response.
            preview["error"] = f"The sample variables cannot be used: {problem}"
            preview["variables_json"] = raw.encode("utf-8", "backslashreplace").decode()
            return preview
        if language and normalize_language(language) is None:
            preview["error"] = f"{language!r} is not a language tag."
            return preview
        rendered = render(version, variables, language or None)
        preview["rendered"] = rendered
        preview["data_json"] = json.dumps(rendered.data, indent=2, ensure_ascii=False)
        preview["parts_json"] = json.dumps(rendered.parts, indent=2, ensure_ascii=False)
        if rendered.parts.get("kakao"):  # what KakaoTalk shows: the approved text, filled
            preview["kakao"] = kakao_preview(
                application=template.application, channel=KAKAOTALK, parts=rendered.parts
            )
        return preview


# --- Versions: their content, and what changed since the one before -----------------------------


def _json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def version_text(version: TemplateVersion | None) -> list[str]:
    """A version's content as lines to compare: each field named, JSON indented."""
    if version is None:
        return []
    lines = [
        f"name: {version.name}",
        f"default_language: {version.default_language}",
        f"title_template: {version.title_template}",
        "body_template:",
        *(f"  {line}" for line in version.body_template.splitlines()),
    ]
    for name in ("data_template", "parts", "translations"):
        lines += [f"{name}:", *(f"  {line}" for line in _json(getattr(version, name)).splitlines())]
    return lines


def version_diff(previous: TemplateVersion | None, version: TemplateVersion) -> str:
    """difflib.HtmlDiff's side-by-side table of what changed (3 lines of context); HtmlDiff
    escapes the content (&, <, >), and the headers are our own text."""
    if previous is None:
        return "The first version: nothing to compare with."
    before, after = version_text(previous), version_text(version)
    if before == after:
        return "Same content as the version before."
    table = difflib.HtmlDiff(wrapcolumn=70).make_table(
        before,
        after,
        fromdesc=f"version {previous.version}",
        todesc=f"version {version.version}",
        context=True,
        numlines=3,
    )
    return mark_safe(table)  # noqa: S308 (HtmlDiff escapes every line of content)


@admin.register(TemplateVersion)
class TemplateVersionAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Each version of each template, read-only: its content and the diff against the version
    before it (versions are never changed; saving the template adds one)."""

    Media = AdminMedia
    list_display = ["__str__", "template_link", "version", "default_language", "created_at"]
    list_filter = ["template__application"]
    search_fields = ["name", "=template__id"]
    list_select_related = ["template"]
    fields = [
        "id",
        "template_link",
        "version",
        "name",
        "default_language",
        "title_template",
        "body_display",
        "data_display",
        "parts_display",
        "translations_display",
        "created_at",
        "diff_display",
    ]
    readonly_fields = fields

    @admin.display(description="template", ordering="template__name")
    def template_link(self, obj: TemplateVersion) -> str:
        return linked("templates_app", "messagetemplate", obj.template_id, obj.template.name)

    @admin.display(description="body template")
    def body_display(self, obj: TemplateVersion) -> str:
        return format_html('<pre class="signal-json version-body">{}</pre>', obj.body_template)

    def _json_display(self, value, css: str) -> str:
        if not value:
            return EMPTY
        return format_html('<pre class="signal-json {}">{}</pre>', css, _json(value))

    @admin.display(description="data template")
    def data_display(self, obj: TemplateVersion) -> str:
        return self._json_display(obj.data_template, "version-data")

    @admin.display(description="channel parts")
    def parts_display(self, obj: TemplateVersion) -> str:
        return self._json_display(obj.parts, "version-parts")

    @admin.display(description="translations")
    def translations_display(self, obj: TemplateVersion) -> str:
        return self._json_display(obj.translations, "version-translations")

    @admin.display(description="changes since the version before")
    def diff_display(self, obj: TemplateVersion) -> str:
        previous = (
            TemplateVersion.objects.filter(template_id=obj.template_id, version__lt=obj.version)
            .order_by("-version")
            .first()
        )
        return format_html('<div id="version-diff">{}</div>', version_diff(previous, obj))


@admin.register(KakaoTemplate)
class KakaoTemplateAdmin(admin.ModelAdmin):
    """The KakaoTalk templates as last read from the dealer: read-only, since they are
    registered and approved at the dealer (`sync_kakao_templates` reads them again)."""

    list_display = ("template_code", "name", "status", "application", "synced_at")
    list_filter = ("status",)
    search_fields = ("template_code", "name", "application__name")
    list_select_related = ("application",)
    fields = (
        "application", "template_code", "name", "status", "text", "variables", "buttons",
        "synced_at",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
