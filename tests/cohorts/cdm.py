"""A small hand-built CDM whose reference-cohort membership is known person by person.

Each person exercises one edge of the reference glioma cohort (definition id 1): the expected
rows below are derived by hand from the rules, not by running any of the definitions.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from cohorts.db import Database
from cohorts.load import insert_dataframe
from cohorts.schema import init_cdm

GLIOMA, GBM_4174444, GBM_40571980, GLIOMA_101, DISTRACTOR = (
    2000000100,
    4174444,
    40571980,
    2000000101,
    2000000103,
)
MGMT, MRI, MALE, FEMALE = 2000000201, 37311324, 8507, 8532
OP_END = date(2023, 12, 31)

# person_id: (year_of_birth, gender, condition (concept, date) list, mgmt dates, mri dates)
PEOPLE = {
    1: (1960, MALE, [(GLIOMA, date(2020, 3, 1))], [date(2020, 3, 10)], [date(2020, 2, 15)]),
    2: (1970, FEMALE, [(GBM_40571980, date(2021, 5, 5))], [date(2021, 4, 5)], [date(2022, 5, 5)]),
    3: (2005, MALE, [(GLIOMA, date(2020, 1, 1))], [date(2020, 1, 2)], [date(2020, 1, 3)]),  # 15
    4: (2002, FEMALE, [(GLIOMA_101, date(2020, 12, 31))], [date(2021, 1, 1)], [date(2021, 1, 1)]),
    5: (1980, MALE, [(GLIOMA, date(2020, 6, 1))], [date(2020, 5, 1)], [date(2020, 6, 2)]),  # -31 d
    6: (1980, MALE, [(GLIOMA, date(2020, 6, 1))], [date(2021, 6, 2)], [date(2020, 6, 2)]),  # +366
    7: (1980, FEMALE, [(GLIOMA, date(2020, 6, 1))], [date(2021, 6, 1)], []),  # no MRI
    8: (1950, MALE, [(DISTRACTOR, date(2020, 6, 1))], [date(2020, 6, 1)], [date(2020, 6, 1)]),
    # first glioma diagnosis has no MGMT nearby; a later one would qualify, but index is FIRST
    9: (
        1950,
        FEMALE,
        [(GLIOMA, date(2015, 1, 1)), (GBM_4174444, date(2020, 1, 1))],
        [date(2020, 1, 5)],
        [date(2020, 1, 5)],
    ),
    10: (1955, MALE, [(GBM_4174444, date(2009, 6, 1))], [date(2009, 6, 2)], [date(2009, 6, 3)]),
    11: (1990, FEMALE, [(GLIOMA_101, date(2022, 2, 2))], [date(2022, 1, 3)], [date(2023, 2, 2)]),
}
# person 10's index lies before their observation period (2010-01-01 ..): not in the cohort
OP_START = {10: date(2010, 1, 1)}
EXPECTED = {  # subject_id -> (cohort_start_date, cohort_end_date)
    1: (date(2020, 3, 1), OP_END),
    2: (date(2021, 5, 5), OP_END),
    4: (date(2020, 12, 31), OP_END),
    11: (date(2022, 2, 2), OP_END),
}
# persons after: index event, age >= 18, MGMT, MRI (cumulative, as in the attrition table)
EXPECTED_ATTRITION = [9, 8, 5, 4]


def vocabulary() -> dict[str, pd.DataFrame]:
    concepts = [GLIOMA, GBM_4174444, GBM_40571980, GLIOMA_101, 2000000102, DISTRACTOR, MGMT, MRI]
    ancestry = [(GLIOMA, c) for c in (GLIOMA, GBM_4174444, GBM_40571980, GLIOMA_101, 2000000102)]
    ancestry += [(GBM_4174444, GBM_4174444), (GBM_4174444, GBM_40571980), (DISTRACTOR, DISTRACTOR)]
    concept = pd.DataFrame(
        {
            "concept_id": concepts,
            "concept_name": [f"concept {c}" for c in concepts],
            "domain_id": "Condition",
            "vocabulary_id": "omopfed",
            "concept_class_id": "Clinical Finding",
            "concept_code": [str(c) for c in concepts],
            "valid_start_date": date(2000, 1, 1),
            "valid_end_date": date(2099, 12, 31),
        }
    )
    ancestor = pd.DataFrame(
        ancestry, columns=["ancestor_concept_id", "descendant_concept_id"]
    ).assign(min_levels_of_separation=1, max_levels_of_separation=1)
    return {"concept": concept, "concept_ancestor": ancestor}


def clinical() -> dict[str, pd.DataFrame]:
    person, op, cond, meas, proc = [], [], [], [], []
    for pid, (yob, sex, conditions, mgmt, mri) in PEOPLE.items():
        person.append((pid, sex, yob, 0, 0))
        op.append((pid, pid, OP_START.get(pid, date(2000, 1, 1)), OP_END, 32817))
        for concept, day in conditions:
            cond.append((len(cond) + 1, pid, concept, day, 32817))
        meas += [(len(meas) + 1, pid, MGMT, day, 32817) for day in mgmt]
        proc += [(len(proc) + 1, pid, MRI, day, 32817) for day in mri]
    return {
        "person": pd.DataFrame(
            person,
            columns=[
                "person_id",
                "gender_concept_id",
                "year_of_birth",
                "race_concept_id",
                "ethnicity_concept_id",
            ],
        ),
        "observation_period": pd.DataFrame(
            op,
            columns=[
                "observation_period_id",
                "person_id",
                "observation_period_start_date",
                "observation_period_end_date",
                "period_type_concept_id",
            ],
        ),
        "condition_occurrence": pd.DataFrame(
            cond,
            columns=[
                "condition_occurrence_id",
                "person_id",
                "condition_concept_id",
                "condition_start_date",
                "condition_type_concept_id",
            ],
        ),
        "measurement": pd.DataFrame(
            meas,
            columns=[
                "measurement_id",
                "person_id",
                "measurement_concept_id",
                "measurement_date",
                "measurement_type_concept_id",
            ],
        ),
        "procedure_occurrence": pd.DataFrame(
            proc,
            columns=[
                "procedure_occurrence_id",
                "person_id",
                "procedure_concept_id",
                "procedure_date",
                "procedure_type_concept_id",
            ],
        ),
    }


def build(url: str, *, with_vocabulary: bool = True) -> Database:
    """Create the CDM at ``url`` and fill it; the returned Database is read-write."""
    db = Database(url, must_exist=False)
    init_cdm(db)
    tables = clinical() | (vocabulary() if with_vocabulary else {})
    with db.begin() as conn:
        for name, frame in tables.items():
            schema = db.schemas.vocab if name.startswith("concept") else db.schemas.cdm
            insert_dataframe(conn, db.qualified(schema, name), frame)
    return db
