"""Bulk loading of rows into CDM tables, fast on both backends.

SQLAlchemy's executemany is slow for the row counts a CDM holds. DuckDB scans a registered
pandas DataFrame natively; PostgreSQL takes ``COPY ... FROM STDIN`` through psycopg. Both run
on the caller's connection, so a load is part of the caller's transaction and is rolled back
whole when anything after it fails.
"""

from __future__ import annotations

import itertools

import pandas as pd
from sqlalchemy.engine import Connection

from cohorts.db import quote_identifier

_counter = itertools.count()


def insert_dataframe(conn: Connection, table: str, frame: pd.DataFrame) -> int:
    """Append ``frame``'s rows to ``table`` (columns matched by name); return the row count.

    ``table`` is a qualified name from :meth:`cohorts.db.Database.qualified`.
    """
    if frame.empty:
        return 0
    columns = [quote_identifier(str(c)) for c in frame.columns]
    target = f"{table} ({', '.join(columns)})"
    dbapi = conn.connection.dbapi_connection
    if conn.dialect.name == "duckdb":
        view = f"_omopfed_load_{next(_counter)}"
        dbapi.register(view, frame)  # type: ignore[union-attr]
        try:
            conn.exec_driver_sql(
                f"INSERT INTO {target} SELECT {', '.join(columns)} FROM {quote_identifier(view)}"
            )
        finally:
            dbapi.unregister(view)  # type: ignore[union-attr]
    else:
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {target} FROM STDIN") as copy:
            for row in frame.itertuples(index=False, name=None):
                copy.write_row([None if pd.isna(v) else v for v in row])
    return len(frame)
