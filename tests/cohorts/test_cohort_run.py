"""Running cohorts on both backends: the three forms agree, rows are stored, counts hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from cohorts.db import Database
from cohorts.errors import CohortQueryError, CohortTimeoutError, EmptyConceptSetError
from cohorts.execute import execute
from cohorts.loader import load_definition, sql_definition
from cohorts.runner import run_cohort
from tests.cohorts import cdm

DEFINITIONS = Path(__file__).resolve().parents[2] / "cohorts" / "definitions"
FORMS = ["reference_glioma.json", "reference_glioma.sql", "reference_glioma.circe.json"]


@pytest.fixture
def site(cdm_url: str) -> Database:
    return cdm.build(cdm_url)


def _stored(db: Database, cohort_id: int) -> dict[int, tuple]:
    table = db.qualified(db.schemas.results, "cohort")
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT subject_id, cohort_start_date, cohort_end_date FROM {table} "
                "WHERE cohort_definition_id = :id"
            ),
            {"id": cohort_id},
        ).all()
    return {int(r[0]): (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("form", FORMS)
def test_reference_cohort_exact_rows(site: Database, form: str) -> None:
    run_cohort(site, load_definition(DEFINITIONS / form), 1, min_cell_count=1)
    assert _stored(site, 1) == cdm.EXPECTED


@pytest.mark.parametrize("form", ["reference_glioma.json", "reference_glioma.circe.json"])
def test_attrition_matches_hand_counts(site: Database, form: str) -> None:
    execution = execute(site, load_definition(DEFINITIONS / form), timeout_s=60, allow_empty=False)
    assert [execution.index_persons, *execution.rule_persons] == cdm.EXPECTED_ATTRITION


def test_run_replaces_rows_and_records_definition(site: Database) -> None:
    sql = sql_definition(
        "SELECT person_id AS subject_id, DATE '2020-01-01' AS cohort_start_date, "
        "DATE '2020-01-02' AS cohort_end_date FROM @cdm_schema.person WHERE person_id <= 3",
        name="three",
    )
    run_cohort(site, sql, 7, min_cell_count=1)
    native = load_definition(DEFINITIONS / "reference_glioma.json")
    run_cohort(site, native, 7, min_cell_count=1)
    assert _stored(site, 7) == cdm.EXPECTED
    registry = site.qualified(site.schemas.results, "cohort_definition")
    with site.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT definition_kind, definition_hash, cohort_definition_name, "
                f"definition_type_concept_id, subject_concept_id, recorded_at FROM {registry} "
                "WHERE cohort_definition_id = 7"
            )
        ).all()
    assert len(rows) == 1
    kind, digest, name, type_concept, subject_concept, recorded = rows[0]
    assert (kind, digest, name) == ("json", native.sha256, native.name)
    assert (type_concept, subject_concept) == (0, 0) and recorded is not None


def test_small_counts_are_suppressed(site: Database) -> None:
    report = run_cohort(
        site, load_definition(DEFINITIONS / "reference_glioma.json"), 1, min_cell_count=6
    )
    shown = json.dumps(report.to_dict())
    assert [s.persons for s in report.attrition] == ["9", "8", "<6", "<6"]
    assert report.persons == "<6" and report.rows == "<6"
    assert '"5"' not in shown and '"4"' not in shown


def test_empty_vocabulary_is_an_error(cdm_url: str) -> None:
    db = cdm.build(cdm_url, with_vocabulary=False)
    for form in ("reference_glioma.json", "reference_glioma.circe.json"):
        with pytest.raises(EmptyConceptSetError, match=r"glioma|Glioma"):
            run_cohort(db, load_definition(DEFINITIONS / form), 1, min_cell_count=5)
    report = run_cohort(
        db,
        load_definition(DEFINITIONS / "reference_glioma.json"),
        1,
        min_cell_count=5,
        allow_empty_concept_sets=True,
    )
    assert report.empty and report.persons == "<5"


def test_query_past_timeout_is_cancelled(site: Database) -> None:
    slow = sql_definition(
        "SELECT count(*) AS subject_id, DATE '2020-01-01' AS cohort_start_date, "
        "DATE '2020-01-01' AS cohort_end_date "
        "FROM generate_series(1, 200000) a, generate_series(1, 200000) b",
        name="slow",
    )
    with pytest.raises(CohortTimeoutError):
        run_cohort(site, slow, 1, min_cell_count=5, timeout_s=0.5)


def test_sql_definition_cannot_write(site: Database) -> None:
    """The database itself refuses writes the scanner would not see (defence in depth)."""
    sneaky = sql_definition(
        "SELECT person_id AS subject_id, DATE '2020-01-01' AS cohort_start_date, "
        "DATE '2020-01-01' AS cohort_end_date FROM @cdm_schema.person "
        "WHERE person_id IN (SELECT nextval('omopfed_no_such_sequence'))",
        name="sneaky",
    )
    with pytest.raises(CohortQueryError):
        run_cohort(site, sneaky, 1, min_cell_count=5)


def test_sql_definition_must_return_cohort_columns(site: Database) -> None:
    wrong = sql_definition("SELECT person_id FROM @cdm_schema.person", name="wrong")
    with pytest.raises(CohortQueryError, match="subject_id"):
        run_cohort(site, wrong, 1, min_cell_count=5)
