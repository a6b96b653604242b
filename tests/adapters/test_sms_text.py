"""SMS segment counting: GSM-7 with its extension table, UCS-2 in UTF-16 code units."""

import pytest

from adapters.sms_text import GSM7, GSM7_BASIC, GSM7_EXTENSION, UCS2, segments

EXTENSION = "€[]{}~^\\|\f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (GSM7, 0)),
        ("a", (GSM7, 1)),
        ("a" * 160, (GSM7, 1)),
        ("a" * 161, (GSM7, 2)),
        ("a" * 306, (GSM7, 2)),
        ("a" * 307, (GSM7, 3)),
        ("a" * 1530, (GSM7, 10)),
        ("a" * 1531, (GSM7, 11)),
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà", (GSM7, 1)),
    ],
)
def test_gsm7_lengths(text, expected):
    assert segments(text) == expected


@pytest.mark.parametrize("char", list(EXTENSION))
def test_each_extension_character_costs_two_septets(char):
    assert segments(char * 80) == (GSM7, 1)  # 160 septets
    assert segments(char * 80 + "a") == (GSM7, 2)  # 161
    assert segments("a" * 159 + char) == (GSM7, 2)  # 161: the escape does not fit


def test_extension_and_basic_sets_are_gsm_03_38():
    assert len(GSM7_BASIC) == 127  # 128 code points less the escape
    assert set(EXTENSION) == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert "`" not in GSM7_BASIC | GSM7_EXTENSION  # looks ASCII, is not GSM-7
    assert segments("`") == (UCS2, 1)


def test_an_escape_sequence_never_straddles_two_parts():
    # 152 septets, then a 2-septet character that does not fit the 153 left in part one.
    assert segments("a" * 152 + "€" + "a" * 152) == (GSM7, 3)
    assert segments("a" * 151 + "€" + "a" * 153) == (GSM7, 2)  # 153 + 153


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("한" * 70, (UCS2, 1)),
        ("한" * 71, (UCS2, 2)),
        ("한" * 134, (UCS2, 2)),
        ("한" * 135, (UCS2, 3)),
        ("a" * 69 + "ç", (UCS2, 1)),  # ç (lower case) is not in the GSM alphabet; Ç is
        ("a" * 159 + "ç", (UCS2, 3)),
        ("😀" * 35, (UCS2, 1)),  # 70 code units
        ("😀" * 35 + "a", (UCS2, 2)),
        ("a" + "😀" * 35, (UCS2, 2)),
    ],
)
def test_ucs2_counts_utf16_code_units(text, expected):
    assert segments(text) == expected


def test_a_surrogate_pair_never_straddles_two_parts():
    # 66 units, then an emoji (2 units) that does not fit the 67 of part one.
    assert segments("한" * 66 + "😀" + "한" * 66) == (UCS2, 3)
    assert segments("한" * 65 + "😀" + "한" * 67) == (UCS2, 2)  # 67 + 67


def test_one_non_gsm_character_turns_the_whole_text_ucs2():
    assert segments("a" * 100) == (GSM7, 1)
    assert segments("a" * 99 + "😀") == (UCS2, 2)  # 101 code units
