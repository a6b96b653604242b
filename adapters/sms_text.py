"""How many SMS segments a text costs, and in which encoding (3GPP TS 23.038 / 23.040).

A text made only of the GSM 03.38 default alphabet (plus its extension table, whose
characters take an escape and so two septets each) goes as GSM-7: 160 septets in one SMS, or
153 per part once it is split (the concatenation header takes the rest). Anything else goes as
UCS-2: 70 UTF-16 code units in one SMS, 67 per part; characters outside the Basic
Multilingual Plane (most emoji) are surrogate pairs and take two. A part never splits an
escape sequence or a surrogate pair, so such a character that does not fit starts the next
part. Used by the SMS adapter's callers (cost previews) and by the fake Twilio's
`num_segments`.
"""

from __future__ import annotations

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# The default alphabet in code order 0x00-0x7F, without 0x1B (the escape to the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs the escape septet plus its own.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def segments(text: str) -> tuple[str, int]:
    """The encoding ("GSM-7" or "UCS-2") and the number of SMS segments of `text` (0 when
    it is empty)."""
    if not text:
        return GSM7, 0
    if GSM7_ALL.issuperset(text):
        escaped = sum(text.count(char) for char in GSM7_EXTENSION if char in text)
        return GSM7, _parts(text, len(text) + escaped, escaped, GSM7_SINGLE, GSM7_PART, _septets)
    astral = len(text.encode("utf-16-le")) // 2 - len(text)
    return UCS2, _parts(text, len(text) + astral, astral, UCS2_SINGLE, UCS2_PART, _code_units)


def _septets(char: str) -> int:
    return 2 if char in GSM7_EXTENSION else 1


def _code_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _parts(text: str, units: int, doubles: int, single: int, part: int, width) -> int:
    """Segments of `units` units; `doubles` characters take two units and must not straddle
    two parts."""
    if units <= single:
        return 1
    if not doubles:
        return -(-units // part)
    count, used = 1, 0
    for char in text:
        size = width(char)
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count
