"""2D and 3D model inputs against the analytic phantom, and DICOM SEG labels."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.uid import generate_uid

from node.imaging import (
    LabelVolume,
    RejectReason,
    SeriesRejected,
    Volume,
    build_3d_input,
    coronal_grid,
    middle_coronal_slice,
    read_seg,
    read_series,
    rescale_intensity,
    zscore_nonzero,
)
from node.imaging.phantom import Acquisition, head_phantom, oblique_directions, write_series
from node.imaging.resample import grid_points, sample_points

PLANES = {
    "axial": Acquisition(plane="axial"),
    "sagittal": Acquisition(plane="sagittal"),
    "coronal": Acquisition(plane="coronal"),
    "oblique": Acquisition(n_slices=24, directions=oblique_directions(25, 15)),
}


def _truth(volume: Volume, size: int) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """The analytic coronal slice, min-max scaled over the part of the plane the volume covers."""
    grid = coronal_grid(volume, size)
    inside = np.isfinite(sample_points(volume.array, volume.affine, grid))
    analytic = np.where(inside, head_phantom(grid), np.nan).astype(np.float32)
    return rescale_intensity(analytic), inside


def _corr(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("plane", PLANES)
def test_middle_coronal_slice_matches_the_analytic_phantom(tmp_path: Path, plane: str) -> None:
    volume = read_series(write_series(tmp_path, PLANES[plane])[0].parent)
    image = middle_coronal_slice(volume, size=64)
    truth, inside = _truth(volume, 64)
    assert image.shape == (64, 64) and image.dtype == np.float32
    assert _corr(image[inside], truth[inside]) > 0.98
    assert np.max(np.abs(image - truth)[inside]) < 0.25
    assert np.all(image[~inside] == 0.0)  # padding, never extrapolated anatomy
    # the check can fail: a left/right or up/down flip of the same image does not pass it
    assert _corr(image[:, ::-1][inside], truth[inside]) < 0.95
    assert _corr(image[::-1, :][inside], truth[inside]) < 0.95


def test_coronal_orientation_is_canonical(tmp_path: Path) -> None:
    """The lesion sits at patient left (+x) and superior (+z): right half of columns, upper rows."""
    volume = read_series(write_series(tmp_path, PLANES["sagittal"])[0].parent)
    image = middle_coronal_slice(volume, size=64)
    row, col = np.unravel_index(np.argmax(image), image.shape)
    assert row < 32 and col > 32


def test_shuffled_files_give_the_identical_slice(tmp_path: Path) -> None:
    paths = write_series(tmp_path, PLANES["oblique"])
    first = middle_coronal_slice(read_series(paths))
    shuffled = [paths[i] for i in np.random.default_rng(7).permutation(len(paths))]
    assert np.array_equal(middle_coronal_slice(read_series(shuffled)), first)


def test_float16_and_percentile_options(tmp_path: Path) -> None:
    volume = read_series(write_series(tmp_path, PLANES["axial"])[0].parent)
    half = middle_coronal_slice(volume, dtype=np.float16)
    assert half.shape == (128, 128) and half.dtype == np.float16
    assert float(half.min()) == 0.0 and float(half.max()) == 1.0
    hot = Volume(volume.array.copy(), volume.affine, volume.meta)
    hot.array[10, 20, 20] = 1e6  # one hot voxel on the middle coronal plane
    assert middle_coronal_slice(hot, scaling="minmax").mean() < 0.01
    robust = middle_coronal_slice(hot, scaling="percentile", percentiles=(0.0, 99.0))
    assert _corr(robust, middle_coronal_slice(volume)) > 0.95


def _sequences(tmp_path: Path, frames: dict[str, str]) -> dict[str, Volume]:
    """Four sequences in different planes; ``frames`` names each one's frame of reference."""
    planes = {"FLAIR": "axial", "T1": "sagittal", "T1ce": "coronal", "T2": "axial"}
    acq = {
        name: Acquisition(plane=plane, n_slices=16, matrix=32, pixel_mm=5.0, slice_mm=10.0)
        for name, plane in planes.items()
    }
    return {
        name: read_series(
            write_series(tmp_path / name, acq[name], frame_of_reference_uid=frames[name])[0].parent
        )
        for name in planes
    }


def _lesion_labels(points: NDArray[np.float64]) -> NDArray[np.uint8]:
    """BraTS-style truth: enhancing core (4) inside r < 10 mm of the lesion centre, edema (2) to 18 mm."""
    radius = np.linalg.norm(points - np.array([25.0, -15.0, 20.0]), axis=-1)
    return np.where(radius < 10, 4, np.where(radius < 18, 2, 0)).astype(np.uint8)


