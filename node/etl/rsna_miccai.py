"""Import the RSNA-MICCAI 2021 brain-tumour dataset into a site's OMOP CDM.

Per patient folder: a person, an observation period, a visit, a glioblastoma condition, an MRI
procedure, an MGMT measurement (when the labels file has the patient) and one image_occurrence
per readable series. Each patient is written in its own transaction, so a patient is in the
CDM whole or not at all; ``person_source_value`` (``BraTS21ID:<id>``) makes a rerun skip
patients already there, so importing twice adds nothing. The concepts the rows use are added
to the vocabulary when missing, so cohorts over the imported data are not silently empty.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from cohorts.db import Database
from cohorts.load import insert_dataframe
from node.concept_map import ConceptMap
from node.etl.errors import EtlTargetError
from node.etl.scan import PatientFound, Skipped, read_labels, scan_tree
from node.synth import vocabulary as v

log = logging.getLogger(__name__)

SOURCE_PREFIX = "BraTS21ID:"


@dataclass
class ImportReport:
    """What an import did: imported and already present patients, and every skipped item."""

    imported: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    series: int = 0
    mgmt_measurements: int = 0
    default_dates: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))


@dataclass(frozen=True)
class ImportOptions:
    default_date: date = date(2021, 1, 1)  # when a patient's headers carry no StudyDate
    default_age: int = 50  # when they carry no PatientAge (the dataset's are adults)


def _ensure_vocabulary(conn: Connection, db: Database) -> None:
    """Add the concept and concept_ancestor rows the import uses, where missing."""
    concept = db.qualified(db.schemas.vocab, "concept")
    ancestor = db.qualified(db.schemas.vocab, "concept_ancestor")
    present = {r[0] for r in conn.execute(sa.text(f"SELECT concept_id FROM {concept}"))}
    frame = v.concept_frame()
    insert_dataframe(conn, concept, frame[~frame["concept_id"].isin(present)])
    pairs = {
        tuple(r)
        for r in conn.execute(
            sa.text(f"SELECT ancestor_concept_id, descendant_concept_id FROM {ancestor}")
        )
    }
    frame = v.concept_ancestor_frame()
    keep = [
        (a, d) not in pairs
        for a, d in zip(frame["ancestor_concept_id"], frame["descendant_concept_id"], strict=True)
    ]
    insert_dataframe(conn, ancestor, frame[keep])


def _next_ids(conn: Connection, db: Database) -> dict[str, int]:
    keys = {
        "person": "person_id",
        "observation_period": "observation_period_id",
        "visit_occurrence": "visit_occurrence_id",
        "condition_occurrence": "condition_occurrence_id",
        "procedure_occurrence": "procedure_occurrence_id",
        "measurement": "measurement_id",
        "image_occurrence": "image_occurrence_id",
    }
    return {
        table: int(
            conn.execute(
                sa.text(
                    f"SELECT COALESCE(MAX({key}), 0) + 1 FROM {db.qualified(db.schemas.cdm, table)}"
                )
            ).scalar_one()
        )
        for table, key in keys.items()
    }


def _patient_frames(
    patient: PatientFound,
    label: int | None,
    ids: dict[str, int],
    when: date,
    options: ImportOptions,
    concept_map: ConceptMap,
) -> dict[str, pd.DataFrame]:
    pid, vid, proc = ids["person"], ids["visit_occurrence"], ids["procedure_occurrence"]
    gender = {"M": v.MALE, "F": v.FEMALE}.get(patient.sex or "", 0)
    age = patient.age_years if patient.age_years is not None else options.default_age
    frames = {
        "person": [
            {
                "person_id": pid,
                "gender_concept_id": gender,
                "year_of_birth": when.year - age,
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
                "person_source_value": SOURCE_PREFIX + patient.brats_id,
                "gender_source_value": patient.sex,
            }
        ],
        "observation_period": [
            {
                "observation_period_id": ids["observation_period"],
                "person_id": pid,
                "observation_period_start_date": when,
                "observation_period_end_date": when,
                "period_type_concept_id": v.EHR,
            }
        ],
        "visit_occurrence": [
            {
                "visit_occurrence_id": vid,
                "person_id": pid,
                "visit_concept_id": v.OUTPATIENT_VISIT,
                "visit_start_date": when,
                "visit_end_date": when,
                "visit_type_concept_id": v.EHR,
            }
        ],
        "condition_occurrence": [
            {
                "condition_occurrence_id": ids["condition_occurrence"],
                "person_id": pid,
                "condition_concept_id": v.GLIOBLASTOMA,
                "condition_start_date": when,
                "condition_type_concept_id": v.EHR,
                "visit_occurrence_id": vid,
                "condition_source_value": "RSNA-MICCAI 2021 glioblastoma",
            }
        ],
        "procedure_occurrence": [
            {
                "procedure_occurrence_id": proc,
                "person_id": pid,
                "procedure_concept_id": v.MRI_BRAIN,
                "procedure_date": when,
                "procedure_type_concept_id": v.EHR,
                "visit_occurrence_id": vid,
            }
        ],
        "image_occurrence": [
            {
                "image_occurrence_id": ids["image_occurrence"] + i,
                "person_id": pid,
                "procedure_occurrence_id": proc,
                "visit_occurrence_id": vid,
                "local_path": str(s.folder),
                "image_occurrence_date": s.study_date or when,
                "image_study_uid": s.study_uid,
                "image_series_uid": s.series_uid,
                "modality_concept_id": v.MODALITY_MR,
            }
            for i, s in enumerate(patient.series)
        ],
    }
    if label is not None:
        mgmt = concept_map.marker("mgmt")
        klass = mgmt.classes[label]
        value = min(cid for cid, name in mgmt.value_concepts.items() if name == klass)
        frames["measurement"] = [
            {
                "measurement_id": ids["measurement"],
                "person_id": pid,
                "measurement_concept_id": mgmt.test_concept_ids[0],
                "measurement_date": when,
                "measurement_type_concept_id": v.EHR,
                "value_as_concept_id": value,
                "value_source_value": f"MGMT_value={label}",
                "visit_occurrence_id": vid,
            }
        ]
    return {table: pd.DataFrame(rows) for table, rows in frames.items()}


def _import_patient(
    db: Database,
    patient: PatientFound,
    label: int | None,
    options: ImportOptions,
    concept_map: ConceptMap,
) -> bool:
    """One patient in one transaction; False when the patient was already imported."""
    person = db.qualified(db.schemas.cdm, "person")
    with db.begin() as conn:
        found = conn.execute(
            sa.text(f"SELECT 1 FROM {person} WHERE person_source_value = :s"),
            {"s": SOURCE_PREFIX + patient.brats_id},
        ).first()
        if found:
            return False
        dates = [s.study_date for s in patient.series if s.study_date]
        when = min(dates) if dates else options.default_date
        frames = _patient_frames(patient, label, _next_ids(conn, db), when, options, concept_map)
        for table, frame in frames.items():
            insert_dataframe(conn, db.qualified(db.schemas.cdm, table), frame)
    return True


def _check_target(db: Database) -> None:
    try:
        with db.connect() as conn:
            conn.execute(
                sa.text(
                    f"SELECT 1 FROM {db.qualified(db.schemas.cdm, 'image_occurrence')} WHERE 1 = 0"
                )
            )
    except DBAPIError:
        raise EtlTargetError(
            f"{db.display_url}: the CDM tables are missing",
            hint="create them with `omopfed db init --settings ...`",
        ) from None


def import_rsna_miccai(
    root: Path,
    labels_path: Path,
    db: Database,
    concept_map: ConceptMap,
    options: ImportOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import every patient folder under ``root``; return the report (nothing raised per item)."""
    options = options or ImportOptions()
    labels = read_labels(labels_path)
    patients, skipped = scan_tree(root)
    _check_target(db)
    report = ImportReport(skipped=skipped)
    folders = {p.brats_id for p in patients}
    report.skipped += [Skipped(i, "label_without_folder") for i in sorted(set(labels) - folders)]
    with db.begin() as conn:
        _ensure_vocabulary(conn, db)
    for done, patient in enumerate(patients, start=1):
        if progress:
            progress(done, len(patients))
        if not patient.series:
            report.skipped.append(Skipped(patient.brats_id, "no_readable_series"))
            continue
        label = labels.get(patient.brats_id)
        if not _import_patient(db, patient, label, options, concept_map):
            report.already_present.append(patient.brats_id)
            continue
        report.imported.append(patient.brats_id)
        report.series += len(patient.series)
        report.default_dates += not any(s.study_date for s in patient.series)
        if label is None:
            report.skipped.append(Skipped(patient.brats_id, "folder_without_label"))
        else:
            report.mgmt_measurements += 1
    log.info(
        "RSNA-MICCAI import from %s: %d imported, %d skipped items",
        root,
        len(report.imported),
        len(report.skipped),
    )
    return report
