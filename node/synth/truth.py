"""truth.json: the exact numbers a synthetic site must produce, derived from its plan.

The numbers come from the *intent* of the plan (each person's kind and dirt flags), not from
querying what was written: tests compare them with what the database and the files actually
hold, so a generator bug shows up as a mismatch instead of being copied into the truth.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from node.synth.dicom import SeriesSpec
from node.synth.profiles import FOV_MM, SEQUENCES, SiteStyle
from node.synth.subjects import LABELLED, MARKERS, MEMBER, Subject

TRUTH_SCHEMA = "omopfed-synth-truth/1"
REFERENCE_COHORT_ID = 1


def _labels(members: list[Subject]) -> dict[str, Any]:
    labelled: dict[str, int] = {}
    classes: dict[str, dict[str, int]] = {}
    for marker in MARKERS:
        ok = [s for s in members if s.recorded.get(marker) in LABELLED]
        labelled[marker] = len(ok)
        classes[marker] = dict(sorted(Counter(s.labels[marker] for s in ok).items()))
    return {
        "labelled_members": labelled,
        "label_classes": classes,
        "conflicting_mgmt_members": sum(s.recorded.get("mgmt") == "conflict" for s in members),
        "null_mgmt_members": sum(s.recorded.get("mgmt") == "null" for s in members),
        "numeric_mgmt_rows": sum(s.recorded.get("mgmt") == "numeric" for s in members),
        "source_only_mgmt_rows": sum(s.recorded.get("mgmt") == "source" for s in members),
    }


def _files(written: dict[int, dict[str, Any]], site_dir: Path) -> dict[str, Any]:
    def rel(key: str) -> list[str]:
        return sorted(
            str(Path(w[key]).relative_to(site_dir)) for w in written.values() if w.get(key)
        )

    return {
        "mr_files": sum(int(w["dicom_files"]) for w in written.values()),
        "seg_files": rel("seg"),
        "corrupt_files": rel("corrupt"),
        "non_dicom_files": rel("extra"),
    }


def site_truth(
    subjects: list[Subject],
    specs: dict[int, list[SeriesSpec]],
    written: dict[int, dict[str, Any]],
    style: SiteStyle,
    site_dir: Path,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Every number tests and later stages assert, for one site."""
    members = [s for s in subjects if s.kind == MEMBER]
    series = [spec for group in specs.values() for spec in group]
    gliomas = [s for s in subjects if s.kind != "meningioma"]
    truth: dict[str, Any] = {
        "schema": TRUTH_SCHEMA,
        "site": style.name,
        **meta,
        "style": _style(style),
        "persons": len(subjects),
        "minors": sum(s.age_at_index < 18 for s in subjects),
        "glioma_persons": len(gliomas),
        "reference_cohort": {
            "cohort_definition_id": REFERENCE_COHORT_ID,
            "members": len(members),
            "person_ids": [s.person_id for s in members],
            "excluded": dict(sorted(Counter(s.kind for s in subjects if s.kind != MEMBER).items())),
        },
        **_labels(members),
        "members_with_images": sum(s.images for s in members),
        "members_with_all_sequences": sum(
            s.images and set(s.sequences) == set(SEQUENCES) for s in members
        ),
        "members_with_segmentation": sum(s.seg for s in members),
        "members_with_second_glioma_diagnosis": sum(
            s.second_condition_date is not None for s in members
        ),
        "mri_procedures": sum(s.mri_date is not None for s in subjects),
        "procedures_without_images": sum(s.mri_date is not None and not s.images for s in subjects),
        "image_occurrences": len(series),
        "image_occurrences_by_sequence": dict(Counter(spec.sequence for spec in series)),
        **_files(written, site_dir),
    }
    return truth


def _style(style: SiteStyle) -> dict[str, Any]:
    return {
        "plane": style.plane,
        "matrix": style.matrix,
        "slices": style.slices,
        "pixel_spacing_mm": FOV_MM / style.matrix,
        "slice_spacing_mm": FOV_MM / style.slices,
        "intensity_scale": style.scale,
        "rescale_slope": style.rescale_slope,
        "rescale_intercept": style.rescale_intercept,
        "noise_sd": style.noise_sd,
        "series_descriptions": style.series_descriptions,
        "mgmt_prevalence": style.mgmt_prevalence,
        "seg_fraction": style.seg_fraction,
    }
