"""The manifest-and-labels suite: is this cohort fit to train on?

Runs on the manifest :mod:`node.manifest` writes (one row per cohort member, pseudonymous
subject keys). Three frames: every row (``manifest``), the included rows (``included``) and a
small table of label counts, one row per (marker, class) (``label_counts``). Counting in pandas
and checking the counts with Great Expectations keeps the per-class rules plain column checks
whose failing rows, in the Data Docs, name the marker and class that fell short.

Blocking: what makes training wrong or impossible (duplicate subjects, unknown label values,
too few subjects or examples per class of the target marker, a subject or an image series in
both splits, a corrupt manifest). Warnings: label missingness of the other markers and class
balance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from node.validation.model import Check, Suite
from node.validation.policy import promote
from node.validation.thresholds import ValidationSettings

VERSION = "manifest-1"
SPLITS = ("train", "validation")
SERIES_PREFIXES = ("flair", "t1", "t1ce", "t2")
INDEX_COLUMNS = {
    "manifest": ["subject_key"],
    "included": ["subject_key"],
    "label_counts": ["marker", "class"],
}


def _c(check_id: str, kind: str, frame: str, expectation: str, blocking: bool, text: str,
       derive: str = "", **kwargs: object) -> Check:  # fmt: skip
    unit = "classes" if frame == "label_counts" else "rows"
    return Check(check_id, kind, frame, expectation, dict(kwargs), blocking, text, derive, unit)


def _rows() -> Iterator[Check]:
    yield _c("manifest.subject_key.is_required", "isRequired", "manifest",
             "ExpectColumnValuesToNotBeNull", True, "every row has a subject key",
             column="subject_key")  # fmt: skip
    yield _c("manifest.subject_key.unique_subjects", "uniqueSubjects", "manifest",
             "ExpectColumnValuesToBeUnique", True, "no subject appears twice",
             column="subject_key")  # fmt: skip
    yield _c("manifest.exclusion_reason.consistent", "consistency", "manifest",
             "ExpectColumnValuesToBeNull", True,
             "included rows have no exclusion reason, excluded rows have one",
             derive="included == exclusion_reason is null", column="inconsistent_exclusion")  # fmt: skip


def _labels(
    t: ValidationSettings, target: str, classes: Mapping[str, list[str]]
) -> Iterator[Check]:
    for marker, names in sorted(classes.items()):
        yield _c(f"manifest.{marker}.allowed_values", "allowedValues", "manifest",
                 "ExpectColumnValuesToBeInSet", True,
                 f"{marker} labels are one of {', '.join(names)}",
                 column=marker, value_set=list(names))  # fmt: skip
        share = t.max_missing_fraction.get(marker, 1.0)
        yield _c(f"manifest.{marker}.missingness", "labelMissingness", "manifest",
                 "ExpectColumnProportionOfNonNullValuesToBeBetween", marker == target,
                 f"at most {share:.0%} of cohort members lack a {marker} label",
                 column=marker, min_value=round(1 - share, 6))  # fmt: skip
        yield _c(f"manifest.{marker}.class_balance", "classBalance", "label_counts",
                 "ExpectColumnValuesToBeBetween", False,
                 f"each {marker} class holds at least {t.min_minority_fraction:.0%} of the "
                 "labelled included subjects",
                 derive=f"share({marker})", column=f"share__{marker}",
                 min_value=t.min_minority_fraction)  # fmt: skip


def _training(t: ValidationSettings, target: str) -> Iterator[Check]:
    yield _c("manifest.cohort.min_size", "cohortSize", "included",
             "ExpectTableRowCountToBeBetween", True,
             f"at least {t.min_cohort_size} included subjects", min_value=t.min_cohort_size)  # fmt: skip
    yield _c("manifest.split.is_required", "isRequired", "included",
             "ExpectColumnValuesToNotBeNull", True, "every included subject has a split",
             column="split")  # fmt: skip
    yield _c("manifest.split.allowed_values", "allowedValues", "included",
             "ExpectColumnValuesToBeInSet", True, "splits are train or validation",
             column="split", value_set=list(SPLITS))  # fmt: skip
    yield _c("manifest.split.disjoint", "splitDisjoint", "included",
             "ExpectColumnValuesToBeNull", True,
             "no subject and no image series is in both train and validation",
             derive="in_both_splits(subject_key, *_series_uid)", column="in_both_splits")  # fmt: skip
    for split, least in (
        ("train", t.min_train_per_class),
        ("validation", t.min_validation_per_class),
    ):
        yield _c(f"manifest.{target}.min_{split}_per_class", "minPerClass", "label_counts",
                 "ExpectColumnValuesToBeBetween", True,
                 f"every {target} class has at least {least} {split} subjects",
                 derive=f"count({target}, split == {split})", column=f"{split}__{target}",
                 min_value=least)  # fmt: skip


def build_manifest_suite(
    t: ValidationSettings, target: str, classes: Mapping[str, list[str]]
) -> Suite:
    """The suite for these thresholds, target marker and label classes (the concept map's)."""
    checks = [*_rows(), *_labels(t, target, classes), *_training(t, target)]
    return Suite("manifest", VERSION, tuple(promote(checks, t.blocking)))


def _in_both_splits(included: pd.DataFrame) -> pd.Series:
    """The subject key or series UID of rows sharing one with a row of the other split."""
    out = pd.Series(None, index=included.index, dtype=object)
    splits = included["split"].astype("string")
    for column in ["subject_key"] + [f"{p}_series_uid" for p in SERIES_PREFIXES]:
        if column not in included.columns:
            continue
        values = included[column].astype("string")
        pairs = pd.DataFrame({"v": values, "s": splits}).dropna()
        n_splits = pairs.groupby("v")["s"].nunique()
        shared = set(n_splits.index[n_splits > 1])
        hit = values.isin(shared).fillna(False).to_numpy(dtype=bool) & out.isna().to_numpy()
        out[hit] = values[hit].astype(object)
    return out


def _ignore_absent_classes(rows: list[dict[str, object]], marker: str) -> None:
    """Class balance looks at the classes that occur (WHO grade 1 never occurs among diffuse
    gliomas), unless fewer than two occur: then the absent ones count, as 0 %, and fail."""
    column = f"share__{marker}"
    present = [r for r in rows if isinstance(share := r[column], float) and share > 0]
    if len(present) >= 2:
        for row in rows:
            if row[column] == 0:
                row[column] = np.nan


def _label_counts(included: pd.DataFrame, classes: Mapping[str, list[str]]) -> pd.DataFrame:
    rows = []
    for marker, names in sorted(classes.items()):
        labels = included[marker].astype("string") if marker in included.columns else None
        labelled = 0 if labels is None else int(labels.notna().sum())
        for name in names:
            row: dict[str, object] = {"marker": marker, "class": name}
            hits = pd.Series(False, index=included.index) if labels is None else labels == name
            for split in SPLITS:
                in_split = hits & (included["split"].astype("string") == split)
                row[f"{split}__{marker}"] = int(in_split.fillna(False).sum())
            row[f"share__{marker}"] = (
                int(hits.fillna(False).sum()) / labelled if labelled else np.nan
            )
            rows.append(row)
        _ignore_absent_classes(rows[-len(names) :], marker)
    frame = pd.DataFrame(rows)
    # One marker's columns are meaningful on its own rows only: NA elsewhere (checks skip NA).
    for marker in classes:
        other = frame["marker"] != marker
        for column in (f"{s}__{marker}" for s in (*SPLITS, "share")):
            frame[column] = frame[column].astype("Float64").mask(other)
    return frame


def prepare_manifest(
    manifest: pd.DataFrame, classes: Mapping[str, list[str]]
) -> dict[str, pd.DataFrame]:
    """The three frames of the suite, from the manifest as :func:`node.manifest.read_manifest`
    returns it."""
    frame = manifest.copy()
    included = frame["included"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    has_reason = frame["exclusion_reason"].notna().to_numpy(dtype=bool)
    frame["inconsistent_exclusion"] = (
        frame["subject_key"].astype(object).where(included == has_reason, None)
    )
    chosen = frame[included].copy()
    chosen["in_both_splits"] = _in_both_splits(chosen)
    return {"manifest": frame, "included": chosen, "label_counts": _label_counts(chosen, classes)}
