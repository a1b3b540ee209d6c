"""DICOM SEG -> a label volume in patient space with BraTS label values.

highdicom rebuilds the volume from the SEG's own plane positions (``get_volume``), so the labels
need neither the source series files nor their order; frames left out because they were empty
(highdicom omits them when writing) come back as background. Segments are mapped to BraTS values
by their SegmentLabel, since sites number their segments differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from node.imaging.errors import RejectReason, SeriesRejected
from node.imaging.volume import LabelVolume

# BraTS 2021 values: 1 necrotic / non-enhancing core, 2 peritumoral edema, 4 enhancing tumour.
BRATS_VALUES: Mapping[str, int] = {
    "ncr": 1,
    "net": 1,
    "ncr/net": 1,
    "necrosis": 1,
    "necrotic core": 1,
    "necrotic tumor core": 1,
    "non-enhancing tumor core": 1,
    "ed": 2,
    "edema": 2,
    "peritumoral edema": 2,
    "et": 4,
    "enhancing tumor": 4,
    "enhancing tumour": 4,
}


def _normalize(label: str) -> str:
    return re.sub(r"[\s_]+", " ", label.strip().lower())


def read_seg(path: str | Path, *, values: Mapping[str, int] = BRATS_VALUES) -> LabelVolume:
    """Read a (binary or fractional) SEG into BraTS-valued labels with its affine.

    ``values`` maps normalized segment labels (lower case, single spaces) to label values;
    an unknown segment label is a rejection, not a silent 0.
    """
    import highdicom as hd  # imported here: only dataset building needs it, not the client

    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # pydicom/highdicom raise many types for corrupt input
        raise SeriesRejected(
            RejectReason.UNREADABLE_FILE, f"{path}: not a readable SEG ({exc})"
        ) from exc
    lut = np.zeros(max(int(d.SegmentNumber) for d in seg.SegmentSequence) + 1, dtype=np.uint8)
    for description in seg.SegmentSequence:
        label = _normalize(str(description.SegmentLabel))
        if label not in values:
            raise SeriesRejected(
                RejectReason.UNKNOWN_SEGMENT,
                f"{path}: segment {description.SegmentNumber} '{description.SegmentLabel}' has no "
                "BraTS value",
                hint="add its spelling to the segment label mapping",
            )
        lut[int(description.SegmentNumber)] = values[label]
    try:
        volume = seg.get_volume(combine_segments=True, relabel=False, dtype=np.uint8)
    except (ValueError, RuntimeError) as exc:
        raise SeriesRejected(
            RejectReason.UNSUPPORTED_IMAGE, f"{path}: SEG frames do not form a volume ({exc})"
        ) from exc
    return LabelVolume(
        array=lut[np.asarray(volume.array)],
        affine=np.asarray(volume.affine, dtype=np.float64),
        frame_of_reference_uid=str(seg.get("FrameOfReferenceUID", "")),
    )
