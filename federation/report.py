"""Plots and the self-contained HTML report of a study.

Each plot is split in two: a pure function computes the data the plot draws (box values and
p-value labels, per-site curves, ROC points), and a drawing function renders that data with
matplotlib's Agg renderer (a bare ``Figure``, no pyplot state, so nothing leaks between plots or
needs a display). Tests check the data, not pixels. The HTML report embeds every plot as a
base64 PNG and loads nothing from the network (hospital analysts may read it offline, and a CDN
link would leak that the report was opened); SVG copies sit beside it for papers.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from federation import stats

COUNT_COLUMN = re.compile(r"(^n$|^n_|_n$|^num[-_]examples$)")


@dataclass(frozen=True)
class BoxPlotData:
    """What a metric's box plot draws: one box per configuration, p-value labels above some."""

    metric: str
    configurations: list[str]
    values: list[list[float]]
    labels: dict[str, str] = field(default_factory=dict)  # configuration -> "p = 0.031"


@dataclass(frozen=True)
class CurveData:
    """Lines of one plot: name -> (x values, y values)."""

    title: str
    x_label: str
    y_label: str
    lines: dict[str, tuple[list[float], list[float]]]


def is_count_column(name: str) -> bool:
    """Patient counts (``mgmt_n``, ``n_validation``, ``num-examples``): suppressed, not tested."""
    return bool(COUNT_COLUMN.search(name))


def suppress(value: Any, min_cell_count: int) -> Any:
    """OHDSI's rule: a count with 0 < count < min_cell_count is shown as ``"<N"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return value
    if 0 < float(value) < min_cell_count:
        return f"<{min_cell_count}"
    return int(value) if float(value).is_integer() else value


def format_p(p: float) -> str:
    """``p = 0.031`` / ``p < 0.001`` / ``p = n/a``: the label drawn on a box."""
    if not math.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def box_plot_data(
    results: pd.DataFrame, metric: str, comparison: pd.DataFrame | None = None
) -> BoxPlotData:
    """Values of ``metric`` per configuration, and each compared configuration's p label.

    The label uses ``p_adjusted`` (Holm, when the comparison applied it), so what is drawn is what
    the tables call significant.
    """
    groups = stats.values_by_configuration(results, metric)
    labels: dict[str, str] = {}
    if comparison is not None and not comparison.empty:
        for row in comparison[comparison["metric"] == metric].itertuples():
            labels[str(row.configuration)] = format_p(float(row.p_adjusted))
    values = [[v for v in vs if math.isfinite(v)] for vs in groups.values()]
    return BoxPlotData(metric, list(groups), values, labels)


def draw_box_plot(data: BoxPlotData) -> Figure:
    """The seed paper's figure: boxes with the runs as points and the p-values above."""
    fig = Figure(figsize=(max(4.0, 1.3 * len(data.configurations)), 4.0))
    ax = fig.subplots()
    positions = list(range(1, len(data.configurations) + 1))
    # No fliers: every run is drawn as a point below, outliers included.
    ax.boxplot(data.values, positions=positions, widths=0.5, showfliers=False)
    finite = [v for vs in data.values for v in vs]
    top = max(finite) if finite else 1.0
    span = (top - min(finite)) if finite else 1.0
    for pos, name, vs in zip(positions, data.configurations, data.values, strict=True):
        ax.plot([pos] * len(vs), vs, "o", alpha=0.5, markersize=3, color="tab:blue")
        if name in data.labels:
            ax.text(pos, top + 0.05 * (span or 1.0), data.labels[name], ha="center", fontsize=8)
    ax.set_xticks(positions, data.configurations, rotation=20)
    ax.set_ylim(top=top + 0.15 * (span or 1.0))
    ax.set_ylabel(data.metric)
    ax.set_title(f"{data.metric}: runs per configuration (rank-sum vs centralized)")
    fig.tight_layout()
    return fig


