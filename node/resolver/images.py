"""From ``image_occurrence`` rows to one checked series per sequence, and the SEG that labels it.

Every row goes through the same steps, each of which can end it with a stable reason code:
its ``local_path`` must lie under a configured DICOM root (``path_outside_dicom_roots``; a
symlink pointing out of the root counts as outside), the location must be readable
(``permission_denied``, ``no_images``), one file's header must give the series' sequence through
the sequence map. Per sequence, candidates are tried in the documented order (pre-operative
first: on or before the index date; then closest to it; then the lowest image_occurrence_id) and
the first that :func:`node.imaging.read_series` accepts is chosen; if none is, the preferred
candidate's rejection reason is the sequence's.

Only headers are read here besides the chosen series (``stop_before_pixels``), so looking for
SEG files next to a study costs one small read per file, not a pixel decode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from node.imaging import SeriesRejected, Volume, read_series
from node.imaging.dicomio import is_dicom_file
from node.resolver.query import ImageRow
from node.resolver.sequences import SequenceMap

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
PATH_OUTSIDE_DICOM_ROOTS = "path_outside_dicom_roots"
PERMISSION_DENIED = "permission_denied"
NO_IMAGES = "no_images"
UNREADABLE_FILE = "unreadable_file"
UNCLASSIFIED_SERIES = "unclassified_series"
_HEADER_TAGS = [
    "SeriesInstanceUID",
    "SOPClassUID",
    "Modality",
    "SeriesDescription",
    "ProtocolName",
    "ContrastBolusAgent",
    "ContrastBolusRoute",
    "ReferencedSeriesSequence",
    "FrameOfReferenceUID",
]


class RowProblem(Exception):
    """A row (or a location) that cannot give a series; ``reason`` is the stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Header:
    """What classification and SEG matching need from one file of a series."""

    path: Path
    series_uid: str
    is_seg: bool
    fields: dict[str, str]
    contrast: bool
    referenced_series: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    """A classified row: where its series lies and when it was acquired."""

    row: ImageRow
    location: Path
    header: Header


def locate(local_path: str, roots: Sequence[Path]) -> Path:
    """The series location on disk; it must resolve under one of ``roots``.

    A relative ``local_path`` is taken relative to each root in turn (the first that exists).
    """
    if not local_path:
        raise RowProblem(NO_IMAGES, "image_occurrence.local_path is empty")
    path = Path(local_path)
    if not path.is_absolute():
        options = [root / path for root in roots]
        path = next((p for p in options if p.exists()), options[0] if options else path)
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise RowProblem(PATH_OUTSIDE_DICOM_ROOTS, f"{local_path} is outside every DICOM root")
    return resolved


def _files(location: Path) -> list[Path]:
    try:
        if location.is_dir():
            return sorted(p for p in location.iterdir() if p.is_file())
        if location.is_file():
            return [location]
    except PermissionError as exc:
        raise RowProblem(PERMISSION_DENIED, f"{location}: {exc.strerror}") from exc
    raise RowProblem(NO_IMAGES, f"{location} does not exist")


def header_of(path: Path) -> Header | None:
    """The header of one DICOM file, or None if it is not a readable DICOM file."""
    if not is_dicom_file(path):
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except PermissionError as exc:
        raise RowProblem(PERMISSION_DENIED, f"{path}: {exc.strerror}") from exc
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError):
        return None
    referenced = tuple(
        str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", [])
    )
    contrast = bool(str(ds.get("ContrastBolusAgent", "")).strip()) or bool(
        str(ds.get("ContrastBolusRoute", "")).strip()
    )
    return Header(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        is_seg=ds.get("SOPClassUID", "") == SEG_SOP_CLASS or ds.get("Modality", "") == "SEG",
        fields={k: str(ds.get(k, "")) for k in ("SeriesDescription", "ProtocolName")},
        contrast=contrast,
        referenced_series=referenced,
    )


def series_header(location: Path, series_uid: str) -> Header:
    """The first readable header of ``series_uid`` at ``location`` (a folder or one file)."""
    files = _files(location)
    readable = False
    for path in files:
        header = header_of(path)
        if header is None:
            continue
        readable = True
        if header.series_uid == series_uid:
            return header
    if files and not readable:
        raise RowProblem(UNREADABLE_FILE, f"no readable DICOM file at {location}")
    raise RowProblem(NO_IMAGES, f"no file of series {series_uid} at {location}")


