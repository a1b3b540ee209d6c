"""Why a series (or a set of sequences) cannot become model input.

Every rejection carries a stable reason code from :class:`RejectReason`: the resolver writes it into
the manifest as the subject's exclusion reason, and node replies carry only codes. The message is
for the steward's local log; it may name files, so it never leaves the site.
"""

from __future__ import annotations

from enum import StrEnum

from omopfed.errors import EXIT_DATA, OmopfedError


class RejectReason(StrEnum):
    """Stable reason codes for rejected imaging input (documented in docs/explanation/imaging.md)."""

    NO_IMAGES = "no_images"
    UNREADABLE_FILE = "unreadable_file"
    UNSUPPORTED_IMAGE = "unsupported_image"
    MULTIPLE_SERIES = "multiple_series"
    INCONSISTENT_ORIENTATION = "inconsistent_orientation"
    INCONSISTENT_GEOMETRY = "inconsistent_geometry"
    MISSING_GEOMETRY = "missing_geometry"
    DUPLICATE_POSITIONS = "duplicate_positions"
    MISSING_SLICES = "missing_slices"
    IRREGULAR_SPACING = "irregular_spacing"
    FRAME_OF_REFERENCE_MISMATCH = "frame_of_reference_mismatch"
    MISSING_SEQUENCE = "missing_sequence"
    NO_OVERLAP = "no_overlap"
    UNKNOWN_SEGMENT = "unknown_segment"


class SeriesRejected(OmopfedError):
    """A series or a set of sequences was rejected; ``reason`` says why in a stable code."""

    code = "SERIES_REJECTED"
    exit_code = EXIT_DATA

    def __init__(self, reason: RejectReason, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{reason.value}: {message}", hint=hint)
        self.reason = reason
