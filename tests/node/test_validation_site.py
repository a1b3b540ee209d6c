"""On a real synthetic site (cohort, manifest, 2D dataset): the image suite on crafted inputs,
``omopfed validate`` end to end, the gate record it writes, composition of partial runs, and a
run with no network at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from node.dataset import load_training_data
from node.gate import ValidationGateError, read_record, require_validated
from node.settings import SiteSettings
from node.validation import images_data, images_suite
from node.validation.engine import run_suite
from node.validation.service import summary_path, validate_site
from omopfed.cli import main
from tests.node.test_validation_support import ROOT, pipeline_site

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SiteSettings:
    return pipeline_site(tmp_path_factory.mktemp("site"))


def _entry(site: SiteSettings) -> tuple[Path, dict]:
    return images_data.read_entry(Path(site.cache_dir or ""), "densenet2d", 1, site.workspace)


def _manifest(site: SiteSettings) -> pd.DataFrame:
    return images_suite.manifest_for(site.workspace, 1)


def test_degenerate_inputs() -> None:
    assert images_data.degenerate(np.zeros((4, 4))) == "all zero"
    assert images_data.degenerate(np.full((4, 4), 3.0)) == "constant"
    assert images_data.degenerate(np.array([[0.0, np.nan]])) == "not finite"
    assert images_data.degenerate(np.zeros((0,))) == "empty"
    assert images_data.degenerate(np.eye(3)) is None


def test_model_channels_match_the_imaging_code() -> None:
    from node.imaging import CHANNELS

    assert images_suite.MODEL_CHANNELS["unet3d"] == CHANNELS


def _unet_inputs(manifest: pd.DataFrame) -> images_data.CachedInputs:
    """3D inputs for the manifest's included subjects that have every sequence."""
    usable = manifest[manifest["included"].fillna(False)].dropna(subset=["t1_series_uid"])
    keys = list(usable["subject_key"])
    return images_data.CachedInputs("h", "unet3d", images_suite.MODEL_CHANNELS["unet3d"],
                                    {k: [None] * 4 for k in keys})  # fmt: skip


def test_image_suite_passes_on_the_site_for_both_models(site: SiteSettings) -> None:
    folder, index = _entry(site)
    inputs = images_data.cached_inputs(Path(site.cache_dir or ""), folder, index, ("FLAIR",))
    for model, cached in (("densenet2d", inputs), ("unet3d", _unet_inputs(_manifest(site)))):
        suite = images_suite.build_images_suite(site.validation, model)
        frames = images_suite.prepare_images(_manifest(site), cached)
        run = run_suite(suite, frames, index_columns=images_suite.INDEX_COLUMNS)
        assert [(r.id, r.error) for r in run.results if not r.success] == []
    assert any(frames["images"]["seg_present"].fillna(False))


def _doctored_copy(site: SiteSettings, tmp: Path) -> tuple[pd.DataFrame, images_data.CachedInputs]:
    """The manifest and cached inputs with a defect per image expectation. Defects of different
    columns share a subject; the three that decide how the header is read get one each."""
    manifest = _manifest(site)
    inputs = _unet_inputs(manifest)
    keys = list(inputs.problems)
    rows = {k: manifest.index[manifest["subject_key"] == k][0] for k in keys}
    seg_key = next(k for k in keys if manifest.loc[rows[k], "seg_present"])
    no_uid, gone, small = [rows[k] for k in keys if k != seg_key][:3]
    values = no_uid  # the manifest values and the cached input do not depend on the header
    channels = images_suite.MODEL_CHANNELS["unet3d"]
    for p in ("flair", "t1", "t1ce", "t2"):
        manifest.loc[no_uid, f"{p}_series_uid"] = None
        manifest.loc[gone, f"{p}_path"] = str(tmp / "gone")
        manifest.loc[values, f"{p}_n_slices"] = 3
        for axis in ("slice", "row", "col"):
            manifest.loc[values, f"{p}_spacing_{axis}_mm"] = 50.0
        index = [c.lower() for c in channels].index(p)
        inputs.problems[str(manifest.loc[values, "subject_key"])][index] = "constant"
        copy = tmp / f"small_{p}"  # a copy of the series whose files claim a 16 x 2000 matrix
        shutil.copytree(str(manifest.loc[small, f"{p}_path"]), copy)
        for file in copy.iterdir():
            ds = pydicom.dcmread(file, force=True)
            ds.Rows, ds.Columns = 16, 2000
            ds.save_as(file)
        manifest.loc[small, f"{p}_path"] = str(copy)
    seg = pydicom.dcmread(manifest.loc[rows[seg_key], "seg_path"])
    seg.FrameOfReferenceUID = "1.2.3.4"
    seg.save_as(tmp / "seg.dcm")
    manifest.loc[rows[seg_key], "seg_path"] = str(tmp / "seg.dcm")
    return manifest, inputs


