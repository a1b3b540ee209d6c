"""Generate a whole synthetic federation: per site a settings file, a CDM, DICOM and truth.json.

Order of work: plan every site (cheap, deterministic), write every subject's DICOM in a process
pool (the slow part; each subject is independent and seeded on its own), then load each site's
CDM in one transaction and write its ``truth.json`` and ``site.toml``. Progress is reported
through a callback so the library stays free of terminal output.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from cohorts.db import Database, Schemas
from node.concept_map import load_concept_map
from node.synth import omop, rsna
from node.synth.dicom import SeriesSpec, series_specs, write_subject
from node.synth.errors import SynthError, SynthOutputError
from node.synth.profiles import Profile, SiteStyle, get_profile, site_styles
from node.synth.subjects import Subject, plan_site
from node.synth.truth import site_truth

log = logging.getLogger(__name__)

LAYOUTS = ("omop", "rsna-miccai")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FederationRequest:
    """What to generate; the CLI's options one to one."""

    out: Path
    sites: int = 3
    patients: int | None = None  # None: the profile's default
    seed: int = 0
    profile: str = "tiny"
    db_url: str | None = None
    layout: str = "omop"
    difficulty: float | None = None
    seg_fraction: float | None = None
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    force: bool = False

    def __post_init__(self) -> None:
        # image_occurrence.local_path is written absolute: a relative --out would make every
        # path relative to the directory the generator ran in, and the resolver find nothing.
        object.__setattr__(self, "out", Path(self.out).absolute())


@dataclass
class _Site:
    style: SiteStyle
    directory: Path
    subjects: list[Subject]
    specs: dict[int, list[SeriesSpec]]
    written: dict[int, dict[str, Any]] = field(default_factory=dict)


def _check(request: FederationRequest) -> Profile:
    if request.layout not in LAYOUTS:
        raise SynthError(f"unknown layout {request.layout!r}", hint=f"choose {', '.join(LAYOUTS)}")
    for name, value in (
        ("--difficulty", request.difficulty),
        ("--seg-fraction", request.seg_fraction),
    ):
        if value is not None and not 0.0 <= value <= 1.0:
            raise SynthError(f"{name} must lie between 0 and 1, not {value}")
    if request.out.exists() and not request.out.is_dir():
        raise SynthOutputError(f"{request.out} exists and is not a directory")
    return get_profile(request.profile)


def _prepare_dir(directory: Path, force: bool) -> None:
    if directory.exists() and any(directory.iterdir()):
        if not force:
            raise SynthOutputError(
                f"{directory} already holds files", hint="pass --force to replace the site"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


def _plan(request: FederationRequest, profile: Profile) -> list[_Site]:
    patients = request.patients or profile.patients
    rsna_layout = request.layout == "rsna-miccai"
    sites = []
    for style in site_styles(request.sites, profile, request.seg_fraction):
        directory = request.out / style.name
        subjects = plan_site(
            style,
            profile,
            patients,
            request.seed,
            difficulty=request.difficulty,
            exclusions=not rsna_layout,
        )
        specs = {
            s.person_id: series_specs(s, style, directory, request.layout, request.seed)
            for s in subjects
        }
        sites.append(_Site(style, directory, subjects, {k: v for k, v in specs.items() if v}))
    return sites


def _write_task(args: tuple[Subject, SiteStyle, list[SeriesSpec], str, int]) -> dict[str, Any]:
    return write_subject(*args)


def _write_images(
    sites: list[_Site], request: FederationRequest, progress: Progress | None
) -> None:
    """Every subject's files; in a process pool when more than one worker is asked for."""
    keys = [(i, pid) for i, site in enumerate(sites) for pid in site.specs]
    tasks = [
        (
            sites[i].subjects[pid - 1],
            sites[i].style,
            sites[i].specs[pid],
            request.layout,
            request.seed,
        )
        for i, pid in keys
    ]
    if progress:
        progress(0, len(tasks))
    if request.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=request.workers) as pool:
            results = pool.map(_write_task, tasks, chunksize=2)
            _collect(sites, keys, results, progress)
    else:
        _collect(sites, keys, map(_write_task, tasks), progress)


def _collect(
    sites: list[_Site], keys: list[tuple[int, int]], results: Any, progress: Progress | None
) -> None:
    for done, ((i, pid), result) in enumerate(zip(keys, results, strict=True), start=1):
        sites[i].written[pid] = result
        if progress:
            progress(done, len(keys))


def _database(request: FederationRequest, site: _Site) -> tuple[Database, dict[str, Any]]:
    """The site's database and the settings keys that point at it."""
    if request.db_url is None:
        url = f"duckdb:///{site.directory / 'cdm.duckdb'}"
        return Database(url, Schemas(), must_exist=False), {"database_url": "duckdb:///cdm.duckdb"}
    name = site.style.name
    schemas = Schemas(cdm=f"{name}_cdm", vocab=f"{name}_cdm", results=f"{name}_results")
    keys = {
        "database_url": request.db_url,
        "cdm_schema": schemas.cdm,
        "results_schema": schemas.results,
    }
    return Database(request.db_url, schemas, must_exist=False), keys


def _settings(site: _Site, db_keys: dict[str, Any], layout: str) -> dict[str, Any]:
    return {
        "site_name": site.style.name,
        **db_keys,
        "dicom_roots": ["train" if layout == "rsna-miccai" else "dicom"],
        "workspace": "workspace",
        "min_cell_count": 5,
    }


def _finish_site(request: FederationRequest, site: _Site, profile: Profile) -> dict[str, Any]:
    """Load the CDM, then write truth.json and site.toml; return the truth."""
    concept_map = load_concept_map()
    db, db_keys = _database(request, site)
    with db:
        if request.layout == "rsna-miccai":
            frames = rsna.empty_site_frames()
        else:
            frames = omop.site_frames(site.subjects, site.specs, concept_map, site.style.name)
        counts = omop.write_site_database(db, frames, replace=request.force)
    meta = {
        "seed": request.seed,
        "profile": profile.name,
        "layout": request.layout,
        "difficulty": profile.difficulty if request.difficulty is None else request.difficulty,
        "concept_map_version": concept_map.version,
        "cdm_schema": db.schemas.cdm,
        "results_schema": db.schemas.results,
    }
    truth = site_truth(site.subjects, site.specs, site.written, site.style, site.directory, meta)
    truth["table_rows"] = counts
    if request.layout == "rsna-miccai":
        truth["rsna"] = rsna.finish_tree(site.subjects, site.specs, site.directory)
    (site.directory / "truth.json").write_text(
        json.dumps(truth, indent=2, default=str) + "\n", "utf-8"
    )
    with (site.directory / "site.toml").open("wb") as handle:
        tomli_w.dump(_settings(site, db_keys, request.layout), handle)
    return truth


def generate_federation(
    request: FederationRequest, progress: Progress | None = None
) -> dict[str, dict[str, Any]]:
    """Generate every site of the federation; return each site's truth, keyed by site name."""
    profile = _check(request)
    sites = _plan(request, profile)
    for site in sites:
        _prepare_dir(site.directory, request.force)
    _write_images(sites, request, progress)
    truths = {site.style.name: _finish_site(request, site, profile) for site in sites}
    log.info("synthetic federation of %d site(s) written to %s", len(sites), request.out)
    return truths
