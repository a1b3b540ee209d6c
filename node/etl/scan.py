"""Reading an RSNA-MICCAI 2021 tree and its labels file, before anything is written.

Everything that can be wrong with the input is found here, so the database is only touched
once the inputs are known good: a bad labels file stops the import before the first patient.
Odd items inside the tree (missing or empty sequence folders, non-DICOM or unreadable files)
are not errors: they are recorded as skipped items with a reason, as a steward expects from a
real export.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from node.etl.errors import EtlInputError

SEQUENCE_FOLDERS = ("FLAIR", "T1w", "T1wCE", "T2w")
LABEL_COLUMNS = ("BraTS21ID", "MGMT_value")


@dataclass(frozen=True)
class Skipped:
    item: str  # patient id, or patient/sequence[/file]
    reason: str


@dataclass(frozen=True)
class SeriesFound:
    folder: Path
    study_uid: str
    series_uid: str
    study_date: date | None
    files: int


@dataclass
class PatientFound:
    brats_id: str
    series: list[SeriesFound] = field(default_factory=list)
    sex: str | None = None
    age_years: int | None = None


def read_labels(path: Path) -> dict[str, int]:
    """BraTS21ID (as written, leading zeros kept) -> MGMT_value; EtlInputError when malformed."""
    if not path.is_file():
        raise EtlInputError(f"labels file {path} does not exist or is not a file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise EtlInputError(
                f"{path}: missing column(s) {', '.join(missing)}",
                hint=f"expected a header with {', '.join(LABEL_COLUMNS)}",
            )
        labels: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            brats_id = (row["BraTS21ID"] or "").strip()
            value = (row["MGMT_value"] or "").strip()
            if not brats_id.isdigit():
                raise EtlInputError(f"{path} line {line}: BraTS21ID {brats_id!r} is not a number")
            if value not in ("0", "1"):
                raise EtlInputError(f"{path} line {line}: MGMT_value {value!r} is not 0 or 1")
            key = brats_id.zfill(5)
            if key in labels:
                raise EtlInputError(f"{path} line {line}: BraTS21ID {brats_id} appears twice")
            labels[key] = int(value)
    return labels


def patients_root(root: Path) -> Path:
    """The folder holding the patient folders: ROOT itself or ROOT/train."""
    if not root.exists():
        raise EtlInputError(f"{root} does not exist")
    if not root.is_dir():
        raise EtlInputError(f"{root} is a file, not the dataset folder")
    train = root / "train"
    return train if train.is_dir() else root


def _read(path: Path) -> pydicom.Dataset | str:
    """The dataset, or the skip reason for a file that is not a readable DICOM image."""
    try:
        ds = pydicom.dcmread(path)
        _ = ds.SeriesInstanceUID, ds.StudyInstanceUID
        ds.pixel_array  # noqa: B018 - a truncated file fails here, not at dcmread
    except InvalidDicomError:
        return "non_dicom_file"
    except Exception:  # any decoding failure: the file is reported, the import goes on
        return "unreadable_file"
    return ds


def _study_date(ds: pydicom.Dataset) -> date | None:
    text = str(ds.get("StudyDate", "") or ds.get("SeriesDate", "") or "")
    try:
        return datetime.strptime(text, "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _scan_series(patient: PatientFound, folder: Path, skipped: list[Skipped]) -> None:
    item = f"{patient.brats_id}/{folder.name}"
    if not folder.is_dir():
        skipped.append(Skipped(item, "missing_sequence_folder"))
        return
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if not files:
        skipped.append(Skipped(item, "empty_folder"))
        return
    readable = []
    for path in files:
        result = _read(path)
        if isinstance(result, str):
            skipped.append(Skipped(f"{item}/{path.name}", result))
        else:
            readable.append(result)
    if not readable:
        skipped.append(Skipped(item, "no_readable_file"))
        return
    first = readable[0]
    patient.sex = patient.sex or str(first.get("PatientSex", "") or "") or None
    age = str(first.get("PatientAge", "") or "")
    if age[:3].isdigit() and age.endswith("Y"):
        patient.age_years = int(age[:3])
    patient.series.append(
        SeriesFound(
            folder=folder.resolve(),
            study_uid=str(first.StudyInstanceUID),
            series_uid=str(first.SeriesInstanceUID),
            study_date=_study_date(first),
            files=len(readable),
        )
    )


def scan_tree(root: Path) -> tuple[list[PatientFound], list[Skipped]]:
    """Every patient folder with its readable series, and what was skipped and why."""
    skipped: list[Skipped] = []
    patients = []
    for folder in sorted(patients_root(root).iterdir()):
        if not (folder.is_dir() and folder.name.isdigit()):
            skipped.append(Skipped(folder.name, "not_a_patient_folder"))
            continue
        patient = PatientFound(folder.name.zfill(5))
        for sequence in SEQUENCE_FOLDERS:
            _scan_series(patient, folder / sequence, skipped)
        patients.append(patient)
    return patients, skipped
