"""Writes of users: the application's own people, known by its external ids, and which
subscriptions are theirs. Tying and untying record a SubscriptionEvent with the actor."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Application
from core.exceptions import ValidationFailed

from ..models import Subscription, SubscriptionEvent, User
from ..subscription_fields import MAX_TAGS, FieldInvalid, tags_clean, tags_merge


def user_get_or_create(*, application: Application, external_user_id: str) -> User:
    """The application's user with this external id, created if new."""
    user, _ = User.objects.get_or_create(application=application, external_user_id=external_user_id)
    return user


def user_tags_update(
    *, application: Application, external_user_id: str, tags: dict[str, str | None]
) -> User:
    """Merges `tags` into the tags of the application's user with this external id (a value
    of None or "" removes a tag), creating the user if new: a backend may tag a user before
    its app identifies it. Tags are checked by the rules of a subscription's tags (and a
    user keeps at most MAX_TAGS) and refused with ValidationFailed naming `tags`."""
    try:
        changes = tags_clean(tags, allow_removal=True)
    except FieldInvalid as exc:
        raise ValidationFailed(details={"tags": exc.detail}) from exc
    with transaction.atomic():
        user = None
        while user is None:  # again when an erasure deleted it while this waited for its lock
            found = user_get_or_create(application=application, external_user_id=external_user_id)
            user = User.objects.select_for_update().filter(pk=found.pk).first()
        merged = tags_merge(user.tags, changes)
        if len(merged) > MAX_TAGS:
            raise ValidationFailed(
                details={"tags": [f"At most {MAX_TAGS} tags; the user would have {len(merged)}."]}
            )
        if merged != user.tags:
            user.tags = merged
            user.save(update_fields=["tags"])
    return user


def user_identify(*, subscription: Subscription, external_user_id: str, actor: str) -> User:
    """Ties the subscription to the user with this external id, creating the user if new."""
    with transaction.atomic():
        user = user_get_or_create(
            application=subscription.application, external_user_id=external_user_id
        )
        old = subscription.user.external_user_id if subscription.user else None
        if subscription.user_id != user.pk:
            Subscription.objects.filter(pk=subscription.pk).update(
                user=user, updated_at=timezone.now()
            )
            subscription.user = user
            SubscriptionEvent.objects.create(
                subscription=subscription,
                kind=SubscriptionEvent.Kind.IDENTIFIED,
                actor=actor,
                changes={"external_user_id": [old, external_user_id]},
            )
    return user


def user_logout(*, subscription: Subscription, actor: str) -> Subscription:
    """Unties the subscription from its user."""
    with transaction.atomic():
        if subscription.user_id is not None:
            old = subscription.user.external_user_id
            Subscription.objects.filter(pk=subscription.pk).update(
                user=None, updated_at=timezone.now()
            )
            subscription.user = None
            SubscriptionEvent.objects.create(
                subscription=subscription,
                kind=SubscriptionEvent.Kind.LOGGED_OUT,
                actor=actor,
                changes={"external_user_id": [old, None]},
            )
    return subscription
