"""Trilinear / nearest-neighbour sampling of a volume at points or onto another grid.

Everything is expressed as "which patient-space points do I want" -> voxel indices through the
inverse affine -> scipy.ndimage.map_coordinates. Points outside the source grid get a fill value
instead of an extrapolated edge, so padding is visible and never mistaken for anatomy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from node.imaging.volume import world_to_index


def sample_points(
    array: NDArray[np.generic],
    affine: NDArray[np.float64],
    points: NDArray[np.float64],
    *,
    order: int = 1,
    fill: float = np.nan,
) -> NDArray[np.float32]:
    """Values at patient points (..., 3); ``order`` 1 is trilinear, 0 nearest neighbour."""
    flat = points.reshape(-1, 3)
    shape = (array.shape[0], array.shape[1], array.shape[2])
    index, inside = world_to_index(flat, shape, affine)
    values = ndimage.map_coordinates(
        np.asarray(array, dtype=np.float32), index, order=order, mode="nearest", prefilter=False
    )
    values[~inside] = fill
    return values.reshape(points.shape[:-1]).astype(np.float32, copy=False)


def grid_points(shape: tuple[int, int, int], affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """Patient coordinates (k, i, j, 3) of every voxel centre of a grid."""
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    points: NDArray[np.float64] = index @ affine[:3, :3].T + affine[:3, 3]
    return points


def resample_to_grid(
    array: NDArray[np.generic],
    affine: NDArray[np.float64],
    shape: tuple[int, int, int],
    target_affine: NDArray[np.float64],
    *,
    order: int = 1,
    fill: float = 0.0,
) -> NDArray[np.float32]:
    """``array`` (with ``affine``) sampled on the voxel centres of the target grid.

    Grid to grid is one affine map of indices, so ndimage.affine_transform computes coordinates
    on the fly instead of materializing them (several times faster than map_coordinates here).
    Target voxels beyond the source's outer voxel centres get ``fill``.
    """
    index_map = np.linalg.inv(affine) @ target_affine
    out = ndimage.affine_transform(
        np.asarray(array, dtype=np.float32),
        index_map[:3, :3],
        offset=index_map[:3, 3],
        output_shape=shape,
        order=order,
        mode="constant",
        cval=fill,
        prefilter=False,
    )
    return np.asarray(out, dtype=np.float32)