def learning_curve_data(
    rows: Iterable[Mapping[str, Any]], metric: str, split: str = "validation"
) -> CurveData:
    """Per-site value of ``metric`` per round, from :meth:`MetricsStore.site_metrics` rows."""
    lines: dict[str, tuple[list[float], list[float]]] = {}
    picked = (r for r in rows if r["metric"] == metric and r["split"] == split)
    for row in sorted(picked, key=lambda r: (str(r["site"]), int(r["round"]))):
        if row["value"] is None:
            continue  # NaN was stored as NULL: a gap, not a zero
        xs, ys = lines.setdefault(str(row["site"]), ([], []))
        xs.append(float(row["round"]))
        ys.append(float(row["value"]))
    return CurveData(f"{split} {metric} per round", "round", metric, lines)


def roc_data(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> CurveData:
    """ROC curves from (fpr, tpr) pairs; the legend carries each curve's trapezoid AUC."""
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for name, (fpr, tpr) in curves.items():
        x, y = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        if x.shape != y.shape or x.size < 2:
            raise stats.StudyDataError(f"ROC curve {name!r} needs equal-length fpr and tpr")
        order = np.argsort(x, kind="stable")
        auc = float(np.trapezoid(y[order], x[order]))
        lines[f"{name} (AUC {auc:.3f})"] = (x[order].tolist(), y[order].tolist())
    return CurveData("ROC", "false positive rate", "true positive rate", lines)


def draw_curves(data: CurveData, *, diagonal: bool = False) -> Figure:
    """Line plot of :class:`CurveData` (learning curves, ROC)."""
    fig = Figure(figsize=(5.0, 4.0))
    ax = fig.subplots()
    for name, (xs, ys) in data.lines.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
    if diagonal:
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel(data.x_label)
    ax.set_ylabel(data.y_label)
    ax.set_title(data.title)
    if data.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def atomic_write(path: Path, payload: bytes) -> Path:
    """Write to a temporary file beside ``path`` then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Figure, out_dir: Path, stem: str) -> tuple[Path, Path, bytes]:
    """PNG and SVG of a figure (atomically); returns both paths and the PNG bytes to embed."""
    images = {}
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=110)
        images[fmt] = buffer.getvalue()
    png = atomic_write(out_dir / f"{stem}.png", images["png"])
    svg = atomic_write(out_dir / f"{stem}.svg", images["svg"])
    return png, svg, images["png"]


def html_table(frame: pd.DataFrame) -> str:
    """An escaped HTML table with numbers rounded for reading (full precision is in the CSV)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "th{background:#f3f3f3}img{max-width:100%}.note{color:#555;font-size:13px}"
)


