"""Suite definitions and hashes, thresholds, promotion, content hashes, suppressed reports, the
aggregate that may leave the site, the gate record's composition, and the import firewall."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from node.settings import load_site_settings
from node.validation.cdm_suite import build_cdm_suite
from node.validation.hashing import frame_sha256, frames_sha256
from node.validation.images_suite import build_images_suite
from node.validation.model import Check, CheckResult, Suite, SuiteResult
from node.validation.report import aggregate_summary, observed_text, summary, suppress, table_rows
from node.validation.service import compose_record, summary_path
from node.validation.thresholds import ValidationSettings
from omopfed.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MARKERS = {"mgmt": [2000000201]}


def test_suite_hash_covers_thresholds_and_promotions_not_prose() -> None:
    base = build_cdm_suite(ValidationSettings(), MARKERS)
    assert base.sha256 == build_cdm_suite(ValidationSettings(), MARKERS).sha256
    tighter = build_cdm_suite(ValidationSettings(max_unmapped_concept_fraction=0.01), MARKERS)
    assert tighter.sha256 != base.sha256
    promoted = build_cdm_suite(ValidationSettings(blocking=["cdm.*.plausible_*"]), MARKERS)
    assert promoted.sha256 != base.sha256
    assert promoted.check("cdm.person.year_of_birth.plausible_value_low").blocking
    assert not base.check("cdm.person.year_of_birth.plausible_value_low").blocking
    reworded = Suite(base.name, base.version, tuple(
        Check(c.id, c.kind, c.frame, c.expectation, c.kwargs, c.blocking, "other words", c.derive)
        for c in base.checks
    ))  # fmt: skip
    assert reworded.sha256 == base.sha256
    assert build_cdm_suite(ValidationSettings(), {"mgmt": [1]}).sha256 != base.sha256


def test_promotion_never_demotes_and_suites_reject_duplicate_ids() -> None:
    suite = build_images_suite(ValidationSettings(blocking=["images.seg.*"]), "densenet2d")
    assert suite.check("images.seg.aligned").blocking
    assert build_images_suite(ValidationSettings(), "unet3d").check("images.seg.aligned").blocking
    check = suite.checks[0]
    with pytest.raises(ValueError, match="duplicate"):
        Suite("x", "1", (check, check))


def test_thresholds_in_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'site_name = "a"\ndatabase_url = "duckdb:///cdm.duckdb"\n'
        "[validation]\nmin_cohort_size = 50\nblocking = ['cdm.*']\n"
    )
    settings = load_site_settings(path, environ={})
    assert settings.validation.min_cohort_size == 50
    assert settings.validation.max_spacing_mm == 10.0
    path.write_text(path.read_text() + "min_slices = 2000\n")
    with pytest.raises(ConfigError, match="min_slices is larger than max_slices"):
        load_site_settings(path, environ={})
    path.write_text(path.read_text().replace("min_slices = 2000", "min_slice = 2"))
    with pytest.raises(ConfigError, match="min_slice"):
        load_site_settings(path, environ={})


def test_frame_hash_ignores_row_order_but_not_values() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    assert frame_sha256(frame) == frame_sha256(frame.iloc[::-1])
    changed = frame.copy()
    changed.loc[0, "a"] = 9
    assert frame_sha256(changed) != frame_sha256(frame)
    assert frame_sha256(frame.rename(columns={"a": "c"})) != frame_sha256(frame)
    assert frames_sha256({"t": frame}) != frames_sha256({"u": frame})


def _result(**kwargs: object) -> CheckResult:
    base: dict[str, object] = {"id": "cdm.x", "kind": "isRequired", "blocking": True,
                               "success": False, "description": "d"}  # fmt: skip
    base.update(kwargs)
    return CheckResult(**base)  # type: ignore[arg-type]


def test_counts_below_the_minimum_cell_count_are_suppressed() -> None:
    assert [suppress(n, 5) for n in (None, 0, 1, 4, 5)] == [None, 0, "<5", "<5", 5]
    assert observed_text(_result(element_count=1200, unexpected_count=3), 5) == "<5 of 1,200"
    assert (
        observed_text(_result(element_count=1200, unexpected_count=12), 5) == "12 of 1,200 (1.0%)"
    )
    assert observed_text(_result(element_count=3, unexpected_count=3), 5) == "<5 of <5"
    assert observed_text(_result(observed=3, observed_is_count=True), 5) == "<5"
    assert observed_text(_result(observed=0.875), 5) == "87.5%"
    assert observed_text(_result(element_count=2, unexpected_count=1, unit="classes"), 5) == (
        "1 of 2 classes"
    )
    assert observed_text(_result(error="boom\ntrace"), 5) == "error: boom"


def _run(results: list[CheckResult], suite: str = "manifest") -> SuiteResult:
    return SuiteResult(
        suite, "manifest-1", "s" * 64, "d" * 64, "h" * 64, results, notes=["x.parquet"]
    )


def test_summary_table_and_aggregate() -> None:
    failing = _result(id="manifest.cohort.min_size", observed=3, observed_is_count=True)
    warning = _result(
        id="manifest.grade.class_balance", blocking=False, element_count=40, unexpected_count=2
    )
    passing = _result(
        id="manifest.split.disjoint", success=True, element_count=40, unexpected_count=0
    )
    run = _run([passing, warning, failing])
    data = summary(run, 5, "validation/manifest/docs/index.html")
    assert data["failed_blocking"] == ["manifest.cohort.min_size"] and not data["passed"]
    assert data["results"][1]["unexpected_count"] == "<5"
    assert [r[1] for r in table_rows(run, 5, all_rows=True)] == ["FAIL", "warn", "pass"]
    assert len(table_rows(run, 5, all_rows=False)) == 2
    out = aggregate_summary(data)
    text = json.dumps(out)
    assert "d" * 64 not in text and "h" * 64 not in text and "parquet" not in text
    assert out["suite_hash"] == "s" * 64
    assert [e["passed"] for e in out["expectations"]] == [True, False, False]
    assert out["expectations"][1] == {
        "id": "manifest.grade.class_balance", "blocking": False, "passed": False,
        "element_count": 40, "unexpected_count": "<5",
    }  # fmt: skip


def _write(workspace: Path, suite: Suite, passed: bool = True, dataset: str = "h" * 64) -> None:
    path = summary_path(workspace, suite.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"suite_hash": suite.sha256, "dataset_hash": dataset, "data_docs": f"validation/{suite.name}/docs/index.html",
            "failed_blocking": [] if passed else [f"{suite.name}.x"]}  # fmt: skip
    path.write_text(json.dumps(data))


def test_record_composition(tmp_path: Path) -> None:
    t = ValidationSettings()
    suites = {
        "cdm": build_cdm_suite(t, MARKERS),
        "manifest": Suite("manifest", "1", ()),
        "images": build_images_suite(t, "densenet2d"),
    }
    record = compose_record(tmp_path, suites, "h" * 64)
    assert not record.passed and record.failed_blocking == [
        "cdm:not-run",
        "manifest:not-run",
        "images:not-run",
    ]
    for suite in suites.values():
        _write(tmp_path, suite)
    record = compose_record(tmp_path, suites, "h" * 64)
    assert record.passed and record.data_hash == "h" * 64
    assert record.suite_hashes["cdm"] == suites["cdm"].sha256
    assert compose_record(tmp_path, suites, "e" * 64).failed_blocking == [
        "cdm:stale", "manifest:stale", "images:stale"
    ]  # fmt: skip
    _write(tmp_path, suites["manifest"], passed=False)
    record = compose_record(tmp_path, suites, "h" * 64)
    assert record.failed_blocking == ["manifest.x"]
    assert record.report_path.endswith("validation/manifest/docs/index.html")
    tighter = {
        **suites,
        "images": build_images_suite(ValidationSettings(min_slices=20), "densenet2d"),
    }
    assert "images:stale" in compose_record(tmp_path, tighter, "h" * 64).failed_blocking
    assert "dataset:not-built" in compose_record(tmp_path, suites, "").failed_blocking


@pytest.mark.slow
def test_gate_dataset_and_client_app_never_import_great_expectations() -> None:
    code = (
        "import sys\n"
        "import node.gate, node.dataset, node.settings, node.client_app, node.cli_validate\n"
        "import node.validation.service, omopfed.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'great_expectations'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
