"""A site plan as OMOP CDM rows (one DataFrame per table), and writing them in one transaction.

Label values are written *through the concept map*: the class a subject carries becomes the
map's value concept (or its source string, or a numeric score on the right side of the map's
threshold), so what the resolver reads back with the same map is what the plan intended.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date

import pandas as pd
import sqlalchemy as sa

from cohorts.db import Database
from cohorts.ddl import VOCAB_TABLES as VOCABULARY_TABLES
from cohorts.load import insert_dataframe
from cohorts.schema import init_cdm
from node.concept_map import ConceptMap, MarkerMap
from node.synth import vocabulary as v
from node.synth.dicom import SeriesSpec
from node.synth.errors import SynthOutputError
from node.synth.subjects import MARKERS, Subject

log = logging.getLogger(__name__)

_INT_COLUMNS = {
    "visit_occurrence_id",
    "value_as_concept_id",
    "unit_concept_id",
    "image_occurrence_id",
    "person_id",
}


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in _INT_COLUMNS & set(frame.columns):
        frame[column] = frame[column].astype("Int64")
    return frame


class _Visits:
    """One outpatient visit per person and date, numbered as they are asked for."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []
        self._ids: dict[tuple[int, date], int] = {}

    def id_for(self, person_id: int, on: date) -> int:
        key = (person_id, on)
        if key not in self._ids:
            self._ids[key] = len(self._ids) + 1
            self.rows.append(
                {
                    "visit_occurrence_id": self._ids[key],
                    "person_id": person_id,
                    "visit_concept_id": v.OUTPATIENT_VISIT,
                    "visit_start_date": on,
                    "visit_end_date": on,
                    "visit_type_concept_id": v.EHR,
                }
            )
        return self._ids[key]


def _class_concept(marker: MarkerMap, name: str) -> int:
    return min(cid for cid, klass in marker.value_concepts.items() if klass == name)


def _class_source(marker: MarkerMap, name: str) -> str:
    return min(text for text, klass in marker.value_source_values.items() if klass == name).title()


def _measurement_values(s: Subject, marker_name: str, marker: MarkerMap) -> list[dict[str, object]]:
    """The value columns of the rows recording one marker of one subject (zero, one or two)."""
    how = s.recorded.get(marker_name, "missing")
    truth = s.labels.get(marker_name)
    if how == "missing" or truth is None:
        return []
    if how == "null":
        return [{}]
    if how == "numeric":
        unit = marker.numeric.unit if marker.numeric else ""
        return [
            {
                "value_as_number": s.mgmt_score,
                "unit_concept_id": v.PERCENT,
                "unit_source_value": unit,
            }
        ]
    if how == "source":
        return [{"value_as_concept_id": 0, "value_source_value": _class_source(marker, truth)}]
    rows = [{"value_as_concept_id": _class_concept(marker, truth), "value_source_value": truth}]
    if how == "conflict":
        other = next(c for c in marker.classes if c != truth)
        rows.append(
            {"value_as_concept_id": _class_concept(marker, other), "value_source_value": other}
        )
    return rows


def _measurements(subjects: Iterable[Subject], concept_map: ConceptMap) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    for s in subjects:
        for marker_name in MARKERS:
            marker = concept_map.marker(marker_name)
            on = s.mgmt_date if marker_name == "mgmt" else s.label_date
            for values in _measurement_values(s, marker_name, marker):
                rows.append(
                    {
                        "measurement_id": len(rows) + 1,
                        "person_id": s.person_id,
                        "measurement_concept_id": marker.test_concept_ids[0],
                        "measurement_date": on,
                        "measurement_type_concept_id": v.EHR,
                        "measurement_source_value": marker_name,
                        "value_as_number": None,
                        "value_as_concept_id": None,
                        "unit_concept_id": None,
                        "unit_source_value": None,
                        "value_source_value": None,
                        **values,
                    }
                )
    return _frame(rows)