def test_3d_input_puts_every_sequence_on_the_reference_grid(tmp_path: Path) -> None:
    sequences = _sequences(tmp_path, dict.fromkeys(("FLAIR", "T1", "T1ce", "T2"), "1.2.3.4"))
    built = build_3d_input(sequences, size=24, labels=None)
    assert built.image.shape == (4, 16, 24, 24) and built.image.dtype == np.float32
    assert built.channels == ("T1", "T1ce", "T2", "FLAIR") and built.labels is None
    truth = zscore_nonzero(head_phantom(grid_points((16, 24, 24), built.affine)).astype(np.float32))
    for channel in built.image:
        foreground = (
            channel != 0
        )  # z-scored background is exactly 0, i.e. mid-scale: compare inside
        assert foreground.mean() > 0.3
        assert _corr(channel[foreground], truth[foreground]) > 0.97
        assert abs(channel[foreground].mean()) < 1e-4 and abs(channel[foreground].std() - 1) < 1e-3


def test_3d_input_rejects_mismatching_frames_and_missing_sequences(tmp_path: Path) -> None:
    frames = {"FLAIR": "1.2.3.4", "T1": "1.2.3.4", "T1ce": "1.2.3.9", "T2": "1.2.3.4"}
    sequences = _sequences(tmp_path, frames)
    with pytest.raises(SeriesRejected) as info:
        build_3d_input(sequences)
    assert info.value.reason is RejectReason.FRAME_OF_REFERENCE_MISMATCH
    assert "T1ce" in str(info.value)
    del sequences["T2"]
    with pytest.raises(SeriesRejected) as info:
        build_3d_input(sequences)
    assert info.value.reason is RejectReason.MISSING_SEQUENCE


def _write_seg(series: list[Path], path: Path, labels: tuple[str, str]) -> None:
    """A binary SEG of the analytic lesion on the series' own slices (empty frames omitted)."""
    sources = [pydicom.dcmread(p) for p in series]
    truth = np.stack(
        [_lesion_labels(Acquisition(**_acq_kwargs()).slice_points(k)[1]) for k in range(16)]
    )
    masks = np.stack([truth == 2, truth == 4], axis=-1).astype(np.uint8)
    category = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
    kind = hd.sr.CodedConcept("108369006", "SCT", "Neoplasm")
    descriptions = [
        hd.seg.SegmentDescription(
            n + 1, label, category, kind, hd.seg.SegmentAlgorithmTypeValues.MANUAL
        )
        for n, label in enumerate(labels)
    ]
    seg = hd.seg.Segmentation(
        sources,
        masks,
        hd.seg.SegmentationTypeValues.BINARY,
        descriptions,
        generate_uid(),
        9,
        generate_uid(),
        1,
        "omopfed",
        "phantom",
        "0",
        "0",
    )
    assert seg.NumberOfFrames < 2 * 16  # frames without lesion were left out
    seg.save_as(path)


def _acq_kwargs() -> dict[str, object]:
    return {"plane": "coronal", "n_slices": 16, "matrix": 32, "pixel_mm": 5.0, "slice_mm": 5.0}


def test_seg_is_read_and_resampled_to_brats_values(tmp_path: Path) -> None:
    series = write_series(
        tmp_path / "t1ce", Acquisition(**_acq_kwargs()), frame_of_reference_uid="1.2.3.4"
    )
    _write_seg(series, tmp_path / "seg.dcm", ("Edema", "Enhancing tumor"))
    labels = read_seg(tmp_path / "seg.dcm")
    assert isinstance(labels, LabelVolume) and labels.frame_of_reference_uid == "1.2.3.4"
    assert set(np.unique(labels.array)) == {0, 2, 4}
    # on its own grid the SEG reproduces the truth exactly: the axes and affine agree with ours
    assert np.array_equal(
        labels.array, _lesion_labels(grid_points(labels.array.shape, labels.affine))
    )
    sequences = _sequences(
        tmp_path / "seqs", dict.fromkeys(("FLAIR", "T1", "T1ce", "T2"), "1.2.3.4")
    )
    built = build_3d_input(sequences, size=32, labels=labels)
    assert built.labels is not None and built.labels.shape == (16, 32, 32)
    truth = _lesion_labels(grid_points((16, 32, 32), built.affine))
    whole = truth > 0, built.labels > 0
    dice = 2 * np.sum(whole[0] & whole[1]) / (np.sum(whole[0]) + np.sum(whole[1]))
    assert dice > 0.75  # nearest neighbour between 5 mm coronal and 10 mm axial voxels
    assert set(np.unique(built.labels)) == {0, 2, 4}


def test_unknown_segment_label_is_rejected(tmp_path: Path) -> None:
    series = write_series(tmp_path / "t1ce", Acquisition(**_acq_kwargs()))
    _write_seg(series, tmp_path / "seg.dcm", ("Edema", "Mystery blob"))
    with pytest.raises(SeriesRejected) as info:
        read_seg(tmp_path / "seg.dcm")
    assert info.value.reason is RejectReason.UNKNOWN_SEGMENT


def test_labels_from_another_frame_of_reference_are_rejected(tmp_path: Path) -> None:
    sequences = _sequences(tmp_path, dict.fromkeys(("FLAIR", "T1", "T1ce", "T2"), "1.2.3.4"))
    other = LabelVolume(np.zeros((2, 2, 2), np.uint8), np.eye(4), frame_of_reference_uid="9.9")
    with pytest.raises(SeriesRejected) as info:
        build_3d_input(sequences, labels=other)
    assert info.value.reason is RejectReason.FRAME_OF_REFERENCE_MISMATCH
