"""The preference page and the one-click unsubscribe, outside the API (no key: the signed
token in the URL names the recipient, messaging.preference_links):

- `GET /preferences/<token>`: a plain page (no script, nothing from elsewhere) listing the
  application's categories, on or off, per channel the recipient has subscriptions of, the
  channels' own switches and the quiet hours; its form POSTs back (with Django's CSRF token)
  and the page comes again saying "saved".
- `POST /preferences/<token>/unsubscribe`: what a mailbox provider sends for the
  List-Unsubscribe of a category's e-mail (RFC 8058, body `List-Unsubscribe=One-Click`, no
  cookies, so no CSRF check): the category goes off on that channel; 200, plain text. A GET
  only shows a page with a button, since link scanners open URLs nobody clicked.

The page speaks the recipient's language where it has a catalog (messaging/locale: English and
Korean), else the browser's; category names come in the subscription's language where the
category has a translation. A token that was not made here is a 404 page.
"""

from __future__ import annotations

import base64
import hashlib
import zoneinfo
from functools import lru_cache
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.cache import add_never_cache_headers
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, pgettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from core.channels import SPECS

from .preference_links import PreferenceToken, preference_token, preference_token_read
from .selectors.preference_page import (
    Recipient,
    category_get,
    category_off,
    page_categories,
    recipient_of,
)
from .services.preference_page import category_unsubscribe, preferences_save

# The languages the page's own texts are translated into (messaging/locale).
PAGE_LANGUAGES = ("en", "ko")
# What the quiet hours' selects offer: every half hour.
CLOCK_TIMES = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 30))

# The pages' only style, inline; the Content-Security-Policy allows it by its hash and nothing
# else (no script, no image, no outside resource). No quotes or angle brackets in it: it is
# written into the page as it is.
_STYLE = """
body { font-family: system-ui, sans-serif; color: #222; max-width: 44rem; margin: 2rem auto;
  padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
.app { color: #666; margin-top: 0; }
.saved { background: #e6f4e6; border: 1px solid #9c9; border-radius: 4px; padding: .5rem .8rem; }
fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 1rem 0; padding: .6rem 1rem; }
legend { font-weight: 600; padding: 0 .3rem; }
label { margin-right: 1.2rem; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .35rem .5rem; border-bottom: 1px solid #eee; text-align: center; }
th[scope=row] { text-align: left; font-weight: normal; }
small, .hint { color: #666; }
select { margin-right: .8rem; }
button { font-size: 1rem; padding: .45rem 1.2rem; }
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_STYLE_SOURCE = f"'sha256-{_STYLE_HASH}'"
_CSP = (
    f"default-src 'none'; style-src {_STYLE_SOURCE}; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@lru_cache(maxsize=1)
def _time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _channel_label(channel: str) -> str:
    # The specs' labels, translated by the catalog (kept there by hand: makemessages cannot
    # see them; tests/messaging/test_preference_page.py checks every one has its Korean).
    spec = SPECS.get(channel)
    return pgettext("channel", spec.label) if spec else channel


def _page_language(recipient: Recipient | None, request: HttpRequest) -> str:
    """The recipient's language when the page speaks it, else the browser's, else English."""
    for candidate in (
        recipient.language if recipient else "",
        translation.get_language_from_request(request),
    ):
        try:
            language = translation.get_supported_language_variant(candidate).split("-")[0]
        except LookupError:
            continue
        if language in PAGE_LANGUAGES:
            return language
    return "en"


def _secured(response: HttpResponse, language: str) -> HttpResponse:
    """Headers of every answer here: nothing but the inline style may load or run, no frame
    may hold it (X-Frame-Options comes from the middleware), and no cache keeps a page that
    shows someone's choices."""
    response["Content-Security-Policy"] = _CSP
    response["Content-Language"] = language
    response["X-Robots-Tag"] = "noindex, nofollow"
    add_never_cache_headers(response)
    return response


