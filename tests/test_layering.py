"""The import direction of design.md section 2, checked on the source (static imports).

cohorts and models are libraries: they import nothing of node or federation, and never flwr.
node (site) and federation (aggregator) never import each other. The omopfed package's bottom
modules (errors, offline, clikit, protocol) import nothing of the four packages; only
omopfed.cli (and the demo it runs) joins both sides, and nothing imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cohorts", "models", "node", "federation", "omopfed")
JOINING = {"omopfed.cli", "omopfed.demo", "omopfed.study"}

FORBIDDEN = {
    "cohorts": {
        "node",
        "federation",
        "models",
        "flwr",
        "omopfed.cli",
        "omopfed.demo",
        "omopfed.study",
    },
    "models": {
        "node",
        "federation",
        "cohorts",
        "flwr",
        "omopfed.cli",
        "omopfed.demo",
        "omopfed.study",
    },
    "node": {"federation", "omopfed.cli", "omopfed.demo", "omopfed.study"},
    "federation": {"node", "cohorts", "omopfed.cli", "omopfed.demo", "omopfed.study"},
    "omopfed": {
        "node",
        "federation",
        "cohorts",
        "models",
        "flwr",
        "omopfed.cli",
        "omopfed.demo",
        "omopfed.study",
    },
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        module = _module_name(path)
        if module in JOINING:
            continue
        for name in _imports(path):
            for banned in FORBIDDEN[package]:
                if name == banned or name.startswith(banned + "."):
                    found.append(f"{module} imports {name}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_respects_layering(package: str) -> None:
    assert _violations(package) == []


def test_the_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from node.settings import SiteSettings\nimport flwr\n")
    assert {"node.settings", "flwr"} <= _imports(bad)
