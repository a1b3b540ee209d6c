"""Reading DICOM series into volumes: geometry, robustness, and every rejection reason."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import JPEGLSLossless, RLELossless, generate_uid

from node.imaging import Plane, RejectReason, SeriesRejected, read_series
from node.imaging.phantom import Acquisition, oblique_directions, write_series
from omopfed.errors import EXIT_DATA, OmopfedError

SMALL = Acquisition(n_slices=16, matrix=32, pixel_mm=5.0, slice_mm=10.0)


@pytest.fixture
def axial(tmp_path: Path) -> list[Path]:
    """A 16-slice axial series, paths in slice order (file names are shuffled)."""
    return write_series(tmp_path / "axial", SMALL)


def _rewrite(paths: list[Path], change: Callable[[Dataset, int], None]) -> None:
    """Apply ``change(ds, slice_index)`` to every file of a series in place."""
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        change(ds, k)
        ds.save_as(path, enforce_file_format=True)


def _reject(source: object, reason: RejectReason) -> SeriesRejected:
    with pytest.raises(SeriesRejected) as info:
        read_series(source)  # type: ignore[arg-type]
    assert info.value.reason is reason, str(info.value)
    return info.value


@pytest.mark.parametrize("plane", ["axial", "sagittal", "coronal"])
def test_affine_maps_voxels_to_the_written_positions(tmp_path: Path, plane: str) -> None:
    acq = Acquisition(plane=plane, n_slices=12, matrix=24, pixel_mm=3.0, slice_mm=5.0)
    volume = read_series(write_series(tmp_path, acq)[0].parent)
    assert volume.meta.plane is Plane(plane)
    assert volume.shape == (12, 24, 24)
    assert volume.meta.spacing == pytest.approx((5.0, 3.0, 3.0))
    for k, i, j in [(0, 0, 0), (11, 23, 0), (5, 7, 19)]:
        _, points = acq.slice_points(k)
        assert volume.affine @ np.array([k, i, j, 1.0]) == pytest.approx([*points[i, j], 1.0])


def test_oblique_series_is_classified_oblique(tmp_path: Path) -> None:
    acq = Acquisition(n_slices=8, matrix=16, directions=oblique_directions(30, 20))
    write_series(tmp_path, acq)
    assert read_series(tmp_path).meta.plane is Plane.OBLIQUE


def test_order_ignores_file_names_instance_numbers_and_list_order(axial: list[Path]) -> None:
    reference = read_series(axial[0].parent)
    _rewrite(axial, lambda ds, k: setattr(ds, "InstanceNumber", (k * 7) % 16 + 1))
    shuffled = [axial[i] for i in np.random.default_rng(3).permutation(len(axial))]
    volume = read_series(shuffled)
    assert np.array_equal(volume.array, reference.array)
    assert np.array_equal(volume.affine, reference.affine)
    # the written slice order is recovered: slice k holds the file written for slice k
    assert np.array_equal(volume.array[5], pydicom.dcmread(axial[5]).pixel_array.astype(np.float32))


BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def test_non_dicom_and_non_image_files_are_skipped_and_recorded(axial: list[Path]) -> None:
    folder = axial[0].parent
    (folder / "README.txt").write_text("export notes")
    (folder / ".DS_Store").write_bytes(b"\x00\x01binary")
    no_pixels = pydicom.dcmread(axial[0])  # turned into a structured report: not an image
    del no_pixels.PixelData
    no_pixels.SOPClassUID = no_pixels.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    no_pixels.Modality = "SR"
    no_pixels.SOPInstanceUID = generate_uid()
    no_pixels.save_as(folder / "report.dcm", enforce_file_format=True)
    volume = read_series(folder)
    assert volume.meta.n_slices == 16
    reasons = {item.path.name: item.reason for item in volume.meta.skipped}
    assert reasons == {
        "README.txt": "not a DICOM file",
        ".DS_Store": "not a DICOM file",
        "report.dcm": "no pixel data",
    }


def test_single_file_is_a_one_slice_volume(axial: list[Path]) -> None:
    volume = read_series(axial[3])
    assert volume.shape == (1, 32, 32)
    assert volume.meta.spacing[0] == pytest.approx(10.0)  # SliceThickness


def test_rescale_slope_and_intercept_are_applied(axial: list[Path]) -> None:
    reference = read_series(axial[0].parent)

    def rescale(ds: Dataset, k: int) -> None:
        stored = (ds.pixel_array.astype(np.float64) + 100.0) / 2.0
        ds.PixelData = np.rint(stored).astype("<u2").tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 2.0, -100.0

    _rewrite(axial, rescale)
    assert np.max(np.abs(read_series(axial).array - reference.array)) <= 1.0


def test_monochrome1_is_inverted_into_monochrome2_sense(axial: list[Path]) -> None:
    reference = read_series(axial[0].parent)

    def invert(ds: Dataset, k: int) -> None:
        ds.PixelData = (65535 - ds.pixel_array.astype(np.int64)).astype("<u2").tobytes()
        ds.PhotometricInterpretation = "MONOCHROME1"

    _rewrite(axial, invert)
    assert np.array_equal(read_series(axial).array, reference.array)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless], ids=["rle", "jpeg-ls"])
def test_compressed_transfer_syntaxes_decode_losslessly(axial: list[Path], syntax: str) -> None:
    reference = read_series(axial[0].parent)
    _rewrite(axial, lambda ds, k: ds.compress(syntax))
    volume = read_series(axial)
    assert volume.meta.transfer_syntaxes == (syntax,)
    assert np.array_equal(volume.array, reference.array)


def test_enhanced_multiframe_mr_matches_the_single_frame_series(
    axial: list[Path], tmp_path: Path
) -> None:
    reference = read_series(axial[0].parent)
    datasets = [pydicom.dcmread(p) for p in axial]
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        datasets,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    volume = read_series(tmp_path / "enhanced.dcm")
    assert np.array_equal(volume.array, reference.array)
    assert np.allclose(volume.affine, reference.affine)


def test_rejection_is_an_omopfed_data_error(tmp_path: Path) -> None:
    error = _reject(tmp_path / "nowhere", RejectReason.NO_IMAGES)
    assert isinstance(error, OmopfedError)
    assert (error.code, error.exit_code) == ("SERIES_REJECTED", EXIT_DATA)


def test_folder_without_images_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    _reject(tmp_path, RejectReason.NO_IMAGES)


def test_missing_middle_slice_is_rejected(axial: list[Path]) -> None:
    axial[7].unlink()
    assert "1 slice(s) missing" in str(_reject(axial[0].parent, RejectReason.MISSING_SLICES))


def test_missing_end_slices_are_not_detectable_and_accepted(axial: list[Path]) -> None:
    axial[0].unlink()
    assert read_series(axial[1].parent).meta.n_slices == 15


def test_duplicate_positions_are_rejected(axial: list[Path]) -> None:
    copy = pydicom.dcmread(axial[4])
    copy.SOPInstanceUID = generate_uid()
    copy.save_as(axial[0].parent / "copy.dcm", enforce_file_format=True)
    _reject(axial[0].parent, RejectReason.DUPLICATE_POSITIONS)


def test_inconsistent_orientation_is_rejected(axial: list[Path]) -> None:
    _rewrite(axial[5:6], lambda ds, k: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))
    _reject(axial[0].parent, RejectReason.INCONSISTENT_ORIENTATION)


def test_irregular_spacing_is_rejected(axial: list[Path]) -> None:
    def shift(ds: Dataset, k: int) -> None:
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], ds.ImagePositionPatient[2] + 3.0]

    _rewrite(axial[8:9], shift)
    _reject(axial[0].parent, RejectReason.IRREGULAR_SPACING)


def test_truncated_file_rejects_the_series_and_names_the_file(axial: list[Path]) -> None:
    data = axial[6].read_bytes()
    axial[6].write_bytes(data[: len(data) // 2])
    error = _reject(axial[0].parent, RejectReason.UNREADABLE_FILE)
    assert axial[6].name in str(error)


def test_file_cut_off_inside_its_header_is_unreadable_not_a_hole(axial: list[Path]) -> None:
    # pydicom reads such a file without error; skipping it would report missing_slices.
    data = axial[6].read_bytes()
    axial[6].write_bytes(data[:400])
    error = _reject(axial[0].parent, RejectReason.UNREADABLE_FILE)
    assert axial[6].name in str(error) and "cut off" in str(error)


def test_two_series_in_one_folder_need_a_series_uid(axial: list[Path], tmp_path: Path) -> None:
    other = write_series(tmp_path / "other", SMALL, description="T2")
    for path in other:
        shutil.copy(path, axial[0].parent / f"T2_{path.name}")
    _reject(axial[0].parent, RejectReason.MULTIPLE_SERIES)
    uid = str(pydicom.dcmread(other[0]).SeriesInstanceUID)
    volume = read_series(axial[0].parent, series_uid=uid)
    assert (volume.meta.series_description, volume.meta.n_slices) == ("T2", 16)
    assert sum(item.reason == "another series" for item in volume.meta.skipped) == 16
