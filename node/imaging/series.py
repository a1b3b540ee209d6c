"""One DICOM series -> one Volume in patient coordinates, or a rejection with its reason.

Slices are ordered by their position along the slice normal (row direction x column direction),
never by file name or InstanceNumber: sites export files in any order and number instances in
either direction. Gaps, duplicates and mixed orientations are rejected rather than repaired,
because a silently interpolated hole would change the middle coronal slice a model sees.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from node.imaging.dicomio import Frame, frames_of, is_dicom_file, non_image_reason, read_dataset
from node.imaging.errors import RejectReason, SeriesRejected
from node.imaging.volume import SeriesMeta, SkippedFile, Volume, classify_plane

log = logging.getLogger(__name__)

# Two slices closer than this along the normal occupy the same position.
_DUPLICATE_MM = 0.01
# A step longer than this many median steps means at least one slice is missing.
_GAP_FACTOR = 1.5
# Steps may differ from the median by this fraction (rounding in exported positions).
_SPACING_TOLERANCE = 0.1
# Orientation cosines of one series may differ by this much (scanner rounding).
_ORIENTATION_ATOL = 1e-4


def read_series(
    source: str | Path | Sequence[str | Path], *, series_uid: str | None = None
) -> Volume:
    """Read one series from a folder (not recursive), a single file, or a list of files.

    A MI-CDM ``local_path`` may be either a folder or a file. Non-DICOM files and non-image
    objects (a SEG next to its series, a DICOMDIR) are skipped and recorded in ``meta.skipped``.
    With several series in the location, ``series_uid`` picks one; otherwise that is a rejection.
    Raises :class:`SeriesRejected` with a stable reason code for anything that cannot be stacked.
    """
    paths = _list_files(source)
    skipped: list[SkippedFile] = []
    images: list[tuple[Path, Dataset]] = []
    for path in paths:
        if not is_dicom_file(path):
            skipped.append(SkippedFile(path, "not a DICOM file"))
            continue
        ds = read_dataset(path)
        reason = non_image_reason(ds, path)
        if reason is None:
            images.append((path, ds))
        else:
            skipped.append(SkippedFile(path, reason))
    images = _select_series(images, series_uid, skipped)
    frames = [frame for path, ds in images for frame in frames_of(path, ds)]
    for item in skipped:
        log.debug("skipped %s: %s", item.path, item.reason)
    return _assemble(frames, images, tuple(skipped))


def _list_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files of the location; a missing location is 'no images', not a crash."""
    if isinstance(source, str | Path):
        root = Path(source)
        if root.is_dir():
            return sorted(p for p in root.iterdir() if p.is_file())
        if root.is_file():
            return [root]
        raise SeriesRejected(RejectReason.NO_IMAGES, f"{root} does not exist")
    return [Path(p) for p in source]


def _select_series(
    images: list[tuple[Path, Dataset]], series_uid: str | None, skipped: list[SkippedFile]
) -> list[tuple[Path, Dataset]]:
    """Keep the images of one series; the others are recorded as skipped."""
    uids = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in images})
    if series_uid is None and len(uids) > 1:
        raise SeriesRejected(
            RejectReason.MULTIPLE_SERIES,
            f"{len(uids)} series in one location; name the one to read",
        )
    wanted = series_uid if series_uid is not None else (uids[0] if uids else "")
    chosen = [(p, ds) for p, ds in images if str(ds.get("SeriesInstanceUID", "")) == wanted]
    chosen_paths = {p for p, _ in chosen}
    skipped.extend(SkippedFile(p, "another series") for p, _ in images if p not in chosen_paths)
    if not chosen:
        raise SeriesRejected(RejectReason.NO_IMAGES, "no image of the series was found")
    return chosen


def _check_consistent(frames: list[Frame]) -> None:
    """One orientation, matrix size, pixel spacing and frame of reference for the whole series."""
    first = frames[0]
    for frame in frames[1:]:
        if not np.allclose(frame.orientation, first.orientation, atol=_ORIENTATION_ATOL):
            raise SeriesRejected(
                RejectReason.INCONSISTENT_ORIENTATION,
                f"{frame.path} has orientation {frame.orientation.tolist()}, "
                f"{first.path} has {first.orientation.tolist()}",
            )
        if (
            frame.pixels.shape != first.pixels.shape
            or not np.allclose(frame.pixel_spacing, first.pixel_spacing, rtol=1e-4)
            or frame.frame_of_reference_uid != first.frame_of_reference_uid
        ):
            raise SeriesRejected(
                RejectReason.INCONSISTENT_GEOMETRY,
                f"{frame.path} differs from {first.path} in matrix size, pixel spacing "
                "or frame of reference",
            )


