"""What the image suite reads besides the manifest: DICOM headers and the cached model inputs.

* One header per series (the first readable file of the series at its manifest location, pixel
  data skipped): its matrix (Rows, Columns) and frame of reference. The manifest already holds
  slice counts and spacings, measured by the resolver from every file's geometry.
* The SEG header of subjects with a mask: which series it references, its frame of reference
  and matrix, compared with the series it segments (FLAIR, where the synthetic sites and BraTS
  put it).
* The dataset cache entry (:mod:`node.dataset`): intensity statistics of the arrays the model
  will actually be trained on, per subject and channel. A degenerate input (constant, all zero,
  not finite) is caught on what training reads, after preprocessing, not on a proxy. 3D volumes
  are sampled every fourth slice: enough to see a blank or broken channel, a quarter of the I/O.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_TAGS = [
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Rows",
    "Columns",
    "ReferencedSeriesSequence",
    "Modality",
]
SLICE_STRIDE_3D = 4


@dataclass(frozen=True)
class SeriesHeader:
    rows: int | None
    columns: int | None
    frame_of_reference: str
    referenced_series: tuple[str, ...] = ()


def _files(location: Path) -> list[Path]:
    try:
        if location.is_dir():
            return sorted(p for p in location.iterdir() if p.is_file())
    except OSError:
        return []
    return [location] if location.is_file() else []


def _read(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError):
        return None


def _header(ds: Any) -> SeriesHeader:
    rows, columns = ds.get("Rows"), ds.get("Columns")
    return SeriesHeader(
        rows=None if rows is None else int(rows),
        columns=None if columns is None else int(columns),
        frame_of_reference=str(ds.get("FrameOfReferenceUID", "")),
        referenced_series=tuple(
            str(item.get("SeriesInstanceUID", ""))
            for item in ds.get("ReferencedSeriesSequence", [])
        ),
    )


def series_header(location: str | None, series_uid: str | None) -> SeriesHeader | None:
    """The header of ``series_uid`` at ``location`` (folder or file); None if none is readable."""
    if not location:
        return None
    for path in _files(Path(location)):
        ds = _read(path)
        if ds is not None and (not series_uid or str(ds.get("SeriesInstanceUID")) == series_uid):
            return _header(ds)
    return None


def seg_problem(
    seg_path: str | None, series_uid: str | None, series: SeriesHeader | None
) -> str | None:
    """Why a SEG does not line up with the series it segments; None when it does."""
    if not seg_path:
        return None
    if series is None:
        return "segmented series unreadable"
    ds = _read(Path(seg_path))
    if ds is None:
        return "SEG unreadable"
    seg = _header(ds)
    if series_uid not in seg.referenced_series:
        return "SEG references another series"
    if seg.frame_of_reference != series.frame_of_reference:
        return "SEG frame of reference differs"
    if (seg.rows, seg.columns) != (series.rows, series.columns):
        return f"SEG matrix {seg.rows}x{seg.columns} != series {series.rows}x{series.columns}"
    return None


def degenerate(channel: np.ndarray) -> str | None:
    """Why one channel of a model input is unusable; None when it is fine."""
    values = np.asarray(channel, dtype=np.float32)
    if values.size == 0:
        return "empty"
    if not np.isfinite(values).all():
        return "not finite"
    low, high = float(values.min()), float(values.max())
    if high == low:
        return "all zero" if high == 0 else "constant"
    return None


@dataclass(frozen=True)
class CachedInputs:
    """The dataset entry's subjects and, per subject, a problem per channel (or None)."""

    data_hash: str
    model: str
    channels: tuple[str, ...]
    problems: dict[str, list[str | None]]  # subject key -> one entry per channel


def cached_inputs(
    cache_dir: Path, folder: Path, index: dict[str, Any], channels: tuple[str, ...]
) -> CachedInputs:
    """Intensity problems of every subject of a cache entry (both splits)."""
    problems: dict[str, list[str | None]] = {}
    for spec in index["splits"].values():
        subjects = spec.get("subjects", [])
        if index["model"] == "densenet2d":
            images = np.load(folder / spec["images"], mmap_mode="r") if spec["n"] else None
            for i, key in enumerate(subjects):
                assert images is not None
                problems[key] = [degenerate(images[i, 0])]
            continue
        for key, relative in zip(subjects, spec["images"], strict=True):
            volume = np.load(cache_dir / relative, mmap_mode="r")
            problems[key] = [
                degenerate(volume[c, ::SLICE_STRIDE_3D]) for c in range(volume.shape[0])
            ]
    return CachedInputs(str(index["data_hash"]), str(index["model"]), channels, problems)


def read_entry(
    cache_dir: Path, model: str, cohort_id: int, workspace: Path
) -> tuple[Path, dict[str, Any]]:
    """The current, fresh cache entry of (model, cohort): DatasetCacheError/StaleDatasetError
    (with the command to run) when it is missing or was built from an older manifest."""
    from node.dataset import check_fresh, read_index

    folder, index = read_index(cache_dir, model, cohort_id)
    check_fresh(index, workspace, cohort_id)
    log.debug("cache entry %s: %s", folder, json.dumps(index.get("dropped", {})))
    return folder, index
