"""The template language: `{{ name }}` substitution, its validation, and fast rendering.

A template version is compiled once into %-format strings plus the variables they take
(literal text never goes through a parser again), and the compiled form is cached per process
under (template id, version). Versions never change after they are written, so an update,
which writes a new version, invalidates by construction.

Rules:
- `{{ name }}`, spaces inside the braces allowed; a name is `[A-Za-z_][A-Za-z0-9_]*`, optionally
  followed by `.segment` parts (`user.name`) that look into dict variables.
- A lone `{` or `}` is literal text; `{{` without its `}}`, a stray `}}`, an empty `{{ }}` or a
  name that is not an identifier are errors when a template is written.
- Values are converted with str() (None renders as ""); an unknown variable renders as "" and
  is listed in `missing_variables`.
- In `data_template` and in the channel parts (`{"email": {"subject", ...}, "sms": {...}}`)
  every string nested anywhere (dicts, lists) is a template; keys and non-string values
  (numbers, booleans, null) are kept as they are. A data template nests at most
  MAX_JSON_DEPTH levels: deeper ones are refused when written, and a stored one that is
  deeper fails to compile (InputInvalid) rather than exhausting the recursion limit.
- A translation's part overrides the default language's field by field (a translated
  `email.subject` keeps the default `email.html`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

from core.channels import PART_NAMES
from core.languages import MAX_LANGUAGE_LENGTH, normalize_language  # noqa: F401 (importable here)
from core.validation import MAX_JSON_DEPTH, InputInvalid, json_depth_exceeds

CACHE_SIZE = 2048
_LANGUAGE_MEMO_SIZE = 64

_TOKEN = re.compile(r"\{\{|\}\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\Z")


# --- Syntax ------------------------------------------------------------------------------------


def _scan(text: str) -> tuple[list[str], list[str], list[str]]:
    """Splits `text` into literals and variable names (len(literals) == len(names) + 1) and
    collects syntax errors; invalid pieces stay literal text."""
    literals: list[str] = []
    names: list[str] = []
    errors: list[str] = []
    literal_start = 0  # where the literal text being collected began
    open_at: int | None = None
    for match in _TOKEN.finditer(text):
        if match.group() == "{{":
            if open_at is not None:
                errors.append(f"'{{{{' at position {open_at} is not closed before the next '{{{{'.")
            open_at = match.start()
            continue
        if open_at is None:
            errors.append(f"Stray '}}}}' at position {match.start()} without an opening '{{{{'.")
            continue
        name = text[open_at + 2 : match.start()].strip()
        if not name:
            errors.append(f"Empty variable '{{{{ }}}}' at position {open_at}.")
        elif not _NAME.match(name):
            errors.append(
                f"{name!r} at position {open_at} is not a variable name (letters, digits and _, "
                "not starting with a digit; dots between parts)."
            )
        else:
            literals.append(text[literal_start:open_at])
            names.append(name)
            literal_start = match.end()
        open_at = None
    if open_at is not None:
        errors.append(f"'{{{{' at position {open_at} is never closed with '}}}}'.")
    literals.append(text[literal_start:])
    return literals, names, errors


def validate_template_text(text: str) -> list[str]:
    """The syntax errors of one template string; an empty list when it is valid."""
    if not isinstance(text, str):
        return ["A template must be a string."]
    return _scan(text)[2]


def _data_path(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def validate_data_template(data: Any) -> list[str]:
    """Errors of a data template: it must be an object, and every string in it valid."""
    if not isinstance(data, dict):
        return ["The data template must be a JSON object."]
    if json_depth_exceeds(data, MAX_JSON_DEPTH):
        return [f"The data template is nested more than {MAX_JSON_DEPTH} levels deep."]
    errors: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            errors.extend(f"at {path}: {error}" for error in validate_template_text(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, _data_path(path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, _data_path(path, index))

    walk(data, "")
    return errors


# --- Compiled form -----------------------------------------------------------------------------


class _Var:
    """One variable reference; `path` is set for dotted names."""

    __slots__ = ("name", "path")

    def __init__(self, name: str):
        self.name = name
        self.path = tuple(name.split(".")) if "." in name else None


class _Text:
    """A compiled string: `fmt % values` with one value per variable."""

    __slots__ = ("fmt", "vars")

    def __init__(self, literals: list[str], names: list[str]):
        self.vars = tuple(_Var(name) for name in names)
        self.fmt = "%s".join(literal.replace("%", "%%") for literal in literals)


def _compile_text(text: str) -> str | _Text:
    literals, names, _errors = _scan(text)
    return _Text(literals, names) if names else literals[0]


def _compile_data(value: Any, depth: int = 0) -> Any:
    """Strings with variables become _Text, containers become tuples of compiled items (a
    dict as a tuple of (key, item) pairs wrapped in _Dict); everything else stays as is.
    Containers deeper than MAX_JSON_DEPTH raise _TooDeep (rendering recurses as deep)."""
    if isinstance(value, str):
        return _compile_text(value)
    if isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            raise _TooDeep
        if isinstance(value, dict):
            return _Dict((key, _compile_data(item, depth + 1)) for key, item in value.items())
        return _List(_compile_data(item, depth + 1) for item in value)
    return value


class _TooDeep(Exception):
    pass


class _Dict(tuple):
    __slots__ = ()


class _List(tuple):
    __slots__ = ()


def _names_in(compiled: Any, into: set[str]) -> None:
    if isinstance(compiled, _Text):
        into.update(var.name for var in compiled.vars)
    elif isinstance(compiled, _Dict):
        for _key, item in compiled:
            _names_in(item, into)
    elif isinstance(compiled, _List):
        for item in compiled:
            _names_in(item, into)


@dataclass(frozen=True, slots=True)
class _Content:
    title: str | _Text
    body: str | _Text
    data: _Dict
    parts: _Dict


def translated_parts(parts: dict | None, translation: dict) -> dict:
    """The parts of a translation: the default language's, each field overridden by the
    translation's own (`translation["email"]["subject"]`)."""
    merged = {name: dict(part) for name, part in (parts or {}).items()}
    for name in PART_NAMES:
        if translation.get(name):
            merged[name] = {**merged.get(name, {}), **translation[name]}
    return merged