def _slice_order(frames: list[Frame], normal: NDArray[np.float64]) -> tuple[list[int], float]:
    """Indices sorted along the normal and the slice spacing; rejects duplicates and gaps."""
    distance = np.array([frame.position @ normal for frame in frames])
    order = [int(i) for i in np.argsort(distance, kind="stable")]
    if len(frames) == 1:
        return order, frames[0].thickness
    steps = np.diff(distance[order])
    if np.any(steps < _DUPLICATE_MM):
        at = int(np.argmin(steps))
        raise SeriesRejected(
            RejectReason.DUPLICATE_POSITIONS,
            f"{frames[order[at]].path} and {frames[order[at + 1]].path} share a position",
        )
    spacing = float(np.median(steps))
    if np.any(steps > _GAP_FACTOR * spacing):
        at = int(np.argmax(steps))
        missing = round(steps[at] / spacing) - 1
        raise SeriesRejected(
            RejectReason.MISSING_SLICES,
            f"about {missing} slice(s) missing after {frames[order[at]].path} "
            f"({steps[at]:.2f} mm step, {spacing:.2f} mm spacing)",
        )
    if np.any(np.abs(steps - spacing) > _SPACING_TOLERANCE * spacing):
        raise SeriesRejected(
            RejectReason.IRREGULAR_SPACING,
            f"slice steps range {steps.min():.2f}-{steps.max():.2f} mm",
        )
    return order, spacing


def _affine(frames: list[Frame], order: list[int], spacing: float) -> NDArray[np.float64]:
    """Voxel (slice, row, col) -> LPS mm; the slice axis is the mean step between positions, so a
    sheared stack (gantry tilt) keeps its true geometry. Positions off that line are rejected."""
    first = frames[order[0]]
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([frames[i].position for i in order])
    n = len(order)
    step = (positions[-1] - positions[0]) / (n - 1) if n > 1 else normal * spacing
    expected = positions[0] + np.arange(n)[:, None] * step
    if np.max(np.linalg.norm(positions - expected, axis=1)) > 0.1 * min(first.pixel_spacing):
        raise SeriesRejected(
            RejectReason.INCONSISTENT_GEOMETRY, "slice positions do not lie on one line"
        )
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = col_dir * first.pixel_spacing[0]  # row index moves down a column
    affine[:3, 2] = row_dir * first.pixel_spacing[1]  # column index moves along a row
    affine[:3, 3] = positions[0]
    return affine


def _assemble(
    frames: list[Frame], images: list[tuple[Path, Dataset]], skipped: tuple[SkippedFile, ...]
) -> Volume:
    """Validate, sort and stack frames into a Volume with its metadata."""
    if not frames:
        raise SeriesRejected(RejectReason.NO_IMAGES, "the series holds no image frame")
    _check_consistent(frames)
    normal = np.cross(frames[0].orientation[:3], frames[0].orientation[3:])
    order, spacing = _slice_order(frames, normal)
    affine = _affine(frames, order, spacing)
    array = np.stack([frames[i].pixels for i in order]).astype(np.float32, copy=False)
    ds = images[0][1]
    meta = SeriesMeta(
        series_instance_uid=frames[0].series_uid,
        frame_of_reference_uid=frames[0].frame_of_reference_uid,
        series_description=str(ds.get("SeriesDescription", "")),
        protocol_name=str(ds.get("ProtocolName", "")),
        modality=str(ds.get("Modality", "")),
        spacing=(spacing, *frames[0].pixel_spacing),
        plane=classify_plane(normal),
        n_slices=len(order),
        n_files=len(images),
        transfer_syntaxes=tuple(sorted({str(d.file_meta.TransferSyntaxUID) for _, d in images})),
        skipped=skipped,
    )
    return Volume(array=array, affine=affine, meta=meta)
