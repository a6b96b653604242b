"""The documentation holds together: the README is the short front door with the two commands
first, every relative link in it and in docs/ reaches an existing file (and heading, for a
#fragment), and every environment variable the settings read is listed in
docs/configuration.md. Plain file reading: no database, no Django."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+).+?\1")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines outside fenced code blocks, with their numbers."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without its markup, lower-cased, punctuation
    dropped (letters, digits, spaces, hyphens and underscores kept), spaces turned hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(
        ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N", "M")
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for _number, line in _prose_lines(path):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for number, line in _prose_lines(path):
        for target in _LINK.findall(_INLINE_CODE.sub("", line)):
            if not _EXTERNAL.match(target):
                links.append((number, target))
    return links


def test_the_checker_finds_links_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# The `rotate_encryption_keys` command, (2026-12-06, 8b9ac8f + the script)\n"
        "## Twice\n## Twice\n"
        "See [a](other.md#x), [b](#twice-1), `[c](not-a-link.md)` and [d](https://example.com).\n"
        "```sh\n# not a heading\n[e](inside-code.md)\n```\n",
        encoding="utf-8",
    )
    assert anchors(page) == {
        "the-rotate_encryption_keys-command-2026-12-06-8b9ac8f--the-script",
        "twice",
        "twice-1",
    }
    assert relative_links(page) == [(4, "other.md#x"), (4, "#twice-1")]


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_heading(path: Path):
    assert DOCS, "docs/ holds no pages"
    broken = []
    for number, target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{path.name}:{number}: {target} (no such file)")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{path.name}:{number}: {target} (no such heading)")
    assert broken == []


def test_readme_is_short_and_opens_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200
    opening = lines[:15]
    assert any(line.startswith("make run") for line in opening)
    assert any(line.startswith("make test") for line in opening)


def _settings_variables() -> set[str]:
    settings = (ROOT / "signal_project" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", settings))
    gunicorn = (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    names |= set(re.findall(r"os\.environ\.get\(\s*\"([A-Z][A-Z0-9_]*)\"", gunicorn))
    return names


def test_every_setting_read_from_the_environment_is_documented():
    names = _settings_variables()
    assert {"DATABASE_URL", "SECRET_KEY", "WEB_CONCURRENCY"} <= names
    documented = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert sorted(name for name in names if f"`{name}`" not in documented) == []
