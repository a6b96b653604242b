"""Endpoints that outsiders call without an API key, each authenticated by a signature:

- `POST /webhooks/sms/<message id>`: an SMS gateway's status callback (Twilio's
  `StatusCallback`), checked by its `X-Twilio-Signature` (HMAC-SHA1 with the application's auth
  token over the URL as the gateway called it and the form's parameters).
- `GET|POST /unsubscribe/<signed subscription id>`: the one-click unsubscribe link of a
  campaign's e-mail (RFC 8058). A POST disables the subscription (what mailbox providers send
  for their "unsubscribe" button, with the body `List-Unsubscribe=One-Click`); a GET only shows
  a page with a button, since mail scanners open links without the reader asking.
"""

from __future__ import annotations

import html

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import channel_credentials_get
from adapters.sms import signature_valid
from core import channels

from .links import unsubscribe_subscription_id
from .models import Message, Subscription
from .services.reports import message_provider_report
from .services.subscriptions import subscription_disable

UNSUBSCRIBED = "unsubscribed"  # the subscription's disabled_reason
_REPORTED_FIELDS = ("MessageSid", "ErrorCode", "ErrorMessage")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "details": {}}}, status=status)


def _called_url(request: HttpRequest) -> str:
    """The URL the gateway called, which its signature covers: PUBLIC_URL (the address it was
    given) with the request's path and query."""
    base = settings.PUBLIC_URL or f"{request.scheme}://{request.get_host()}"
    return base + request.get_full_path()


@csrf_exempt
@require_POST
def sms_status_callback(request: HttpRequest, message_id) -> HttpResponse:
    message = (
        Message.objects.filter(pk=message_id, channel=channels.SMS)
        .select_related("application")
        .first()
    )
    if message is None:
        return _error(404, "not_found", "No SMS message has this id.")
    token = channel_credentials_get(application=message.application, channel=channels.SMS).get(
        "auth_token"
    )
    params = {key: request.POST.get(key, "") for key in request.POST}
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature_valid(token, _called_url(request), params, signature):
        return _error(403, "permission_denied", "The X-Twilio-Signature does not match.")
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if not status:
        return _error(400, "validation_error", "The callback has no MessageStatus.")
    details = {name: params[name] for name in _REPORTED_FIELDS if params.get(name)}
    message_provider_report(message=message, status=status, details=details)
    return HttpResponse(status=204)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto;">
<h1>{title}</h1><p>{text}</p>{form}</body></html>
"""


def _page(title: str, text: str, form: str = "", status: int = 200) -> HttpResponse:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text), form=form)
    return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    subscription_id = unsubscribe_subscription_id(token)
    subscription = (
        Subscription.objects.filter(pk=subscription_id).only("id", "enabled").first()
        if subscription_id
        else None
    )
    if subscription is None:
        return _page(
            "Link not valid", "This unsubscribe link is not valid, or its address is gone.",
            status=404,
        )  # fmt: skip
    if request.method == "GET":
        if not subscription.enabled:
            return _page("Unsubscribed", "This address receives no more of these e-mails.")
        form = '<form method="post"><button type="submit">Unsubscribe</button></form>'
        return _page("Unsubscribe", "Stop e-mails like this one to this address?", form)
    subscription_disable(subscription_id=subscription.pk, reason=UNSUBSCRIBED, actor="unsubscribe")
    return _page("Unsubscribed", "This address receives no more of these e-mails.")
