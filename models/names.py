"""Head, region, split and metric names, defined once and reused everywhere.

They are ``StrEnum`` members so they compare equal to (and serialise as) their plain string
values: a metrics dict keyed with them is a plain ``dict[str, float]`` on the wire.
"""

from __future__ import annotations

from enum import StrEnum

#: Class label meaning "this subject has no label for this head" (its loss term is masked).
MISSING_LABEL = -1


class Head(StrEnum):
    """Outputs of the networks. Marker heads classify; ``SEG`` segments voxels."""

    SEG = "seg"
    IDH = "idh"
    CODELETION_1P19Q = "codeletion_1p19q"
    MGMT = "mgmt"
    GRADE = "grade"


#: Marker (classification) heads of the 3D multitask U-Net, in output order.
MARKER_HEADS: tuple[Head, ...] = (Head.IDH, Head.CODELETION_1P19Q, Head.MGMT, Head.GRADE)

#: Number of classes of each head (design.md section 6). Grade is II / III / IV.
NUM_CLASSES: dict[Head, int] = {
    Head.SEG: 4,
    Head.IDH: 2,
    Head.CODELETION_1P19Q: 2,
    Head.MGMT: 2,
    Head.GRADE: 3,
}


class SegLabel(StrEnum):
    """Voxel classes of the 4-class segmentation (BraTS labels with enhancing tumour at 3)."""

    BACKGROUND = "background"
    NECROTIC_CORE = "necrotic_core"
    EDEMA = "edema"
    ENHANCING = "enhancing"


#: Integer value of each voxel class in a segmentation mask.
SEG_VALUES: dict[SegLabel, int] = {
    SegLabel.BACKGROUND: 0,
    SegLabel.NECROTIC_CORE: 1,
    SegLabel.EDEMA: 2,
    SegLabel.ENHANCING: 3,
}


class Region(StrEnum):
    """BraTS evaluation regions, each a union of voxel classes."""

    ET = "et"  # enhancing tumour
    TC = "tc"  # tumour core
    WT = "wt"  # whole tumour


#: Voxel values that make up each region.
REGION_LABELS: dict[Region, tuple[int, ...]] = {
    Region.ET: (3,),
    Region.TC: (1, 3),
    Region.WT: (1, 2, 3),
}


class Split(StrEnum):
    """Data splits a Trainer knows. The caller decides which subjects go where."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class Metric(StrEnum):
    """Metric names. Per-head keys are built with :func:`metric_key`."""

    LOSS = "loss"
    ACCURACY = "accuracy"
    F1 = "f1"
    KAPPA = "kappa"
    AUC = "auc"
    RECALL = "recall"
    SPECIFICITY = "specificity"
    DICE = "dice"
    DICE_MEDIAN = "dice_median"
    COUNT = "n"


class BatchKey(StrEnum):
    """Keys of a sample / batch dict besides the per-head label keys (``Head`` values)."""

    IMAGE = "image"
    HAS_SEG = "has_seg"


def metric_key(name: str, metric: Metric | str) -> str:
    """Flat key such as ``"mgmt_auc"`` or ``"et_dice"``; one format for every report."""
    return f"{name}_{metric}"
