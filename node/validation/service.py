"""``omopfed validate`` as a library call: run suites, write summaries and Data Docs, gate.

Workspace layout (all under ``<workspace>/validation/``)::

    <suite>/summary.json      the suite's latest run, counts suppressed (report.summary)
    <suite>/docs/index.html   its Data Docs (row-level detail: stays on the site)
    result.json               the training gate's record (node.gate)

What the gate record carries. ``data_hash`` is the *dataset hash*: the ``data_hash`` of the
current dataset cache entry for (model, cohort) -- exactly what
``node.dataset.load_training_data(...).data_hash`` returns, so the trainers compare like with
like. It covers the manifest hash, the concept-map version and every cached item's inputs
(series UIDs, file names, sizes and mtimes, preprocessing, code version). Each suite's summary
also records its own ``data_hash`` (CDM: order-independent hash of the tables it read;
manifest: the manifest hash; images: the dataset hash) and the dataset hash current when it ran.

The record is recomposed after every run from the three latest summaries, so partial runs
(``--suite cdm``) compose: it passes only when every suite's latest run passed, was made with
the suite as currently defined (same hash: thresholds unchanged) and for the current dataset
hash. Otherwise ``failed_blocking`` names the failed expectations, or ``<suite>:not-run`` /
``<suite>:stale``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cohorts.db import Database
from node.concept_map import load_concept_map
from node.errors import DatasetCacheError
from node.gate import ValidationRecord, write_record
from node.settings import SiteSettings
from node.validation import cdm_data, images_data, images_suite, manifest_suite
from node.validation.cdm_suite import build_cdm_suite
from node.validation.engine import run_suite
from node.validation.hashing import frames_sha256
from node.validation.model import SUITE_NAMES, Suite, SuiteResult
from node.validation.report import summary

log = logging.getLogger(__name__)

MODELS = ("densenet2d", "unet3d")


@dataclass(frozen=True)
class Target:
    """What the data is validated for: the model and the cohort whose dataset trains it."""

    model: str = "densenet2d"
    cohort_id: int = 1


@dataclass
class SiteValidation:
    """One ``omopfed validate`` run: per suite its result, summary and Data Docs; the record."""

    results: dict[str, SuiteResult] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    docs: dict[str, Path] = field(default_factory=dict)
    record: ValidationRecord | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results.values())


def validation_dir(workspace: Path) -> Path:
    return workspace / "validation"


def summary_path(workspace: Path, suite: str) -> Path:
    return validation_dir(workspace) / suite / "summary.json"


def current_suites(settings: SiteSettings, model: str) -> dict[str, Suite]:
    """The three suites as this site's settings and concept map define them now (pure)."""
    concept_map = load_concept_map(settings.concept_map)
    markers = {name: list(m.test_concept_ids) for name, m in concept_map.markers.items()}
    classes = {name: list(m.classes) for name, m in concept_map.markers.items()}
    t = settings.validation
    return {
        "cdm": build_cdm_suite(t, markers),
        "manifest": manifest_suite.build_manifest_suite(
            t, settings.resolver.target_marker, classes
        ),
        "images": images_suite.build_images_suite(t, model),
    }


def _dataset(settings: SiteSettings, target: Target) -> tuple[Path, dict[str, Any]] | None:
    try:
        return images_data.read_entry(
            Path(settings.cache_dir or ""), target.model, target.cohort_id, settings.workspace
        )
    except DatasetCacheError as exc:
        log.info("no usable dataset: %s", exc)
        return None


def _cdm_frames(
    settings: SiteSettings, today: date | None
) -> tuple[dict[str, pd.DataFrame], str, list[str]]:
    concept_map = load_concept_map(settings.concept_map)
    markers = {name: list(m.test_concept_ids) for name, m in concept_map.markers.items()}
    url = settings.database_url.get_secret_value()
    with Database(url, settings.schemas, read_only=True) as db:
        loaded = cdm_data.load_cdm(db)
    frames = cdm_data.prepare(loaded.tables, settings.validation, markers, today)
    return frames, frames_sha256(loaded.tables), loaded.notes


def _manifest_frames(
    settings: SiteSettings, target: Target
) -> tuple[dict[str, pd.DataFrame], str, list[str]]:
    from node.manifest import read_sidecar

    concept_map = load_concept_map(settings.concept_map)
    classes = {name: list(m.classes) for name, m in concept_map.markers.items()}
    manifest = images_suite.manifest_for(settings.workspace, target.cohort_id)
    digest = str(read_sidecar(settings.workspace, target.cohort_id)["manifest_hash"])
    return manifest_suite.prepare_manifest(manifest, classes), digest, []


