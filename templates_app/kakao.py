"""KakaoTalk AlimTalk templates: the copy of the dealer's template list per application, the
checks of a `kakao` part against it, and what a preview shows.

AlimTalk sends only templates that Kakao approved at the dealer (status TSC03), each with its
fixed text in which `#{name}` marks a variable the message fills (`kakao.variables`). The
dealer's list is read by `python manage.py sync_kakao_templates` and on a schedule
(templates_app.tasks), and every KakaoTalk message, template and campaign is checked against
the copy before anything is stored: a code the dealer does not know, one not approved, or a
`#{variable}` left unfilled would only fail later, at the dealer, one message at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Application, ChannelCredential
from accounts.selectors import channel_credentials_get
from adapters import registry
from adapters.base import Credentials
from core.channels import KAKAOTALK, ContentToCheck
from core.exceptions import ValidationFailed
from core.validation import InputInvalid

from .models import KakaoTemplate

logger = logging.getLogger(__name__)

PART = "kakao"
APPROVED = KakaoTemplate.APPROVED
# `#{name}` in an approved text: what the dealer replaces with templateParameter[name].
VARIABLE = re.compile(r"#\{([^{}]+)\}")


class KakaoUnavailable(ValidationFailed):
    """The application cannot read the dealer's templates (no KakaoTalk credentials)."""


def kakao_variables_of(text: str) -> list[str]:
    """The `#{name}`s of an approved text, in order of first use, each once."""
    return list(dict.fromkeys(name.strip() for name in VARIABLE.findall(text or "")))


def kakao_credentials(*, application: Application) -> Credentials | None:
    """The application's KakaoTalk credentials as the adapter takes them (decrypted, keyed
    like messaging.delivery's), or None when it has none."""
    values = channel_credentials_get(application=application, channel=KAKAOTALK)
    if not values:
        return None
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    return Credentials(key=f"{application.pk}:{KAKAOTALK}:{digest}", values=values)


def kakao_applications() -> list[Application]:
    """The applications with KakaoTalk credentials."""
    ids = ChannelCredential.objects.filter(channel=KAKAOTALK).values("application_id")
    return list(Application.objects.filter(pk__in=ids).order_by("pk"))


# --- Sync --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncCounts:
    created: int
    updated: int
    removed: int
    approved: int

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.removed} removed "
            f"({self.approved} approved)"
        )


def _row(template: Mapping[str, Any]) -> dict[str, Any]:
    text = str(template.get("text") or "")
    variables = template.get("variables")
    return {
        "name": str(template.get("name") or "")[:200],
        "text": text,
        "variables": list(variables) if variables is not None else kakao_variables_of(text),
        "buttons": list(template.get("buttons") or []),
        "status": str(template.get("status") or "")[:10],
    }


def kakao_templates_sync(*, application: Application) -> SyncCounts:
    """Replaces the application's copy of the dealer's template list with what the dealer
    lists now (KakaoAdapter.templates): new codes added, changed ones updated, codes the
    dealer no longer lists removed. Raises KakaoUnavailable without KakaoTalk credentials;
    the adapter's errors (the dealer unreachable, keys refused) propagate, changing nothing."""
    credentials = kakao_credentials(application=application)
    if credentials is None:
        raise KakaoUnavailable(
            f"Application {application.pk} has no KakaoTalk credentials.",
            details={"application": ["No KakaoTalk credentials."]},
        )
    listed = registry.get_adapter(KAKAOTALK).templates(credentials)
    now = timezone.now()
    wanted = {str(t["template_code"]): _row(t) for t in listed if t.get("template_code")}
    with transaction.atomic():
        stored = {
            t.template_code: t
            for t in KakaoTemplate.objects.select_for_update().filter(application=application)
        }
        removed, _ = (
            KakaoTemplate.objects.filter(application=application)
            .exclude(template_code__in=list(wanted))
            .delete()
        )
        new, changed = [], []
        for code, row in wanted.items():
            template = stored.get(code)
            if template is None:
                new.append(
                    KakaoTemplate(application=application, template_code=code, synced_at=now, **row)
                )
            elif any(getattr(template, name) != value for name, value in row.items()):
                for name, value in row.items():
                    setattr(template, name, value)
                changed.append(template)
        # A sync running at the same moment may have added a code first: it holds the same row.
        KakaoTemplate.objects.bulk_create(new, ignore_conflicts=True)
        KakaoTemplate.objects.bulk_update(changed, list(_row({})))
        KakaoTemplate.objects.filter(application=application).update(synced_at=now)
    approved = sum(1 for row in wanted.values() if row["status"] == APPROVED)
    return SyncCounts(created=len(new), updated=len(changed), removed=removed, approved=approved)


