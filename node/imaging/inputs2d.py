"""The DenseNet input: the middle coronal slice of a volume, whatever plane was acquired.

The coronal plane is found in patient space (LPS: constant y), not in the file order: the
plane through the centre of the volume's extent along y is sampled with trilinear interpolation
on a square grid. Orientation is canonical, as radiologists view a coronal image: rows run
superior -> inferior, columns patient right -> left (LPS x increasing). The square field of view
is the larger of the volume's x and z extents, centred, so anatomy keeps its aspect ratio; the
part of the square outside the volume is padding, set to 0 after intensity scaling.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from node.imaging.resample import sample_points
from node.imaging.volume import Volume, voxel_corners

Scaling = Literal["minmax", "percentile"]


def coronal_grid(volume: Volume, size: int = 128) -> NDArray[np.float64]:
    """Patient points (size, size, 3) of the middle coronal plane, canonical orientation."""
    corners = voxel_corners(volume.shape, volume.affine)
    low, high = corners.min(axis=0), corners.max(axis=0)
    centre = (low + high) / 2.0
    extent = max(high[0] - low[0], high[2] - low[2], 1e-6)
    offsets = (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * (extent / max(size - 1, 1))
    grid = np.empty((size, size, 3), dtype=np.float64)
    grid[..., 0] = centre[0] + offsets[None, :]  # columns: patient right -> left
    grid[..., 1] = centre[1]
    grid[..., 2] = centre[2] - offsets[:, None]  # rows: superior -> inferior
    return grid


def rescale_intensity(
    image: NDArray[np.float32],
    scaling: Scaling = "minmax",
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> NDArray[np.float32]:
    """Map finite values to [0, 1]; NaN (padding) becomes 0. A constant image becomes all 0.

    ``minmax`` is the seed's choice; ``percentile`` clips outliers (hot pixels, fat) first.
    """
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image, dtype=np.float32)
    if scaling == "minmax":
        low, high = float(finite.min()), float(finite.max())
    else:
        low, high = (float(v) for v in np.percentile(finite, percentiles))
    if high <= low:
        return np.zeros_like(image, dtype=np.float32)
    scaled = (np.clip(image, low, high) - low) / (high - low)
    return np.nan_to_num(scaled, nan=0.0).astype(np.float32)


def middle_coronal_slice(
    volume: Volume,
    *,
    size: int = 128,
    scaling: Scaling = "minmax",
    percentiles: tuple[float, float] = (0.5, 99.5),
    dtype: DTypeLike = np.float32,
) -> NDArray[np.floating]:
    """The (size, size) model input: middle coronal plane, rescaled to [0, 1], float32 or 16."""
    raw = sample_points(volume.array, volume.affine, coronal_grid(volume, size), order=1)
    return rescale_intensity(raw, scaling, percentiles).astype(dtype)
