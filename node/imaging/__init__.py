"""DICOM imaging core: series -> Volume in patient space -> 2D / 3D model inputs.

Imports stay light (numpy, pydicom, scipy.ndimage): the Flower client process imports this
package, so no torch/monai here; highdicom is imported only when a SEG is read.
"""

from node.imaging.errors import RejectReason, SeriesRejected
from node.imaging.inputs2d import coronal_grid, middle_coronal_slice, rescale_intensity
from node.imaging.inputs3d import CHANNELS, Input3D, build_3d_input, reference_grid, zscore_nonzero
from node.imaging.seg import BRATS_VALUES, read_seg
from node.imaging.series import read_series
from node.imaging.volume import LabelVolume, Plane, SeriesMeta, SkippedFile, Volume, classify_plane

__all__ = [
    "BRATS_VALUES",
    "CHANNELS",
    "Input3D",
    "LabelVolume",
    "Plane",
    "RejectReason",
    "SeriesMeta",
    "SeriesRejected",
    "SkippedFile",
    "Volume",
    "build_3d_input",
    "classify_plane",
    "coronal_grid",
    "middle_coronal_slice",
    "read_seg",
    "read_series",
    "reference_grid",
    "rescale_intensity",
    "zscore_nonzero",
]
