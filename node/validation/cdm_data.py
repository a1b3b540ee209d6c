"""Load the CDM tables the suite covers into pandas, and derive the columns its checks read.

Great Expectations' SQL datasource does not work on DuckDB (design.md section 8), so tables are
read into pandas: through DuckDB's native DataFrame export on DuckDB (a million rows in well
under a second) and ``pandas.read_sql`` on PostgreSQL. Only spec columns are read; a spec
column the live table lacks is added as nulls (so a missing *required* column fails
``is_required`` instead of crashing), and a missing table is an empty frame (so ``cdm_table``
fails). Vocabulary rows are read only for the concept ids the clinical tables use: a full OMOP
vocabulary holds millions of concepts and the suite needs a few thousand.

:func:`prepare` is pure pandas: it normalises each column to its spec type (recording values
that do not convert, for ``cdm_datatype``) and adds the derived columns named in
:mod:`node.validation.cdm_suite`. Tests doctor the loaded frames and call it directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import sqlalchemy as sa

from cohorts.db import Database, quote_identifier
from node.validation import cdm_spec as spec
from node.validation.cdm_derive import add_derived, marker_frame, normalise
from node.validation.thresholds import ValidationSettings

log = logging.getLogger(__name__)

_COLUMNS_SQL = sa.text(
    "SELECT table_schema, table_name, column_name FROM information_schema.columns "
    "WHERE table_catalog = current_database() AND table_schema IN :schemas"
).bindparams(sa.bindparam("schemas", expanding=True))


@dataclass
class CdmTables:
    """The raw tables as read (spec columns only), and what was missing."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)


def _schema_of(db: Database, table: str) -> str:
    return db.schemas.vocab if table == "concept" else db.schemas.cdm


def _live_columns(db: Database) -> dict[tuple[str, str], set[str]]:
    with db.connect() as conn:
        rows = conn.execute(_COLUMNS_SQL, {"schemas": db.schemas.distinct()}).all()
    live: dict[tuple[str, str], set[str]] = {}
    for schema, table, column in rows:
        live.setdefault((str(schema), str(table).lower()), set()).add(str(column).lower())
    return live


def _read(db: Database, sql: str) -> pd.DataFrame:
    with db.connect() as conn:
        if db.dialect == "duckdb":
            cursor = conn.connection.dbapi_connection.execute(sql)  # type: ignore[union-attr]
            return cursor.df()
        return pd.read_sql(sa.text(sql), conn)


def _concept_sql(db: Database, live: dict[tuple[str, str], set[str]]) -> str:
    """The vocabulary rows of the concepts the clinical tables reference (no values inlined)."""
    sources = []
    for fk in spec.foreign_keys():
        if fk.ref_table == "concept" and fk.column in live.get((db.schemas.cdm, fk.table), set()):
            column = quote_identifier(fk.column)
            sources.append(f"SELECT {column} AS cid FROM {db.qualified(db.schemas.cdm, fk.table)}")
    columns = ", ".join(quote_identifier(c) for c in spec.CONCEPT_COLUMNS)
    concept = db.qualified(db.schemas.vocab, "concept")
    if not sources:
        return f"SELECT {columns} FROM {concept} WHERE 1 = 0"
    return f"SELECT {columns} FROM {concept} WHERE concept_id IN ({' UNION '.join(sources)})"


def load_cdm(db: Database) -> CdmTables:
    """Read every table of the suite; absent tables and columns are noted, not fatal."""
    live = _live_columns(db)
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for table in spec.TABLES:
        wanted = spec.loaded_columns(table)
        present = live.get((_schema_of(db, table), table))
        if present is None:
            notes.append(f"table {_schema_of(db, table)}.{table} is missing")
            tables[table] = pd.DataFrame({c: pd.Series(dtype=object) for c in wanted})
            continue
        columns = [c for c in wanted if c in present]
        missing = [c for c in wanted if c not in present]
        if missing:
            notes.append(f"{table}: column(s) missing: {', '.join(missing)}")
        if table == "concept" and len(columns) == len(wanted):
            frame = _read(db, _concept_sql(db, live))
        else:
            select = ", ".join(quote_identifier(c) for c in columns) or "1 AS _none"
            frame = _read(db, f"SELECT {select} FROM {db.qualified(_schema_of(db, table), table)}")
        for column in missing:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
        tables[table] = frame[list(wanted)]
        log.debug("read %s: %d rows", table, len(frame))
    return CdmTables(tables, notes)


def prepare(
    tables: dict[str, pd.DataFrame],
    thresholds: ValidationSettings,
    markers: dict[str, list[int]],
    today: date | None = None,
) -> dict[str, pd.DataFrame]:
    """The frames the CDM suite validates: typed tables with derived columns, and markers."""
    today = today or date.today()
    typed = {table: normalise(table, tables[table]) for table in spec.TABLES}
    frames = {t: add_derived(t, typed[t], typed, thresholds, today) for t in spec.TABLES}
    frames["measurement_markers"] = marker_frame(typed["measurement"], markers)
    return frames
