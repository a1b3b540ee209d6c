"""Create an OMOP CDM from the DDL in ``sql/`` and compare a live one with the spec.

Both work on DuckDB and PostgreSQL through ``information_schema`` (never SQLAlchemy reflection,
which duckdb-engine does not support). Creation is idempotent and transactional; it refuses a
non-empty CDM schema that omopfed did not create unless the caller adopts it explicitly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cohorts import ddl
from cohorts.db import Database
from cohorts.errors import SchemaError

log = logging.getLogger(__name__)

SCHEMA_VERSION = "cdm-5.4+mi-cdm+omopfed-1"

_TABLES_SQL = sa.text(
    "SELECT table_schema, table_name FROM information_schema.tables "
    "WHERE table_catalog = current_database() AND table_schema IN :schemas"
).bindparams(sa.bindparam("schemas", expanding=True))

_COLUMNS_SQL = sa.text(
    "SELECT table_schema, table_name, column_name, data_type, is_nullable, numeric_scale "
    "FROM information_schema.columns "
    "WHERE table_catalog = current_database() AND table_schema IN :schemas"
).bindparams(sa.bindparam("schemas", expanding=True))


@dataclass(frozen=True)
class InitResult:
    created: list[str]  # "schema.table" created by this call
    existing: list[str]  # spec tables that were already there


def _live_tables(conn: Connection, db: Database) -> set[tuple[str, str]]:
    rows = conn.execute(_TABLES_SQL, {"schemas": db.schemas.distinct()})
    return {(r[0], r[1]) for r in rows}


def _created_by_omopfed(conn: Connection, db: Database, live: set[tuple[str, str]]) -> bool:
    if (db.schemas.results, "omopfed_meta") not in live:
        return False
    value = conn.execute(
        sa.text(
            f"SELECT meta_value FROM {db.qualified(db.schemas.results, 'omopfed_meta')} "
            "WHERE meta_key = :key"
        ),
        {"key": "created_by"},
    ).scalar()
    return value == "omopfed"


def init_cdm(db: Database, *, adopt: bool = False) -> InitResult:
    """Create every spec table that is missing, in one transaction.

    Running it twice is safe. A CDM schema that already holds tables but carries no omopfed
    marker belongs to someone else: refuse unless ``adopt`` (then only missing tables and the
    marker are added; existing tables are never altered).
    """
    spec = ddl.load_spec()
    with db.begin() as conn:
        live = _live_tables(conn, db)
        ours = _created_by_omopfed(conn, db, live)
        foreign = sorted(f"{s}.{t}" for s, t in live if s == db.schemas.cdm)
        if foreign and not ours and not adopt:
            raise SchemaError(
                f"{db.display_url}: schema {db.schemas.cdm!r} already holds {len(foreign)} "
                "table(s) that omopfed did not create; refusing to change it",
                hint="check it with `omopfed db check`, or pass --adopt to add only the "
                "missing tables",
            )
        for schema in db.schemas.distinct():
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {db.schema_ref(schema)}")
        placeholders = db.placeholders()
        statements = ddl.render_sql(ddl.ddl_path(db.dialect).read_text("utf-8"), placeholders)
        statements += ddl.render_sql(
            ddl.ddl_path(db.dialect, "indexes.sql").read_text("utf-8"), placeholders
        )
        for statement in statements:
            conn.exec_driver_sql(statement)
        if not ours:
            _write_marker(conn, db)
    names = {
        f"{t.schema(db.schemas)}.{t.name}": (t.schema(db.schemas), t.name) for t in spec.values()
    }
    created = sorted(n for n, key in names.items() if key not in live)
    existing = sorted(n for n, key in names.items() if key in live)
    log.info(
        "db init %s: %d tables created, %d existed", db.display_url, len(created), len(existing)
    )
    return InitResult(created=created, existing=existing)


def _write_marker(conn: Connection, db: Database) -> None:
    table = db.qualified(db.schemas.results, "omopfed_meta")
    rows = [
        {"key": "created_by", "value": "omopfed"},
        {"key": "schema_version", "value": SCHEMA_VERSION},
        {"key": "created_at", "value": datetime.now(UTC).isoformat(timespec="seconds")},
    ]
    conn.execute(
        sa.text(
            f"DELETE FROM {table} WHERE meta_key IN ('created_by', 'schema_version', 'created_at')"
        )
    )
    conn.execute(sa.text(f"INSERT INTO {table} (meta_key, meta_value) VALUES (:key, :value)"), rows)


@dataclass(frozen=True)
class Difference:
    severity: str  # "error" | "warning"
    table: str  # schema.table
    column: str | None
    problem: str


# Live data_type (upper-cased, parameters stripped) accepted for each spec datatype family.
_ACCEPTED = {
    "integer": {"INTEGER", "INT", "INT4", "BIGINT", "INT8", "SMALLINT", "HUGEINT"},
    "float": {"DOUBLE", "DOUBLE PRECISION", "FLOAT", "FLOAT8", "REAL", "NUMERIC", "DECIMAL"},
    "date": {"DATE"},
    "datetime": {
        "TIMESTAMP",
        "TIMESTAMP WITHOUT TIME ZONE",
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMPTZ",
        "TIMESTAMP_NS",
        "TIMESTAMP_MS",
        "DATETIME",
    },
    "varchar": {"VARCHAR", "CHARACTER VARYING", "TEXT", "CHARACTER", "CHAR", "BPCHAR"},
}


def _family(datatype: str) -> str:
    return "varchar" if datatype.startswith("varchar") else datatype


def _type_problem(spec_type: str, live_type: str, scale: int | None, dialect: str) -> str | None:
    base = live_type.upper().split("(")[0].strip()
    if base not in _ACCEPTED[_family(spec_type)]:
        return f"type {live_type} where the spec says {spec_type}"
    if dialect == "duckdb" and base in ("DECIMAL", "NUMERIC") and scale is not None and scale < 6:
        return f"type {live_type} keeps only {scale} decimals on DuckDB; use DOUBLE"
    return None


def check_cdm(db: Database) -> list[Difference]:
    """Every difference between the live schema and the spec, errors first.

    Extra tables and extra columns are fine (sites add them). Missing tables or columns and
    incompatible types are errors for the tables the pipeline uses and warnings elsewhere;
    nullability differences are warnings (validation checks the data itself).
    """
    with db.connect() as conn:
        rows = conn.execute(_COLUMNS_SQL, {"schemas": db.schemas.distinct()}).all()
    live: dict[tuple[str, str], dict[str, tuple[str, bool, int | None]]] = {}
    for schema, table, column, data_type, nullable, scale in rows:
        live.setdefault((schema, table), {})[column.lower()] = (
            str(data_type),
            str(nullable).upper() == "YES",
            scale,
        )
    found: list[Difference] = []
    for table in ddl.load_spec().values():
        if table.name in ddl.OPTIONAL_TABLES:
            continue
        schema = table.schema(db.schemas)
        name = f"{schema}.{table.name}"
        severity = "error" if table.name in ddl.PIPELINE_TABLES else "warning"
        columns = live.get((schema, table.name))
        if columns is None:
            found.append(Difference(severity, name, None, "table is missing"))
            continue
        for spec_field in table.fields:
            found.extend(_column_differences(spec_field, columns, name, severity, db.dialect))
    return sorted(found, key=lambda d: (d.severity != "error", d.table, d.column or ""))


def _column_differences(
    spec_field: ddl.FieldSpec,
    columns: dict[str, tuple[str, bool, int | None]],
    table: str,
    severity: str,
    dialect: str,
) -> list[Difference]:
    if spec_field.name not in columns:
        return [Difference(severity, table, spec_field.name, "column is missing")]
    live_type, nullable, scale = columns[spec_field.name]
    out = []
    problem = _type_problem(spec_field.datatype, live_type, scale, dialect)
    if problem:
        out.append(Difference(severity, table, spec_field.name, problem))
    if spec_field.required and nullable:
        out.append(
            Difference("warning", table, spec_field.name, "required by the spec but nullable")
        )
    return out


def table_counts(db: Database) -> list[tuple[str, int]]:
    """Row counts of the spec tables present in the database, in spec order."""
    with db.connect() as conn:
        live = _live_tables(conn, db)
        counts = []
        for table in ddl.load_spec().values():
            schema = table.schema(db.schemas)
            if (schema, table.name) in live:
                sql = sa.text(f"SELECT count(*) FROM {db.qualified(schema, table.name)}")
                counts.append((f"{schema}.{table.name}", int(conn.execute(sql).scalar_one())))
    return counts
