"""Reads of the preference page: whom a signed token names, with what the page shows of
them (their preferences, the channels they have subscriptions of, their language) and the
application's categories."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Application, Category
from core.channels import SPECS

from ..models import Subscription, User
from ..preference_links import PreferenceToken
from ..rules import opted_out


@dataclass(frozen=True)
class Recipient:
    """Whose preferences a page changes: the user, or the subscription when it belongs to no
    user (then its own preferences are the recipient's, as messaging.rules reads them)."""

    application: Application
    user: User | None
    subscription: Subscription | None
    preferences: dict
    channels: tuple[str, ...]  # the types of the recipient's subscriptions, in SPECS order
    language: str  # the subscriptions' language, "" when none says
    timezone: str  # the subscriptions' time zone, "" when none says


def recipient_of(token: PreferenceToken) -> Recipient | None:
    """The recipient a token names, or None when it is gone (erased, or of another
    application). A subscription's token follows its user once it has one: the rules read
    the user's preferences then."""
    subscription = None
    user_id = token.user_id
    if user_id is None:
        subscription = (
            Subscription.objects.select_related("application")
            .filter(pk=token.subscription_id, application_id=token.application_id)
            .first()
        )
        if subscription is None:
            return None
        user_id = subscription.user_id
    if user_id is None:
        rows = [(subscription.type, subscription.language, subscription.timezone)]
        return _recipient(
            subscription.application, None, subscription, subscription.preferences, rows
        )
    user = (
        User.objects.select_related("application")
        .filter(pk=user_id, application_id=token.application_id)
        .first()
    )
    if user is None:
        return None
    # Newest first: the language and time zone the app set last are the likeliest.
    rows = list(
        Subscription.objects.filter(user=user)
        .order_by("-updated_at")
        .values_list("type", "language", "timezone")
    )
    return _recipient(user.application, user, None, user.preferences, rows)


def _recipient(application, user, subscription, preferences, rows) -> Recipient:
    types = {row[0] for row in rows}
    return Recipient(
        application=application,
        user=user,
        subscription=subscription,
        preferences=preferences or {},
        channels=tuple(t for t in SPECS if t in types),
        language=next((row[1] for row in rows if row[1]), ""),
        timezone=next((row[2] for row in rows if row[2]), ""),
    )


def page_categories(*, application: Application) -> list[Category]:
    """The application's categories as the page lists them: by key."""
    return list(Category.objects.filter(application=application).order_by("key"))


def category_get(*, application: Application, key: str) -> Category | None:
    return Category.objects.filter(application=application, key=key).first()


def category_off(*, recipient: Recipient, category: Category, channel: str) -> bool:
    """Whether the recipient already gets no messages of `category` on `channel` (on any
    channel when "")."""
    if channel:
        return opted_out(
            recipient.preferences,
            channel=channel,
            category=category.key,
            default_enabled=category.default_enabled,
        )
    chosen = recipient.preferences.get("categories", {}).get(category.key) or {}
    return not chosen.get("enabled", category.default_enabled)
