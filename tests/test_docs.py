"""Every command the CLI offers is documented in docs/reference/cli.md."""

from __future__ import annotations

import re
from pathlib import Path

import click
import typer

from omopfed.cli import app

CLI_DOC = Path(__file__).resolve().parent.parent / "docs" / "reference" / "cli.md"


def _command_paths(command: click.Command, prefix: str) -> list[str]:
    if isinstance(command, click.Group):
        paths = []
        for name, sub in command.commands.items():
            paths.extend(_command_paths(sub, f"{prefix} {name}"))
        return paths
    return [prefix]


def test_every_command_is_in_the_cli_reference() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    paths = _command_paths(typer.main.get_command(app), "omopfed")
    assert len(paths) >= 5
    missing = [path for path in paths if f"`{path}" not in text]
    assert missing == [], f"document these in {CLI_DOC.name}: {missing}"


def test_relative_links_in_docs_resolve() -> None:
    root = CLI_DOC.parent.parent
    broken = []
    for page in [*root.rglob("*.md"), root.parent / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(root.parent)} -> {target}")
    assert broken == []
