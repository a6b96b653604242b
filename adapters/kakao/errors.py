"""NHN Cloud KakaoTalk Bizmessage codes as data: what each means for a message.

Two kinds of code come from the dealer (NHN Cloud's error-code guide): the API response codes
(`header.resultCode` of a request and `sendResults[].resultCode` of each recipient, 0 or
negative) and the delivery result codes of the final results (`resultCode` of the result and
list APIs, "1000" = delivered). Each maps to the three flags of `adapters.errors.ErrorClass`:
`permanent` (the same message fails the same way), `token_invalid` (the number cannot get
AlimTalk from this channel: disable the subscription) and `credential_rejected` (the app key or
secret key was refused). As for the other providers, a credential or configuration problem of
ours (keys, sender profile, SMS fallback settings) is temporary: the operator fixes it and the
message is still good. A code missing here is classified by the shared rule
(`adapters.errors.classified`).
"""

from __future__ import annotations

from adapters.errors import ErrorClass, error_table

PROVIDER = "NHN Kakao"

SUCCESS = 0  # API response code of an accepted request / recipient
DELIVERED = "1000"  # delivery result code of a delivered AlimTalk
IDEMPOTENCY_KEY_REUSED = -1005
ALL_RECIPIENTS_FAILED = -1031
# Delivery result codes after which the dealer resends as SMS when the request asked for it:
# not a KakaoTalk user, AlimTalk blocked, not an active KakaoTalk user on this number.
FALLBACK_CODES = frozenset({"3018", "3019", "3020"})

# Local codes: found on our side, before or instead of a dealer answer.
MISSING_TEMPLATE_CODE = "missing_template_code"
BAD_ANSWER = "bad_answer"


def _table(rows: list[tuple]) -> dict[str, ErrorClass]:
    # (code, permanent, token_invalid, credential_rejected, meaning): the dealer's codes come
    # in the body of a 200, so a row has no HTTP status of its own.
    return error_table(PROVIDER, [(str(code), None, *flags) for code, *flags in rows])


