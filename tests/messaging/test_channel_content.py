"""What each channel sends of a message's content, and the SMS segment count it rests on."""

from __future__ import annotations

import pytest

from adapters.sms_text import segments
from core.validation import InputInvalid
from messaging.channel_content import channel_content, sms_text, sms_text_check


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 0)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # 160 septets
        ("€" * 81, ("GSM-7", 2)),
        ("a" * 152 + "€" * 77, ("GSM-7", 3)),  # 306 septets, but an escape never straddles
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", ("GSM-7", 1)),
        ("가" * 70, ("UCS-2", 1)),
        ("가" * 71, ("UCS-2", 2)),
        ("a" * 159 + "ç", ("UCS-2", 3)),  # ç is not in the GSM alphabet (Ç is)
        ("😀" * 35, ("UCS-2", 1)),  # 70 UTF-16 units
        ("😀" * 36, ("UCS-2", 2)),  # 72 units
        ("가" * 66 + "😀" * 34, ("UCS-2", 3)),  # 134 units, but a pair never straddles
    ],
)
def test_segments(text, expected):
    assert segments(text) == expected


def test_the_sms_text_is_the_part_else_the_body():
    assert sms_text(body="b", parts={"sms": {"text": "t"}}) == ("t", "sms.text")
    assert sms_text(body="b", parts={"sms": {"text": ""}}) == ("b", "body")
    assert sms_text(body="b", parts={"email": {"subject": "s"}}) == ("b", "body")
    assert sms_text(body="b", parts=None) == ("b", "body")


def test_the_sms_check_names_the_field_the_text_came_from():
    sms_text_check(body="a" * 1530, parts={})
    with pytest.raises(InputInvalid) as refused:
        sms_text_check(body="a" * 1531, parts={})
    assert refused.value.field == "body"
    with pytest.raises(InputInvalid) as refused:
        sms_text_check(body="", parts={"sms": {"text": "가" * 671}})
    assert refused.value.field == "sms.text"
    assert "11 segments of UCS-2" in refused.value.message


CONTENT = {
    "title": "Sale",
    "body": "Half price",
    "data": {"screen": "sale"},
    "parts": {
        "email": {"html": "<p>Half</p>"},
        "sms": {"text": "Sale: half price"},
        "web_push": {"url": "https://example.com/sale"},
        "in_app": {"image_url": "https://example.com/b.png"},
        "kakao": {"template_code": "SALE_01", "variables": {"pct": "50"}},
    },
}


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (
            "Email",
            {"subject": "Sale", "text": "Half price", "html": "<p>Half</p>", "from_name": "Shop"},
        ),
        ("SMS", {"text": "Sale: half price", "encoding": "GSM-7", "segments": 1}),
        (
            "WebPush",
            {
                "title": "Sale",
                "body": "Half price",
                "url": "https://example.com/sale",
                "icon": None,
            },
        ),
        ("iOSPush", {"title": "Sale", "body": "Half price", "data": {"screen": "sale"}}),
        ("AndroidPush", {"title": "Sale", "body": "Half price", "data": {"screen": "sale"}}),
        (
            "InAppMessage",
            {
                "title": "Sale",
                "body": "Half price",
                "data": {"screen": "sale"},
                "image_url": "https://example.com/b.png",
                "action_url": None,
            },
        ),
        (
            "KakaoTalk",
            {
                "template_code": "SALE_01",
                "variables": {"pct": "50"},
                "buttons": [],
                "fallback_text": None,
                "resend": None,
            },
        ),
    ],
)
def test_channel_content(channel, expected):
    assert channel_content(channel, credentials={"from_name": "Shop"}, **CONTENT) == expected


def test_an_email_part_overrides_subject_and_sender():
    content = {**CONTENT, "parts": {"email": {"subject": "SALE!", "from_name": "Sales team"}}}

    sent = channel_content("Email", credentials={"from_name": "Shop"}, **content)

    assert (sent["subject"], sent["from_name"], sent["html"]) == ("SALE!", "Sales team", "")
