"""Language tags (BCP 47: `ko`, `en-US`, `zh-Hant-TW`) as the service takes them: a template's
languages and translations, a category's translated names."""

from __future__ import annotations

import re
from typing import Any

MAX_LANGUAGE_LENGTH = 35
# A tag as normalize_language takes it (`_` for `-` allowed), for JSON Schema patterns.
LANGUAGE_TAG = r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*"
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*\Z")


def normalize_language(tag: Any) -> str | None:
    """A BCP 47 tag in its usual case (`en-US`, `zh-Hant-TW`), accepting `_` for `-`; None
    when `tag` is not a language tag."""
    if not isinstance(tag, str) or len(tag) > MAX_LANGUAGE_LENGTH:
        return None
    tag = tag.strip().replace("_", "-")
    if not _LANGUAGE.match(tag):
        return None
    first, *rest = tag.split("-")
    parts = [first.lower()]
    for part in rest:
        if len(part) == 2 and part.isalpha():
            parts.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            parts.append(part.title())
        else:
            parts.append(part.lower())
    return "-".join(parts)
