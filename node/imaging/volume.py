"""The volume every imaging path works on, and the geometry helpers around it.

Convention (docs/explanation/imaging.md): ``array[k, i, j]`` is slice ``k``, row ``i``, column ``j``;
``affine @ (k, i, j, 1)`` is the voxel centre in DICOM patient coordinates (LPS, millimetres:
+x towards the patient's left, +y posterior, +z superior). Keeping one convention for the array
and the affine lets every resampling step be one matrix product, whatever plane was acquired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]


class Plane(StrEnum):
    """Acquisition plane, from the slice normal in patient space."""

    AXIAL = "axial"
    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    OBLIQUE = "oblique"


# A slice normal within ~18 degrees of a patient axis counts as that plane (|cos| >= 0.95); scanners
# tilt a few degrees to follow anatomy, and such series are still read as their nominal plane.
_PLANE_COS = 0.95
_AXIS_PLANES = (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)  # normal along x, y, z


def classify_plane(normal: NDArray[np.float64]) -> Plane:
    """Name the plane whose normal is closest to ``normal``, or OBLIQUE if none is close."""
    unit = np.asarray(normal, dtype=np.float64)
    unit = unit / np.linalg.norm(unit)
    axis = int(np.argmax(np.abs(unit)))
    return _AXIS_PLANES[axis] if abs(unit[axis]) >= _PLANE_COS else Plane.OBLIQUE


@dataclass(frozen=True)
class SkippedFile:
    """A file in the series location that was not used, and why (non-DICOM, no pixels...)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class SeriesMeta:
    """What the manifest and the sequence classifier need to know about a series."""

    series_instance_uid: str
    frame_of_reference_uid: str
    series_description: str
    protocol_name: str
    modality: str
    spacing: tuple[float, float, float]  # (between slices, between rows, between columns), mm
    plane: Plane
    n_slices: int
    n_files: int
    transfer_syntaxes: tuple[str, ...]
    skipped: tuple[SkippedFile, ...] = field(default=())


@dataclass(frozen=True)
class Volume:
    """Voxels (float32, [slice, row, col]) with the affine voxel index -> patient LPS mm."""

    array: FloatArray
    affine: NDArray[np.float64]
    meta: SeriesMeta

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel grid shape (slices, rows, columns)."""
        k, i, j = self.array.shape
        return (k, i, j)


@dataclass(frozen=True)
class LabelVolume:
    """Integer labels in patient space (e.g. a DICOM SEG), same index convention as Volume."""

    array: NDArray[np.uint8]
    affine: NDArray[np.float64]
    frame_of_reference_uid: str = ""


def voxel_corners(shape: tuple[int, int, int], affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """The eight extreme voxel centres of a grid, in patient mm (8 x 3)."""
    k, i, j = (np.array([0, n - 1], dtype=np.float64) for n in shape)
    grid = np.stack(np.meshgrid(k, i, j, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid @ affine[:3, :3].T + affine[:3, 3]


def world_to_index(
    points: NDArray[np.float64], shape: tuple[int, int, int], affine: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Continuous voxel indices (3 x N) of patient points (N x 3), and which lie inside the grid.

    A point counts as inside up to half a voxel beyond the outer voxel centres (the voxel's own
    extent); its index is clipped onto the outer centre so interpolation never reads padding.
    """
    inverse = np.linalg.inv(affine)
    index = (points @ inverse[:3, :3].T + inverse[:3, 3]).T
    upper = np.array(shape, dtype=np.float64)[:, None] - 1.0
    inside = np.all((index >= -0.5) & (index <= upper + 0.5), axis=0)
    return np.clip(index, 0.0, upper), inside
