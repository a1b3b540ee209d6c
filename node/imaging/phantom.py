"""An analytic head phantom written as DICOM series in any plane: test and benchmark data.

The phantom is a function of patient coordinates (LPS mm), so every acquisition of it has a known
ground truth: a middle coronal slice extracted from an axial, sagittal, coronal or oblique series
can be compared with the function evaluated on the same plane. It is deliberately asymmetric
(an off-centre sphere) so that left/right or up/down flips show up as errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

PhantomFn = Callable[[NDArray[np.float64]], NDArray[np.float64]]

_DIRECTIONS = {  # (row direction, column direction) as scanners write them
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}


def _soft_inside(
    points: NDArray[np.float64], centre: tuple[float, ...], axes: tuple[float, ...]
) -> NDArray[np.float64]:
    """1 inside an ellipsoid, 0 outside, with a ~3 mm logistic edge (smooth, so interpolation
    error stays small and comparisons can be tight)."""
    radius = np.sqrt((((points - np.array(centre)) / np.array(axes)) ** 2).sum(axis=-1))
    return 1.0 / (1.0 + np.exp((radius - 1.0) * min(axes) / 1.5))


def head_phantom(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Intensity at patient points (..., 3): a head-sized ellipsoid plus an off-centre 'lesion'."""
    head = 400.0 * _soft_inside(points, (0.0, 0.0, 0.0), (60.0, 70.0, 55.0))
    lesion = 600.0 * _soft_inside(points, (25.0, -15.0, 20.0), (18.0, 18.0, 18.0))
    return head + lesion


@dataclass(frozen=True)
class Acquisition:
    """Where a series is acquired: plane (or explicit directions), matrix and spacing in mm."""

    plane: str = "axial"
    n_slices: int = 20
    matrix: int = 40
    pixel_mm: float = 4.0
    slice_mm: float = 8.0
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    directions: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    def row_col(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Unit row and column directions (ImageOrientationPatient)."""
        row, col = self.directions or _DIRECTIONS[self.plane]
        return np.array(row, dtype=np.float64), np.array(col, dtype=np.float64)

    def slice_points(self, k: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """ImagePositionPatient of slice k and the patient points (matrix, matrix, 3) of its pixels."""
        row, col = self.row_col()
        normal = np.cross(row, col)
        half = (self.matrix - 1) / 2.0 * self.pixel_mm
        first = np.array(self.centre) - half * (row + col)
        first = first + (k - (self.n_slices - 1) / 2.0) * self.slice_mm * normal
        steps = np.arange(self.matrix, dtype=np.float64) * self.pixel_mm
        points = first + steps[:, None, None] * col + steps[None, :, None] * row
        return first, points


def oblique_directions(
    tilt_deg: float, spin_deg: float
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Axial directions rotated by ``tilt_deg`` about x, then ``spin_deg`` about z."""
    t, s = np.radians(tilt_deg), np.radians(spin_deg)
    rot_x = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    rot_z = np.array([[np.cos(s), -np.sin(s), 0], [np.sin(s), np.cos(s), 0], [0, 0, 1]])
    rot = rot_z @ rot_x
    row, col = rot @ np.array([1.0, 0, 0]), rot @ np.array([0, 1.0, 0])
    return (tuple(float(v) for v in row), tuple(float(v) for v in col))  # type: ignore[return-value]


def slice_dataset(
    acq: Acquisition,
    k: int,
    stored: NDArray[np.uint16],
    *,
    series_uid: str,
    frame_of_reference_uid: str,
    description: str = "FLAIR",
) -> Dataset:
    """A complete single-frame MR dataset for slice k (uncompressed, MONOCHROME2)."""
    first, _ = acq.slice_points(k)
    row, col = acq.row_col()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = UID("1.2.826.0.1.3680043.8.498.1"), series_uid
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PatientID, ds.PatientName, ds.Modality = "PHANTOM", "Phantom^Head", "MR"
    ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "", "O", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
    ds.SeriesDescription, ds.ProtocolName = description, description
    ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
    ds.ImagePositionPatient = [float(v) for v in first]
    ds.PixelSpacing = [acq.pixel_mm, acq.pixel_mm]
    ds.SliceThickness = acq.slice_mm
    ds.Rows = ds.Columns = acq.matrix
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    return ds


def write_series(
    folder: Path,
    acq: Acquisition,
    *,
    fn: PhantomFn = head_phantom,
    frame_of_reference_uid: str | None = None,
    description: str = "FLAIR",
    seed: int = 0,
) -> list[Path]:
    """Write one file per slice under shuffled, meaningless names; returns the paths in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, for_uid = generate_uid(), frame_of_reference_uid or generate_uid()
    names = np.random.default_rng(seed).permutation(acq.n_slices)
    paths = []
    for k in range(acq.n_slices):
        _, points = acq.slice_points(k)
        stored = np.clip(np.rint(fn(points)), 0, 65535).astype(np.uint16)
        ds = slice_dataset(
            acq,
            k,
            stored,
            series_uid=series_uid,
            frame_of_reference_uid=for_uid,
            description=description,
        )
        path = folder / f"IM{names[k]:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
