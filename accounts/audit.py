"""The audit log: one append-only row per important action.

Call audit_record inside the transaction of the action it records, so the row exists exactly
when the action happened. `actor` is the string the services already take: "api_key:<prefix>"
(accounts.services.actor_of), "admin:<username>" (accounts.admin.actor_of_request) or SYSTEM.
`details` must never hold a secret or a recipient's personal data (addresses, tokens, phone
numbers, external user ids): name objects by their ids and changes by field names or counts.
"""

from __future__ import annotations

from typing import Any

import structlog

from accounts.models import ApiKey, AuditEntry

SYSTEM = "system"

# The actions recorded, by name (the `action` of a row).
API_KEY_CREATED = "api_key.created"
API_KEY_REVOKED = "api_key.revoked"
APPLICATION_CREATED = "application.created"
APPLICATION_CHANGED = "application.changed"  # the admin's application form
SETTINGS_CHANGED = "settings.changed"  # PUT /applications/current
IDENTITY_SECRET_ROTATED = "identity_secret.rotated"  # noqa: S105 (an action name)
CREDENTIALS_CHANGED = "credentials.changed"
CREDENTIALS_REMOVED = "credentials.removed"
CATEGORY_CREATED = "category.created"
CATEGORY_CHANGED = "category.changed"
CATEGORY_DELETED = "category.deleted"
CAMPAIGN_EXECUTED = "campaign.executed"
CAMPAIGN_PAUSED = "campaign.paused"
CAMPAIGN_RESUMED = "campaign.resumed"
CAMPAIGN_CANCELLED = "campaign.cancelled"
MESSAGES_RETRIED = "messages.retried"
MESSAGES_CANCELLED = "messages.cancelled"
USER_ERASED = "user.erased"
USER_EXPORTED = "user.exported"
RETENTION_PURGED = "retention.purged"

ACTIONS = (
    API_KEY_CREATED,
    API_KEY_REVOKED,
    APPLICATION_CREATED,
    APPLICATION_CHANGED,
    SETTINGS_CHANGED,
    IDENTITY_SECRET_ROTATED,
    CREDENTIALS_CHANGED,
    CREDENTIALS_REMOVED,
    CATEGORY_CREATED,
    CATEGORY_CHANGED,
    CATEGORY_DELETED,
    CAMPAIGN_EXECUTED,
    CAMPAIGN_PAUSED,
    CAMPAIGN_RESUMED,
    CAMPAIGN_CANCELLED,
    MESSAGES_RETRIED,
    MESSAGES_CANCELLED,
    USER_ERASED,
    USER_EXPORTED,
    RETENTION_PURGED,
)

_API_KEY_ACTOR = "api_key:"

logger = structlog.get_logger(__name__)


def audit_record(
    *,
    application_id,
    actor: str,
    action: str,
    object_type: str,
    object_id: Any = "",
    details: dict[str, Any] | None = None,
    api_key: ApiKey | None = None,
) -> AuditEntry:
    """Writes one audit row (and one log line, `event` "audit"). `api_key`, when the actor is
    a key, links the row to it by id; otherwise an actor "api_key:<prefix>" is resolved to
    its key here."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    api_key_id = api_key.pk if api_key is not None else _api_key_id(application_id, actor)
    entry = AuditEntry.objects.create(
        application_id=application_id,
        actor=actor[:200],
        api_key_id=api_key_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id or "")[:100],
        details=details or {},
    )
    logger.info(
        "audit",
        action=action,
        actor=entry.actor,
        object_type=object_type,
        object_id=entry.object_id,
        application_id=str(application_id) if application_id else None,
    )
    return entry


def _api_key_id(application_id, actor: str):
    if not actor.startswith(_API_KEY_ACTOR) or application_id is None:
        return None
    prefix = actor[len(_API_KEY_ACTOR) :]
    return (
        ApiKey.objects.filter(application_id=application_id, prefix=prefix)
        .values_list("pk", flat=True)
        .first()
    )