def kakao_templates_sync_all() -> dict[str, str]:
    """kakao_templates_sync for every application with KakaoTalk credentials; one that fails
    (the dealer unreachable, its keys refused) is logged and the others still sync. Returns
    what happened per application id."""
    outcome = {}
    for application in kakao_applications():
        try:
            outcome[str(application.pk)] = str(kakao_templates_sync(application=application))
        except Exception as exc:  # one application's dealer trouble must not stop the rest
            logger.warning("Kakao templates of application %s not synced: %s", application.pk, exc)
            outcome[str(application.pk)] = f"failed: {type(exc).__name__}: {exc}"
    return outcome


# --- Checks ------------------------------------------------------------------------------------


def kakao_part_check(
    *,
    application: Application,
    part: Mapping[str, Any] | None,
    field: str = PART,
    templates: Mapping[str, KakaoTemplate] | None = None,
) -> KakaoTemplate:
    """Checks a `kakao` part (rendered, or a template's with `{{ }}` still in its values)
    against the application's synced templates (`templates` by code when the caller read
    them already); returns the template. Raises InputInvalid naming `kakao.template_code`
    (none, unknown or not approved) or `kakao.variables.<name>` (a `#{name}` of the approved
    text that the part does not fill)."""
    part = part or {}
    code = part.get("template_code")
    if not code:
        raise InputInvalid(
            f"A KakaoTalk message needs {field}.template_code: AlimTalk sends only templates "
            "approved by Kakao (GET /kakao-templates lists them).",
            field=f"{field}.template_code",
        )
    template = (
        templates.get(code)
        if templates is not None
        else KakaoTemplate.objects.filter(application=application, template_code=code).first()
    )
    if template is None:
        raise InputInvalid(
            f"{field}.template_code {code!r} is not a KakaoTalk template of this application "
            "(templates registered at the dealer appear after `sync_kakao_templates`).",
            field=f"{field}.template_code",
        )
    if template.status != APPROVED:
        raise InputInvalid(
            f"KakaoTalk template {code!r} is not approved (status {template.status}, "
            f"approved is {APPROVED}).",
            field=f"{field}.template_code",
        )
    variables = part.get("variables") or {}
    for name in template.variables:
        if name not in variables:
            raise InputInvalid(
                f"{field}.variables has no {name!r}, which the text of template {code!r} "
                f"uses as #{{{name}}}.",
                field=f"{field}.variables.{name}",
            )
    return template


def kakao_content_check(
    *,
    application: Application,
    channel: str,
    contents: Sequence[ContentToCheck],
    templated: bool = False,
) -> None:
    """KakaoTalk's content check (core.channels.ChannelSpec.content_check): the `kakao` part of
    each of `contents` (each distinct part once) passes kakao_part_check, else InputInvalid
    naming the field; the templates they name are read in one query. A template's code
    that is itself a `{{ variable }}` is checked once rendered, when a message is made of it."""
    parts: list = []
    for content in contents:
        part = (content.parts or {}).get(PART) or {}
        if part not in parts and "{{" not in str(part.get("template_code") or ""):
            parts.append(part)
    codes = {part["template_code"] for part in parts if part.get("template_code")}
    templates = {
        template.template_code: template
        for template in (
            KakaoTemplate.objects.filter(application=application, template_code__in=codes)
            if codes
            else ()
        )
    }
    for part in parts:
        kakao_part_check(application=application, part=part, templates=templates)


# --- Preview -----------------------------------------------------------------------------------


def _filled(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: str(variables.get(m.group(1).strip(), m.group(0))), value)
    if isinstance(value, dict):
        return {key: _filled(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, variables) for item in value]
    return value


def kakao_preview(
    *, application: Application, channel: str, parts: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What KakaoTalk shows of a message with these (rendered) parts: the approved text with
    its `#{variables}` filled, and its buttons (the part's own when it gives them). {} for
    another channel; without a known template, `text` is None and `problem` says why."""
    if channel != KAKAOTALK:
        return {}
    part = (parts or {}).get(PART) or {}
    try:
        template = kakao_part_check(application=application, part=part)
    except InputInvalid as exc:
        template, problem = (
            KakaoTemplate.objects.filter(
                application=application, template_code=part.get("template_code") or ""
            ).first(),
            exc.message,
        )
    else:
        problem = None
    if template is None:
        return {"text": None, "buttons": part.get("buttons") or [], "problem": problem}
    variables = part.get("variables") or {}
    return {
        "template_name": template.name,
        "text": _filled(template.text, variables),
        "buttons": _filled(part.get("buttons") or template.buttons, variables),
        "problem": problem,
    }
