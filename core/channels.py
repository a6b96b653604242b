"""The channels, each declared once as a `ChannelSpec`: its subscription type, token rule, content
part and its fields, how it is delivered and by which adapter. `SubscriptionType`, the token
validation, the part serializers of messages, templates and campaigns, the OpenAPI schemas and
the admin's lists are derived from `SPECS`; the model fields' choices are `channel_choices`
(so no migration), the adapters' registry sends with the spec's `adapter` (core.apps registers
the paths; settings.CHANNEL_ADAPTERS may override one), a channel's links are its `links`, and
the rule its content must meet when a message, template or campaign is accepted is its
`content_check` (messaging, campaigns and templates_app run it for the channels concerned).

A new provider channel is one more spec here (a token rule: `tokens.matching` when a pattern
says it all), its adapter package (the class the spec names: `send_batch`, `from_settings`,
`channel`, `errors`, `secret_fields`, `clean_credentials`, `content_of` and `content_schema`,
the JSON Schema of what `content_of` returns, which the preview's OpenAPI form shows), its
fake provider and its tests (tests/core/test_new_channel.py shows what follows from these).

Content is `title`, `body` and `data` for every channel; a message, template or campaign may
add per-channel parts (`{"email": {"subject", "html", "from_name"}, "sms": {"text"}, ...}`),
each optional. A stored message keeps only the part of its own channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import quote

from django.utils.module_loading import import_string

from core import parts as fields
from core import tokens
from core.parts import (  # noqa: F401 (the limits and the URL rule, importable from here)
    MAX_HTML_LENGTH,
    MAX_KAKAO_BUTTONS,
    MAX_KAKAO_TEXT_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SMS_LENGTH,
    MAX_SUBJECT_LENGTH,
    MAX_URL_LENGTH,
    URL_PATTERN,
    PartField,
)
from core.validation import InputInvalid

PROVIDER = "provider"  # sent through an outside provider by the channel's adapter
LOCAL = "local"  # written here (the in-app inbox)


@dataclass(frozen=True, eq=False)
class ChannelSpec:
    """One channel. `token_rule(token)` is a token's canonical form (django's ValidationError
    when malformed; `token_rule.schema()` its JSON Schema keywords); `part` names the content
    part the channel reads (None: title, body and data are its content) and `part_fields` its
    fields; `credentials`: whether sending needs the application's ChannelCredential."""

    type: str
    name: str
    label: str
    token_rule: tokens.TokenRule
    part: str | None
    part_fields: Mapping[str, PartField]
    delivery: str
    adapter: str | None
    credentials: bool
    # The subscription carries the browser's keys {"p256dh", "auth"} with its token.
    token_keys: bool = False
    # Which of the service's links (messaging.links) its adapter gets with each message:
    # "unsubscribe_url" (bulk mail's one-click unsubscribe, RFC 8058), "status_callback" (the
    # SMS gateway's delivery reports).
    links: tuple[str, ...] = ()
    # The rule its content must meet for a message, template or campaign to be accepted: the
    # dotted path of `check(*, application, channel, contents, templated) -> None`, raising
    # core.validation.InputInvalid naming the field (`check_content` calls it; None: no rule
    # beyond the part's fields). `contents` are distinct contents going to the channel (each
    # with `body` and `parts`); `templated`: a template's, with its `{{ }}`s not rendered.
    content_check: str | None = None
    # A message to it is not sendable without its part (KakaoTalk: the template code), so a
    # campaign whose audience may reach it is checked even when it names no channel.
    part_required: bool = False

    @property
    def token_help(self) -> str:
        """One sentence on the token, for docs, the admin and the OpenAPI document."""
        return self.token_rule.help

    def adapter_class(self) -> type:
        """The adapter class (imported once); LookupError for a channel written locally."""
        if self.adapter is None:
            raise LookupError(f"{self.type} has no adapter: it is delivered {self.delivery}.")
        return _imported(self.adapter)

    def check_content(
        self,
        *,
        application: Any,
        contents: Sequence[ContentToCheck],
        templated: bool = False,
    ) -> None:
        """Raises InputInvalid when one of `contents` breaks the channel's rule
        (`content_check`, imported when first used); nothing without a rule."""
        if self.content_check is not None:
            _imported(self.content_check)(
                application=application, channel=self.type, contents=contents, templated=templated
            )


