"""Shape: lower layers never reach up (pyca's hazmat-below-recipes rule), checked on the imports.

`edgebox/session/` imports nothing above it (only itself, the shared `edgebox.errors` root and the
`edgebox.schema` leaf package of application message types); `edgebox/ble/` depends only on the
transport seam and the session below it, never on the box or the phone (its benches and test
fixtures live in hil/ and bench/).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2] / "edgebox"

ALLOWED = {
    "session": {"edgebox.session", "edgebox.errors", "edgebox.schema"},
    "ble": {"edgebox.ble", "edgebox.transport", "edgebox.session", "edgebox.errors", "edgebox.log"},
    "transport": {"edgebox.transport", "edgebox.session", "edgebox.errors", "edgebox.log"},
    "schema": {"edgebox.schema", "edgebox.errors"},
}


def _edgebox_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "edgebox" or m.startswith("edgebox.")}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_nothing_above_it(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in _edgebox_imports(path):
            if not any(module == a or module.startswith(a + ".") for a in ALLOWED[package]):
                offenders.append(f"{path.relative_to(ROOT.parent)} imports {module}")
    assert offenders == []
