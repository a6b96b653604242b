"""How many SMS segments a text costs, and in which encoding (3GPP TS 23.038 / 23.040).

A text made only of the GSM 03.38 default alphabet and its extension table goes as GSM-7:
160 septets in one SMS, 153 per part once split (the concatenation header takes the rest);
an extension character costs two septets (the escape and itself). Any other text goes as
UCS-2: 70 UTF-16 code units in one SMS, 67 per part; a character outside the Basic
Multilingual Plane is a surrogate pair of two units. A two-unit character never straddles two
parts: when it does not fit, it starts the next one.
"""

from __future__ import annotations

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# The default alphabet (without 0x1B, the escape to the extension table).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM7 = _GSM7_BASIC | _GSM7_EXTENSION

_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}


def segments(text: str) -> tuple[str, int]:
    """The encoding (`"GSM-7"` or `"UCS-2"`) and the number of segments of `text` (0 for
    an empty text)."""
    if _GSM7.issuperset(text):
        encoding = GSM7
        widths = [2 if char in _GSM7_EXTENSION else 1 for char in text]
    else:
        encoding = UCS2
        widths = [2 if ord(char) > 0xFFFF else 1 for char in text]
    if not text:
        return encoding, 0
    single, part = _LIMITS[encoding]
    if sum(widths) <= single:
        return encoding, 1
    count, used = 1, 0
    for width in widths:
        if used + width > part:
            count, used = count + 1, 0
        used += width
    return encoding, count
