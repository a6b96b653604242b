"""What an AlimTalk message is made of, computed once for the send and for the preview.

`content_of` is the kakao part as the dealer gets it (template code, `#{variable}` values,
buttons) plus the SMS fallback the dealer sends when the AlimTalk cannot be delivered
(`resendParameter`). The fallback goes through NHN's SMS service, which counts bytes in EUC-KR
(Hangul 2 bytes, ASCII 1) and fails a text with a character EUC-KR cannot encode ("대체 발송
내용은 EUC-KR 기준으로 발송되며, 지원하지 않는 이모티콘은 대체 발송에 실패합니다", NHN's console
guide): such characters are left out, and the text is cut to the SMS (90 bytes) or LMS
(2,000 bytes; title 120 bytes) limit. Byte counts use cp949, the EUC-KR that Korean systems
run (every Hangul syllable in 2 bytes, where strict EUC-KR spells 8,822 of them in 8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from adapters.base import JSON_OBJECT, TEXT, TEXT_OR_NULL, object_schema

SMS_MAX_BYTES = 90
LMS_MAX_BYTES = 2000
LMS_TITLE_MAX_BYTES = 120
KOREA = "+82"

# `#{name}` as the dealer substitutes it from templateParameter.
_VARIABLE = re.compile(r"#\{([^{}]+)\}")

# Part button fields the send carries per recipient (the rest of a button, its type, name and
# links, is the approved template's): ours in snake case, or the dealer's own names.
_RECIPIENT_BUTTON_FIELDS = {
    "chat_extra": "chatExtra",
    "chat_event": "chatEvent",
    "relay_id": "relayId",
    "one_click_id": "oneClickId",
    "product_id": "productId",
    "target": "target",
    "tel_number": "telNumber",
}


# What content_of returns; a preview adds the approved template's name and text, filled with
# the variables, and the template's buttons (the product holds the synced templates), and
# `problem` when the part cannot be sent.
CONTENT_SCHEMA = object_schema(
    "the kakao part, the SMS fallback's resendParameter (null without a fallback number) and "
    "the approved template's text filled with the variables.",
    {
        "template_code": TEXT_OR_NULL,
        "variables": {"type": "object", "additionalProperties": TEXT},
        "buttons": {"type": "array", "items": JSON_OBJECT},
        "fallback_text": TEXT_OR_NULL,
        "resend": {
            "type": ["object", "null"],
            "required": ["isResend", "resendSendNo"],
            "properties": {
                "isResend": {"type": "boolean"},
                "resendSendNo": TEXT,
                "resendType": {"type": "string", "enum": ["SMS", "LMS"]},
                "resendContent": TEXT,
                "resendTitle": TEXT,
            },
            "additionalProperties": False,
        },
        "template_name": TEXT,
        "text": TEXT_OR_NULL,
        "problem": TEXT_OR_NULL,
    },
    optional=("template_name", "text", "problem"),
)


def euc_kr_text(text: str) -> str:
    """`text` without the characters EUC-KR cannot send (emoji and the like)."""
    try:
        text.encode("cp949")
    except UnicodeEncodeError:
        return "".join(char for char in text if _encodable(char))
    return text


def _encodable(char: str) -> bool:
    try:
        char.encode("cp949")
    except UnicodeEncodeError:
        return False
    return True


def euc_kr_length(text: str) -> int:
    """Bytes of `text` in EUC-KR, as NHN's SMS service counts them."""
    return len(text.encode("cp949", errors="replace"))


