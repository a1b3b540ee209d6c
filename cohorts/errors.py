"""Errors of the database and cohort layer."""

from __future__ import annotations

from omopfed.errors import (
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