def _image_frames(
    settings: SiteSettings, target: Target, entry: tuple[Path, dict[str, Any]] | None
) -> tuple[dict[str, pd.DataFrame], str, list[str]]:
    if entry is None:  # raise the loader's own error: it names the command to run
        images_data.read_entry(
            Path(settings.cache_dir or ""), target.model, target.cohort_id, settings.workspace
        )
        raise DatasetCacheError("no dataset to validate")  # pragma: no cover - read_entry raised
    folder, index = entry
    channels = images_suite.MODEL_CHANNELS[target.model]
    inputs = images_data.cached_inputs(Path(settings.cache_dir or ""), folder, index, channels)
    manifest = images_suite.manifest_for(settings.workspace, target.cohort_id)
    notes = [
        f"dropped by the dataset cache: {reason}" for reason in sorted(index.get("dropped", {}))
    ]
    return images_suite.prepare_images(manifest, inputs), inputs.data_hash, notes


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=False, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_one(
    name: str, suite: Suite, settings: SiteSettings, target: Target, dataset_hash: str,
    entry: tuple[Path, dict[str, Any]] | None, today: date | None,
) -> tuple[SuiteResult, Path]:  # fmt: skip
    started = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    if name == "cdm":
        frames, data_hash, notes = _cdm_frames(settings, today)
        index_columns: dict[str, list[str]] = {}
    elif name == "manifest":
        frames, data_hash, notes = _manifest_frames(settings, target)
        index_columns = manifest_suite.INDEX_COLUMNS
    else:
        frames, data_hash, notes = _image_frames(settings, target, entry)
        index_columns = images_suite.INDEX_COLUMNS
    docs_dir = validation_dir(settings.workspace) / name / "docs"
    run = run_suite(suite, frames, docs_dir=docs_dir, index_columns=index_columns)
    result = SuiteResult(
        suite=name, version=suite.version, suite_hash=suite.sha256, data_hash=data_hash,
        dataset_hash=dataset_hash, results=run.results, started_at=started,
        seconds=time.perf_counter() - clock, notes=notes,
    )  # fmt: skip
    return result, docs_dir / "index.html"


def validate_site(
    settings: SiteSettings,
    suites: Sequence[str] = SUITE_NAMES,
    target: Target | None = None,
    *,
    today: date | None = None,
) -> SiteValidation:
    """Run ``suites`` on the site's data, write their summaries and Data Docs, then recompose
    and write the gate record. Raises for missing inputs (no manifest, no dataset), never for
    failed expectations: those are in the result."""
    target = target or Target()
    if target.model not in MODELS:
        raise DatasetCacheError(
            f"unknown model {target.model!r}", hint=f"use one of {', '.join(MODELS)}"
        )
    defined = current_suites(settings, target.model)
    entry = _dataset(settings, target)
    if entry is None and "images" in suites:  # fail before minutes of CDM validation, not after
        _image_frames(settings, target, entry)
    dataset_hash = str(entry[1]["data_hash"]) if entry else ""
    out = SiteValidation()
    for name in [s for s in SUITE_NAMES if s in suites]:
        result, docs = _run_one(name, defined[name], settings, target, dataset_hash, entry, today)
        relative = str(docs.relative_to(settings.workspace))
        data = summary(result, settings.min_cell_count, relative)
        _atomic_json(summary_path(settings.workspace, name), data)
        out.results[name], out.summaries[name], out.docs[name] = result, data, docs
    out.record = compose_record(settings.workspace, defined, dataset_hash)
    write_record(settings.workspace, out.record)
    return out


def _read_summary(workspace: Path, suite: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(summary_path(workspace, suite).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data


def compose_record(
    workspace: Path, suites: dict[str, Suite], dataset_hash: str
) -> ValidationRecord:
    """The gate record from the latest summary of every suite (see the module docstring)."""
    problems: list[str] = []
    report = ""
    for name in SUITE_NAMES:
        data = _read_summary(workspace, name)
        if data is None:
            problems.append(f"{name}:not-run")
            continue
        stale = (
            data.get("suite_hash") != suites[name].sha256
            or data.get("dataset_hash") != dataset_hash
        )
        failed = list(data.get("failed_blocking", []))
        problems.extend([f"{name}:stale"] if stale else failed)
        if (stale or failed) and not report:
            report = str(workspace / str(data.get("data_docs", "")))
    if not dataset_hash:
        problems.append("dataset:not-built")
    return ValidationRecord(
        data_hash=dataset_hash,
        passed=not problems,
        suite_hashes={name: suite.sha256 for name, suite in suites.items()},
        failed_blocking=problems,
        report_path=report,
        validated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
