"""The analyst's commands: ``omopfed metrics runs|show|export`` and ``omopfed study report``.

Analysts read what the aggregator recorded; they never see more than the sites sent, which is
aggregate numbers only. Counts (``*_n``, ``num-examples``) are suppressed once more here, below
``--min-cell-count`` (OHDSI's ``<N``), so an export made with a lower site threshold cannot be
re-shared with small counts in it. The functions above the commands do the work; the commands
parse, call one of them and render.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from federation import report
from federation.store import MetricsStore, StoreError, default_url
from omopfed.clikit import Format, FormatOption, new_app, out, print_json, print_table

metrics_app = new_app("Read the aggregator's metrics store: runs, per-site metrics, exports.")
study_app = new_app("Centralized-versus-federated studies: statistics, plots, the HTML report.")

StoreOption = typer.Option(
    "",
    "--store",
    envvar="OMOPFED_METRICS_STORE",
    help="Metrics store URL (default: the aggregator workspace's metrics.sqlite).",
)
MinCellOption = typer.Option(
    5, "--min-cell-count", min=1, help="Counts below this are shown as <N."
)
EXPORT_FORMATS = ("csv", "json", "parquet")


def open_store(url: str) -> MetricsStore:
    """Open an existing store; a missing SQLite file is an error, not a new empty store."""
    if not url:
        url = default_url(Path(os.environ.get("OMOPFED_AGGREGATOR", "aggregator")).resolve())
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise StoreError(
            f"no metrics store at {url.removeprefix('sqlite:///')}",
            hint="pass --store URL or set OMOPFED_AGGREGATOR to the aggregator workspace",
        )
    return MetricsStore(url)


def runs_overview(store: MetricsStore) -> list[dict[str, Any]]:
    """Every recorded run with the rounds done and the number of sites that reported."""
    rows = []
    for run in store.list_runs():
        metrics = store.site_metrics(run["run_id"])
        rows.append(
            {
                "run_id": run["run_id"],
                "model": run["model"],
                "status": run["status"],
                "rounds": f"{store.last_round(run['run_id'])}/{run['planned_rounds']}",
                "sites": len({m["site"] for m in metrics}),
                "started_at": run["started_at"],
                "finished_at": run["finished_at"],
            }
        )
    return rows


def run_metrics(store: MetricsStore, run_id: str, min_cell_count: int) -> pd.DataFrame:
    """A run's metrics, long (round, site, split, metric, value, shown); counts suppressed.

    ``value`` is numeric (NaN where suppressed, so Parquet keeps a float column); ``shown`` is
    what a person may read: the number, or ``<N``.
    """
    if store.get_run(run_id) is None:
        raise StoreError(f"no run {run_id!r} in the metrics store", hint="see omopfed metrics runs")
    rows = []
    for row in store.site_metrics(run_id):
        value = math.nan if row["value"] is None else float(row["value"])
        shown: Any = value
        if report.is_count_column(str(row["metric"])):
            shown = report.suppress(value, min_cell_count)
            value = math.nan if isinstance(shown, str) else value
        rows.append({**{k: row[k] for k in ("round", "site", "split", "metric")}, "value": value})
        rows[-1]["shown"] = "" if isinstance(shown, float) and math.isnan(shown) else str(shown)
    columns = ["round", "site", "split", "metric", "value", "shown"]
    return pd.DataFrame(rows, columns=columns).assign(run_id=run_id)[["run_id", *columns]]


def export_metrics(frame: pd.DataFrame, fmt: str, path: Path) -> Path:
    """Write the frame as CSV, JSON (records) or Parquet, atomically."""
    if fmt == "csv":
        payload = frame.to_csv(index=False).encode("utf-8")
    elif fmt == "json":
        payload = (frame.to_json(orient="records", indent=2) or "[]").encode("utf-8")
    elif fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        payload = buffer.getvalue()
    else:
        raise StoreError(f"unknown export format {fmt!r} (expected {', '.join(EXPORT_FORMATS)})")
    return report.atomic_write(path, payload)


@metrics_app.command("runs")
def runs_command(store: str = StoreOption, fmt: Format = FormatOption) -> None:
    """List the recorded runs: status, rounds done of planned, sites that reported."""
    db = open_store(store)
    try:
        rows = runs_overview(db)
    finally:
        db.dispose()
    if fmt is Format.json:
        print_json(rows)
        return
    columns = list(rows[0]) if rows else ["run_id"]
    print_table("runs", columns, ([r[c] for c in columns] for r in rows))


@metrics_app.command("show")
def show_command(
    run: str = typer.Argument(..., help="Run id (see omopfed metrics runs)."),
    store: str = StoreOption,
    split: str | None = typer.Option(None, "--split", help="Only train, validation or global."),
    metric: str | None = typer.Option(None, "--metric", help="Only this metric."),
    min_cell_count: int = MinCellOption,
    fmt: Format = FormatOption,
) -> None:
    """A run's per-round, per-site metrics (and its events); counts below N shown as <N."""
    db = open_store(store)
    try:
        frame = run_metrics(db, run, min_cell_count)
        run_row, events = db.get_run(run), db.events(run)
    finally:
        db.dispose()
    if split:
        frame = frame[frame["split"] == split]
    if metric:
        frame = frame[frame["metric"] == metric]
    rows = frame.drop(columns=["run_id", "value"]).to_dict(orient="records")
    if fmt is Format.json:
        print_json({"run": run_row, "metrics": rows, "events": events})
        return
    assert run_row is not None
    out.print(
        f"run {run}: {run_row['model']}, {run_row['status']}, {run_row['planned_rounds']} planned"
        f" round(s), {len(events)} event(s)",
        highlight=False,
    )
    columns = ["round", "site", "split", "metric", "shown"]
    print_table("metrics", columns, ([r[c] for c in columns] for r in rows))


