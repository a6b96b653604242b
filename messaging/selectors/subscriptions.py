"""Reads of subscriptions."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Application
from core import rows
from core.bulk import uuid_array
from core.exceptions import NotFound

from ..models import Subscription, User


def subscription_get(*, application: Application, subscription_id) -> Subscription:
    """One of the application's subscriptions; another application's is simply not found."""
    try:
        return Subscription.objects.select_related("user").get(
            application=application, pk=subscription_id
        )
    except (Subscription.DoesNotExist, ValueError) as exc:
        raise Http404("No such subscription.") from exc


def subscription_list(*, application: Application, filters: dict) -> QuerySet[Subscription]:
    qs = Subscription.objects.filter(application=application).select_related("user")
    for name in ("type", "enabled", "country", "language"):
        if name in filters:
            qs = qs.filter(**{name: filters[name]})
    return qs


def subscription_targets(
    *,
    application: Application,
    subscription_id=None,
    subscription_ids: Sequence | None = None,
    external_user_id: str | None = None,
    channels: Sequence[str] | None = None,
) -> tuple[list[Subscription], int]:
    """The enabled subscriptions a request targets, and how many disabled ones it skips.
    A named target that is missing or another application's raises NotFound."""

    if external_user_id is not None:
        if not User.objects.filter(
            application=application, external_user_id=external_user_id
        ).exists():
            raise NotFound(f"No user with external_user_id {external_user_id!r}.")
        targets = list(
            _target_queryset(application).filter(user__external_user_id=external_user_id)
        )
    else:
        wanted = {str(i) for i in (subscription_ids or [subscription_id])}
        targets = _subscriptions_by_id(application, wanted)
        if len(targets) != len(wanted):
            found = {str(s.pk) for s in targets}
            missing = sorted(wanted - found)
            raise NotFound(
                f"{len(missing)} target subscription(s) do not exist.",
                details={"subscription_ids": missing},
            )
    if channels:
        targets = [s for s in targets if s.type in set(channels)]
    enabled = [s for s in targets if s.enabled]
    return enabled, len(targets) - len(enabled)


_TARGET_COLUMNS = ("id", "type", "enabled", "language")
_TARGET_FIELDS = rows.fields_of(Subscription, _TARGET_COLUMNS)


def _target_queryset(application: Application):
    """The application's subscriptions, with the columns sending reads. Made only where used:
    building a queryset costs more than the plain SELECT by id."""
    return Subscription.objects.filter(application=application).only(*_TARGET_COLUMNS)


def _subscriptions_by_id(application: Application, ids: set[str]) -> list[Subscription]:
    """The application's subscriptions among `ids`. Plain SQL on PostgreSQL: it runs on every
    POST /messages (see core.rows)."""
    if connection.vendor != "postgresql":
        return list(_target_queryset(application).filter(pk__in=ids))
    sql = (
        f"SELECT {rows.columns('s', _TARGET_FIELDS)} FROM {Subscription._meta.db_table} s"  # noqa: S608 (names are ours)
        " WHERE s.application_id = %s AND s.id = ANY(%s::uuid[])"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [application.pk, uuid_array(ids)])
        return [rows.instance(Subscription, _TARGET_FIELDS, row) for row in cursor.fetchall()]
