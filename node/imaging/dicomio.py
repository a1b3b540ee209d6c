"""Reading DICOM files into frames: pixels in modality units plus the geometry of each frame.

A *frame* is one 2D image with its own position; a classic series has one frame per file, an
enhanced multi-frame object many frames in one file. Reducing both to the same record lets the
volume assembly (series.py) sort and validate them one way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from node.imaging.errors import RejectReason, SeriesRejected

log = logging.getLogger(__name__)

_UNCOMPRESSED = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})
_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class Frame:
    """One 2D image in modality units (float32, MONOCHROME2 sense) with its geometry."""

    path: Path
    pixels: NDArray[np.float32]
    position: NDArray[np.float64]  # ImagePositionPatient: centre of the first pixel, LPS mm
    orientation: NDArray[np.float64]  # ImageOrientationPatient: row direction, column direction
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    thickness: float  # SpacingBetweenSlices or SliceThickness: the depth of a one-slice volume
    series_uid: str
    frame_of_reference_uid: str


def is_dicom_file(path: Path) -> bool:
    """A Part 10 file: 128-byte preamble then 'DICM'. Anything else is skipped, not rejected."""
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


# MR, enhanced MR, CT and secondary-capture image storage: files that must carry pixel data.
_IMAGE_STORAGE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.5.1.4.1.1.4.1",
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.840.10008.5.1.4.1.1.7",
    }
)


def read_dataset(path: Path) -> Dataset:
    """Read a whole DICOM file; any failure (truncated, corrupt) rejects the series, naming it."""
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for corrupt input
        raise SeriesRejected(
            RejectReason.UNREADABLE_FILE, f"{path} cannot be read as DICOM ({exc})"
        ) from exc


def non_image_reason(ds: Dataset, path: Path) -> str | None:
    """Why a DICOM dataset is not an image to stack (None when it is one).

    pydicom reads a file cut off inside its data set leniently: no error, just missing
    elements. A file whose meta header declares an image storage class but whose data set has
    no SOP class or no pixel data is such a damaged image, not a non-image object to skip:
    skipping it would leave a hole and misreport the series as ``missing_slices``.
    """
    if ds.get("SOPClassUID", "") == _SEG_SOP_CLASS or ds.get("Modality", "") == "SEG":
        return "segmentation object"
    declared = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
    if declared in _IMAGE_STORAGE and ("SOPClassUID" not in ds or "PixelData" not in ds):
        raise SeriesRejected(
            RejectReason.UNREADABLE_FILE, f"{path} is cut off: an image without its data"
        )
    if "PixelData" not in ds:
        return "no pixel data"
    return None


def frames_of(path: Path, ds: Dataset) -> list[Frame]:
    """All frames of one image dataset, decoded, rescaled and in MONOCHROME2 sense."""
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise SeriesRejected(RejectReason.UNSUPPORTED_IMAGE, f"{path} is not a greyscale image")
    try:
        pixels = _decode(ds)
    except Exception as exc:  # decoder errors differ per plugin; all mean "unreadable"
        raise SeriesRejected(
            RejectReason.UNREADABLE_FILE, f"{path}: pixel data cannot be decoded ({exc})"
        ) from exc
    pixels = _to_monochrome2(ds, pixels)
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(path, ds, pixels.reshape(-1, *pixels.shape[-2:]))
    if pixels.ndim != 2:
        raise SeriesRejected(
            RejectReason.UNSUPPORTED_IMAGE, f"{path}: multi-frame image without functional groups"
        )
    slope, intercept = _rescale(ds)
    return [_frame(path, ds, ds, pixels, slope, intercept)]


def _decode(ds: Dataset) -> NDArray[Any]:
    """Stored values; uncompressed little-endian data is viewed directly (pydicom's generic
    pixel_array path costs more than the file read for small MR slices)."""
    bits, stored = int(ds.BitsAllocated), int(ds.BitsStored)
    signed = int(ds.PixelRepresentation) == 1
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    simple = n_frames == 1 and bits in (8, 16, 32) and (not signed or stored == bits)
    if ds.file_meta.TransferSyntaxUID in _UNCOMPRESSED and simple:
        count = int(ds.Rows) * int(ds.Columns)
        raw = ds.PixelData
        if len(raw) < count * bits // 8:
            raise ValueError(f"pixel data holds {len(raw)} bytes, expected {count * bits // 8}")
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(int(ds.Rows), int(ds.Columns))
    return np.asarray(ds.pixel_array)


def _to_monochrome2(ds: Dataset, stored: NDArray[Any]) -> NDArray[np.float32]:
    """MONOCHROME1 shows low values bright: mirror the stored range so bright means high."""
    pixels = stored.astype(np.float32)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") != "MONOCHROME1":
        return pixels
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 1:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        low, high = 0, 2**bits - 1
    return np.float32(low + high) - pixels


def _rescale(item: Dataset) -> tuple[float, float]:
    """RescaleSlope/Intercept of a dataset or functional-group item (identity when absent)."""
    return float(item.get("RescaleSlope", 1.0) or 1.0), float(
        item.get("RescaleIntercept", 0.0) or 0
    )


def _frame(
    path: Path,
    ds: Dataset,
    geometry: Dataset,
    pixels: NDArray[np.float32],
    slope: float,
    intercept: float,
) -> Frame:
    """One Frame; ``geometry`` is where the plane attributes live (the file or a group item)."""
    try:
        position = _decimals(geometry, 0x00200032)  # ImagePositionPatient
        orientation = _decimals(geometry, 0x00200037)  # ImageOrientationPatient
        spacing = tuple(_decimals(geometry, 0x00280030))  # PixelSpacing
    except (KeyError, ValueError, TypeError) as exc:
        raise SeriesRejected(
            RejectReason.MISSING_GEOMETRY, f"{path} lacks patient geometry ({exc})"
        ) from exc
    if position.shape != (3,) or orientation.shape != (6,) or len(spacing) != 2:
        raise SeriesRejected(RejectReason.MISSING_GEOMETRY, f"{path} has malformed geometry")
    if slope != 1.0 or intercept != 0.0:
        pixels = pixels * np.float32(slope) + np.float32(intercept)
    return Frame(
        path=path,
        pixels=pixels,
        position=position,
        orientation=orientation,
        pixel_spacing=(spacing[0], spacing[1]),
        thickness=float(
            geometry.get("SpacingBetweenSlices") or geometry.get("SliceThickness") or 1.0
        ),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
    )


def _decimals(ds: Dataset, tag: int) -> NDArray[np.float64]:
    """A DS value parsed straight from its raw bytes when still unconverted: pydicom's DSfloat
    conversion is a large share of reading time for a 256x256 slice."""
    element = ds.get_item(tag)
    if element is None:
        raise KeyError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is missing")
    value = element.value
    if isinstance(value, bytes):
        return np.array([float(v) for v in value.split(b"\\")], dtype=np.float64)
    return np.array(value if isinstance(value, list | tuple) else [value], dtype=np.float64)


def _group_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The item of a functional group for one frame: per-frame first, then shared."""
    for groups in (ds.PerFrameFunctionalGroupsSequence[index], _shared(ds)):
        if groups is not None and sequence in groups and len(groups[sequence].value):
            item: Dataset = groups[sequence].value[0]
            return item
    return None


def _shared(ds: Dataset) -> Dataset | None:
    shared = ds.get("SharedFunctionalGroupsSequence")
    return shared[0] if shared else None


def _enhanced_frames(path: Path, ds: Dataset, pixels: NDArray[np.float32]) -> list[Frame]:
    """Frames of an enhanced multi-frame object, geometry from the functional groups."""
    frames = []
    for index in range(pixels.shape[0]):
        geometry = Dataset()
        for sequence in (
            "PlanePositionSequence",
            "PlaneOrientationSequence",
            "PixelMeasuresSequence",
        ):
            item = _group_item(ds, index, sequence)
            if item is not None:
                geometry.update(item)
        transform = _group_item(ds, index, "PixelValueTransformationSequence")
        slope, intercept = _rescale(transform if transform is not None else ds)
        frames.append(_frame(path, ds, geometry, pixels[index], slope, intercept))
    log.debug("%s: %d frames from an enhanced multi-frame object", path, len(frames))
    return frames