def euc_kr_cut(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` EUC-KR bytes, between characters."""
    if euc_kr_length(text) <= max_bytes:
        return text
    total = 0
    for index, char in enumerate(text):
        total += 1 if char < "\x80" else len(char.encode("cp949", errors="replace"))
        if total > max_bytes:
            return text[:index]
    return text


def resend_parameter(
    *, text: str, title: str, send_no: str, international: bool = False
) -> dict[str, Any]:
    """The `resendParameter` of a recipient: SMS when the text fits 90 EUC-KR bytes (and
    always to numbers outside Korea, where NHN resends only SMS), else LMS with a title."""
    text = euc_kr_text(text).strip()
    parameter: dict[str, Any] = {"isResend": True, "resendSendNo": send_no}
    if not text:
        # The dealer then resends the template's text and its web link buttons.
        return parameter
    if international or euc_kr_length(text) <= SMS_MAX_BYTES:
        parameter["resendType"] = "SMS"
        parameter["resendContent"] = euc_kr_cut(text, SMS_MAX_BYTES)
        return parameter
    parameter["resendType"] = "LMS"
    parameter["resendContent"] = euc_kr_cut(text, LMS_MAX_BYTES)
    title = euc_kr_cut(" ".join(euc_kr_text(title).split()), LMS_TITLE_MAX_BYTES)
    if title:
        parameter["resendTitle"] = title  # without one, the dealer uses the channel's id
    return parameter


def content_of(
    *,
    title: str,
    body: str,
    data: Mapping[str, Any],
    part: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a message shows on KakaoTalk: the template code, its `#{variable}` values, the
    part's buttons, the fallback text, and the `resendParameter` sent when the credentials
    have a `fallback_send_no` (as for a number in Korea; None without one). The approved
    template's text, filled with the variables, is the product's to add."""
    part = part or {}
    fallback_text = part.get("fallback_text") or None
    send_no = (credentials or {}).get("fallback_send_no")
    resend = None
    if send_no:
        resend = resend_parameter(text=fallback_text or body or "", title=title, send_no=send_no)
    return {
        "template_code": part.get("template_code") or None,
        "variables": template_parameter(part.get("variables")),
        "buttons": [dict(button) for button in part.get("buttons") or ()],
        "fallback_text": fallback_text,
        "resend": resend,
    }


def template_parameter(variables: Mapping[str, Any] | None) -> dict[str, str]:
    """`templateParameter`: every value a string, as the dealer takes them."""
    return {
        str(key): value if isinstance(value, str) else str(value)
        for key, value in (variables or {}).items()
    }


def recipient_buttons(buttons: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The per-recipient `buttons` of a send: the ordering and the recipient's own values of
    the buttons that have any (bot extras, plugin ids, `target: out`, a phone number)."""
    sent = []
    for index, button in enumerate(buttons):
        extra = {}
        for ours, theirs in _RECIPIENT_BUTTON_FIELDS.items():
            value = button.get(ours, button.get(theirs))
            if value not in (None, ""):
                extra[theirs] = value
        if extra:
            ordering = button.get("ordering")
            sent.append({"ordering": ordering if isinstance(ordering, int) else index + 1, **extra})
    return sent


def recipient_no(token: str) -> str:
    """`recipientNo` of an E.164 token: a Korean number in its domestic form (`+8210...` ->
    `010...`, what the dealer documents), another country's with its country code (NHN takes
    those since 2019-05-28), anything else as it is."""
    if token.startswith(KOREA) and token[3:].isdigit():
        national = token[3:]
        return national if national.startswith("0") else "0" + national
    return token


def is_international(token: str) -> bool:
    return token.startswith("+") and not token.startswith(KOREA)


def template_variables(texts: Iterable[str | None]) -> list[str]:
    """The `#{variable}` names in these texts, each once, in order of appearance."""
    names: dict[str, None] = {}
    for text in texts:
        for name in _VARIABLE.findall(text or ""):
            names.setdefault(name.strip(), None)
    return list(names)


def template_texts(template: Mapping[str, Any]) -> Iterator[str | None]:
    """The fields of a dealer template where `#{variable}`s are replaced: the body first,
    then title, header, item list and highlight, and the buttons' links."""
    yield template.get("templateContent")
    for name in ("templateTitle", "templateHeader", "templateExtra"):
        yield template.get(name)
    highlight = template.get("templateItemHighlight") or {}
    yield highlight.get("title")
    yield highlight.get("description")
    item = template.get("templateItem") or {}
    for entry in (item.get("list") or []) + [item.get("summary") or {}]:
        yield entry.get("title")
        yield entry.get("description")
    for button in template.get("buttons") or ():
        for name in ("linkMo", "linkPc", "schemeIos", "schemeAndroid"):
            yield button.get(name)
