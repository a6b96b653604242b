"""Who may use an inbox: the subscription must be an InAppMessage one of the key's
application, and under identity verification a client key must prove the subscription's
user (accounts.identity)."""

from __future__ import annotations

from django.http import Http404

from accounts.identity import identity_verify
from accounts.models import ApiKey
from core.channels import IN_APP
from core.exceptions import NotFound

from ..models import Subscription
from ..selectors.subscriptions import subscription_get


def subscription_identity_check(
    *, api_key: ApiKey, subscription: Subscription, user_hash: str | None
) -> None:
    """AuthenticationFailed unless the key may act for the subscription's user (always, but
    for a client key under identity verification; a subscription without a user then fails)."""
    user = subscription.user
    identity_verify(
        api_key=api_key,
        external_user_id=user.external_user_id if user is not None else None,
        given=user_hash,
    )


def inbox_subscription(*, api_key: ApiKey, subscription_id, user_hash: str | None) -> Subscription:
    """The inbox's subscription for this call: NotFound unless an InAppMessage subscription
    of the key's application; AuthenticationFailed when identity verification refuses it."""
    try:
        subscription = subscription_get(
            application=api_key.application, subscription_id=subscription_id
        )
    except Http404 as exc:  # the domain's NotFound, for callers outside the API (the stream)
        raise NotFound("No such subscription.") from exc
    if subscription.type != IN_APP:
        raise NotFound("The subscription is not an InAppMessage one: it has no inbox.")
    subscription_identity_check(api_key=api_key, subscription=subscription, user_hash=user_hash)
    return subscription
