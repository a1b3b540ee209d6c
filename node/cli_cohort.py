"""``omopfed cohort``: check, print and run the site's cohort definitions.

Each command parses, calls one function of :mod:`cohorts`, renders. Counts come from the
library already suppressed below the site's minimum cell count, in every format.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cohorts import circe
from cohorts.compiler import Target, compile_definition, render_sql
from cohorts.db import Database
from cohorts.loader import Definition, load_definition
from cohorts.model import json_schema
from cohorts.runner import DEFAULT_TIMEOUT_S, CohortReport, run_cohort
from cohorts.sqldef import prepare_sql
from node.settings import load_site_settings
from omopfed.clikit import Format, FormatOption, new_app, out, print_json, print_table
from omopfed.errors import ConfigError

cohort_app = new_app("Check, print and run cohort definitions (native JSON, SQL, ATLAS/Circe).")

DefinitionArgument = typer.Argument(
    ..., help="Definition file: .json (native or ATLAS export) or .sql."
)


@cohort_app.command("check")
def cohort_check(file: Path = DefinitionArgument, fmt: Format = FormatOption) -> None:
    """Validate a definition without a database: its kind, name and canonical hash."""
    definition = load_definition(file)
    shown = {
        "file": str(file),
        "kind": definition.kind,
        "name": definition.name,
        "definition_hash": definition.sha256,
        "inclusion_rules": definition.rule_names,
    }
    if fmt is Format.json:
        print_json(shown)
    else:
        print_table(f"{file}: valid", ["key", "value"], [(k, v) for k, v in shown.items()])


@cohort_app.command("sql")
def cohort_sql(
    file: Path = DefinitionArgument,
    dialect: str = typer.Option("duckdb", "--dialect", help="duckdb or postgresql."),
) -> None:
    """Print the SQL a definition runs, for the default schemas (cdm, results)."""
    if dialect not in ("duckdb", "postgresql"):
        raise ConfigError(f"unknown dialect {dialect!r}: use duckdb or postgresql")
    out.print(
        _sql_text(load_definition(file), Target.offline(dialect)), markup=False, highlight=False
    )


def _sql_text(definition: Definition, target: Target) -> str:
    placeholders = {
        "cdm_schema": target.cdm,
        "vocab_schema": target.vocab,
        "results_schema": '"results"',
    }
    if definition.native is not None:
        return render_sql(compile_definition(definition.native, target).cohort, target.dialect)
    if definition.circe_json is not None:
        statements = circe.circe_script(definition.circe_json, target.dialect, placeholders)
        return ";\n\n".join(statements) + ";\n"
    assert definition.sql is not None
    return prepare_sql(definition.sql, placeholders).strip() + ";\n"


@cohort_app.command("schema")
def cohort_schema() -> None:
    """Print the JSON Schema of the native definition format."""
    print_json(json_schema())


@cohort_app.command("run")
def cohort_run(
    file: Path = DefinitionArgument,
    settings: Path = typer.Option(..., "--settings", "-s", help="Site settings TOML file."),
    cohort_id: int = typer.Option(1, "--id", help="cohort_definition_id to write."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", help="Query timeout, seconds."),
    allow_empty: bool = typer.Option(
        False, "--allow-empty-concept-sets", help="Run even if a concept set resolves to nothing."
    ),
    fmt: Format = FormatOption,
) -> None:
    """Run a definition read-only, replace its rows in results.cohort, print the attrition."""
    definition = load_definition(file)
    site = load_site_settings(settings)
    with Database(site.database_url.get_secret_value(), site.schemas) as db:
        report = run_cohort(
            db,
            definition,
            cohort_id,
            min_cell_count=site.min_cell_count,
            timeout_s=timeout,
            allow_empty_concept_sets=allow_empty,
        )
    _render(report, fmt)


def _render(report: CohortReport, fmt: Format) -> None:
    if fmt is Format.json:
        print_json(report.to_dict())
        return
    title = (
        f"cohort {report.cohort_id} ({report.kind}) {report.name!r}: "
        f"{report.persons} person(s), {report.rows} row(s)"
    )
    print_table(title, ["step", "persons"], [(s.step, s.persons) for s in report.attrition])
    out.print(f"definition sha256 {report.definition_hash}", highlight=False)
    if report.empty:
        out.print(
            "[bold yellow]the cohort is EMPTY[/]: no person passed every rule; "
            "read the attrition table to see which step removed them"
        )