class ContentToCheck(Protocol):
    """What a content check reads of a message's content (messaging's `Content` is one)."""

    @property
    def body(self) -> str: ...

    @property
    def parts(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class PlainContent:
    """A content as a content check reads it, for callers without a `Content` of their own
    (one language of a template, say)."""

    body: str
    parts: Mapping[str, Any]


@cache
def _imported(path: str) -> Any:
    return import_string(path)


def adapter_content_check(
    *, application: Any, channel: str, contents: Sequence[ContentToCheck], templated: bool = False
) -> None:
    """The content check of a channel whose adapter says what it cannot send: its
    `content_problem(body=, part=)`, (field, message) or None, a pure function of the content
    (a template's text, not rendered yet, is checked once rendered)."""
    if templated:
        return
    adapter = spec_of(channel).adapter_class()
    for content in contents:
        problem = adapter.content_problem(body=content.body, part=part_for(channel, content.parts))
        if problem is not None:
            field, message = problem
            raise InputInvalid(message, field=field)


def _spec(*, part_fields: Mapping[str, PartField] | None = None, **values: Any) -> ChannelSpec:
    return ChannelSpec(part_fields=MappingProxyType(dict(part_fields or {})), **values)


# The subscription types, named for the code that means one of them.
IOS_PUSH = "iOSPush"
ANDROID_PUSH = "AndroidPush"
EMAIL = "Email"
SMS = "SMS"
KAKAOTALK = "KakaoTalk"
IN_APP = "InAppMessage"
WEB_PUSH = "WebPush"

SPECS: dict[str, ChannelSpec] = {
    spec.type: spec
    for spec in (
        _spec(
            type=IOS_PUSH,
            name="IOS_PUSH",
            label="iOS push",
            token_rule=tokens.APNS,
            part=None,
            delivery=PROVIDER,
            adapter="adapters.apns.APNsAdapter",
            credentials=True,
        ),
        _spec(
            type=ANDROID_PUSH,
            name="ANDROID_PUSH",
            label="Android push",
            token_rule=tokens.FCM,
            part=None,
            delivery=PROVIDER,
            adapter="adapters.fcm.FCMAdapter",
            credentials=True,
        ),
        _spec(
            type=EMAIL,
            name="EMAIL",
            label="E-mail",
            token_rule=tokens.EMAIL,
            part="email",
            part_fields={
                "subject": fields.text(fields.MAX_SUBJECT_LENGTH, single_line=True),
                "html": fields.text(fields.MAX_HTML_LENGTH),
                "from_name": fields.text(fields.MAX_NAME_LENGTH, single_line=True),
            },
            delivery=PROVIDER,
            adapter="adapters.email.EmailAdapter",
            credentials=True,
            links=("unsubscribe_url",),
        ),
        _spec(
            type=SMS,
            name="SMS",
            label="SMS",
            token_rule=tokens.PHONE,
            part="sms",
            part_fields={"text": fields.text(fields.MAX_SMS_LENGTH)},
            delivery=PROVIDER,
            adapter="adapters.sms.TwilioSMSAdapter",
            credentials=True,
            content_check="core.channels.adapter_content_check",
            links=("status_callback",),
        ),
        _spec(
            type=KAKAOTALK,
            name="KAKAOTALK",
            label="KakaoTalk",
            token_rule=tokens.PHONE,
            part="kakao",
            part_fields={
                "template_code": fields.text(100, single_line=True),
                "variables": fields.variables(),
                "buttons": fields.buttons(),
                "fallback_text": fields.text(fields.MAX_KAKAO_TEXT_LENGTH),
            },
            delivery=PROVIDER,
            adapter="adapters.kakao.KakaoAdapter",
            credentials=True,
            # The application's templates synced from the dealer (templates_app.kakao).
            content_check="templates_app.kakao.kakao_content_check",
            part_required=True,
        ),
        _spec(
            type=IN_APP,
            name="IN_APP",
            label="In-app message",
            token_rule=tokens.OPAQUE,
            part="in_app",
            part_fields={"image_url": fields.url(), "action_url": fields.url()},
            delivery=LOCAL,
            adapter=None,
            credentials=False,
        ),
        _spec(
            type=WEB_PUSH,
            name="WEB_PUSH",
            label="Web Push",
            token_rule=tokens.WEB_PUSH_ENDPOINT,
            part="web_push",
            part_fields={"url": fields.url(), "icon": fields.url()},
            delivery=PROVIDER,
            adapter="adapters.webpush.WebPushAdapter",
            credentials=True,
            token_keys=True,
        ),
    )
}


def spec_of(channel_type: str) -> ChannelSpec:
    """The spec of a subscription type; KeyError naming the known ones."""
    try:
        return SPECS[channel_type]
    except KeyError:
        raise KeyError(f"Unknown channel {channel_type!r}; known: {', '.join(SPECS)}.") from None


CHANNELS = tuple(SPECS)


def channel_choices() -> list[tuple[str, str]]:
    """(type, label) of every channel, for the `choices` of a model field holding a channel
    type: a callable, so migrations name it rather than list the channels, and a new spec needs
    no migration."""
    return [(spec.type, spec.label) for spec in SPECS.values()]


# The part each channel reads; push to devices has none (title, body and data are its content).
PART_OF_CHANNEL = {spec.type: spec.part for spec in SPECS.values() if spec.part}
PART_NAMES = tuple(PART_OF_CHANNEL.values())
CHANNEL_OF_PART = {part: channel for channel, part in PART_OF_CHANNEL.items()}
# part -> field -> PartField; a field not listed is refused.
PART_FIELDS: dict[str, Mapping[str, PartField]] = {
    spec.part: spec.part_fields for spec in SPECS.values() if spec.part
}


def parts_example() -> str:
    """Every part and its fields as a JSON-like example for help texts:
    `{"email": {"subject": "...", ...}, "kakao": {"variables": {...}, ...}, ...}`."""
    shown = {"object": "{...}", "array": "[...]"}
    parts = []
    for part, part_fields in PART_FIELDS.items():
        values = [
            f'"{name}": ' + shown.get(field.schema.get("type"), '"..."')
            for name, field in part_fields.items()
        ]
        parts.append(f'"{part}": {{{", ".join(values)}}}')
    return "{" + ", ".join(parts) + "}"


def normalize_token(channel_type: str, token: str) -> str:
    """The canonical form of a token of this type; raises ValidationError when malformed."""
    return SPECS[channel_type].token_rule(token)


# What a rendered URL keeps as it is; anything else (a space, non-ASCII text from a variable)
# is percent-encoded, as a browser does with what is typed into its address bar.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def rendered_urls_encoded(parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`parts` as rendered from a template, with each URL field's variable text
    percent-encoded (`https://shop.example/{{slug}}` with slug "summer sale" becomes
    `https://shop.example/summer%20sale`)."""
    encoded = {}
    for name, part in parts.items():
        urls = [key for key, field in PART_FIELDS.get(name, {}).items() if field.url]
        if isinstance(part, dict) and any(isinstance(part.get(key), str) for key in urls):
            part = {
                key: quote(value, safe=_URL_SAFE)
                if key in urls and isinstance(value, str) and "\x00" not in value
                else value
                for key, value in part.items()
            }
        encoded[name] = part
    return encoded


def part_check(
    name: str, value: Any, *, field: str | None = None, templated: bool = False
) -> dict[str, Any]:
    """One channel part, checked: an object of its known fields, each within its limits.
    Raises InputInvalid naming the field (`email.subject`). `templated`: the part of a
    template, whose URLs may hold `{{ }}` variables (checked again once rendered)."""
    field = field or name
    if not isinstance(value, dict):
        raise InputInvalid(f"{field} must be an object.", field=field)
    known = PART_FIELDS[name]
    for key, item in value.items():
        if key not in known:
            raise InputInvalid(
                f"{field} has no field {key!r}; known: {', '.join(known)}.", field=f"{field}.{key}"
            )
        known[key].checked(item, f"{field}.{key}", templated=templated)
    return value


def parts_check(
    parts: Mapping[str, Any] | None, *, templated: bool = False
) -> dict[str, dict[str, Any]]:
    """Every part of `{"email": {...}, "sms": {...}}`, checked (part_check); empty parts (`{}`)
    are left out."""
    if parts is not None and not isinstance(parts, Mapping):
        raise InputInvalid(
            f"The channel parts are an object: part name ({', '.join(PART_NAMES)}) -> part.",
            field="parts",
        )
    checked = {}
    for name, value in (parts or {}).items():
        if name not in PART_FIELDS:
            raise InputInvalid(
                f"Unknown channel part {name!r}; known: {', '.join(PART_NAMES)}.", field=name
            )
        if value != {}:
            checked[name] = part_check(name, value, templated=templated)
    return checked


def part_for(channel: str, parts: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part a message to `channel` carries of `parts` ({} when it has none)."""
    if not parts:
        return {}
    name = PART_OF_CHANNEL.get(channel)
    return (parts.get(name) or {}) if name else {}
