"""Real ATLAS exports (OHDSI PhenotypeLibrary 789 and 792) run through the translator."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd

from cohorts.db import Database
from cohorts.execute import execute
from cohorts.load import insert_dataframe
from cohorts.loader import load_definition
from cohorts.schema import init_cdm

DATA = Path(__file__).resolve().parents[1] / "data" / "cohorts"
GBM = 37116832  # an item of PhenotypeLibrary 789's "GBM" concept set


def _with_vocabulary(url: str, export: Path) -> Database:
    """A CDM whose concept table holds every concept the export's concept sets name."""
    db = Database(url, must_exist=False)
    init_cdm(db)
    ids = sorted(
        {
            item["concept"]["CONCEPT_ID"]
            for cs in json.loads(export.read_text())["ConceptSets"]
            for item in cs["expression"]["items"]
        }
    )
    concept = pd.DataFrame(
        {
            "concept_id": ids,
            "concept_name": "c",
            "domain_id": "Condition",
            "vocabulary_id": "SNOMED",
            "concept_class_id": "Clinical Finding",
            "concept_code": [str(i) for i in ids],
            "valid_start_date": date(2000, 1, 1),
            "valid_end_date": date(2099, 12, 31),
        }
    )
    person = pd.DataFrame(
        {
            "person_id": [1, 2],
            "gender_concept_id": 8507,
            "year_of_birth": 1960,
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
        }
    )
    op = pd.DataFrame(
        {
            "observation_period_id": [1, 2],
            "person_id": [1, 2],
            "observation_period_start_date": [date(2000, 1, 1), date(2020, 1, 1)],
            "observation_period_end_date": date(2023, 12, 31),
            "period_type_concept_id": 0,
        }
    )
    condition = pd.DataFrame(
        {
            "condition_occurrence_id": [1, 2],
            "person_id": [1, 2],
            "condition_concept_id": GBM,
            "condition_start_date": date(2020, 3, 1),
            "condition_type_concept_id": 0,
        }
    )
    with db.begin() as conn:
        insert_dataframe(conn, db.qualified(db.schemas.vocab, "concept"), concept)
        insert_dataframe(conn, db.qualified(db.schemas.cdm, "person"), person)
        insert_dataframe(conn, db.qualified(db.schemas.cdm, "observation_period"), op)
        insert_dataframe(conn, db.qualified(db.schemas.cdm, "condition_occurrence"), condition)
    return db


def test_phenotype_789_gbm(cdm_url: str) -> None:
    """Person 2 has only 60 days of prior observation; 789 requires 365."""
    export = DATA / "PhenotypeLibrary_789.json"
    db = _with_vocabulary(cdm_url, export)
    result = execute(db, load_definition(export), timeout_s=120, allow_empty=False)
    assert result.rows == [(1, date(2020, 3, 1), date(2023, 12, 31))]


def test_phenotype_792_runs(cdm_url: str) -> None:
    export = DATA / "PhenotypeLibrary_792.json"
    db = _with_vocabulary(cdm_url, export)
    definition = load_definition(export)
    result = execute(db, definition, timeout_s=120, allow_empty=False)
    assert result.rows == []
    assert len(result.rule_persons) == len(definition.rule_names) == 4
