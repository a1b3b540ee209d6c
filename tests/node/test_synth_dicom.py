"""Synthetic DICOM: geometry from any plane, SEG alignment, determinism, learnable labels."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from scipy.ndimage import map_coordinates
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from cohorts.db import Database
from node.settings import load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from node.synth.phantom import brats_labels, coronal_points, middle_coronal_slice
from node.synth.profiles import get_profile, site_styles
from node.synth.subjects import Subject, plan_site
from tests.node.synth_helpers import query

SEED, PATIENTS = 21, 16


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("fed")
    return out, generate_federation(
        FederationRequest(out=out, sites=3, patients=PATIENTS, seed=SEED)
    )


def _subjects(site_index: int) -> list[Subject]:
    profile = get_profile("tiny")
    return plan_site(site_styles(3, profile)[site_index], profile, PATIENTS, SEED)


def _series(folder: Path) -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(
        datasets, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float)))
    )


def _geometry(
    datasets: list[pydicom.Dataset],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    first = datasets[0]
    row, col = np.reshape(np.asarray(first.ImageOrientationPatient, float), (2, 3))
    normal = np.cross(row, col)
    assert abs(np.dot(row, col)) < 1e-6 and np.isclose(np.linalg.norm(normal), 1.0)
    positions = np.array([np.asarray(d.ImagePositionPatient, float) for d in datasets])
    steps = np.diff(positions, axis=0)
    assert np.allclose(steps, steps[0], atol=1e-3)  # evenly spaced along the normal
    assert np.allclose(np.linalg.norm(steps, axis=1), float(first.SliceThickness), atol=1e-3)
    assert all(d.FrameOfReferenceUID == first.FrameOfReferenceUID for d in datasets)
    assert all(
        list(d.ImageOrientationPatient) == list(first.ImageOrientationPatient) for d in datasets
    )
    return positions[0], row, col, normal, float(first.PixelSpacing[0])


def _coronal_from_files(datasets: list[pydicom.Dataset], size: int = 64) -> np.ndarray:
    """The middle coronal slice resampled from the files' geometry alone."""
    origin, row, col, normal, spacing = _geometry(datasets)
    volume = np.stack(
        [
            d.pixel_array * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0))
            for d in datasets
        ]
    )
    offsets = coronal_points(size) - origin
    step = float(np.linalg.norm(np.asarray(datasets[1].ImagePositionPatient, float) - origin))
    index = [offsets @ normal / step, offsets @ col / spacing, offsets @ row / spacing]
    return map_coordinates(volume.astype(float), index, order=1, mode="nearest")


def test_every_plane_gives_the_analytic_middle_coronal_slice(
    federation: tuple[Path, dict[str, Any]],
) -> None:
    out, truths = federation
    assert {t["style"]["plane"] for t in truths.values()} == {"axial", "sagittal", "coronal"}
    for index, (site, truth) in enumerate(sorted(truths.items())):
        subject = next(s for s in _subjects(index) if s.images and not s.corrupt)
        study = next((out / site / "dicom" / subject.source_id).iterdir())
        flair = next(p for p in study.iterdir() if p.name.startswith("01_"))
        recovered = _coronal_from_files(_series(flair)) / truth["style"]["intensity_scale"]
        expected = middle_coronal_slice(subject.phantom, "FLAIR", 64)
        assert np.corrcoef(recovered.ravel(), expected.ravel())[0, 1] > 0.9, site
        assert np.median(np.abs(recovered - expected)[expected > 200]) < 80, site


def test_seg_masks_align_with_their_series(federation: tuple[Path, dict[str, Any]]) -> None:
    out, truths = federation
    subjects = {s.source_id: s for s in _subjects(0)}
    seg_path = out / "site_a" / truths["site_a"]["seg_files"][0]
    seg = hd.seg.segread(seg_path)
    subject = subjects[seg.PatientID]
    flair = _series(next(p for p in seg_path.parent.parent.iterdir() if p.name.startswith("01_")))
    uids = [d.SOPInstanceUID for d in flair]
    masks = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1, 2, 3], combine_segments=True,
        assert_missing_frames_are_empty=True,
    )  # fmt: skip
    _, row, col, _, spacing = _geometry(flair)
    for k, ds in enumerate(flair):
        j, i = np.meshgrid(np.arange(ds.Columns), np.arange(ds.Rows))
        points = (
            np.asarray(ds.ImagePositionPatient, float)
            + i[..., None] * spacing * col
            + j[..., None] * spacing * row
        )
        assert np.array_equal(masks[k], brats_labels(subject.phantom, points)), k
    assert set(np.unique(masks)) <= {0, 1, 2, 3} and (masks > 0).any()


