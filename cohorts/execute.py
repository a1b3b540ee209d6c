"""Run a definition's queries read-only and return its rows and raw attrition counts.

Read-only is enforced by the database, not only by our checks: PostgreSQL runs the query in a
``READ ONLY`` transaction with a ``statement_timeout``; DuckDB opens the file on a read-only
connection with external (file) access switched off, and a watchdog interrupts a query that
runs past the timeout. DuckDB refuses a second connection to the same file with another
read-only setting in one process, so the caller disposes its read-write engine first and
writes the results afterwards (:mod:`cohorts.runner`).

Circe's script needs temporary tables, which PostgreSQL forbids in a read-only transaction: it
runs in a transaction that is always rolled back, after :func:`cohorts.circe.circe_script`
checked that every statement only creates or fills temporary tables.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from cohorts import circe, sqldef
from cohorts.compiler import Target, compile_definition, concept_set_size_query
from cohorts.db import Database
from cohorts.errors import (
    CohortQueryError,
    CohortTimeoutError,
    EmptyConceptSetError,
)
from cohorts.loader import Definition
from cohorts.model import ConceptSet

Row = tuple[int, date, date]
COHORT_COLUMNS = ("subject_id", "cohort_start_date", "cohort_end_date")


@dataclass
class Execution:
    """Raw results; never shown as they are (:mod:`cohorts.runner` suppresses small counts)."""

    rows: list[Row]
    index_persons: int
    rule_persons: list[int] = field(default_factory=list)
    concept_set_sizes: dict[str, int] = field(default_factory=dict)


def read_only_database(db: Database) -> Database:
    """The same database opened read-only (a separate engine)."""
    url = db.url.render_as_string(hide_password=False)
    return Database(url, db.schemas, read_only=True)


@contextmanager
def guarded(conn: Connection, timeout_s: float) -> Iterator[None]:
    """Apply the statement timeout; turn timeouts and database errors into cohort errors."""
    timer = None
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT set_config('statement_timeout', :ms, true)"),
            {"ms": str(max(1, int(timeout_s * 1000)))},
        )
    else:
        conn.exec_driver_sql("SET enable_external_access = false")
        raw: Any = conn.connection.dbapi_connection
        timer = threading.Timer(timeout_s, raw.interrupt)
        timer.daemon = True
        timer.start()
    try:
        yield
    except DBAPIError as exc:
        text = str(exc.orig)
        if "statement timeout" in text or "INTERRUPT" in text.upper():
            raise CohortTimeoutError(
                f"the cohort query ran longer than {timeout_s:g} s and was cancelled"
            ) from None
        raise CohortQueryError(
            f"the database rejected the cohort query: {text.strip().splitlines()[0]}"
        ) from None
    finally:
        if timer is not None:
            timer.cancel()


def check_concept_sets(sizes: dict[str, int], allow_empty: bool) -> None:
    """A concept set resolving to nothing silently empties a cohort: make it an error."""
    empty = sorted(name for name, size in sizes.items() if size == 0)
    if empty and not allow_empty:
        raise EmptyConceptSetError(
            f"concept set(s) {', '.join(empty)} resolve to no concept in the vocabulary",
            hint="load the vocabulary (concept, concept_ancestor) or check the concept ids; "
            "--allow-empty-concept-sets runs anyway",
        )


def _rows(result: Any) -> list[Row]:
    return [(int(row[0]), row[1], row[2]) for row in result]


def run_native(
    conn: Connection, db: Database, definition: Definition, *, allow_empty: bool
) -> Execution:
    assert definition.native is not None
    compiled = compile_definition(definition.native, Target.of(db))
    sizes = {
        name: int(conn.execute(query).scalar_one())
        for name, query in compiled.concept_set_sizes.items()
    }
    check_concept_sets(sizes, allow_empty)
    counts = conn.execute(compiled.attrition).one()
    rows = _rows(conn.execute(compiled.cohort))
    return Execution(rows, int(counts[0]), [int(c) for c in counts[1:]], sizes)


def run_sql(conn: Connection, db: Database, definition: Definition) -> Execution:
    assert definition.sql is not None
    body = sqldef.prepare_sql(definition.sql, db.placeholders())
    columns = ", ".join(COHORT_COLUMNS)
    wrapped = f"SELECT {columns} FROM (\n{body}\n) AS steward_cohort"
    try:
        result = conn.exec_driver_sql(wrapped)
    except DBAPIError as exc:
        if "steward_cohort" in str(exc.orig) or "not found" in str(exc.orig).lower():
            raise CohortQueryError(
                f"the SQL definition must return the columns {columns}: "
                f"{str(exc.orig).strip().splitlines()[0]}"
            ) from None
        raise
    rows = _rows(result)
    for subject, start, end in rows:
        if subject is None or not isinstance(start, date) or not isinstance(end, date):
            raise CohortQueryError("the SQL definition returned NULL or non-date values")
    return Execution(rows, len({r[0] for r in rows}))


def concept_set_sizes(
    conn: Connection, db: Database, sets: dict[str, ConceptSet]
) -> dict[str, int]:
    """Resolved sizes of Circe's concept sets, through the native resolver."""
    target = Target.of(db)
    sizes = {}
    for name, concept_set in sets.items():
        if not concept_set.include:
            sizes[name] = 0
            continue
        query = concept_set_size_query(concept_set, target)
        sizes[name] = int(conn.execute(query).scalar_one())
    return sizes


def run_circe(
    conn: Connection, db: Database, definition: Definition, *, allow_empty: bool
) -> Execution:
    assert definition.circe_json is not None
    sizes = concept_set_sizes(conn, db, circe.concept_sets(definition.circe_json))
    check_concept_sets(sizes, allow_empty)
    statements = circe.circe_script(definition.circe_json, db.dialect, db.placeholders())
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {circe.OUTPUT_TABLE} (cohort_definition_id BIGINT, "
        "subject_id BIGINT, cohort_start_date DATE, cohort_end_date DATE)"
    )
    for statement in statements:
        conn.exec_driver_sql(statement)
    rows = _rows(
        conn.exec_driver_sql(
            f"SELECT {', '.join(COHORT_COLUMNS)} FROM {circe.OUTPUT_TABLE} "
            "ORDER BY subject_id, cohort_start_date"
        )
    )
    counts = [
        int(conn.execute(sa.text(sql), params).scalar_one())
        for sql, params in circe.attrition_queries(len(definition.rule_names))
    ]
    return Execution(rows, counts[0], counts[1:], sizes)


def execute(
    db: Database, definition: Definition, *, timeout_s: float, allow_empty: bool
) -> Execution:
    """Run ``definition`` on a read-only view of ``db`` (``db``'s own engine is disposed)."""
    db.dispose()
    with read_only_database(db) as ro:
        circe_on_pg = definition.kind == "circe" and ro.dialect == "postgresql"
        source = db if circe_on_pg else ro
        with source.connect() as conn:
            transaction = conn.begin()
            try:
                with guarded(conn, timeout_s):
                    if definition.kind == "json":
                        return run_native(conn, ro, definition, allow_empty=allow_empty)
                    if definition.kind == "sql":
                        return run_sql(conn, ro, definition)
                    return run_circe(conn, ro, definition, allow_empty=allow_empty)
            finally:
                transaction.rollback()
                if circe_on_pg:
                    db.dispose()