# API response codes that a send, a template list or a result query can answer, in the
# order of NHN's error-code guide (template registration, images, statistics and FriendTalk
# codes are left out: this service never calls those APIs).
API_ERRORS: dict[str, ErrorClass] = _table(
    [
        (4, True, False, False, "parameter verification failed (see resultMessage)"),
        (-1000, False, False, True, "invalid appKey"),
        (-1001, False, False, True, "invalid secretKey"),
        (-1002, False, False, False, "invalid SMS appkey (fallback settings)"),
        (-1003, False, False, False, "invalid SMS sender number: fallback_send_no unregistered"),
        (-1005, False, False, False, "X-NC-API-IDEMPOTENCY-KEY reused within 10 minutes"),
        (-1006, False, False, False, "the sender profile has no sender key"),
        (-1014, False, False, False, "the sender profile is not active"),
        (-1016, True, False, False, "no message with this requestId / recipientSeq"),
        (-1019, False, False, False, "invalid fallback 080 opt-out number"),
        (-1024, True, False, False, "a sender profile group cannot send"),
        (-1027, False, False, False, "the sender profile is blocked"),
        (-1028, True, False, False, "a variable replaces over 14 characters (new sender limit)"),
        (-1031, True, False, False, "every recipient of the request failed"),
        (-2000, True, False, False, "a field value is too long"),
        (-2001, True, False, False, "a field value is empty"),
        (-2002, True, False, False, "a field value is null"),
        (-2003, True, False, False, "a field value is below its minimum"),
        (-2004, True, False, False, "a field value is out of its length range"),
        (-2005, True, False, False, "a field value is out of its range"),
        (-2017, False, False, False, "no sender profile: sender_key unknown"),
        (-2018, True, False, False, "invalid button parameter"),
        (-2019, True, False, False, "the template body exceeds 1,300 characters"),
        (-2025, True, False, False, "the scheduled date is in the past"),
        (-2026, True, False, False, "the scheduled date is over 90 days ahead"),
        (-2027, True, False, False, "requestDate has another format"),
        (-2502, False, False, False, "fallback requested but not set up for the sender profile"),
        (-3002, True, False, False, "the request body cannot be read"),
        (-3003, True, False, False, "the template does not exist"),
        (-3004, True, False, False, "template parameter error: a #{variable} is missing"),
        (-3005, True, False, False, "the template is not approved (TSC03)"),
        (-3010, True, False, False, "the content does not match the template"),
        (-3011, True, False, False, "the buttons do not match the template"),
        (-3033, True, False, False, "a button or quick reply is not in the template"),
        (-3048, True, False, False, "a template parameter exceeds 1,300 characters"),
        (-3049, True, False, False, "the template parameters do not match the template"),
        (-3301, True, True, False, "the recipient opted out (080)"),
        (-3324, True, False, False, "invalid template variable"),
        (-3347, True, False, False, "a template parameter key contains '@'"),
        (-4000, True, False, False, "invalid parameter"),
        (-4003, True, False, False, "the search range exceeds one month"),
        (-4004, False, False, True, "the appkey does not exist"),
        (-4005, False, False, True, "the appkey is disabled"),
        (-4017, True, False, False, "messages older than 90 days cannot be read"),
        (-4019, True, True, False, "invalid recipient number"),
        (-4029, False, False, False, "marketing consent of the sender profile not activated"),
        (-4103, True, False, False, "invalid requestId or request dates"),
        (-4200, True, False, False, "invalid fallback (resend) message"),
        (-5000, True, True, False, "invalid recipient number"),
        (-7000, False, False, False, "the vendor (Kakao) API request failed"),
        (-8008, True, False, False, "the content has a banned word"),
        (-9996, True, False, False, "Content-Type is not application/json"),
        (-9997, True, False, False, "inappropriate request"),
        (-9998, True, False, False, "no such API"),
        (-9999, False, False, False, "dealer system error"),
    ]
)