def test_corrupt_and_non_dicom_files_are_where_truth_says(
    federation: tuple[Path, dict[str, Any]],
) -> None:
    out, truths = federation
    for site, truth in truths.items():
        for rel in truth["corrupt_files"]:
            with pytest.raises(Exception):  # noqa: B017 - any read failure is the point
                pydicom.dcmread(out / site / rel).pixel_array  # noqa: B018
        for rel in truth["non_dicom_files"]:
            with pytest.raises(pydicom.errors.InvalidDicomError):
                pydicom.dcmread(out / site / rel)
        mr = [p for p in (out / site / "dicom").rglob("*.dcm") if p.parent.name != "99_SEG"]
        assert len(mr) == truth["mr_files"]
        assert len(list((out / site / "dicom").rglob("99_SEG/seg.dcm"))) == len(truth["seg_files"])


def _fingerprint(out: Path) -> str:
    digest = hashlib.sha256()
    site = out / "site_a"
    settings = load_site_settings(site / "site.toml")
    with Database(settings.database_url.get_secret_value(), settings.schemas, read_only=True) as db:
        for table in ("person", "observation_period", "visit_occurrence", "condition_occurrence",
                      "procedure_occurrence", "measurement", "image_occurrence", "image_feature", "concept"):  # fmt: skip
            for row in sorted(query(db, f"SELECT * FROM {{cdm}}.{table}"), key=repr):
                digest.update(repr(row).replace(str(out), "<out>").encode())
    for path in sorted((site / "dicom").rglob("IM-*.dcm")):
        digest.update(str(path.relative_to(out)).encode())
        try:
            digest.update(pydicom.dcmread(path).PixelData)
        except Exception:  # the truncated file: hash its bytes
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_data_whatever_the_workers(tmp_path: Path) -> None:
    one = generate_federation(
        FederationRequest(out=tmp_path / "a", sites=1, patients=10, seed=3, workers=1)
    )
    two = generate_federation(
        FederationRequest(out=tmp_path / "b", sites=1, patients=10, seed=3, workers=2)
    )
    assert one["site_a"]["reference_cohort"] == two["site_a"]["reference_cohort"]
    assert _fingerprint(tmp_path / "a") == _fingerprint(tmp_path / "b")
    other = generate_federation(
        FederationRequest(out=tmp_path / "c", sites=1, patients=10, seed=4, workers=1)
    )
    assert other["site_a"]["reference_cohort"]["person_ids"] != [] and _fingerprint(
        tmp_path / "c"
    ) != _fingerprint(tmp_path / "a")


def _slice_features(image: np.ndarray) -> list[float]:
    """Cheap, scale-free features of a FLAIR slice: upper percentiles over the brain median."""
    brain = np.median(image[image > 0.4 * image.max()])
    v = image / brain
    return [*(np.percentile(v, q) for q in (90, 95, 98, 99, 99.5)), float(v.mean()), float(v.std())]


def _probe_auc(difficulty: float) -> float:
    profile = get_profile("tiny")
    features, labels = [], []
    for style in site_styles(3, profile):
        rng = np.random.default_rng(style.index)
        for s in plan_site(style, profile, 140, seed=8, difficulty=difficulty, exclusions=False):
            if s.phantom is None:
                continue
            image = middle_coronal_slice(s.phantom, "FLAIR", 64) * style.scale
            image = image + rng.normal(0, style.noise_sd * style.scale, image.shape)
            features.append(_slice_features(image))
            labels.append(int(s.labels["mgmt"] == "methylated"))
    x, y = np.asarray(features), np.asarray(labels)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[: len(y) * 2 // 3], order[len(y) * 2 // 3 :]
    model = LogisticRegression(max_iter=5000).fit(x[train], y[train])
    return float(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))


def test_mgmt_is_learnable_but_not_trivial_at_default_difficulty() -> None:
    auc = _probe_auc(0.5)
    assert 0.75 <= auc < 0.99
    assert _probe_auc(1.0) < 0.65  # the knob at its top leaves nothing to learn
