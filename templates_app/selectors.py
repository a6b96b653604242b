"""Reads of templates and their versions."""

from __future__ import annotations

import uuid

from django.db.models import F, QuerySet

from accounts.models import Application
from core.exceptions import NotFound

from .models import KakaoTemplate, MessageTemplate, TemplateVersion


def _uuid(value) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound("No such template.") from exc


def template_get(
    *,
    application: Application,
    template_id,
    version: int | None = None,
    include_deleted: bool = False,
) -> TemplateVersion:
    """A version of one of the application's templates, the newest when `version` is None,
    with `.template` (and its `.current`) loaded. Another application's template, a deleted
    one (unless `include_deleted`) or an unknown version raises NotFound."""
    versions = TemplateVersion.objects.select_related("template__current").filter(
        template__application=application, template_id=_uuid(template_id)
    )
    if not include_deleted:
        versions = versions.filter(template__deleted_at__isnull=True)
    if version is None:
        found = versions.filter(template__current=F("pk")).first()
    else:
        found = versions.filter(version=version).first()
    if found is None:
        if version is not None and versions.exists():
            raise NotFound(f"This template has no version {version}.")
        raise NotFound("No such template.")
    return found


def template_list(*, application: Application) -> QuerySet[MessageTemplate]:
    """The application's templates (not deleted), each with its current version."""
    return MessageTemplate.objects.filter(
        application=application, deleted_at__isnull=True
    ).select_related("current")


def template_name_taken(*, application: Application, name: str, exclude=None) -> bool:
    """Whether another live template of the application has this name."""
    taken = MessageTemplate.objects.filter(
        application=application, name=name, deleted_at__isnull=True
    )
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    return taken.exists()


def kakao_template_list(
    *, application: Application, status: str | None = None
) -> QuerySet[KakaoTemplate]:
    """The application's KakaoTalk templates as last synced from the dealer, by code."""
    templates = KakaoTemplate.objects.filter(application=application)
    if status:
        templates = templates.filter(status=status)
    return templates.order_by("template_code")
