"""The root of every expected error the project raises.

Expected errors (bad input, unreachable database, failed validation...) derive from
:class:`OmopfedError`. Each class carries a stable ``code`` (for logs, replies and docs) and an
``exit_code`` (for the CLI). The CLI prints ``error[CODE]: message`` and exits with that status;
anything that is *not* an ``OmopfedError`` is a bug and keeps its traceback.

Messages must be safe to show a steward: they name the file, setting, table or row and say what
to do, but must never be sent across the federation boundary (node replies carry the code only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Exit statuses shared by every command. 2 is what Click uses for usage errors.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATABASE = 4
EXIT_SCHEMA = 5
EXIT_DEFINITION = 6
EXIT_DATA = 7
EXIT_VALIDATION = 8
EXIT_FEDERATION = 9


class OmopfedError(Exception):
    """Base class of expected errors: a stable code, an exit status and a safe message."""

    code: str = "OMOPFED"
    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(OmopfedError):
    """A settings file or environment variable is missing, unknown or invalid."""

    code = "CONFIG"
    exit_code = EXIT_CONFIG


def field_problems(
    errors: Iterable[Mapping[str, Any]], *, root: str = "", lead: str = "", whole: str = "(input)"
) -> str:
    """Pydantic's ``ValidationError.errors()`` as one line, each problem named by its field path
    (``root.field.sub: message; ...``), so a message points the steward at the setting to fix.
    ``whole`` names problems of the whole object (a model validator's)."""
    problems = []
    for error in errors:
        path = ".".join([root, *map(str, error["loc"])] if root else map(str, error["loc"]))
        problems.append(f"{lead}{path or whole}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)
