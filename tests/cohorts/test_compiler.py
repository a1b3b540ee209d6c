"""What each native-JSON feature selects, run on both backends against hand-derived rows.

The small CDM of :mod:`tests.cohorts.cdm` plus a few rows added here (measurement values,
image series, a procedure after the observation period) make every feature of the format
decide membership for at least one person, so a change in the compiler's SQL that alters
meaning fails here. Expected rows and attrition are derived by hand from the data, in the
comments, never by running a definition.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from cohorts.db import Database
from cohorts.execute import execute
from cohorts.load import insert_dataframe
from cohorts.loader import json_definition
from tests.cohorts import cdm

DEFINITIONS = Path(__file__).resolve().parents[2] / "cohorts" / "definitions"
REFERENCE = json.loads((DEFINITIONS / "reference_glioma.json").read_text("utf-8"))
METHYLATED, UNMETHYLATED, MR, CT = 2000000301, 2000000302, 2000000401, 2000000402
END = cdm.OP_END


def _extra_rows(db: Database) -> None:
    """Values on the MGMT rows, image series, and an MRI after person 7's observation period."""
    concept = pd.DataFrame(
        {
            "concept_id": [METHYLATED, UNMETHYLATED, MR, CT],
            "concept_name": ["methylated", "unmethylated", "MR", "CT"],
            "domain_id": "Meas Value",
            "vocabulary_id": "omopfed",
            "concept_class_id": "Answer",
            "concept_code": ["m", "u", "MR", "CT"],
            "valid_start_date": date(2000, 1, 1),
            "valid_end_date": date(2099, 12, 31),
        }
    )
    images = pd.DataFrame(
        [  # person, date, modality: 1 and 11 in window with MR; 2 in window with CT; 4 too early
            (1, 1, date(2020, 3, 5), MR),
            (2, 2, date(2021, 5, 10), CT),
            (3, 4, date(2019, 1, 1), MR),
            (4, 11, date(2022, 2, 3), MR),
            (5, 11, date(2022, 2, 4), MR),
        ],
        columns=[
            "image_occurrence_id",
            "person_id",
            "image_occurrence_date",
            "modality_concept_id",
        ],
    ).assign(procedure_occurrence_id=0, image_study_uid="1.2", image_series_uid="1.2.3")
    late_mri = pd.DataFrame(
        {
            "procedure_occurrence_id": [100],
            "person_id": [7],
            "procedure_concept_id": [cdm.MRI],
            "procedure_date": [date(2024, 2, 1)],
            "procedure_type_concept_id": [32817],
        }
    )
    measurement = db.qualified(db.schemas.cdm, "measurement")
    with db.begin() as conn:
        insert_dataframe(conn, db.qualified(db.schemas.vocab, "concept"), concept)
        insert_dataframe(conn, db.qualified(db.schemas.cdm, "image_occurrence"), images)
        insert_dataframe(conn, db.qualified(db.schemas.cdm, "procedure_occurrence"), late_mri)
        conn.execute(
            sa.text(
                f"UPDATE {measurement} SET value_as_number = person_id * 10, "
                "value_as_concept_id = CASE WHEN person_id IN (1, 2) THEN :m ELSE :u END"
            ),
            {"m": METHYLATED, "u": UNMETHYLATED},
        )
    db.dispose()


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path_factory.mktemp('compiler') / 'cdm.duckdb'}"
    else:
        url = request.getfixturevalue("pg_server").create_database()
    db = cdm.build(url)
    _extra_rows(db)
    yield db
    db.dispose()


