"""ISO 3166-1 alpha-2: the 249 officially assigned country codes (as the tz database's
iso3166.tab lists them). User-assigned codes such as ZZ or XX name no country."""

from __future__ import annotations

import contextlib
from functools import cache
from importlib import resources
from pathlib import Path

_ASSIGNED = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI "
    "BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN "
    "CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK "
    "FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM "
    "HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK "
    "ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP "
    "NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW "
    "SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF "
    "TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW"
)
COUNTRY_CODES = frozenset(_ASSIGNED.split())


def is_country_code(value: str) -> bool:
    """Whether `value` (any case) is an assigned ISO 3166-1 alpha-2 code."""
    return value.upper() in COUNTRY_CODES


def country_code_pattern() -> str:
    """A regular expression (JSON Schema's dialect too) of exactly the assigned codes, any case."""
    pairs = (f"[{a.upper()}{a.lower()}][{b.upper()}{b.lower()}]" for a, b in sorted(COUNTRY_CODES))
    return "^(?:" + "|".join(pairs) + ")$"


@cache
def country_names() -> dict[str, str]:
    """{code: English name} of the assigned codes, from the tz database's iso3166.tab (the
    tzdata package, else the system's zoneinfo); a code whose name is not found names itself."""
    text = ""
    with contextlib.suppress(ImportError, OSError):
        text = resources.files("tzdata.zoneinfo").joinpath("iso3166.tab").read_text("utf-8")
    if not text:
        with contextlib.suppress(OSError):
            text = Path("/usr/share/zoneinfo/iso3166.tab").read_text("utf-8")
    names = {}
    for line in text.splitlines():
        code, _, name = line.partition("\t")
        if code in COUNTRY_CODES and name:
            names[code] = name.strip()
    return {code: names.get(code, code) for code in sorted(COUNTRY_CODES)}
