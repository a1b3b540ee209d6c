"""The CDM schema on both backends, compared with OHDSI's spec CSV programmatically."""

from __future__ import annotations

import csv

import pytest
import sqlalchemy as sa

from cohorts import ddl
from cohorts.db import Database, Schemas
from cohorts.errors import SchemaError
from cohorts.schema import check_cdm, init_cdm, table_counts

INT_TYPES = {"INTEGER", "INT", "INT4"}


def _spec_rows() -> list[dict[str, str]]:
    rows = []
    for name in ddl.SPEC_FILES:
        with (ddl.sql_dir() / "spec" / name).open(encoding="utf-8-sig", newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def _live_columns(db: Database) -> dict[tuple[str, str], tuple[str, str]]:
    sql = sa.text(
        "SELECT table_name, column_name, upper(data_type), is_nullable "
        "FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema IN ('cdm', 'results')"
    )
    with db.connect() as conn:
        return {(t, c): (dt, n) for t, c, dt, n in conn.execute(sql)}


def test_committed_ddl_matches_the_spec() -> None:
    for dialect in ddl.DIALECTS:
        assert ddl.ddl_path(dialect).read_text("utf-8") == ddl.render_ddl(dialect), (
            f"sql/{dialect}/cdm.sql is stale: run `python -m cohorts.ddl`"
        )


def test_init_creates_every_spec_column_with_its_type_and_nullability(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        init_cdm(db)
        live = _live_columns(db)
        dialect = db.dialect
    spec = _spec_rows()
    assert len(spec) > 400  # the whole CDM 5.4 spec, not a hand-picked subset
    for row in spec:
        key = (row["cdmTableName"].lower(), row["cdmFieldName"].strip('"').lower())
        assert key in live, f"{key} missing"
        data_type, nullable = live[key]
        expected_nullable = "NO" if row["isRequired"] == "Yes" else "YES"
        assert nullable == expected_nullable, key
        datatype = row["cdmDatatype"].lower()
        if datatype == "integer":
            assert data_type in INT_TYPES, key
        elif datatype == "float":
            assert data_type == ("DOUBLE" if dialect == "duckdb" else "NUMERIC"), key
        elif datatype == "date":
            assert data_type == "DATE", key
        elif datatype == "datetime":
            assert data_type.startswith("TIMESTAMP"), key
        else:
            assert data_type in {"VARCHAR", "CHARACTER VARYING", "TEXT"}, key


def test_init_is_idempotent_and_check_is_clean(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        first = init_cdm(db)
        second = init_cdm(db)
        assert len(first.created) == len(ddl.load_spec())
        assert second.created == [] and len(second.existing) == len(first.created)
        assert [d for d in check_cdm(db) if d.severity == "error"] == []
        counts = dict(table_counts(db))
    assert counts["results.omopfed_meta"] == 3  # the marker is written once
    assert counts["cdm.person"] == 0


def test_check_names_a_dropped_required_column(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        init_cdm(db)
        with db.begin() as conn:
            conn.exec_driver_sql(
                f"ALTER TABLE {db.qualified('cdm', 'measurement')} DROP COLUMN measurement_date"
            )
            conn.exec_driver_sql(f"DROP TABLE {db.qualified('cdm', 'note')}")
        found = check_cdm(db)
    errors = [(d.table, d.column, d.problem) for d in found if d.severity == "error"]
    assert errors == [("cdm.measurement", "measurement_date", "column is missing")]
    # note is not used by the pipeline: its absence is reported, as a warning.
    assert ("warning", "cdm.note", None) in {(d.severity, d.table, d.column) for d in found}


def test_check_tolerates_extra_tables_and_columns(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        init_cdm(db)
        with db.begin() as conn:
            conn.exec_driver_sql(
                f"ALTER TABLE {db.qualified('cdm', 'image_occurrence')} "
                "ADD COLUMN accession_number VARCHAR(64)"
            )
            conn.exec_driver_sql(f"CREATE TABLE {db.qualified('cdm', 'site_extra')} (x INTEGER)")
        assert [d for d in check_cdm(db) if d.severity == "error"] == []


def test_check_flags_a_mistyped_column(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        init_cdm(db)
        with db.begin() as conn:
            table = db.qualified("cdm", "person")
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN year_of_birth")
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN year_of_birth DATE")
        errors = [d for d in check_cdm(db) if d.severity == "error"]
    assert [(d.column, d.problem.split(" where")[0].upper()) for d in errors] == [
        ("year_of_birth", "TYPE DATE")
    ]


def test_init_refuses_a_foreign_cdm_unless_adopted(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        with db.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA cdm")
            conn.exec_driver_sql(
                f"CREATE TABLE {db.qualified('cdm', 'person')} (person_id INTEGER)"
            )
        with pytest.raises(SchemaError, match="did not create"):
            init_cdm(db)
        assert [name for name, _ in table_counts(db)] == ["cdm.person"]  # nothing half-created
        result = init_cdm(db, adopt=True)
        assert "cdm.person" in result.existing and "cdm.measurement" in result.created


def test_custom_schema_names(cdm_url: str) -> None:
    schemas = Schemas(cdm="site_a", vocab="vocab", results="site_a_results")
    with Database(cdm_url, schemas, must_exist=False) as db:
        init_cdm(db)
        names = {name for name, _ in table_counts(db)}
    assert {"site_a.person", "vocab.concept", "site_a_results.cohort"} <= names


def test_float_columns_keep_their_decimals(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        init_cdm(db)
        table = db.qualified("cdm", "measurement")
        with db.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} (measurement_id, person_id, measurement_concept_id, "
                    "measurement_date, measurement_type_concept_id, value_as_number) "
                    "VALUES (1, 1, 1, DATE '2020-01-01', 32817, :v)"
                ),
                {"v": 0.123456},
            )
        with db.connect() as conn:
            value = conn.execute(sa.text(f"SELECT value_as_number FROM {table}")).scalar()
    assert float(value) == pytest.approx(0.123456, abs=1e-9)


def test_cohort_table_allows_several_rows_per_subject(cdm_url: str) -> None:
    with Database(cdm_url, must_exist=False) as db:
        init_cdm(db)
        row = "(1, 7, DATE '2020-01-01', DATE '2020-06-01')"
        with db.begin() as conn:
            conn.exec_driver_sql(
                f"INSERT INTO {db.qualified('results', 'cohort')} VALUES {row}, {row}"
            )
        assert dict(table_counts(db))["results.cohort"] == 2
