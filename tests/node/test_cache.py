"""The dataset cache on synthetic sites: 2D slices equal the analytic phantom from every plane,
3D volumes with labels and masks, incremental and deterministic rebuilds, the loader's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cohorts.db import Database
from cohorts.loader import load_definition
from cohorts.runner import run_cohort
from models.names import Head
from node.cache import build_dataset, cache_info
from node.dataset import dataset_hash, load_training_data, manifest_sidecar
from node.errors import DatasetCacheError, ManifestError, StaleDatasetError
from node.manifest import ManifestFiles, load_salt, read_manifest_rows, resolve, subject_key
from node.settings import SiteSettings, load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from node.synth.phantom import middle_coronal_slice
from node.synth.profiles import FOV_MM, get_profile, site_styles
from node.synth.subjects import Subject, plan_site
from omopfed.cli import main

SEED, PATIENTS, SITES = 43, 12, 3
ROOT = Path(__file__).resolve().parents[2]
SIZE = 128


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Three sites (axial, sagittal, coronal), each with its cohort run and its manifest."""
    out = tmp_path_factory.mktemp("fed")
    truths = generate_federation(
        FederationRequest(out=out, sites=SITES, patients=PATIENTS, seed=SEED)
    )
    definition = load_definition(ROOT / "cohorts" / "definitions" / "reference_glioma.json")
    for site in truths:
        settings = load_site_settings(out / site / "site.toml")
        with Database(settings.database_url.get_secret_value(), settings.schemas) as db:
            run_cohort(db, definition, 1, min_cell_count=5)
        resolve(settings, 1)
    return out, truths


def settings_of(out: Path, site: str, cache: Path | None = None, **dataset: Any) -> SiteSettings:
    settings = load_site_settings(out / site / "site.toml")
    return settings.model_copy(
        update={
            "cache_dir": cache or settings.cache_dir,
            "dataset": settings.dataset.model_copy(update=dataset),
        }
    )


def subjects_by_key(out: Path, site_index: int) -> dict[str, Subject]:
    profile = get_profile("tiny")
    style = site_styles(SITES, profile)[site_index]
    salt = load_salt(out / style.name / "workspace")
    planned = plan_site(style, profile, PATIENTS, SEED)
    return {subject_key(s.person_id, salt): s for s in planned}


def analytic_slice(subject: Subject, style: dict[str, Any]) -> np.ndarray:
    """The phantom's middle coronal slice on the cache's grid: a square over the larger of the
    volume's x and z extents between outer voxel centres (docs/explanation/imaging.md)."""
    pixel, between = style["pixel_spacing_mm"], style["slice_spacing_mm"]
    x_extent = FOV_MM - (between if style["plane"] == "sagittal" else pixel)
    z_extent = FOV_MM - (between if style["plane"] == "axial" else pixel)
    extent = max(x_extent, z_extent)
    assert subject.phantom is not None
    return middle_coronal_slice(subject.phantom, "FLAIR", SIZE, fov_mm=extent * SIZE / (SIZE - 1))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_2d_cache_holds_the_analytic_middle_coronal_slice_from_every_plane(
    federation: tuple[Path, dict[str, Any]],
) -> None:
    out, truths = federation
    for index, site in enumerate(sorted(truths)):
        settings = settings_of(out, site)
        report = build_dataset(settings, "densenet2d")
        data = load_training_data(settings, "densenet2d")
        assert data.data_hash == report.data_hash == dataset_hash(settings, "densenet2d")
        assert (data.num_train, data.num_validation) == (report.num_train, report.num_validation)
        images = data.train.images
        assert isinstance(images, np.memmap) and images.dtype == np.float16
        assert images.shape == (data.num_train, 1, SIZE, SIZE)
        subjects = subjects_by_key(out, index)
        keys = json.loads((report.entry / "index.json").read_text())["splits"]["train"]["subjects"]
        for i, key in enumerate(keys):
            image = np.asarray(images[i, 0], dtype=np.float32)
            assert image.min() >= 0.0 and image.max() == pytest.approx(1.0, abs=1e-3)
            truth = analytic_slice(subjects[key], truths[site]["style"])
            misfit = 1.0 - _corr(image, truth)
            assert misfit < 0.05, (site, key)
            # orientation: a mirrored slice fits worse. Clearly so left-right (the tumour sits
            # off the midline); up-down only the ventricle and tumour break the head's symmetry
            assert 1.0 - _corr(image[:, ::-1], truth) > 2 * misfit  # left-right
            assert 1.0 - _corr(image[::-1, :], truth) > misfit  # up-down
            label = int(data.train[i][Head.MGMT])
            assert label == ("unmethylated", "methylated").index(subjects[key].labels["mgmt"])