def _variant(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(REFERENCE)
    change(data)
    return data


def _rule(i: int, **values: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["inclusion_rules"][i].update(values)

    return change


def _set(**values: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        for path, value in values.items():
            target = data
            *parents, last = path.split("__")
            for key in parents:
                target = target[key]
            target[last] = value

    return change


def _chain(*changes: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        for one in changes:
            one(data)

    return change


def _add_rule(rule: dict[str, Any], concept_sets: dict[str, Any] | None = None) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["inclusion_rules"].append(rule)
        data["concept_sets"].update(concept_sets or {})

    return change


def _image_rule(**values: Any) -> Any:
    """The MRI procedure rule replaced by an image_occurrence rule."""

    def change(data: dict[str, Any]) -> None:
        data["concept_sets"]["mr"] = {"include": [{"concept_id": MR}]}
        data["inclusion_rules"][2] = {
            "kind": "image",
            "name": "image series",
            "window": {"start_days": -30, "end_days": 365},
            **values,
        }

    return change


REF_ROWS = cdm.EXPECTED
CASES: dict[str, tuple[Any, dict[int, tuple[date, date]], list[int]]] = {
    # persons after index, age >= 18, MGMT, MRI (then any added rule)
    "reference": (_set(), REF_ROWS, [9, 8, 5, 4]),
    # every glioma event: person 9's second diagnosis (2020-01-01) has MGMT and MRI nearby
    "all occurrences": (
        _set(index_event__occurrence="all"),
        {**REF_ROWS, 9: (date(2020, 1, 1), END)},
        [9, 8, 6, 5],
    ),
    "female only": (
        _add_rule({"kind": "sex", "name": "female", "concept_ids": [cdm.FEMALE]}),
        {k: v for k, v in REF_ROWS.items() if k in (2, 4, 11)},
        [9, 8, 5, 4, 3],
    ),
    "end 30 days after index": (
        _set(end={"rule": "days_after_index", "days": 30}),
        {
            1: (date(2020, 3, 1), date(2020, 3, 31)),
            2: (date(2021, 5, 5), date(2021, 6, 4)),
            4: (date(2020, 12, 31), date(2021, 1, 30)),
            11: (date(2022, 2, 2), date(2022, 3, 4)),
        },
        [9, 8, 5, 4],
    ),
    "end capped at observation end": (
        _set(end={"rule": "days_after_index", "days": 36_000}),
        REF_ROWS,
        [9, 8, 5, 4],
    ),
    # 4174444 and its descendant 40571980 excluded: persons 2 and 10 lose their diagnosis
    "excluded concepts": (
        _set(
            concept_sets__glioma={
                "include": [{"concept_id": cdm.GLIOMA, "descendants": True}],
                "exclude": [{"concept_id": cdm.GBM_4174444, "descendants": True}],
            }
        ),
        {k: v for k, v in REF_ROWS.items() if k in (1, 4, 11)},
        [8, 7, 4, 3],
    ),
    # two glioma diagnoses within ten years of the index: person 9 only (2015 and 2020)
    "min_count 2": (
        _set(
            inclusion_rules=[
                {
                    "kind": "event",
                    "name": "second diagnosis",
                    "domain": "condition",
                    "concept_set": "glioma",
                    "window": {"start_days": 0, "end_days": 3650},
                    "min_count": 2,
                }
            ]
        ),
        {9: (date(2015, 1, 1), END)},
        [9, 1],
    ),
    # observation starts 2000-01-01: 7665 days before the index means on/after 2020-12-26
    "prior observation": (
        _set(index_event__prior_observation_days=7665),
        {k: v for k, v in REF_ROWS.items() if k in (2, 4, 11)},
        [3, 3, 3, 3],
    ),
    # ... and 700 days after it means on/before 2022-01-30: person 11 (2022-02-02) is out
    "prior and post observation": (
        _set(index_event__prior_observation_days=7665, index_event__post_observation_days=700),
        {k: v for k, v in REF_ROWS.items() if k in (2, 4)},
        [2, 2, 2, 2],
    ),
    # value_as_number = 10 x person_id: 2 (20) and 4 (40) lie in [15, 60]
    "value range": (
        _rule(1, value_range={"min": 15, "max": 60}),
        {k: v for k, v in REF_ROWS.items() if k in (2, 4)},
        [9, 8, 2, 2],
    ),
    "value concept set": (
        _chain(
            _rule(1, value_concept_set="methylated"),
            _set(concept_sets__methylated={"include": [{"concept_id": METHYLATED}]}),
        ),
        {k: v for k, v in REF_ROWS.items() if k in (1, 2)},
        [9, 8, 2, 2],
    ),
    # image series instead of the MRI procedure: MR in window for 1 and 11, CT for 2
    "image with modality": (
        _image_rule(modality_concept_set="mr"),
        {k: v for k, v in REF_ROWS.items() if k in (1, 11)},
        [9, 8, 5, 2],
    ),
    "image of any modality": (
        _image_rule(),
        {k: v for k, v in REF_ROWS.items() if k in (1, 2, 11)},
        [9, 8, 5, 3],
    ),
    "two image series": (
        _image_rule(min_count=2),
        {k: v for k, v in REF_ROWS.items() if k == 11},
        [9, 8, 5, 1],
    ),
    # MRI up to ten years after: person 7's MRI (2024-02-01) lies after its observation period
    "late MRI counted": (
        _rule(2, window={"start_days": -30, "end_days": 3650}),
        {**REF_ROWS, 7: (date(2020, 6, 1), END)},
        [9, 8, 5, 5],
    ),
    "late MRI outside observation": (
        _rule(2, window={"start_days": -30, "end_days": 3650}, within_observation_period=True),
        REF_ROWS,
        [9, 8, 5, 4],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_native_feature_selects_hand_derived_rows(site: Database, case: str) -> None:
    change, rows, attrition = CASES[case]
    definition = json_definition(json.dumps(_variant(change)), source=case)
    execution = execute(site, definition, timeout_s=60, allow_empty=False)
    assert {r[0]: (r[1], r[2]) for r in execution.rows} == rows
    assert len(execution.rows) == len(rows), "one row per person"
    assert [execution.index_persons, *execution.rule_persons] == attrition
