"""``omopfed synth`` (the synthetic federation) and ``omopfed etl`` (public dataset importers).

Each command parses, calls one library function and renders; progress bars live here only.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

from cohorts.db import Database
from node.concept_map import load_concept_map
from node.etl.errors import EtlInputError
from node.etl.rsna_miccai import ImportOptions, import_rsna_miccai
from node.settings import load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from omopfed.clikit import (
    Format,
    FormatOption,
    new_app,
    out,
    print_json,
    print_table,
    progress,
)

synth_app = new_app("Generate synthetic radiogenomics sites (OMOP CDM + DICOM + truth.json).")
etl_app = new_app("Import public datasets into the site's OMOP CDM.")


@synth_app.command("federation")
def synth_federation(
    out_dir: Path = typer.Option(..., "--out", help="Output folder: one sub-folder per site."),
    sites: int = typer.Option(3, "--sites", help="Number of sites."),
    patients: int | None = typer.Option(
        None, "--patients", help="Persons per site (default: the profile's)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same data."),
    profile: str = typer.Option("tiny", "--profile", help="tiny, demo or default."),
    db_url: str | None = typer.Option(
        None, "--db-url", help="PostgreSQL URL: sites go to schemas <site>_cdm/<site>_results."
    ),
    layout: str = typer.Option(
        "omop", "--layout", help="omop, or rsna-miccai (a tree for the importer)."
    ),
    difficulty: float | None = typer.Option(
        None, "--difficulty", help="0 easy .. 1 chance (default 0.5)."
    ),
    seg_fraction: float | None = typer.Option(
        None, "--seg-fraction", help="Share of members with a DICOM SEG."
    ),
    workers: int = typer.Option(2, "--workers", help="Processes writing DICOM."),
    force: bool = typer.Option(False, "--force", help="Replace sites already in --out."),
    fmt: Format = FormatOption,
) -> None:
    """Write a synthetic federation: per site site.toml, the CDM, DICOM and truth.json."""
    request = FederationRequest(
        out=out_dir, sites=sites, patients=patients, seed=seed, profile=profile, db_url=db_url,
        layout=layout, difficulty=difficulty, seg_fraction=seg_fraction, workers=workers, force=force,
    )  # fmt: skip
    with progress("writing DICOM") as update:
        truths = generate_federation(request, progress=update)
    rows = [
        (name, t["persons"], t["reference_cohort"]["members"], t["labelled_members"]["mgmt"], t["image_occurrences"], t["mr_files"])
        for name, t in truths.items()
    ]  # fmt: skip
    if fmt is Format.json:
        print_json(
            {
                name: {k: t[k] for k in ("persons", "reference_cohort", "labelled_members")}
                for name, t in truths.items()
            }
        )
    else:
        print_table(
            f"synthetic federation in {out_dir}",
            ["site", "persons", "cohort", "MGMT labelled", "series", "MR files"],
            rows,
        )


def _parse_date(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise EtlInputError(f"--default-date {text!r} is not YYYY-MM-DD") from None


@etl_app.command("rsna-miccai")
def etl_rsna_miccai(
    root: Path = typer.Argument(
        ..., help="The dataset folder (holding train/ or the patient folders)."
    ),
    labels: Path = typer.Option(..., "--labels", help="train_labels.csv (BraTS21ID, MGMT_value)."),
    settings: Path = typer.Option(..., "--settings", "-s", help="Site settings TOML file."),
    default_date: str = typer.Option(
        "2021-01-01", "--default-date", help="Date for patients whose headers have no StudyDate."
    ),
    default_age: int = typer.Option(
        50, "--default-age", help="Age for headers without PatientAge."
    ),
    fmt: Format = FormatOption,
) -> None:
    """Load the RSNA-MICCAI 2021 layout into the site's CDM (idempotent, atomic per patient)."""
    site = load_site_settings(settings)
    options = ImportOptions(default_date=_parse_date(default_date), default_age=default_age)
    concept_map = load_concept_map(site.concept_map)
    with (
        Database(site.database_url.get_secret_value(), site.schemas) as db,
        progress("importing") as update,
    ):
        report = import_rsna_miccai(root, labels, db, concept_map, options, progress=update)
    summary = {
        "imported": len(report.imported),
        "already_present": len(report.already_present),
        "series": report.series,
        "mgmt_measurements": report.mgmt_measurements,
        "default_dates": report.default_dates,
        "skipped": report.skipped_by_reason(),
    }
    if fmt is Format.json:
        print_json(
            {
                **summary,
                "skipped_items": [{"item": s.item, "reason": s.reason} for s in report.skipped],
            }
        )
        return
    out.print(
        f"imported {summary['imported']} patient(s), {report.series} series, "
        f"{report.mgmt_measurements} MGMT labels; {summary['already_present']} already present"
    )
    if report.skipped:
        print_table("skipped", ["item", "reason"], [(s.item, s.reason) for s in report.skipped])
