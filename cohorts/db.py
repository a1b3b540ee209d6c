"""Connections to an OMOP CDM on DuckDB (the embedded default) or PostgreSQL.

Everything that touches a database goes through :class:`Database`: it validates the URL, knows
the dialect, owns the three schema names (CDM, vocabulary, results) and is the only place that
quotes identifiers (:func:`quote_identifier`). Values are always bound as parameters; identifiers
are never user values pasted into SQL, they pass :func:`check_identifier` first.

duckdb-engine cannot reflect schemas or create autoincrement keys (design.md section 9): this
module never reflects, and tables are created from the DDL files under ``sql/``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from cohorts.errors import DatabaseError, DatabaseUrlError, IdentifierError

log = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("duckdb", "postgresql")
# Lower-case only: PostgreSQL folds unquoted names to lower case, so a mixed-case schema would be
# a different schema depending on whether a hand-written query quotes it.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain lower-case SQL identifier, else raise IdentifierError."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise IdentifierError(
            f"{what} {name!r} is not a plain SQL name",
            hint="use lower-case letters, digits and underscores, starting with a letter, "
            "at most 63 characters",
        )
    return name


def quote_identifier(name: str) -> str:
    """Quote one identifier for SQL text: the single quoting helper of the project."""
    return '"' + check_identifier(name) + '"'


@dataclass(frozen=True)
class Schemas:
    """Where the CDM, the standardized vocabularies and the results (cohorts) live."""

    cdm: str = "cdm"
    vocab: str = "cdm"
    results: str = "results"

    def __post_init__(self) -> None:
        check_identifier(self.cdm, "CDM schema name")
        check_identifier(self.vocab, "vocabulary schema name")
        check_identifier(self.results, "results schema name")

    def distinct(self) -> list[str]:
        """The schema names without repeats, in creation order."""
        return list(dict.fromkeys([self.cdm, self.vocab, self.results]))


def safe_url(url: URL | str) -> str:
    """A URL fit for messages and logs: the password masked."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<malformed URL>"
    return url.render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """Parse and normalise a database URL; raise DatabaseUrlError with a fix if it is wrong.

    ``postgresql://`` means psycopg 3 here (the installed driver), not SQLAlchemy's psycopg2
    default. A DuckDB URL must name a file (``duckdb:///path/cdm.duckdb``) or ``:memory:``.
    """
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError) as exc:
        raise DatabaseUrlError(
            f"malformed database URL {safe_url(url)!r}",
            hint="expected duckdb:///path/to/cdm.duckdb or "
            "postgresql+psycopg://user@host:5432/dbname",
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise DatabaseUrlError(
            f"unsupported database backend {backend!r} in {safe_url(parsed)!r}",
            hint=f"supported: {', '.join(SUPPORTED_BACKENDS)}",
        )
    if backend == "postgresql":
        if parsed.drivername != "postgresql+psycopg":
            # psycopg 3 is the installed driver; psycopg2 or asyncpg URLs would fail later.
            parsed = parsed.set(drivername="postgresql+psycopg")
        if not parsed.database:
            raise DatabaseUrlError(f"no database name in {safe_url(parsed)!r}")
    if backend == "duckdb" and not parsed.database:
        raise DatabaseUrlError(
            f"no DuckDB file in {safe_url(parsed)!r}", hint="write duckdb:///path/to/cdm.duckdb"
        )
    return parsed


class Database:
    """One OMOP CDM database: its URL, dialect, schema names and a lazily created engine.

    ``read_only`` opens DuckDB read-only and makes every PostgreSQL transaction
    ``READ ONLY``: cohort queries written by stewards run this way. ``must_exist`` refuses a
    DuckDB file that is not there yet instead of silently creating an empty one.
    """

    def __init__(
        self,
        url: str,
        schemas: Schemas | None = None,
        *,
        read_only: bool = False,
        must_exist: bool = True,
    ) -> None:
        self.url = parse_url(url)
        self.schemas = schemas or Schemas()
        self.read_only = read_only
        self.dialect = self.url.get_backend_name()
        self._engine: Engine | None = None
        self._catalog: str | None = None
        if self.dialect == "duckdb" and self.url.database != ":memory:":
            path = Path(str(self.url.database))
            if must_exist and not path.exists():
                raise DatabaseError(
                    f"no DuckDB database at {path}",
                    hint="create it with `omopfed db init --url duckdb:///" + str(path) + "`",
                )
            if not path.parent.exists():
                raise DatabaseError(f"directory {path.parent} does not exist")

    @property
    def display_url(self) -> str:
        return safe_url(self.url)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        connect_args: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if self.dialect == "duckdb":
            connect_args["read_only"] = self.read_only
        else:
            connect_args["connect_timeout"] = 10
            if self.read_only:
                kwargs["execution_options"] = {"postgresql_readonly": True}
        try:
            return sa.create_engine(self.url, connect_args=connect_args, **kwargs)
        except NoSuchModuleError as exc:
            raise DatabaseUrlError(f"no driver for {self.display_url}") from exc

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection (no transaction begun), with connection failures made readable."""
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            raise DatabaseError(
                f"cannot open {self.display_url}: {_first_line(exc.orig)}",
                hint="check the URL, that the server runs and that you may log in",
            ) from exc
        with conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        with self.connect() as conn, conn.begin():
            yield conn

    def ping(self) -> None:
        """Open a connection and run ``SELECT 1``; raise DatabaseError if that fails."""
        with self.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    @property
    def catalog(self) -> str | None:
        """DuckDB's catalog name (the file's stem), ``None`` on PostgreSQL.

        DuckDB names the catalog after the file, so in ``cdm.duckdb`` the name ``cdm`` is both
        a catalog and a schema and ``"cdm".person`` is ambiguous. Every schema reference on
        DuckDB is therefore written with its catalog: ``"cdm"."cdm".person``.
        """
        if self.dialect != "duckdb":
            return None
        if self._catalog is None:
            with self.connect() as conn:
                self._catalog = str(conn.exec_driver_sql("SELECT current_database()").scalar())
        return self._catalog

    def schema_ref(self, schema: str) -> str:
        """A schema for SQL text: ``"schema"``, or ``"catalog"."schema"`` on DuckDB."""
        quoted = quote_identifier(schema)
        catalog = self.catalog
        if catalog is None:
            return quoted
        return '"' + catalog.replace('"', '""') + '".' + quoted

    def qualified(self, schema: str, table: str) -> str:
        """A table for SQL text: the schema reference and the quoted table name."""
        return f"{self.schema_ref(schema)}.{quote_identifier(table)}"

    def placeholders(self) -> dict[str, str]:
        """Values of the ``@cdm_schema``/``@vocab_schema``/``@results_schema`` placeholders."""
        return {
            "cdm_schema": self.schema_ref(self.schemas.cdm),
            "vocab_schema": self.schema_ref(self.schemas.vocab),
            "results_schema": self.schema_ref(self.schemas.results),
        }

    def dispose(self) -> None:
        """Close pooled connections (DuckDB keeps the file locked while any are open)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else "unknown error"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
