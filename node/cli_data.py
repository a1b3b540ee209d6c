"""``omopfed resolve`` (cohort -> manifest) and ``omopfed dataset`` (the dataset cache).

Each command parses, calls one library function, renders. Counts below the site's minimum
cell count show as "<N" in every format; progress bars live here only, on stderr.
"""

from __future__ import annotations

from pathlib import Path

import typer

from node.cache import build_dataset, cache_info, cache_usage
from node.dataset import MODELS
from node.manifest import resolve, summarize
from node.settings import load_site_settings
from omopfed.clikit import (
    Format,
    FormatOption,
    new_app,
    out,
    print_json,
    print_table,
    progress,
)
from omopfed.errors import ConfigError

dataset_app = new_app("Build and inspect the site's dataset cache (preprocessed model inputs).")

SettingsOption = typer.Option(..., "--settings", "-s", help="Site settings TOML file.")
CohortOption = typer.Option(1, "--cohort", help="cohort_definition_id in results.cohort.")


def _shown(count: int, minimum: int) -> str:
    return f"<{minimum}" if count < minimum else str(count)


def resolve_command(
    settings: Path = SettingsOption,
    cohort_id: int = CohortOption,
    fmt: Format = FormatOption,
) -> None:
    """Resolve a cohort's DICOM series and labels; write the manifest (Parquet) and summarize."""
    site = load_site_settings(settings)
    with progress("resolving subjects") as update:
        written = resolve(site, cohort_id, progress=update)
    lines = summarize(written.rows, site.min_cell_count)
    if fmt is Format.json:
        print_json(
            {
                "cohort_id": cohort_id,
                "manifest": str(written.files.parquet),
                "manifest_hash": written.manifest_hash,
                "counts": dict(lines),
            }
        )
        return
    print_table(f"cohort {cohort_id}: manifest", ["", "subjects"], lines)
    out.print(f"wrote {written.files.parquet}", highlight=False)
    out.print(f"manifest sha256 {written.manifest_hash}", highlight=False)


def _model(model: str) -> str:
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}: use {' or '.join(MODELS)}")
    return model


@dataset_app.command("build")
def dataset_build(
    settings: Path = SettingsOption,
    model: str = typer.Option(..., "--model", help="densenet2d or unet3d."),
    cohort_id: int = CohortOption,
    fmt: Format = FormatOption,
) -> None:
    """Build the model's inputs from the manifest; only changed subjects are recomputed."""
    site = load_site_settings(settings)
    with progress(f"building {_model(model)} items") as update:
        report = build_dataset(site, model, cohort_id=cohort_id, progress=update)
    n = site.min_cell_count
    counts = {
        "train": _shown(report.num_train, n),
        "validation": _shown(report.num_validation, n),
        "items computed": str(report.computed),
        "items reused": str(report.reused),
        **{f"dropped: {reason}": _shown(c, n) for reason, c in sorted(report.dropped.items())},
    }
    if fmt is Format.json:
        shown = {"model": model, "cohort_id": cohort_id, "data_hash": report.data_hash}
        print_json({**shown, "seconds": round(report.seconds, 3), "counts": counts})
        return
    title = f"{model} dataset of cohort {cohort_id} ({report.seconds:.1f} s)"
    print_table(title, ["", "subjects"], counts.items())
    out.print(f"data sha256 {report.data_hash}", highlight=False)


@dataset_app.command("info")
def dataset_info(settings: Path = SettingsOption, fmt: Format = FormatOption) -> None:
    """List the cache's current datasets: hash, split sizes, dropped subjects, freshness."""
    site = load_site_settings(settings)
    n = site.min_cell_count
    records = cache_info(site)
    for record in records:
        for key in ("num_train", "num_validation"):
            if key in record:
                record[key] = _shown(record[key], n)
        if "dropped" in record:
            record["dropped"] = {k: _shown(v, n) for k, v in record["dropped"].items()}
    files, size = cache_usage(site)
    if fmt is Format.json:
        print_json(
            {"cache_dir": str(site.cache_dir), "files": files, "bytes": size}
            | {"datasets": records}
        )
        return
    rows = [_info_row(r) for r in records]
    columns = ["model", "cohort", "train", "validation", "data hash", "dropped", "state"]
    print_table(f"dataset cache {site.cache_dir}", columns, rows)
    out.print(f"{files} file(s), {size / 1e6:.1f} MB", highlight=False)


def _info_row(record: dict[str, object]) -> list[object]:
    dropped = record.get("dropped") or {}
    assert isinstance(dropped, dict)
    return [
        record.get("model", record.get("pointer")),
        *(record.get(k, "") for k in ("cohort_id", "num_train", "num_validation")),
        str(record["data_hash"])[:16],
        ", ".join(f"{k} {v}" for k, v in dropped.items()),
        record["state"],
    ]
