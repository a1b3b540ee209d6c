"""The main job on the embedded default, run by ``make demo``.

For now: create a DuckDB OMOP CDM in a workspace folder and show what it holds. Later issues
extend it until it runs the whole pipeline (synthesize, cohort, resolve, validate, train,
federate, report).
"""

from __future__ import annotations

from pathlib import Path

import typer

from cohorts.db import Database
from cohorts.schema import init_cdm, table_counts
from omopfed.clikit import out, print_table


def demo_command(
    workspace: Path = typer.Option(Path("workspace/demo"), help="Folder for the demo's files."),
) -> None:
    """Run the end-to-end demo on DuckDB, synthetic data and the CPU."""
    workspace.mkdir(parents=True, exist_ok=True)
    path = (workspace / "cdm.duckdb").resolve()
    with Database(f"duckdb:///{path}", must_exist=False) as db:
        result = init_cdm(db)
        counts = table_counts(db)
    out.print(f"OMOP CDM at {path}: {len(result.created)} table(s) created now")
    print_table("tables in the demo CDM", ["table", "rows"], counts)