def test_every_image_expectation_fails_on_crafted_input(site: SiteSettings, tmp_path: Path) -> None:
    manifest, inputs = _doctored_copy(site, tmp_path)
    suite = images_suite.build_images_suite(site.validation, "unet3d")
    run = run_suite(suite, images_suite.prepare_images(manifest, inputs))
    failed = {r.id for r in run.results if not r.success}
    expected = {c.id for c in suite.checks} - {"images.dataset.min_size"}
    assert expected - failed == set()
    tiny = images_data.CachedInputs(
        "h", "unet3d", inputs.channels, dict(list(inputs.problems.items())[:2])
    )
    run = run_suite(suite, images_suite.prepare_images(manifest, tiny))
    assert "images.dataset.min_size" in {r.id for r in run.results if not r.success}


def test_cached_inputs_flag_a_blank_cached_slice(site: SiteSettings, tmp_path: Path) -> None:
    folder, index = _entry(site)
    copy = tmp_path / "entry"
    shutil.copytree(folder, copy)
    images = np.load(copy / "train_images.npy")
    images[0] = 0
    np.save(copy / "train_images.npy", images)
    inputs = images_data.cached_inputs(Path(site.cache_dir or ""), copy, index, ("FLAIR",))
    first = index["splits"]["train"]["subjects"][0]
    assert inputs.problems[first] == ["all zero"]
    assert sum(p != [None] for p in inputs.problems.values()) == 1


def test_validate_opens_the_gate_for_the_training_data(site: SiteSettings) -> None:
    run = validate_site(site)
    assert run.passed and run.record is not None and run.record.passed, run.record
    data = load_training_data(site, "densenet2d")
    assert require_validated(site.workspace, data.data_hash).passed
    for name in ("cdm", "manifest", "images"):
        written = json.loads(summary_path(site.workspace, name).read_text())
        assert written["passed"] and written["dataset_hash"] == data.data_hash
        assert (site.workspace / written["data_docs"]).is_file()
    # a partial run composes with the others' latest results: the gate stays open
    partial = validate_site(site, ["cdm"])
    assert partial.record is not None and partial.record.passed


def test_tightened_thresholds_close_the_gate_and_say_why(
    site: SiteSettings, tmp_path: Path
) -> None:
    shutil.copytree(site.workspace, tmp_path / "ws", ignore=shutil.ignore_patterns("cache"))
    strict = site.model_copy(
        update={
            "workspace": tmp_path / "ws",
            "validation": site.validation.model_copy(update={"min_cohort_size": 1000}),
        }
    )
    run = validate_site(strict, ["manifest"])
    assert not run.passed
    record = read_record(strict.workspace)
    assert record is not None and not record.passed
    assert "manifest.cohort.min_size" in record.failed_blocking
    # the images suite never ran under these thresholds (stale, or not run in this copy)
    assert {"images:stale", "images:not-run"} & set(record.failed_blocking)
    data_hash = load_training_data(site, "densenet2d").data_hash
    with pytest.raises(ValidationGateError, match=r"manifest\.cohort\.min_size"):
        require_validated(strict.workspace, data_hash)


def test_cli_exit_statuses_and_table(
    site: SiteSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "strict.toml"
    original = (site.workspace.parent / "site.toml").read_text()
    toml.write_text(original.replace("min_cohort_size = 3", "min_cohort_size = 1000").replace(
        'workspace = "workspace"', f'workspace = "{tmp_path / "ws"}"').replace(
        "cdm.duckdb", str(site.workspace.parent / "cdm.duckdb")))  # fmt: skip
    shutil.copytree(site.workspace / "manifest", tmp_path / "ws" / "manifest")
    shutil.copytree(site.workspace / "secrets", tmp_path / "ws" / "secrets")
    assert main(["validate", "--settings", str(toml), "--suite", "manifest"]) == 8
    shown = capsys.readouterr().out
    assert (
        "manifest.cohort.min_size" in shown and "FAIL" in shown and "training gate: closed" in shown
    )
    assert main(["validate", "--settings", str(toml), "--suite", "bogus"]) == 3
    settings_file = site.workspace.parent / "site.toml"
    assert (
        main(["validate", "--settings", str(settings_file), "--suite", "cdm", "--format", "json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["suites"]["cdm"]["passed"] and data["gate"]["data_hash"]
    observed = {r["observed"] for r in data["suites"]["cdm"]["results"]}
    assert any(o.startswith("<5 of ") for o in observed)  # the site's few outside-observation rows


def test_validate_runs_without_a_network(site: SiteSettings) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode:
        pytest.skip("unshare -n is not available here; see docs/how-to/validate-data.md")
    started = time.perf_counter()
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "omopfed.cli", "validate",
         "--settings", str(site.workspace.parent / "site.toml")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "training gate: open" in done.stdout
    assert "Traceback" not in done.stderr and "etwork" not in done.stderr
    assert time.perf_counter() - started < 120