def render_html(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """One page: a heading per section, its HTML body; nothing is loaded from elsewhere."""
    parts = [f"<h2>{html.escape(name)}</h2>\n{body}" for name, body in sections]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def embed_png(png: bytes, alt: str) -> str:
    """An ``<img>`` whose source is the PNG itself (a data: URI), so the page stands alone."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


RESULTS_FILES = ("results.parquet", "results.csv")
ROC_FILE = "roc.csv"


@dataclass(frozen=True)
class StudyReport:
    """What ``omopfed study report`` wrote, and the tables and plot data behind it."""

    html: Path
    files: list[Path]
    summary: pd.DataFrame
    comparison: pd.DataFrame
    box_plots: list[BoxPlotData]
    curves: list[CurveData]


def read_results(study_dir: Path) -> pd.DataFrame:
    """The study's results table: ``results.parquet`` or ``results.csv`` in ``study_dir``.

    One row per run: ``configuration`` (centralized | federated-K | local-SITE), ``repeat``,
    ``seed``, then one numeric column per metric (``n_*``/``*_n`` columns are patient counts).
    """
    for name in RESULTS_FILES:
        path = study_dir / name
        if path.is_file():
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
            stats.validate_results(frame)
            return frame
    raise stats.StudyDataError(
        f"no {' or '.join(RESULTS_FILES)} in {study_dir}",
        hint="see docs/how-to/analyst.md for the study results table",
    )


def read_roc(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """ROC points from a CSV with columns curve, fpr, tpr (one row per point)."""
    frame = pd.read_csv(path)
    if not {"curve", "fpr", "tpr"} <= set(frame.columns):
        raise stats.StudyDataError(f"{path.name} needs the columns curve, fpr, tpr")
    return {
        str(name): (group["fpr"].astype(float).tolist(), group["tpr"].astype(float).tolist())
        for name, group in frame.groupby("curve", sort=True)
    }


def runs_table(results: pd.DataFrame, min_cell_count: int) -> pd.DataFrame:
    """The results table as shown: patient-count columns suppressed below the threshold."""
    shown = results.copy()
    for column in shown.columns:
        if is_count_column(str(column)):
            shown[column] = [suppress(v, min_cell_count) for v in shown[column]]
    return shown


def write_study_report(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    min_cell_count: int = 5,
    correction: str | None = "holm",
    curves: Sequence[CurveData] = (),
    roc: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    title: str = "Centralized versus federated study",
) -> StudyReport:
    """Statistics (CSV + JSON), a box plot per metric, curves, and ``report.html`` in out_dir."""
    metrics = [m for m in stats.validate_results(results) if not is_count_column(m)]
    summary = stats.summarize(results, metrics)
    comparison = stats.compare(results, metrics, correction=correction)
    files = _write_tables(out_dir, summary, comparison)
    plots = out_dir / "plots"
    boxes = [box_plot_data(results, m, comparison) for m in metrics]
    figures: list[tuple[str, bytes]] = []
    for box in boxes:
        png, svg, raw = save_figure(draw_box_plot(box), plots, f"box_{_slug(box.metric)}")
        files += [png, svg]
        figures.append((f"{box.metric}", raw))
    all_curves = list(curves) + ([roc_data(roc)] if roc else [])
    for i, curve in enumerate(all_curves):
        fig = draw_curves(curve, diagonal=curve.title == "ROC")
        png, svg, raw = save_figure(fig, plots, f"curve_{i + 1}_{_slug(curve.title)}")
        files += [png, svg]
        figures.append((curve.title, raw))
    sections = _sections(results, summary, comparison, figures, min_cell_count, correction)
    page = atomic_write(out_dir / "report.html", render_html(title, sections).encode("utf-8"))
    return StudyReport(page, [page, *files], summary, comparison, boxes, all_curves)


def _write_tables(out_dir: Path, summary: pd.DataFrame, comparison: pd.DataFrame) -> list[Path]:
    files = []
    for stem, frame in (("stats_summary", summary), ("stats_tests", comparison)):
        csv = frame.to_csv(index=False).encode("utf-8")
        files.append(atomic_write(out_dir / f"{stem}.csv", csv))
        text = frame.to_json(orient="records", indent=2)
        files.append(atomic_write(out_dir / f"{stem}.json", (text or "[]").encode("utf-8")))
    return files


def _sections(
    results: pd.DataFrame,
    summary: pd.DataFrame,
    comparison: pd.DataFrame,
    figures: Sequence[tuple[str, bytes]],
    min_cell_count: int,
    correction: str | None,
) -> list[tuple[str, str]]:
    """The report's sections, in reading order: method, tables, plots, the runs themselves."""
    adjusted = "Holm-adjusted across configurations" if correction == "holm" else "unadjusted"
    method = (
        '<p class="note">Per metric and configuration: mean, median, IQR and a percentile '
        "bootstrap 95 % CI of the mean (fixed seed). Each configuration is compared with "
        "centralized by a two-sided Wilcoxon rank-sum test (Mann-Whitney U, tie-corrected); "
        f"p-values on the plots are {adjusted}. Effect size: rank-biserial correlation "
        "(= Cliff's delta; positive: the configuration scores higher than centralized). "
        "% of centralized = configuration mean / centralized mean x 100. Patient counts below "
        f"{min_cell_count} are shown as &lt;{min_cell_count}.</p>"
    )
    plots = "\n".join(
        f"<h3>{html.escape(name)}</h3>{embed_png(raw, name)}" for name, raw in figures
    )
    return [
        ("Method", method),
        ("Summary per configuration", html_table(summary)),
        ("Rank-sum tests against centralized", html_table(comparison)),
        ("Plots", plots),
        ("Runs", html_table(runs_table(results, min_cell_count))),
    ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "plot"