def _render(request, template: str, context: dict, language: str, status: int = 200):
    response = render(
        request, f"messaging/preferences/{template}", {**context, "style": mark_safe(_STYLE)},  # noqa: S308 (our constant)
        status=status,
    )  # fmt: skip
    return _secured(response, language)


def _not_found(request: HttpRequest) -> HttpResponse:
    language = _page_language(None, request)
    with translation.override(language):
        return _render(
            request,
            "message.html",
            {
                "title": gettext("Link not valid"),
                "text": gettext("This link is not valid, or the preferences it leads to are gone."),
            },
            language,
            status=404,
        )


def _found(token: str) -> tuple[PreferenceToken, Recipient] | None:
    named = preference_token_read(token)
    if named is None:
        return None
    recipient = recipient_of(named)
    return (named, recipient) if recipient is not None else None


# --- The page --------------------------------------------------------------------------------


@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def preferences_page(request: HttpRequest, token: str) -> HttpResponse:
    found = _found(token)
    if found is None:
        return _not_found(request)
    _named, recipient = found
    language = _page_language(recipient, request)
    categories = page_categories(application=recipient.application)
    with translation.override(language):
        if request.method == "POST":
            changes = page_changes(request.POST, recipient=recipient, categories=categories)
            preferences_save(recipient=recipient, changes=changes)
            return _secured(HttpResponseRedirect(request.path + "?saved=1", status=303), language)
        return _render(
            request,
            "page.html",
            page_context(recipient, categories, saved=request.GET.get("saved") == "1"),
            language,
        )


def page_context(recipient: Recipient, categories, *, saved: bool) -> dict[str, Any]:
    """What page.html shows: each switch as the recipient's preferences set it now."""
    preferences = recipient.preferences
    channel_off = preferences.get("channels", {})
    chosen = preferences.get("categories", {})
    channels = [
        {"type": t, "label": _channel_label(t), "on": channel_off.get(t) is not False}
        for t in recipient.channels
    ]
    rows = []
    for category in categories:
        mine = chosen.get(category.key) or {}
        on_channel = mine.get("channels", {})
        rows.append(
            {
                "key": category.key,
                "name": category.name_in(recipient.language),
                "required": category.required,
                "on": category.required or mine.get("enabled", category.default_enabled),
                "channels": [
                    {
                        "type": c["type"],
                        "label": c["label"],
                        "on": category.required or on_channel.get(c["type"]) is not False,
                    }
                    for c in channels
                ],
            }
        )
    quiet = preferences.get("quiet_hours") or {}
    zone = quiet.get("timezone", "")
    times = list(CLOCK_TIMES)
    for value in (quiet.get("start"), quiet.get("end")):
        if value and value not in times:
            times = sorted({*times, value})
    zones = list(_time_zones())
    if zone and zone not in zones:
        zones = sorted({*zones, zone})
    return {
        "application_name": recipient.application.name,
        "saved": saved,
        "channels": channels,
        "categories": rows,
        "shown_channels": ",".join(recipient.channels),
        "shown_categories": ",".join(c.key for c in categories if not c.required),
        "quiet": {"start": quiet.get("start", ""), "end": quiet.get("end", ""), "timezone": zone},
        "clock_times": times,
        "time_zones": zones,
        "recipient_timezone": recipient.timezone,
    }