class CompiledTemplate:
    """All languages of one template version, compiled; shared between threads, read-only
    after construction except for the bounded language memo."""

    __slots__ = ("version", "default_language", "contents", "variables", "_memo")

    def __init__(self, version_obj):
        self.version: int = version_obj.version
        default = normalize_language(version_obj.default_language) or "en"
        self.default_language = default
        data = version_obj.data_template or {}
        parts = version_obj.parts or {}
        try:
            base = _Content(
                _compile_text(version_obj.title_template or ""),
                _compile_text(version_obj.body_template or ""),
                _compile_data(data),
                _compile_data(parts),
            )
            contents = {default: base}
            for tag, translation in (version_obj.translations or {}).items():
                language = normalize_language(tag)
                if language is None or language == default:
                    continue
                contents[language] = _Content(
                    _compile_text(translation.get("title_template") or ""),
                    _compile_text(translation.get("body_template") or ""),
                    _compile_data(translation["data_template"])
                    if "data_template" in translation
                    else base.data,
                    _compile_data(translated_parts(parts, translation))
                    if any(translation.get(name) for name in PART_NAMES)
                    else base.parts,
                )
        except _TooDeep:
            raise InputInvalid(
                f"The data template of template {version_obj.template_id} is nested more "
                f"than {MAX_JSON_DEPTH} levels deep.",
                field="data_template",
            ) from None
        self.contents: dict[str, _Content] = contents
        names: set[str] = set()
        for content in contents.values():
            _names_in(content.title, names)
            _names_in(content.body, names)
            _names_in(content.data, names)
            _names_in(content.parts, names)
        self.variables: frozenset[str] = frozenset(names)
        self._memo: dict[str | None, tuple[str, _Content]] = {}

    def content_for(self, language: str | None) -> tuple[str, _Content]:
        """The requested language, else its base languages (`en` for `en-US`), else the
        default; returns the language used and its content."""
        try:
            return self._memo[language]
        except KeyError:
            pass
        found = None
        tag = normalize_language(language) if language else None
        while tag:
            if tag in self.contents:
                found = (tag, self.contents[tag])
                break
            tag = tag.rpartition("-")[0]
        if found is None:
            found = (self.default_language, self.contents[self.default_language])
        if len(self._memo) < _LANGUAGE_MEMO_SIZE:
            self._memo[language] = found
        return found


# Compiled templates by (template id, version); cachetools' classes are not thread-safe, so
# the lock guards each lookup and insertion (a compile runs outside it).
compiled_cache: LRUCache[tuple, CompiledTemplate] = LRUCache(maxsize=CACHE_SIZE)
_compiled_lock = threading.Lock()


def compiled(version_obj) -> CompiledTemplate:
    """The compiled form of a template version, from the cache when it is there. Unsaved
    versions (no template id) are compiled every time."""
    template_id = version_obj.template_id
    if template_id is None:
        return CompiledTemplate(version_obj)
    key = (template_id, version_obj.version)
    with _compiled_lock:
        item = compiled_cache.get(key)
    if item is None:
        item = CompiledTemplate(version_obj)
        with _compiled_lock:
            compiled_cache[key] = item
    return item


# --- Rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    title: str
    body: str
    data: dict
    missing_variables: list[str]  # sorted, unique
    language: str  # the language whose text was used
    version: int  # the template version rendered
    parts: dict = field(default_factory=dict)  # {"email": {...}, ...}, rendered


_MISSING = object()


def _lookup(variables: dict, var: _Var, missing: set[str]) -> str:
    value = variables.get(var.name, _MISSING)
    if value is _MISSING and var.path is not None:
        value = variables
        for part in var.path:
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                value = _MISSING
                break
    if value is _MISSING:
        missing.add(var.name)
        return ""
    if value is None:
        return ""
    return value if type(value) is str else str(value)


def _render_text(text: str | _Text, variables: dict, missing: set[str]) -> str:
    if type(text) is str:
        return text
    return text.fmt % tuple([_lookup(variables, var, missing) for var in text.vars])


def _render_data(value: Any, variables: dict, missing: set[str]) -> Any:
    kind = type(value)
    if kind is str:
        return value
    if kind is _Text:
        return value.fmt % tuple([_lookup(variables, var, missing) for var in value.vars])
    if kind is _Dict:
        return {key: _render_data(item, variables, missing) for key, item in value}
    if kind is _List:
        return [_render_data(item, variables, missing) for item in value]
    return value


def render(version_obj, variables: dict | None, language: str | None = None) -> Rendered:
    """Renders a template version (see templates_app.selectors.template_get) with
    `variables` in `language` or its fallback."""
    template = compiled(version_obj)
    used, content = template.content_for(language)
    if variables is None:
        variables = {}
    missing: set[str] = set()
    title = _render_text(content.title, variables, missing)
    body = _render_text(content.body, variables, missing)
    data = _render_data(content.data, variables, missing)
    parts = _render_data(content.parts, variables, missing)
    return Rendered(title, body, data, sorted(missing), used, template.version, parts)
