"""The image suite: are the images of the training dataset usable by the chosen model?

One frame, ``images``: a row per subject of the dataset cache entry (what training will read),
joined to its manifest row (series UIDs, slice counts, spacings measured by the resolver), one
DICOM header per series (matrix, frame of reference) and the intensity problems of its cached
model input (:mod:`node.validation.images_data`). The sequences checked are the ones the model
reads: FLAIR for ``densenet2d``, T1, T1ce, T2 and FLAIR for ``unet3d``.

Everything is blocking except SEG alignment for the 2D model, which never reads the masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from node.validation.images_data import CachedInputs, seg_problem, series_header
from node.validation.model import Check, Suite
from node.validation.policy import promote
from node.validation.thresholds import ValidationSettings

VERSION = "images-1"
# Channel order of the cached inputs (node.imaging.CHANNELS for the 3D model; a test keeps
# them equal without this module importing the imaging stack).
MODEL_CHANNELS: dict[str, tuple[str, ...]] = {
    "densenet2d": ("FLAIR",),
    "unet3d": ("T1", "T1ce", "T2", "FLAIR"),
}
SEG_SEQUENCE = "FLAIR"
INDEX_COLUMNS = {"images": ["subject_key"]}


def prefix(sequence: str) -> str:
    """The manifest's column prefix of a sequence (node.manifest.PREFIX)."""
    return sequence.lower()


def _c(check_id: str, kind: str, expectation: str, blocking: bool, text: str,
       derive: str = "", **kwargs: object) -> Check:  # fmt: skip
    return Check(check_id, kind, "images", expectation, dict(kwargs), blocking, text, derive)


def _sequence(t: ValidationSettings, sequence: str) -> Iterator[Check]:
    p = prefix(sequence)
    base = f"images.{p}"
    yield _c(f"{base}.present", "requiredSequence", "ExpectColumnValuesToNotBeNull", True,
             f"every subject has a {sequence} series", column=f"{p}_series_uid")  # fmt: skip
    yield _c(f"{base}.readable", "readable", "ExpectColumnValuesToBeNull", True,
             f"the {sequence} series header can be read", derive=f"header({p}_path)",
             column=f"{p}_header_problem")  # fmt: skip
    yield _c(f"{base}.n_slices", "sliceCount", "ExpectColumnValuesToBeBetween", True,
             f"{sequence} has {t.min_slices} to {t.max_slices} slices",
             column=f"{p}_n_slices", min_value=t.min_slices, max_value=t.max_slices)  # fmt: skip
    for axis in ("slice", "row", "col"):
        yield _c(f"{base}.spacing_{axis}_mm", "spacing", "ExpectColumnValuesToBeBetween", True,
                 f"{sequence} {axis} spacing is {t.min_spacing_mm} to {t.max_spacing_mm} mm",
                 column=f"{p}_spacing_{axis}_mm", min_value=t.min_spacing_mm,
                 max_value=t.max_spacing_mm)  # fmt: skip
    for axis in ("rows", "columns"):
        yield _c(f"{base}.matrix_{axis}", "matrix", "ExpectColumnValuesToBeBetween", True,
                 f"{sequence} has {t.min_matrix} to {t.max_matrix} {axis}",
                 derive=f"header({p}_path).{axis}", column=f"{p}_{axis}",
                 min_value=t.min_matrix, max_value=t.max_matrix)  # fmt: skip
    yield _c(f"{base}.intensity", "nonDegenerate", "ExpectColumnValuesToBeNull", True,
             f"the cached {sequence} input is finite and not constant (not all zero)",
             derive=f"degenerate(cache[{sequence}])", column=f"{p}_degenerate")  # fmt: skip


def build_images_suite(t: ValidationSettings, model: str) -> Suite:
    """The suite for these thresholds and model."""
    checks = [
        _c(
            "images.dataset.min_size",
            "cohortSize",
            "ExpectTableRowCountToBeBetween",
            True,
            f"the dataset holds at least {t.min_cohort_size} subjects",
            min_value=t.min_cohort_size,
        ),
    ]
    for sequence in MODEL_CHANNELS[model]:
        checks.extend(_sequence(t, sequence))
    checks.append(
        _c(
            "images.seg.aligned",
            "segAligned",
            "ExpectColumnValuesToBeNull",
            model == "unet3d",
            f"each SEG references its {SEG_SEQUENCE} series, in its frame of reference and matrix",
            derive=f"seg_problem(seg_path, {prefix(SEG_SEQUENCE)})",
            column="seg_misaligned",
        )
    )
    return Suite("images", f"{VERSION}/{model}", tuple(promote(checks, t.blocking)))


def _headers(frame: pd.DataFrame, sequence: str) -> None:
    p = prefix(sequence)
    rows, columns, problems, frames_of_reference = [], [], [], []
    for location, uid in zip(frame[f"{p}_path"], frame[f"{p}_series_uid"], strict=True):
        header = series_header(
            None if pd.isna(location) else str(location), None if pd.isna(uid) else str(uid)
        )
        rows.append(None if header is None else header.rows)
        columns.append(None if header is None else header.columns)
        problems.append("unreadable" if header is None and not pd.isna(uid) else None)
        frames_of_reference.append(header)
    frame[f"{p}_rows"] = pd.array(rows, dtype="Int64")
    frame[f"{p}_columns"] = pd.array(columns, dtype="Int64")
    frame[f"{p}_header_problem"] = pd.Series(problems, index=frame.index, dtype=object)
    if sequence == SEG_SEQUENCE:
        frame["_seg_series_header"] = pd.Series(
            frames_of_reference, index=frame.index, dtype=object
        )


def prepare_images(manifest: pd.DataFrame, inputs: CachedInputs) -> dict[str, pd.DataFrame]:
    """The ``images`` frame: the dataset's subjects, their manifest rows and derived columns."""
    keys = list(inputs.problems)
    frame = manifest.set_index("subject_key").reindex(keys).reset_index()
    frame = frame.rename(columns={"index": "subject_key"})
    for i, sequence in enumerate(inputs.channels):
        p = prefix(sequence)
        frame[f"{p}_degenerate"] = pd.Series(
            [inputs.problems[k][i] for k in keys], index=frame.index, dtype=object
        )
    sequences = list(inputs.channels)
    if SEG_SEQUENCE not in sequences:
        sequences.append(SEG_SEQUENCE)
    for sequence in sequences:
        _headers(frame, sequence)
    seg_uid = frame[f"{prefix(SEG_SEQUENCE)}_series_uid"]
    frame["seg_misaligned"] = pd.Series(
        [
            seg_problem(None if pd.isna(path) else str(path), None if pd.isna(uid) else str(uid), header)
            for path, uid, header in zip(frame["seg_path"], seg_uid, frame["_seg_series_header"], strict=True)
        ],
        index=frame.index,
        dtype=object,
    )  # fmt: skip
    return {"images": frame.drop(columns=["_seg_series_header"])}


def manifest_for(workspace: Path, cohort_id: int) -> pd.DataFrame:
    """The cohort's manifest as a DataFrame (checked against its sidecar)."""
    from node.manifest import read_manifest

    frame: pd.DataFrame = read_manifest(workspace, cohort_id)
    return frame