# Delivery result codes of the final per-recipient results, in the guide's order. A result
# is final: `permanent` says whether sending the same message again could end otherwise.
DELIVERY_ERRORS: dict[str, ErrorClass] = _table(
    [
        (1001, True, False, False, "request body is not JSON"),
        (1002, False, False, False, "invalid hub partner key (dealer configuration)"),
        (1003, False, False, False, "invalid sender profile key"),
        (1004, True, False, False, "name missing from the request body"),
        (1006, False, False, False, "deleted sender profile"),
        (1007, False, False, False, "blocked sender profile"),
        (1011, False, False, False, "contract information not found"),
        (1012, True, False, False, "user key of invalid format"),
        (1013, False, False, False, "invalid app connection"),
        (1014, False, False, False, "invalid business registration number"),
        (1015, True, False, False, "invalid app user id"),
        (1016, False, False, False, "business registration number mismatch"),
        (1020, True, True, False, "phone number invalid or missing"),
        (1021, False, False, False, "blocked KakaoTalk channel"),
        (1022, False, False, False, "closed KakaoTalk channel"),
        (1023, False, False, False, "deleted KakaoTalk channel"),
        (1024, False, False, False, "KakaoTalk channel pending deletion"),
        (1025, False, False, False, "channel under sanction"),
        (1027, False, False, False, "channel messages under sanction"),
        (1028, True, False, False, "targeting option unavailable"),
        (1030, True, False, False, "invalid parameter"),
        (1033, True, False, False, "template message type and chat_bubble_type mismatch"),
        (2001, False, False, False, "message could not be sent (unexpected error)"),
        (2003, True, False, False, "channel not added on the test server"),
        (2005, False, False, False, "Kakao could not read the image"),
        (3000, False, False, False, "unexpected error"),
        (3005, True, False, False, "sent, receipt unconfirmed (may arrive within 3 days)"),
        (3006, False, False, False, "Kakao internal system error"),
        (3008, True, True, False, "phone number error"),
        (3010, False, False, False, "unexpected error"),
        (3011, True, False, False, "message does not exist"),
        (3012, False, False, False, "Kakao communication failure"),
        (3013, True, False, False, "message is empty"),
        (3014, True, False, False, "message too long"),
        (3015, True, False, False, "template not found"),
        (3016, True, False, False, "content does not match the template"),
        (3018, True, False, False, "cannot send: SIM and KakaoTalk numbers differ, or inactive"),
        (3019, True, True, False, "not a KakaoTalk user"),
        (3020, True, True, False, "the user blocked AlimTalk from this channel"),
        (3021, True, False, False, "KakaoTalk version too old"),
        (3022, False, False, False, "outside the hours messages may be sent"),
        (3023, True, False, False, "message grammar (JSON) error"),
        (3024, True, False, False, "image cannot be sent"),
        (3025, True, False, False, "variable length limit exceeded"),
        (3026, True, False, False, "bot button extra/event too long"),
        (3027, True, False, False, "buttons or quick replies do not match the template"),
        (3028, True, False, False, "highlight title does not match the template"),
        (3029, True, False, False, "highlight title over 50 characters"),
        (3030, True, False, False, "message type and template highlight type differ"),
        (3031, True, False, False, "header does not match the template"),
        (3032, True, False, False, "header over 16 characters"),
        (3033, True, False, False, "item highlight does not match the template"),
        (3034, True, False, False, "item highlight title too long"),
        (3035, True, False, False, "item highlight description too long"),
        (3036, True, False, False, "item list does not match the template"),
        (3037, True, False, False, "item description over 23 characters"),
        (3038, True, False, False, "item summary does not match the template"),
        (3039, True, False, False, "item summary description over 14 characters"),
        (3040, True, False, False, "item summary description has characters not allowed"),
        (3042, True, False, False, "main link does not match the template"),
        (3043, True, False, False, "image variable count does not match the template"),
        (3046, True, False, False, "additional information too long"),
        (3048, True, False, False, "invalid group tag key"),
        (3050, True, False, False, "opt-out (N type) unsupported"),
        (4000, False, False, False, "message delivery result not found"),
        (4001, False, False, False, "unknown message status"),
        (4100, True, False, False, "requestId error"),
        (4101, True, False, False, "request date error"),
        (4102, True, False, False, "template request error"),
        (4103, False, False, False, "no valid hub partner"),
        (4104, False, False, False, "no valid sender profile"),
        (4110, True, False, False, "invalid chat bubble or message type"),
        (4120, True, False, False, "error creating the message payload"),
        (4121, True, False, False, "message destination error"),
        (4122, False, False, False, "message result query error"),
        (4130, True, False, False, "requestId pattern error"),
        (4131, True, False, False, "duplicated requestId"),
        (4132, True, False, False, "template variable mismatch"),
        (4133, True, False, False, "stopped template"),
        (4134, True, False, False, "changed template"),
        (4137, False, False, False, "message request failed"),
        (4139, False, False, False, "message request failed"),
        (4140, False, False, False, "message request failed"),
        (4141, False, False, False, "message request failed"),
        (4142, False, False, False, "message request failed"),
        (4143, True, False, False, "expired request"),
        (4144, True, False, False, "body over 30 KB"),
        (4156, False, False, False, "maximum number of deliveries exceeded"),
        (4161, False, False, False, "message being processed"),
        (9998, False, False, False, "Kakao system problem (service stopped)"),
        (9999, False, False, False, "Kakao system problem (unknown error)"),
    ]
)

LOCAL_ERRORS: dict[str, ErrorClass] = error_table(
    "local",
    [
        (MISSING_TEMPLATE_CODE, None, True, False, False, "no kakao.template_code: not sent"),
        (BAD_ANSWER, None, False, False, False, "the dealer's answer could not be read"),
    ],
)

KAKAO_ERRORS: dict[str, ErrorClass] = {**API_ERRORS, **DELIVERY_ERRORS, **LOCAL_ERRORS}
