"""The steward's commands that set up a site: ``omopfed config`` and ``omopfed db``.

Each command parses, calls one library function, renders. Logic lives in the libraries.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from cohorts.db import Database, Schemas
from cohorts.schema import check_cdm, init_cdm, table_counts
from node.settings import load_site_settings
from omopfed.clikit import Format, FormatOption, err, new_app, out, print_json, print_table
from omopfed.errors import ConfigError

config_app = new_app("Check site settings.")
db_app = new_app("Create, check and inspect the site's OMOP CDM database.")

SettingsOption = typer.Option(None, "--settings", "-s", help="Site settings TOML file.")
UrlOption = typer.Option(None, "--url", help="Database URL (instead of --settings).")


@config_app.command("check")
def config_check(
    file: Path = typer.Argument(..., help="Site settings TOML file."),
    fmt: Format = FormatOption,
) -> None:
    """Print the effective settings (file + OMOPFED_* environment), secrets masked."""
    shown = load_site_settings(file).display()
    if fmt is Format.json:
        print_json(shown)
    else:
        print_table(f"settings from {file}", ["key", "value"], sorted(shown.items()))


def open_database(
    url: str | None,
    settings: Path | None,
    cdm_schema: str | None = None,
    results_schema: str | None = None,
    *,
    must_exist: bool = True,
) -> Database:
    """The database named by ``--url`` (with schema options) or by a settings file."""
    if (url is None) == (settings is None):
        raise ConfigError("give exactly one of --url or --settings")
    if settings is not None:
        site = load_site_settings(settings)
        return Database(site.database_url.get_secret_value(), site.schemas, must_exist=must_exist)
    cdm = cdm_schema or "cdm"
    schemas = Schemas(cdm=cdm, vocab=cdm, results=results_schema or "results")
    return Database(str(url), schemas, must_exist=must_exist)


CdmSchemaOption = typer.Option(None, "--cdm-schema", help="CDM schema (with --url).")
ResultsSchemaOption = typer.Option(None, "--results-schema", help="Results schema (with --url).")


@db_app.command("init")
def db_init(
    url: str | None = UrlOption,
    settings: Path | None = SettingsOption,
    cdm_schema: str | None = CdmSchemaOption,
    results_schema: str | None = ResultsSchemaOption,
    adopt: bool = typer.Option(
        False, "--adopt", help="Add missing tables to a CDM omopfed did not create."
    ),
) -> None:
    """Create the OMOP CDM 5.4 + imaging + results tables (safe to run twice)."""
    with open_database(url, settings, cdm_schema, results_schema, must_exist=False) as db:
        result = init_cdm(db, adopt=adopt)
        out.print(
            f"{db.display_url}: created {len(result.created)} table(s), "
            f"{len(result.existing)} already present"
        )


@db_app.command("check")
def db_check(
    url: str | None = UrlOption,
    settings: Path | None = SettingsOption,
    cdm_schema: str | None = CdmSchemaOption,
    results_schema: str | None = ResultsSchemaOption,
    fmt: Format = FormatOption,
) -> None:
    """Compare the live schema with the CDM 5.4 spec; exit 5 if required parts are missing."""
    with open_database(url, settings, cdm_schema, results_schema) as db:
        differences = check_cdm(db)
        target = db.display_url
    errors = sum(d.severity == "error" for d in differences)
    if fmt is Format.json:
        print_json(
            {"database": target, "errors": errors, "differences": [asdict(d) for d in differences]}
        )
    elif differences:
        rows = [(d.severity, d.table, d.column or "", d.problem) for d in differences]
        print_table(
            f"{target}: schema differences", ["severity", "table", "column", "problem"], rows
        )
    else:
        out.print(f"{target}: schema matches the CDM 5.4 spec")
    if errors:
        err.print(f"{errors} error(s): required tables or columns are missing or mistyped")
        raise typer.Exit(5)


@db_app.command("info")
def db_info(
    url: str | None = UrlOption,
    settings: Path | None = SettingsOption,
    cdm_schema: str | None = CdmSchemaOption,
    results_schema: str | None = ResultsSchemaOption,
    fmt: Format = FormatOption,
) -> None:
    """List the CDM tables and their row counts."""
    with open_database(url, settings, cdm_schema, results_schema) as db:
        counts = table_counts(db)
        target = db.display_url
    if fmt is Format.json:
        print_json({"database": target, "tables": dict(counts)})
    else:
        print_table(target, ["table", "rows"], counts)