def _clinical(subjects: list[Subject], visits: _Visits) -> dict[str, pd.DataFrame]:
    persons: list[dict[str, object]] = []
    periods: list[dict[str, object]] = []
    conditions: list[dict[str, object]] = []
    procedures: list[dict[str, object]] = []
    for s in subjects:
        persons.append(
            {
                "person_id": s.person_id,
                "gender_concept_id": s.gender,
                "year_of_birth": s.year_of_birth,
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
                "person_source_value": s.source_id,
                "gender_source_value": "M" if s.gender == v.MALE else "F",
            }
        )
        periods.append(
            {
                "observation_period_id": s.person_id,
                "person_id": s.person_id,
                "observation_period_start_date": s.obs_start,
                "observation_period_end_date": s.obs_end,
                "period_type_concept_id": v.EHR,
            }
        )
        for on in (s.index_date, s.second_condition_date):
            if on is not None:
                conditions.append(
                    {
                        "condition_occurrence_id": len(conditions) + 1,
                        "person_id": s.person_id,
                        "condition_concept_id": s.condition_concept_id,
                        "condition_start_date": on,
                        "condition_type_concept_id": v.EHR,
                        "visit_occurrence_id": visits.id_for(s.person_id, on),
                        "condition_source_value": str(s.condition_concept_id),
                    }
                )
        if s.mri_date is not None:
            procedures.append(
                {
                    "procedure_occurrence_id": s.person_id,
                    "person_id": s.person_id,
                    "procedure_concept_id": v.MRI_BRAIN,
                    "procedure_date": s.mri_date,
                    "procedure_type_concept_id": v.EHR,
                    "visit_occurrence_id": visits.id_for(s.person_id, s.mri_date),
                    "procedure_source_value": "MRI BRAIN W/WO CONTRAST",
                }
            )
    return {
        "person": _frame(persons),
        "observation_period": _frame(periods),
        "condition_occurrence": _frame(conditions),
        "procedure_occurrence": _frame(procedures),
    }


def _imaging(
    subjects: list[Subject], specs: dict[int, list[SeriesSpec]], visits: _Visits
) -> dict[str, pd.DataFrame]:
    occurrences: list[dict[str, object]] = []
    features: list[dict[str, object]] = []
    for s in subjects:
        for spec in specs.get(s.person_id, []):
            assert s.mri_date is not None
            occurrence_id = len(occurrences) + 1
            occurrences.append(
                {
                    "image_occurrence_id": occurrence_id,
                    "person_id": s.person_id,
                    "procedure_occurrence_id": s.person_id,
                    "visit_occurrence_id": visits.id_for(s.person_id, s.mri_date),
                    "local_path": str(spec.folder),
                    "image_occurrence_date": s.mri_date,
                    "image_study_uid": spec.study_uid,
                    "image_series_uid": spec.series_uid,
                    "modality_concept_id": v.MODALITY_MR,
                }
            )
            features.append(
                {
                    "image_feature_id": occurrence_id,
                    "person_id": s.person_id,
                    "image_occurrence_id": occurrence_id,
                    "image_feature_concept_id": v.SEQUENCE_FEATURES[spec.sequence],
                    "image_feature_type_concept_id": v.EHR,
                    "alg_system": f"omopfed-synth SeriesDescription={spec.description}",
                }
            )
    return {"image_occurrence": _frame(occurrences), "image_feature": _frame(features)}


def site_frames(
    subjects: list[Subject], specs: dict[int, list[SeriesSpec]], concept_map: ConceptMap, site: str
) -> dict[str, pd.DataFrame]:
    """Every CDM table of one site as a DataFrame (vocabulary included), keyed by table."""
    visits = _Visits()
    frames = _clinical(subjects, visits)
    frames["measurement"] = _measurements(subjects, concept_map)
    frames.update(_imaging(subjects, specs, visits))
    frames["visit_occurrence"] = _frame(visits.rows)
    frames["cdm_source"] = pd.DataFrame(
        [
            {
                "cdm_source_name": f"omopfed synthetic {site}",
                "cdm_source_abbreviation": site,
                "cdm_holder": "omopfed",
                "source_release_date": date(2024, 1, 1),
                "cdm_release_date": date(2024, 1, 1),
                "cdm_version": "v5.4",
                "cdm_version_concept_id": v.CDM_V54,
                "vocabulary_version": "omopfed-synthetic-1",
            }
        ]
    )
    frames.update(v.vocabulary_frames())
    return frames


def write_site_database(
    db: Database, frames: dict[str, pd.DataFrame], *, replace: bool
) -> dict[str, int]:
    """Create the CDM and load every frame in ONE transaction; return rows per table.

    A CDM that already holds persons is refused (ids would collide) unless ``replace``, which
    empties the site's tables first, inside the same transaction.
    """
    init_cdm(db)
    counts = {}
    with db.begin() as conn:
        person = db.qualified(db.schemas.cdm, "person")
        existing = int(conn.execute(sa.text(f"SELECT count(*) FROM {person}")).scalar_one())
        if existing and not replace:
            raise SynthOutputError(
                f"{db.display_url}: schema {db.schemas.cdm!r} already holds {existing} persons",
                hint="pass --force to replace the synthetic site",
            )
        for table, frame in frames.items():
            schema = db.schemas.vocab if table in VOCABULARY_TABLES else db.schemas.cdm
            target = db.qualified(schema, table)
            if replace:
                conn.execute(sa.text(f"DELETE FROM {target}"))
            counts[table] = insert_dataframe(conn, target, frame)
    log.info("%s: %d rows loaded", db.display_url, sum(counts.values()))
    return counts