def page_changes(form: QueryDict, *, recipient: Recipient, categories) -> dict[str, Any]:
    """The changes the page's form asks for, in the stored shape (None removes an entry).

    A checkbox is only sent when ticked, so a switch the form did not show (a category or a
    channel that appeared after the page was loaded, listed in neither `shown_` field) is left
    as it is rather than read as "off". A channel ticked on removes the entry (on is the
    default); a category's own switch is stored when it differs from what it was (its default
    when unset); required categories cannot be turned off and are not read."""
    shown_channels = set(form.get("shown_channels", "").split(",")) & set(recipient.channels)
    shown_categories = set(form.get("shown_categories", "").split(","))
    preferences = recipient.preferences
    changes: dict[str, Any] = {}
    channels = {
        t: None if f"channel:{t}" in form else False
        for t in recipient.channels
        if t in shown_channels
    }
    if channels:
        changes["channels"] = channels
    chosen = preferences.get("categories", {})
    category_changes = {}
    for category in categories:
        if category.required or category.key not in shown_categories:
            continue
        change: dict[str, Any] = {}
        enabled = f"category:{category.key}" in form
        if enabled != (chosen.get(category.key) or {}).get("enabled", category.default_enabled):
            change["enabled"] = enabled
        per_channel = {
            t: None if f"category:{category.key}:{t}" in form else False
            for t in recipient.channels
            if t in shown_channels
        }
        if per_channel:
            change["channels"] = per_channel
        if change:
            category_changes[category.key] = change
    if category_changes:
        changes["categories"] = category_changes
    if "quiet_start" in form:
        quiet = _quiet_hours(form)
        if quiet != (preferences.get("quiet_hours") or None):
            changes["quiet_hours"] = quiet
    return changes


def _quiet_hours(form: QueryDict) -> dict[str, str] | None:
    """The quiet hours the form's selects give; None for none (either end left empty, or
    equal ends, or a value no select offers)."""
    start, end = form.get("quiet_start", ""), form.get("quiet_end", "")
    zone = form.get("quiet_timezone", "")
    if not start or not end or start == end:
        return None
    try:
        for value in (start, end):
            hours, minutes = value.split(":")
            if len(value) != 5 or not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
                return None
    except ValueError:
        return None
    quiet = {"start": start, "end": end}
    if zone:
        if zone not in _time_zones():
            return None
        quiet["timezone"] = zone
    return quiet


# --- One-click unsubscribe -------------------------------------------------------------------


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    found = _found(token)
    if found is None or not found[0].category:
        return _not_found(request)
    named, recipient = found
    language = _page_language(recipient, request)
    category = category_get(application=recipient.application, key=named.category)
    with translation.override(language):
        name = category.name_in(recipient.language) if category else named.category
        channel = _channel_label(named.channel) if named.channel else ""
        # The whole page of the same recipient: its token without the one-click part.
        page_url = reverse("preferences", kwargs={"token": _page_token(named)})
        context = {"category": name, "channel": channel, "page_url": page_url}
        if category is not None and category.required:
            text = gettext("“%(category)s” messages are always sent; they cannot be turned off.")
            return _answer(
                request, language, gettext("Cannot unsubscribe"), text % context, context
            )
        if request.method == "POST":
            category_unsubscribe(
                recipient=recipient, category=named.category, channel=named.channel
            )
            return _answer(request, language, gettext("Unsubscribed"), _done_text(context), context)
        if category is not None and category_off(
            recipient=recipient, category=category, channel=named.channel
        ):
            return _answer(request, language, gettext("Unsubscribed"), _done_text(context), context)
        return _render(request, "unsubscribe.html", context, language)


def _page_token(named: PreferenceToken) -> str:
    return preference_token(
        application_id=named.application_id,
        user_id=named.user_id,
        subscription_id=named.subscription_id,
    )


def _done_text(context: dict[str, str]) -> str:
    if context["channel"]:
        return gettext("You will get no more “%(category)s” messages by %(channel)s.") % context
    return gettext("You will get no more “%(category)s” messages.") % context


def _answer(request, language: str, title: str, text: str, context: dict) -> HttpResponse:
    """Plain text for a mailbox provider's POST; a page for a person (a GET, or the
    confirmation page's button, which says so with `confirmed`)."""
    if request.method == "POST" and "confirmed" not in request.POST:
        response = HttpResponse(text + "\n", content_type="text/plain; charset=utf-8")
        return _secured(response, language)
    return _render(request, "message.html", {"title": title, "text": text, **context}, language)