def candidates(
    rows: Iterable[ImageRow], roots: Sequence[Path], sequence_map: SequenceMap
) -> tuple[dict[str, list[Candidate]], list[Candidate], list[str]]:
    """Classified candidates per sequence, SEG rows, and the reasons of rows that failed."""
    by_sequence: dict[str, list[Candidate]] = {}
    segs: list[Candidate] = []
    problems: list[str] = []
    for row in rows:
        try:
            location = locate(row.local_path, roots)
            header = series_header(location, row.series_uid)
        except RowProblem as exc:
            log.info("image_occurrence %d: %s", row.image_occurrence_id, exc)
            problems.append(exc.reason)
            continue
        if header.is_seg:
            segs.append(Candidate(row, location, header))
            continue
        sequence = sequence_map.classify(header.fields, contrast=header.contrast)
        if sequence is None:
            log.info("image_occurrence %d: no sequence for %s", row.image_occurrence_id, header)
            problems.append(UNCLASSIFIED_SERIES)
            continue
        by_sequence.setdefault(sequence, []).append(Candidate(row, location, header))
    return by_sequence, segs, problems


def preference(index_date: date) -> Callable[[Candidate], tuple[bool, int, int]]:
    """Sort key of candidates: pre-operative (on/before index) first, closest, lowest id."""

    def key(candidate: Candidate) -> tuple[bool, int, int]:
        days = (candidate.row.on - index_date).days
        return (days > 0, abs(days), candidate.row.image_occurrence_id)

    return key


def choose(options: list[Candidate], index_date: date) -> tuple[Candidate, Volume] | str:
    """The first candidate (in preference order) whose series reads; else the first reason."""
    reasons = []
    for candidate in sorted(options, key=preference(index_date)):
        try:
            volume = read_series(candidate.location, series_uid=candidate.row.series_uid)
        except SeriesRejected as exc:
            log.info("series of image_occurrence %d: %s", candidate.row.image_occurrence_id, exc)
            reasons.append(exc.reason.value)
            continue
        except PermissionError as exc:
            log.info("series at %s: %s", candidate.location, exc.strerror)
            reasons.append(PERMISSION_DENIED)
            continue
        return candidate, volume
    return reasons[0]


def seg_files_near(folders: Iterable[Path], roots: Sequence[Path]) -> list[Path]:
    """SEG files in the sibling folders of the chosen series' folders (where exports put them).

    The chosen folders themselves are not read again (their SEG files are in the volumes'
    ``meta.skipped``). A sibling whose first DICOM file is an image of another series is left
    after that one header read: a folder holds one series. Nothing above a DICOM root is read.
    """
    resolved_roots = [r.resolve() for r in roots]
    chosen = set(folders)
    siblings: list[Path] = []
    for folder in chosen:
        parent = folder.parent
        if any(parent.is_relative_to(r) for r in resolved_roots):
            try:
                siblings.extend(p for p in parent.iterdir() if p.is_dir() and p not in chosen)
            except PermissionError:
                continue
    found: list[Path] = []
    for folder in sorted(set(siblings)):
        found.extend(_segs_in(folder))
    return found


def _segs_in(folder: Path) -> list[Path]:
    found = []
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
    except PermissionError:
        return []
    for path in files:
        header = header_of(path)
        if header is None:
            continue
        if not header.is_seg:
            break
        found.append(path)
    return found


def pick_seg(
    paths: Iterable[Path], chosen: dict[str, str], reference: str = "FLAIR"
) -> Path | None:
    """The SEG referencing the reference sequence's series, else any chosen series; by path."""
    matches: list[tuple[bool, Path]] = []
    wanted = set(chosen.values())
    for path in sorted(set(paths)):
        header = header_of(path)
        if header is None or not header.is_seg:
            continue
        referenced = set(header.referenced_series)
        if referenced & wanted:
            matches.append((chosen.get(reference) not in referenced, path))
    return min(matches)[1] if matches else None
