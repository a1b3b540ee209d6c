"""Cohort members -> DICOM series per sequence, SEG masks and labels, or an exclusion reason.

:func:`resolve_cohort` is the entry point; :mod:`node.manifest` turns its result into the
manifest. Reason codes and the rules for choosing series: docs/explanation/dataset-cache.md.
"""

from node.resolver.core import (
    CONFLICTING_LABEL,
    FRAME_OF_REFERENCE_MISMATCH,
    MISSING_SEQUENCE,
    NO_IMAGE_IN_WINDOW,
    NO_IMAGE_OCCURRENCE,
    NO_LABEL,
    ImageResult,
    Resolution,
    Resolved,
    SeriesInfo,
    check_dicom_roots,
    resolve_cohort,
)
from node.resolver.images import PATH_OUTSIDE_DICOM_ROOTS, PERMISSION_DENIED
from node.resolver.sequences import SEQUENCES, SequenceMap, load_sequence_map

__all__ = [
    "CONFLICTING_LABEL",
    "FRAME_OF_REFERENCE_MISMATCH",
    "MISSING_SEQUENCE",
    "NO_IMAGE_IN_WINDOW",
    "NO_IMAGE_OCCURRENCE",
    "NO_LABEL",
    "PATH_OUTSIDE_DICOM_ROOTS",
    "PERMISSION_DENIED",
    "SEQUENCES",
    "ImageResult",
    "Resolution",
    "Resolved",
    "SequenceMap",
    "SeriesInfo",
    "check_dicom_roots",
    "load_sequence_map",
    "resolve_cohort",
]