@metrics_app.command("export")
def export_command(
    run: str = typer.Argument(..., help="Run id (see omopfed metrics runs)."),
    fmt: str = typer.Option(..., "--format", help="csv, json or parquet."),
    out_file: Path = typer.Option(..., "--out", help="File to write (replaced atomically)."),
    store: str = StoreOption,
    min_cell_count: int = MinCellOption,
) -> None:
    """Export a run's metrics, long format, counts below N suppressed (value empty, shown <N)."""
    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(
            f"expected one of {', '.join(EXPORT_FORMATS)}", param_hint="--format"
        )
    db = open_store(store)
    try:
        frame = run_metrics(db, run, min_cell_count)
    finally:
        db.dispose()
    path = export_metrics(frame, fmt, out_file)
    out.print(f"wrote {len(frame)} row(s) to {path}", highlight=False)


@study_app.command("report")
def report_command(
    study_dir: Path = typer.Argument(..., help="Folder with results.parquet or results.csv."),
    out_dir: Path | None = typer.Option(None, "--out", help="Output folder (STUDY_DIR/report)."),
    min_cell_count: int = MinCellOption,
    no_correction: bool = typer.Option(False, "--no-correction", help="Report raw p-values."),
    store: str = StoreOption,
    runs: list[str] = typer.Option([], "--run", help="Add this run's learning curves (repeat)."),
    curve_metric: str = typer.Option("loss", "--curve-metric", help="Metric of the curves."),
    fmt: Format = FormatOption,
) -> None:
    """Statistics, box plots with p-values, curves and a self-contained report.html."""
    results = report.read_results(study_dir)
    curves = _curves(store, runs, curve_metric) if runs else []
    roc_file = study_dir / report.ROC_FILE
    roc = report.read_roc(roc_file) if roc_file.is_file() else None
    written = report.write_study_report(
        results,
        out_dir or study_dir / "report",
        min_cell_count=min_cell_count,
        correction=None if no_correction else "holm",
        curves=curves,
        roc=roc,
    )
    if fmt is Format.json:
        tests = json.loads(written.comparison.to_json(orient="records") or "[]")
        files = [str(p) for p in written.files]
        print_json({"report": str(written.html), "files": files, "tests": tests})
        return
    columns = ["metric", "configuration", "p_adjusted", "effect_size", "pct_of_centralized"]
    rows = written.comparison[columns].itertuples(index=False)
    shown = ([f"{v:.4g}" if isinstance(v, float) else v for v in row] for row in rows)
    print_table("rank-sum vs centralized", columns, shown)
    out.print(f"report: {written.html}", highlight=False)


def _curves(store: str, runs: list[str], metric: str) -> list[report.CurveData]:
    """Validation learning curves of each named run, read from the metrics store."""
    db = open_store(store)
    try:
        curves = []
        for run in runs:
            if db.get_run(run) is None:
                raise StoreError(f"no run {run!r} in the metrics store")
            data = report.learning_curve_data(db.site_metrics(run), metric)
            curves.append(report.CurveData(f"{run}: {data.title}", "round", metric, data.lines))
        return curves
    finally:
        db.dispose()
