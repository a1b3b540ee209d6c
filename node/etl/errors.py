"""Errors of the importers."""

from __future__ import annotations

from omopfed.errors import EXIT_DATA, OmopfedError


class EtlInputError(OmopfedError):
    """The dataset to import is missing or malformed (folder, labels file, columns, values)."""

    code = "ETL_INPUT"
    exit_code = EXIT_DATA


class EtlTargetError(OmopfedError):
    """The site's CDM is not ready to receive the import (tables missing)."""

    code = "ETL_TARGET"
    exit_code = EXIT_DATA
