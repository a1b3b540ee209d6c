"""``omopfed validate``: run the data contracts, print a compact table, gate training.

Parses, calls :func:`node.validation.service.validate_site`, renders. Great Expectations is
imported by the library when the command runs, never when the CLI starts (``omopfed --help``
stays fast). Exit status 8 (``EXIT_VALIDATION``) when a blocking expectation failed in this run.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from node.settings import load_site_settings
from omopfed.clikit import Format, FormatOption, err, out, print_json
from omopfed.errors import EXIT_VALIDATION, ConfigError

SUITE_CHOICES = ("cdm", "manifest", "images")


def validate_command(
    settings: Path = typer.Option(..., "--settings", "-s", help="Site settings TOML file."),
    suite: list[str] = typer.Option(
        [], "--suite", help="cdm, manifest or images (repeatable); default: all three."
    ),
    model: str = typer.Option("densenet2d", "--model", help="densenet2d or unet3d."),
    cohort_id: int = typer.Option(1, "--cohort", help="cohort_definition_id of the manifest."),
    show_all: bool = typer.Option(False, "--all", help="List passing expectations too."),
    fmt: Format = FormatOption,
) -> None:
    """Validate the CDM, the manifest and the images; write summaries, Data Docs, gate record."""
    from node.validation.report import table_rows
    from node.validation.service import Target, validate_site

    unknown = sorted(set(suite) - set(SUITE_CHOICES))
    if unknown:
        raise ConfigError(f"unknown suite {unknown[0]!r}: use {', '.join(SUITE_CHOICES)}")
    site = load_site_settings(settings)
    chosen = suite or list(SUITE_CHOICES)
    run = validate_site(site, chosen, Target(model=model, cohort_id=cohort_id))
    if fmt is Format.json:
        record = run.record
        print_json({"suites": run.summaries, "gate": record.__dict__ if record else None})
    else:
        for name, result in run.results.items():
            title = (
                f"{name} suite {result.version} ({result.suite_hash[:12]}): "
                f"{'PASSED' if result.passed else 'FAILED'}, "
                f"{len(result.failed_blocking)} blocking failure(s), "
                f"{len(result.warnings)} warning(s), {len(result.results)} expectations"
            )
            rows = table_rows(result, site.min_cell_count, all_rows=show_all)
            _print_results(title, rows)
            for note in result.notes:
                out.print(f"  note: {note}", markup=False, highlight=False)
            out.print(f"  Data Docs: {run.docs[name]}", markup=False, highlight=False)
        _gate_line(run.record)
    if not run.passed:
        err.print("a blocking expectation failed: training is refused until it passes")
        raise typer.Exit(EXIT_VALIDATION)


def _print_results(title: str, rows: list[list[str]]) -> None:
    """The results table; expectation ids wrap instead of being cut (they are what to grep)."""
    table = Table(title=title, title_justify="left")
    table.add_column("expectation", overflow="fold")
    table.add_column("result", no_wrap=True)
    table.add_column("observed", overflow="fold")
    style = {"FAIL": "bold red", "warn": "yellow", "pass": "green"}
    for expectation, status, observed in rows:
        table.add_row(expectation, f"[{style[status]}]{status}[/]", observed)
    out.print(table)


def _gate_line(record: object) -> None:
    from node.gate import ValidationRecord

    if not isinstance(record, ValidationRecord):
        return
    state = "open" if record.passed else "closed"
    detail = "" if record.passed else f" ({', '.join(record.failed_blocking[:5])})"
    data = record.data_hash[:12] or "no dataset"
    out.print(f"training gate: {state} for data {data}{detail}", markup=False, highlight=False)
