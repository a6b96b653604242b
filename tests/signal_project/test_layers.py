"""The fake providers are development/test code: no product package imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ["adapters", "messaging", "campaigns", "templates_app", "signal_project"]


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_no_product_module_imports_the_fakes():
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for package in PRODUCT_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in sorted(_imported_modules(path))
        if module == "fakes" or module.startswith("fakes.")
    ]
    assert offenders == []
