"""Errors of the database and cohort layer."""

from __future__ import annotations

from omopfed.errors import (
    EXIT_DATA,
    EXIT_DATABASE,
    EXIT_DEFINITION,
    EXIT_SCHEMA,
    OmopfedError,
)


class DatabaseError(OmopfedError):
    """The OMOP database cannot be reached, opened or written."""

    code = "DB"
    exit_code = EXIT_DATABASE


class DatabaseUrlError(DatabaseError):
    """A database URL is malformed or names an unsupported backend."""

    code = "DB_URL"


class SchemaError(OmopfedError):
    """The live schema does not match the spec, or refusing to touch a foreign CDM."""

    code = "SCHEMA"
    exit_code = EXIT_SCHEMA


class IdentifierError(OmopfedError):
    """A schema or table name that is not a plain SQL identifier."""

    code = "IDENTIFIER"
    exit_code = EXIT_DEFINITION


class CohortError(OmopfedError):
    """A cohort definition is invalid, unsupported, unsafe, or cannot be run as written.

    Every failure of loading, checking, compiling or running a definition is a subclass, so a
    caller (the CLI, the node) needs to catch only this one type.
    """

    code = "COHORT"
    exit_code = EXIT_DEFINITION


class CohortDefinitionError(CohortError):
    """The definition file is unreadable, malformed, or breaks the native schema."""

    code = "COHORT_DEFINITION"


class UnsupportedCirceError(CohortError):
    """An ATLAS/Circe element outside the supported subset; the message names its JSON path."""

    code = "COHORT_CIRCE_UNSUPPORTED"


class UnsafeSqlError(CohortError):
    """A SQL definition that is not exactly one SELECT/WITH statement, or has bad placeholders."""

    code = "COHORT_SQL_REFUSED"


class EmptyConceptSetError(CohortError):
    """A concept set resolves to no concept: usually empty vocabulary tables, never silent."""

    code = "COHORT_EMPTY_CONCEPT_SET"
    exit_code = EXIT_DATA


class CohortTimeoutError(CohortError):
    """The cohort query ran past the statement timeout and was cancelled."""

    code = "COHORT_TIMEOUT"


class CohortQueryError(CohortError):
    """The database rejected the cohort query (missing table, type error, read-only breach)."""

    code = "COHORT_QUERY"
