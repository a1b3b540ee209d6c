"""The manifest-and-labels suite: passes on a clean manifest, and every expectation fails on a
doctored copy (grouped so that one suite run covers expectations that do not interfere)."""

from __future__ import annotations

import pandas as pd
import pytest

from node.concept_map import load_concept_map
from node.manifest import COLUMNS
from node.validation.engine import run_suite
from node.validation.manifest_suite import (
    INDEX_COLUMNS,
    build_manifest_suite,
    prepare_manifest,
)
from node.validation.model import Suite
from node.validation.thresholds import ValidationSettings

# codeletion may be missing everywhere by default (a site may not test it): tightened here so
# its missingness expectation can fail too.
THRESHOLDS = ValidationSettings(
    max_missing_fraction={"mgmt": 0.25, "idh": 0.5, "codeletion_1p19q": 0.5, "grade": 0.5}
)
CLASSES = {name: list(m.classes) for name, m in load_concept_map().markers.items()}
ARROW_TO_PANDAS = {"string": "string", "bool": "boolean", "int32": "Int32", "float64": "Float64"}


@pytest.fixture(scope="module")
def suite() -> Suite:
    return build_manifest_suite(THRESHOLDS, "mgmt", CLASSES)


def clean_manifest(n: int = 40) -> pd.DataFrame:
    """n subjects, the last 4 excluded; classes alternate, every fifth included row validates."""
    rows = []
    for i in range(n):
        included = i < n - 4
        row: dict[str, object] = dict.fromkeys(COLUMNS)
        row.update(
            subject_key=f"{i:032x}",
            included=included,
            exclusion_reason=None if included else "missing_sequence",
            split=("validation" if i % 5 < 2 else "train") if included else None,
            mgmt=CLASSES["mgmt"][i % 2],
            idh=CLASSES["idh"][(i // 2) % 2],
            codeletion_1p19q=CLASSES["codeletion_1p19q"][(i // 3) % 2],
            grade=["grade_2", "grade_3", "grade_4"][i % 3],
            label_conflicts="",
            seg_present=False,
        )
        for p in ("flair", "t1", "t1ce", "t2"):
            row.update({f"{p}_series_uid": f"1.2.{i}.{p}", f"{p}_n_slices": 24})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({c: ARROW_TO_PANDAS[t] for c, t in COLUMNS.items()})


def _failed(suite: Suite, manifest: pd.DataFrame) -> set[str]:
    run = run_suite(suite, prepare_manifest(manifest, CLASSES), index_columns=INDEX_COLUMNS)
    assert [r.error for r in run.results if r.error] == []
    return {r.id for r in run.results if not r.success}


def test_clean_manifest_passes(suite: Suite) -> None:
    assert _failed(suite, clean_manifest()) == set()


def _rows_group(m: pd.DataFrame) -> set[str]:
    m.loc[0, "subject_key"] = None
    m.loc[2, "subject_key"] = m.loc[1, "subject_key"]
    m.loc[3, "exclusion_reason"] = "no_label"  # included, yet a reason
    m.loc[m.index[-1], "exclusion_reason"] = None  # excluded without one
    for row, marker in enumerate(CLASSES, start=4):
        m.loc[row, marker] = "bogus"
    m.loc[8, "split"] = None
    m.loc[9, "split"] = "test"
    m.loc[10, "t2_series_uid"] = m.loc[11, "t2_series_uid"]  # rows 10 (validation), 11 (train)
    return {
        "manifest.subject_key.is_required",
        "manifest.subject_key.unique_subjects",
        "manifest.exclusion_reason.consistent",
        *(f"manifest.{marker}.allowed_values" for marker in CLASSES),
        "manifest.split.is_required",
        "manifest.split.allowed_values",
        "manifest.split.disjoint",
    }


def _missing_group(m: pd.DataFrame) -> set[str]:
    for marker in CLASSES:
        m.loc[m.index[:30], marker] = None
    return {f"manifest.{marker}.missingness" for marker in CLASSES}


def _balance_group(m: pd.DataFrame) -> set[str]:
    included = m["included"].to_numpy(dtype=bool)
    for marker, names in CLASSES.items():
        m.loc[included, marker] = names[-1]
        m.loc[2, marker] = names[0]  # one (training) subject of the other class
    return {
        *(f"manifest.{marker}.class_balance" for marker in CLASSES),
        "manifest.mgmt.min_train_per_class",
        "manifest.mgmt.min_validation_per_class",
    }


def _size_group(m: pd.DataFrame) -> set[str]:
    m["included"] = False
    m.loc[: THRESHOLDS.min_cohort_size - 2, "included"] = True
    m["exclusion_reason"] = m["exclusion_reason"].where(m["included"], "missing_sequence")
    m["exclusion_reason"] = m["exclusion_reason"].where(~m["included"], None)
    return {"manifest.cohort.min_size"}


@pytest.mark.parametrize("group", [_rows_group, _missing_group, _balance_group, _size_group])
def test_every_expectation_fails_on_a_doctored_manifest(suite: Suite, group: object) -> None:
    manifest = clean_manifest()
    expected = group(manifest)  # type: ignore[operator]
    assert expected - _failed(suite, manifest) == set()


def test_the_groups_cover_the_suite(suite: Suite) -> None:
    covered: set[str] = set()
    for group in (_rows_group, _missing_group, _balance_group, _size_group):
        covered |= group(clean_manifest())
    assert covered == {c.id for c in suite.checks}


def test_one_absent_class_is_ignored_but_a_single_class_is_not(suite: Suite) -> None:
    manifest = clean_manifest()  # grade_1 never occurs: a diffuse glioma is grade 2 to 4
    assert "manifest.grade.class_balance" not in _failed(suite, manifest)
    manifest["grade"] = "grade_3"
    assert "manifest.grade.class_balance" in _failed(suite, manifest)


def test_target_marker_decides_what_blocks() -> None:
    suite = build_manifest_suite(THRESHOLDS, "idh", CLASSES)
    assert suite.check("manifest.idh.missingness").blocking
    assert not suite.check("manifest.mgmt.missingness").blocking
    suite.check("manifest.idh.min_train_per_class")
    assert suite.sha256 != build_manifest_suite(THRESHOLDS, "mgmt", CLASSES).sha256