def test_rebuilds_are_incremental_and_deterministic(
    federation: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = federation
    settings = settings_of(out, "site_a", tmp_path / "cache")
    cold = build_dataset(settings, "densenet2d")
    assert cold.computed == cold.num_train + cold.num_validation and cold.new_entry
    warm = build_dataset(settings, "densenet2d")
    assert (warm.computed, warm.data_hash, warm.new_entry) == (0, cold.data_hash, False)
    serial = build_dataset(settings_of(out, "site_a", tmp_path / "serial", workers=1), "densenet2d")
    assert serial.data_hash == cold.data_hash  # same content whatever the number of workers
    first = json.loads((cold.entry / "index.json").read_text())["splits"]["train"]["subjects"][0]
    folder = Path(_row(settings, first)["flair_path"])
    victim = sorted(folder.iterdir())[0]
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = build_dataset(settings, "densenet2d")
    assert touched.computed == 1 and touched.data_hash != cold.data_hash
    middle = sorted(folder.iterdir())[len(list(folder.iterdir())) // 2]
    hidden = middle.rename(tmp_path / "hidden.dcm")
    try:
        damaged = build_dataset(settings, "densenet2d")
        assert damaged.computed == 1 and damaged.dropped == {"missing_slices": 1}
        assert build_dataset(settings, "densenet2d").computed == 0  # the rejection is cached
    finally:
        hidden.rename(middle)
    float32_settings = settings_of(out, "site_a", tmp_path / "cache", dtype="float32")
    float32 = build_dataset(float32_settings, "densenet2d")
    assert float32.computed == cold.computed and float32.data_hash != touched.data_hash


def _row(settings: SiteSettings, key: str) -> dict[str, Any]:
    rows, _ = read_manifest_rows(settings.workspace, 1)
    return next(r for r in rows if r["subject_key"] == key)


def test_3d_cache_has_four_channels_every_head_and_masks(
    federation: tuple[Path, dict[str, Any]],
) -> None:
    out, truths = federation
    settings = settings_of(out, "site_c")
    report = build_dataset(settings, "unet3d")
    data = load_training_data(settings, "unet3d")
    depth = truths["site_c"]["style"]["slices"]
    seen_masks = 0
    for dataset in (data.train, data.validation):
        for i in range(len(dataset)):
            sample = dataset[i]
            assert tuple(sample["image"].shape) == (4, depth, SIZE, SIZE)
            assert int(sample[Head.CODELETION_1P19Q]) == -1  # site_c records no 1p/19q
            assert int(sample[Head.GRADE]) in (-1, 0, 1, 2)
            assert int(sample[Head.MGMT]) in (0, 1) and int(sample[Head.IDH]) in (-1, 0, 1)
            if bool(sample["has_seg"]):
                seen_masks += 1
                values = set(np.unique(sample[Head.SEG].numpy()).tolist())
                assert values <= {0, 1, 2, 3} and len(values) > 1
    splits = json.loads((report.entry / "index.json").read_text())["splits"]
    rows = [_row(settings, key) for split in splits.values() for key in split["subjects"]]
    assert seen_masks == sum(r["seg_present"] for r in rows) > 0


def test_loader_errors_say_what_to_run(
    federation: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = federation
    settings = settings_of(out, "site_b", tmp_path / "cache")
    with pytest.raises(DatasetCacheError, match="omopfed dataset build"):
        load_training_data(settings, "densenet2d")
    with pytest.raises(DatasetCacheError, match="unknown model"):
        load_training_data(settings, "resnet")
    build_dataset(settings, "densenet2d")
    moved = settings.model_copy(update={"workspace": tmp_path / "ws"})
    with pytest.raises(ManifestError, match="omopfed resolve"):
        build_dataset(moved, "densenet2d")
    options = settings.resolver.model_copy(update={"validation_fraction": 0.5})
    resolve(moved.model_copy(update={"resolver": options}), 1)
    with pytest.raises(StaleDatasetError):
        load_training_data(moved, "densenet2d")
    assert [r["state"] for r in cache_info(moved)] == ["stale (manifest changed)"]


def test_the_loader_finds_the_manifest_where_the_resolver_writes_it(tmp_path: Path) -> None:
    assert manifest_sidecar(tmp_path, 3) == ManifestFiles.of(tmp_path, 3).sidecar


@pytest.mark.slow
def test_the_client_import_path_stays_light() -> None:
    code = (
        "import sys, node.dataset\n"
        "heavy = {'pandas', 'pyarrow', 'pydicom', 'highdicom', 'scipy', 'great_expectations',"
        " 'sqlalchemy', 'monai', 'flwr'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_dataset_cli_build_and_info(
    federation: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = federation
    toml = str(out / "site_a" / "site.toml")
    assert main(["dataset", "build", "--settings", toml, "--model", "densenet2d"]) == 0
    assert "data sha256" in capsys.readouterr().out
    assert main(["dataset", "info", "--settings", toml, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(d["model"], d["state"]) for d in shown["datasets"]] == [("densenet2d", "current")]
    assert main(["dataset", "build", "--settings", toml, "--model", "vit"]) == 3
