"""Reads of applications, their API keys and their audit log."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from django.db import connection
from django.db.models import QuerySet

from accounts.models import ApiKey, Application, AuditEntry, ChannelCredential
from adapters import registry
from core import channels, rows
from core.exceptions import NotFound


def api_key_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@lru_cache(maxsize=1)
def _api_key_query() -> tuple[str, tuple, tuple]:
    key_fields = rows.fields_of(ApiKey)
    # The identity secrets are left deferred: decrypted only by a call that checks a hash.
    app_fields = rows.fields_of(
        Application, exclude=("identity_secret", "identity_secret_previous")
    )
    sql = (
        f"SELECT {rows.columns('k', key_fields)}, {rows.columns('a', app_fields)}"  # noqa: S608 (names are ours)
        f" FROM {ApiKey._meta.db_table} k"
        f" JOIN {Application._meta.db_table} a ON a.id = k.application_id"
        " WHERE k.digest = %s AND k.revoked_at IS NULL"
    )
    return sql, key_fields, app_fields


def api_key_get_active(*, raw: str) -> ApiKey | None:
    """The unrevoked key whose secret is `raw`, with its application, or None. Every API
    request asks this first: one plain SELECT (see core.rows)."""
    if connection.vendor == "postgresql":
        sql, key_fields, app_fields = _api_key_query()
        with connection.cursor() as cursor:
            cursor.execute(sql, [api_key_digest(raw)])
            row = cursor.fetchone()
        if row is None:
            return None
        api_key = rows.instance(ApiKey, key_fields, row[: len(key_fields)])
        api_key.application = rows.instance(Application, app_fields, row[len(key_fields) :])
        return api_key
    try:
        return ApiKey.objects.select_related("application").get(
            digest=api_key_digest(raw), revoked_at__isnull=True
        )
    except ApiKey.DoesNotExist:
        return None


def api_key_get(*, application: Application, api_key_id) -> ApiKey:
    """One of the application's keys, revoked or not; another application's is not found."""
    api_key = ApiKey.objects.filter(application=application, pk=api_key_id).first()
    if api_key is None:
        raise NotFound("No such API key.")
    return api_key


def api_key_list(*, application: Application, active: bool | None = None) -> QuerySet[ApiKey]:
    """The application's keys, newest first; `active` True: only unrevoked ones, False: only
    revoked ones."""
    keys = ApiKey.objects.filter(application=application).defer("digest")
    if active is not None:
        keys = keys.filter(revoked_at__isnull=active)
    return keys.order_by("-created_at")


# The filters of audit_entry_list, each an exact match but for the time range.
AUDIT_FILTERS = ("action", "object_type", "object_id", "since", "until")


def audit_entry_list(*, application: Application, filters: dict) -> QuerySet[AuditEntry]:
    """The application's audit rows, newest first, by `action`, `object_type`, `object_id`
    (exact) and `since` (inclusive) / `until` (exclusive). Rows of other applications, and
    rows of no application, are never among them."""
    entries = AuditEntry.objects.filter(application_id=application.pk)
    for name in ("action", "object_type", "object_id"):
        if name in filters:
            entries = entries.filter(**{name: filters[name]})
    if "since" in filters:
        entries = entries.filter(at__gte=filters["since"])
    if "until" in filters:
        entries = entries.filter(at__lt=filters["until"])
    return entries.order_by("-at", "-id")


def channels_ready(*, application: Application) -> dict[str, bool]:
    """Whether each channel can send for this application: its adapter is installed (the
    spec's, or settings.CHANNEL_ADAPTERS') and the application has its credentials; a channel
    delivered locally (the in-app inbox) always can. One query (no secret is decrypted)."""
    return channels_ready_of(application_id=application.pk)


def channels_ready_of(*, application_id) -> dict[str, bool]:
    """channels_ready by the application's id (one query; an unknown id: only the local
    channels)."""
    stored = set(
        ChannelCredential.objects.filter(application_id=application_id).values_list(
            "channel", flat=True
        )
    )
    return {channel: _ready(channel, stored) for channel in channels.CHANNELS}


def _ready(channel: str, stored: set) -> bool:
    spec = channels.SPECS[channel]
    if spec.delivery == channels.LOCAL:  # written here (the inbox): nothing to configure
        return True
    return channel in stored and registry.adapter_available(channel)


def channel_credentials_get(*, application: Application, channel: str) -> dict:
    """The stored (decrypted) credentials of one channel, {} when none."""
    row = ChannelCredential.objects.filter(application=application, channel=channel).first()
    return row.values if row else {}


def credential_secret_fields(channel: str) -> tuple[str, ...]:
    """The dotted names of a channel's secret credential values (never shown): its adapter's
    `secret_fields`. Any value whose name looks secret is hidden as well
    (accounts.credentials.credentials_display)."""
    spec = channels.SPECS.get(channel)
    if spec is None or spec.adapter is None:
        return ()
    return tuple(spec.adapter_class().secret_fields)
