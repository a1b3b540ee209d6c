"""The U-Net input: four sequences on one grid, normalized per channel, with optional labels.

The grid is the reference sequence's own: its slice axis and depth are kept, its in-plane field
of view is resampled to size x size (so in-plane spacing becomes FOV / size; the affine records
it, anatomy is not distorted in patient space). Other sequences are sampled on that grid through
their DICOM geometry, which is only meaningful within one frame of reference: sequences from
different frames of reference are rejected, because registering them is out of scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from node.imaging.errors import RejectReason, SeriesRejected
from node.imaging.resample import resample_to_grid
from node.imaging.volume import LabelVolume, Volume

CHANNELS = ("T1", "T1ce", "T2", "FLAIR")


@dataclass(frozen=True)
class Input3D:
    """image: float32 (channels, depth, size, size); labels: uint8 (depth, size, size) or None."""

    image: NDArray[np.float32]
    labels: NDArray[np.uint8] | None
    affine: NDArray[np.float64]
    channels: tuple[str, ...]


def reference_grid(
    volume: Volume, size: int = 128
) -> tuple[tuple[int, int, int], NDArray[np.float64]]:
    """Shape and affine of the target grid: the volume's slices, its in-plane FOV at size x size.

    The first and last rows/columns of the new grid sit on the original outer voxel centres.
    """
    depth, rows, cols = volume.shape
    scale = np.diag([1.0, (rows - 1) / max(size - 1, 1), (cols - 1) / max(size - 1, 1), 1.0])
    return (depth, size, size), volume.affine @ scale


def zscore_nonzero(channel: NDArray[np.float32]) -> NDArray[np.float32]:
    """Z-score over the foreground (nonzero voxels); the background stays exactly 0.

    MR intensities have no absolute scale, and the background share varies with the field of view:
    statistics over the brain only make channels comparable between sites (as in BraTS work).
    """
    mask = channel != 0
    values = channel[mask]
    std = float(values.std()) if values.size else 0.0
    out = np.zeros_like(channel, dtype=np.float32)
    if std > 0:
        out[mask] = (values - values.mean()) / std
    return out


def build_3d_input(
    sequences: Mapping[str, Volume],
    *,
    channels: Sequence[str] = CHANNELS,
    reference: str = "FLAIR",
    size: int = 128,
    labels: LabelVolume | None = None,
) -> Input3D:
    """Resample ``sequences[name]`` for each channel onto the reference grid and normalize.

    ``labels`` (e.g. from :func:`node.imaging.seg.read_seg`) are resampled nearest-neighbour.
    Rejects a missing sequence, a frame-of-reference mismatch and a sequence that does not
    overlap the reference grid at all.
    """
    missing = [name for name in (*channels, reference) if name not in sequences]
    if missing:
        raise SeriesRejected(RejectReason.MISSING_SEQUENCE, f"no series for {', '.join(missing)}")
    ref = sequences[reference]
    _check_frame_of_reference(ref, {name: sequences[name] for name in channels}, labels)
    shape, affine = reference_grid(ref, size)
    stack = []
    for name in channels:
        volume = sequences[name]
        channel = resample_to_grid(volume.array, volume.affine, shape, affine, order=1)
        if not np.any(channel):
            raise SeriesRejected(
                RejectReason.NO_OVERLAP, f"{name} has no signal inside the {reference} grid"
            )
        stack.append(zscore_nonzero(channel))
    label_array = None
    if labels is not None:
        resampled = resample_to_grid(labels.array, labels.affine, shape, affine, order=0)
        label_array = resampled.astype(np.uint8)
    return Input3D(np.stack(stack), label_array, affine, tuple(channels))


def _check_frame_of_reference(
    ref: Volume, volumes: Mapping[str, Volume], labels: LabelVolume | None
) -> None:
    """Patient coordinates are comparable only within one FrameOfReferenceUID."""
    want = ref.meta.frame_of_reference_uid
    found = {name: v.meta.frame_of_reference_uid for name, v in volumes.items()}
    if labels is not None and labels.frame_of_reference_uid:
        found["segmentation"] = labels.frame_of_reference_uid
    wrong = sorted(name for name, uid in found.items() if uid != want)
    if wrong:
        raise SeriesRejected(
            RejectReason.FRAME_OF_REFERENCE_MISMATCH,
            f"{', '.join(wrong)} not in the reference frame of reference {want}",
            hint="registration between frames of reference is out of scope",
        )
