"""The dealer's wire format: request bodies, dates, the idempotency key, and the template and
result records read back, normalized. No I/O here (`adapters.kakao.adapter`)."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from adapters.kakao.content import template_texts, template_variables
from adapters.kakao.errors import DELIVERY_ERRORS

API = "/alimtalk/v2.3/appkeys"
MAX_RECIPIENTS = 1000  # recipientList: "up to 1000 persons"
PAGE_SIZE = 1000  # pageSize: "Max: 1000"
MAX_GROUPING_KEY = 100  # senderGroupingKey / recipientGroupingKey: "up to 100 characters"
# The dealer's dates ("yyyy-MM-dd HH:mm") are Korea Standard Time (UTC+9, no DST).
KST = datetime.timezone(datetime.timedelta(hours=9), "KST")
DATE_FORMAT = "%Y-%m-%d %H:%M"

# Template fields a preview needs besides the text (the bubble's title, header, extra lines).
_TEMPLATE_DETAILS = (
    "templateMessageType",
    "templateEmphasizeType",
    "templateTitle",
    "templateSubtitle",
    "templateHeader",
    "templateExtra",
    "templateAd",
    "templateItem",
    "templateItemHighlight",
    "templateRepresentLink",
    "templateImageName",
    "templateImageUrl",
    "quickReplies",
    "statusName",
    "securityFlag",
    "categoryCode",
    "createDate",
    "updateDate",
)
_BUTTON_FIELDS = {
    "ordering": "ordering",
    "type": "type",
    "name": "name",
    "linkMo": "url_mobile",
    "linkPc": "url_pc",
    "schemeIos": "scheme_ios",
    "schemeAndroid": "scheme_android",
    "telNumber": "tel_number",
    "bizFormId": "biz_form_id",
    "pluginId": "plugin_id",
}
_RESULT_DETAILS = {
    "messageStatus": "message_status",
    "resultCodeName": "result_code_name",
    "resendStatusName": "resend_status_name",
    "resendResultCode": "resend_result_code",
    "resendRequestId": "resend_request_id",
    "requestDate": "request_date",
    "createDate": "create_date",
    "receiveDate": "receive_date",
    "templateCode": "template_code",
    "senderGroupingKey": "sender_grouping_key",
}

# resendStatus: RSC01 no resend, RSC02 to be resent (if delivery fails), RSC03 resending,
# RSC04 resent, RSC05 resend failed ("Status Code of SMS/LMS Resending").
RESEND_PENDING = frozenset({"RSC02", "RSC03"})
RESEND_SUCCEEDED = "RSC04"
RESEND_FAILED = "RSC05"


def idempotency_key(message_ids: Iterable[str]) -> str:
    """`X-NC-API-IDEMPOTENCY-KEY` of the request sending these messages: the same messages
    give the same key, in any order, so a request sent again is known to the dealer."""
    digest = hashlib.sha256()
    for message_id in sorted(message_ids):
        digest.update(message_id.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dealer_date(moment: datetime.datetime, *, round_up: bool = False) -> str:
    """A moment as the dealer's `yyyy-MM-dd HH:mm` in KST (naive moments are UTC), floored to
    its minute or, with `round_up`, raised to the next one."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    moment = moment.astimezone(KST)
    floored = moment.replace(second=0, microsecond=0)
    if round_up and floored != moment:
        floored += datetime.timedelta(minutes=1)
    return floored.strftime(DATE_FORMAT)


def header_of(body: Mapping[str, Any] | None) -> tuple[int | None, str, bool]:
    """`header.resultCode`, `resultMessage` and `isSuccessful` of an answer."""
    header = (body or {}).get("header")
    if not isinstance(header, Mapping):
        return None, "", False
    code = header.get("resultCode")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    return code, str(header.get("resultMessage") or ""), header.get("isSuccessful") is True


def normalize_template(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A dealer template as the service stores it."""
    buttons = []
    for button in raw.get("buttons") or ():
        buttons.append(
            {ours: button[theirs] for theirs, ours in _BUTTON_FIELDS.items() if button.get(theirs)}
        )
    return {
        "template_code": raw.get("templateCode"),
        "name": raw.get("templateName") or "",
        "text": raw.get("templateContent") or "",
        "variables": template_variables(template_texts(raw)),
        "buttons": buttons,
        "status": raw.get("status") or "",
        "details": {
            name: raw[name] for name in _TEMPLATE_DETAILS if raw.get(name) not in (None, "", [], {})
        },
    }


def normalize_result(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A dealer result update (`message-results` or the message list) as the service reads
    it: `outcome` is delivered, failed, resent_sms (the SMS fallback went out), resend_failed
    or pending (not final yet, or the fallback is under way)."""
    status = str(raw.get("messageStatus") or "").upper()
    code = str(raw.get("resultCode") or "")
    resend = str(raw.get("resendStatus") or "")
    if status == "COMPLETED":
        outcome = "delivered"
    elif status in ("FAILED", "CANCEL"):
        if resend == RESEND_SUCCEEDED:
            outcome = "resent_sms"
        elif resend == RESEND_FAILED:
            outcome = "resend_failed"
        elif resend in RESEND_PENDING:
            outcome = "pending"
        else:
            outcome = "failed"
    else:
        outcome = "pending"
    error = DELIVERY_ERRORS.get(code)
    seq = raw.get("recipientSeq")
    return {
        "provider_id": f"{raw.get('requestId')}:{seq}",
        "message_id": raw.get("recipientGroupingKey") or None,
        "recipient_no": raw.get("recipientNo") or None,
        "outcome": outcome,
        "code": code or status or None,
        "resend_status": resend or None,
        # Not a KakaoTalk user / blocked, and no SMS went instead: disable the subscription.
        "token_invalid": bool(outcome == "failed" and error is not None and error.token_invalid),
        "details": {
            ours: raw[theirs] for theirs, ours in _RESULT_DETAILS.items() if raw.get(theirs)
        },
    }
