"""Resolve a cohort: per member, one series per sequence, a SEG if any, labels, or a reason.

The order in which a subject's checks run fixes which reason it gets when several apply
(docs/explanation/dataset-cache.md): images first (none at all, none in the window, then each
required sequence in the order FLAIR, T1, T1ce, T2, then the frame of reference), labels last
(the target marker conflicting or absent). Every subject is resolved completely whatever its
reason, so the manifest also describes excluded subjects (their series, their SEG, their labels).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cohorts.db import Database
from node.concept_map import load_concept_map
from node.errors import DicomRootError, LabelConflictError
from node.imaging import Volume
from node.resolver import images as img
from node.resolver.labels import SubjectLabels, resolve_labels
from node.resolver.pool import Progress, parallel_map
from node.resolver.query import ImageRow, Member, fetch_images, fetch_labels, fetch_members
from node.resolver.sequences import SEQUENCES, SequenceMap, load_sequence_map
from node.settings import SiteSettings

log = logging.getLogger(__name__)

NO_IMAGE_OCCURRENCE = "no_image_occurrence"
NO_IMAGE_IN_WINDOW = "no_image_in_window"
MISSING_SEQUENCE = "missing_sequence"
FRAME_OF_REFERENCE_MISMATCH = "frame_of_reference_mismatch"
CONFLICTING_LABEL = "conflicting_label"
NO_LABEL = "no_label"
# Row problems more telling than "missing_sequence" when a required sequence has no candidate.
_ROW_REASONS = (
    img.PATH_OUTSIDE_DICOM_ROOTS,
    img.PERMISSION_DENIED,
    img.NO_IMAGES,
    img.UNREADABLE_FILE,
)


@dataclass(frozen=True)
class SeriesInfo:
    """What the manifest records about a chosen series."""

    series_uid: str
    location: str
    n_slices: int
    spacing: tuple[float, float, float]
    plane: str
    frame_of_reference_uid: str


@dataclass(frozen=True)
class ImageResult:
    """The imaging half of a subject: chosen series, SEG and the first imaging reason."""

    series: dict[str, SeriesInfo] = field(default_factory=dict)
    seg_path: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Resolved:
    """One cohort member, resolved. ``person_id`` never leaves memory (see node.manifest)."""

    person_id: int
    labels: dict[str, str | None]
    conflicts: tuple[str, ...]
    images: ImageResult
    exclusion: str | None


@dataclass(frozen=True)
class Resolution:
    """A resolved cohort and the parameters it was resolved with."""

    cohort_id: int
    subjects: list[Resolved]
    parameters: dict[str, Any]


@dataclass(frozen=True)
class _ImageTask:
    member: Member
    rows: tuple[ImageRow, ...]
    roots: tuple[Path, ...]
    sequence_map: SequenceMap
    window: tuple[int, int]
    required: tuple[str, ...]


def check_dicom_roots(roots: Sequence[Path]) -> None:
    """Every root exists and can be listed: a missing or unreadable root (an unmounted share,
    a service account without access) would otherwise exclude every subject quietly."""
    if not roots:
        raise DicomRootError(
            "no dicom_roots in the site settings", hint="list the folders DICOM files lie under"
        )
    for root in roots:
        if not root.exists():
            raise DicomRootError(
                f"DICOM root {root} does not exist", hint="mount it or fix dicom_roots"
            )
        if not root.is_dir():
            raise DicomRootError(f"DICOM root {root} is not a folder")
        try:
            with os.scandir(root) as entries:
                next(entries, None)
        except PermissionError:
            raise DicomRootError(
                f"DICOM root {root} cannot be listed: permission denied",
                hint="give the account that runs omopfed read access to it",
            ) from None


def _series_info(volume: Volume, location: Path) -> SeriesInfo:
    meta = volume.meta
    spacing = tuple(round(float(s), 6) for s in meta.spacing)
    return SeriesInfo(
        series_uid=meta.series_instance_uid,
        location=str(location),
        n_slices=meta.n_slices,
        spacing=(spacing[0], spacing[1], spacing[2]),
        plane=str(meta.plane),
        frame_of_reference_uid=meta.frame_of_reference_uid,
    )


def resolve_images(task: _ImageTask) -> ImageResult:
    """The imaging half of one subject (runs in a worker process)."""
    index = task.member.index_date
    lo, hi = task.window
    rows = [r for r in task.rows if lo <= (r.on - index).days <= hi]
    if not task.rows:
        return ImageResult(reason=NO_IMAGE_OCCURRENCE)
    if not rows:
        return ImageResult(reason=NO_IMAGE_IN_WINDOW)
    by_sequence, seg_rows, problems = img.candidates(rows, task.roots, task.sequence_map)
    series: dict[str, SeriesInfo] = {}
    reasons: dict[str, str] = {}
    seg_files = [c.header.path for c in seg_rows]
    for sequence in SEQUENCES:
        result = img.choose(by_sequence.get(sequence, []), index) if sequence in by_sequence else ""
        if isinstance(result, tuple):
            candidate, volume = result
            series[sequence] = _series_info(volume, candidate.location)
            seg_files += [s.path for s in volume.meta.skipped if s.reason == "segmentation object"]
        else:
            row_reasons = [p for p in problems if p in _ROW_REASONS]
            reasons[sequence] = result or (row_reasons[0] if row_reasons else MISSING_SEQUENCE)
    folders = [_folder(Path(s.location)) for s in series.values()]
    seg_files += img.seg_files_near(folders, task.roots)
    seg = img.pick_seg(seg_files, {k: s.series_uid for k, s in series.items()})
    reason = next((reasons[s] for s in task.required if s in reasons), None)
    frames = {series[s].frame_of_reference_uid for s in task.required if s in series}
    if reason is None and len(frames) > 1:
        reason = FRAME_OF_REFERENCE_MISMATCH
    return ImageResult(series, None if seg is None else str(seg), reason)


def _folder(location: Path) -> Path:
    return location if location.is_dir() else location.parent


def _exclusion(
    images: ImageResult, labels: dict[str, str | None], conflicts: tuple[str, ...], target: str
) -> str | None:
    if images.reason is not None:
        return images.reason
    if target in conflicts and labels.get(target) is None:
        return CONFLICTING_LABEL
    if labels.get(target) is None:
        return NO_LABEL
    return None


def resolve_cohort(
    settings: SiteSettings, cohort_id: int, progress: Progress | None = None
) -> Resolution:
    """Resolve every member of ``cohort_id`` (see the module docstring for the order of checks)."""
    options = settings.resolver
    roots = tuple(Path(r) for r in settings.dicom_roots)
    check_dicom_roots(roots)
    concept_map = load_concept_map(settings.concept_map)
    sequence_map = load_sequence_map(settings.sequence_map)
    concept_ids = sorted(concept_map.test_concept_ids())
    url = settings.database_url.get_secret_value()
    with Database(url, settings.schemas, read_only=True) as db, db.connect() as conn:
        members = fetch_members(conn, db, cohort_id)
        image_rows = fetch_images(conn, db, cohort_id)
        label_rows = fetch_labels(conn, db, cohort_id, concept_ids)
    labels = {
        m.person_id: resolve_labels(
            label_rows.get(m.person_id, []),
            concept_map,
            index_date=m.index_date,
            window_days=options.label_window_days,
            policy=options.conflict_policy,
        )
        for m in members
    }
    _check_conflicts(labels.values(), options.conflict_policy)
    tasks = [
        _ImageTask(
            member=m,
            rows=tuple(image_rows.get(m.person_id, [])),
            roots=roots,
            sequence_map=sequence_map,
            window=options.image_window_days,
            required=tuple(options.required_sequences),
        )
        for m in members
    ]
    results = parallel_map(resolve_images, tasks, options.workers, progress)
    subjects = []
    for member, result in zip(members, results, strict=True):
        found = labels[member.person_id]
        reason = _exclusion(result, found.labels, found.conflicts, options.target_marker)
        subjects.append(Resolved(member.person_id, found.labels, found.conflicts, result, reason))
    parameters = {
        **options.model_dump(mode="json", exclude={"workers"}),
        "concept_map_version": concept_map.version,
        "sequence_map_version": sequence_map.version,
    }
    return Resolution(cohort_id, subjects, parameters)


def _check_conflicts(results: Iterable[SubjectLabels], policy: str) -> None:
    """Under ``fail``, stop once every conflict has been logged (not at the first one)."""
    if policy != "fail":
        return
    conflicted = [r for r in results if r.conflicts]
    for result in conflicted:
        log.info("conflicting results: %s", ", ".join(result.conflicts))
    if conflicted:
        markers = sorted({m for r in conflicted for m in r.conflicts})
        raise LabelConflictError(
            f"conflicting results for {', '.join(markers)} (subjects are listed in the log at "
            "--log-level info)",
            hint='set resolver.conflict_policy = "exclude" or "latest", or correct the records',
        )
