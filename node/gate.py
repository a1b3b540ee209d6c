"""The training gate: no training on data without a passing validation result.

``omopfed validate`` runs the Great Expectations suites and records its outcome here, keyed by
the content hash of the data it validated. Every kind of training (local, centralized, the
Flower ClientApp) calls :func:`require_validated` with the hash of the data it is about to use;
the check reads one small JSON file, so the ClientApp never imports Great Expectations.

The record is written atomically (temporary file + rename): a crash while validating leaves
the previous record or none, never a half-written one that could wave bad data through.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omopfed.errors import EXIT_VALIDATION, OmopfedError

RESULT_FILE = Path("validation") / "result.json"


class ValidationGateError(OmopfedError):
    """Training refused: the data has no passing validation result."""

    code = "VALIDATION_GATE"
    exit_code = EXIT_VALIDATION


@dataclass(frozen=True)
class ValidationRecord:
    """What the gate needs to know about the last validation of a site's data."""

    data_hash: str
    passed: bool
    suite_hashes: dict[str, str]
    failed_blocking: list[str] = field(default_factory=list)  # expectation ids
    report_path: str = ""  # Data Docs index, for the steward
    validated_at: str = ""


def result_path(workspace: Path) -> Path:
    return workspace / RESULT_FILE


def write_record(workspace: Path, record: ValidationRecord) -> Path:
    """Replace the site's validation record atomically."""
    path = result_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".result-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(asdict(record), out, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(workspace: Path) -> ValidationRecord | None:
    path = result_path(workspace)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ValidationRecord(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValidationGateError(
            f"validation record {path} is unreadable", hint="run `omopfed validate` again"
        ) from exc


def require_validated(workspace: Path, data_hash: str) -> ValidationRecord:
    """Return the passing record for ``data_hash`` or raise ValidationGateError saying why."""
    record = read_record(workspace)
    how = "run `omopfed validate --settings <site.toml>`"
    if record is None:
        raise ValidationGateError("this site's data has never been validated", hint=how)
    if record.data_hash != data_hash:
        raise ValidationGateError(
            "the data changed since it was last validated "
            f"(validated {record.data_hash[:12]}, now {data_hash[:12]})",
            hint=how,
        )
    if not record.passed:
        failed = ", ".join(record.failed_blocking) or "unknown"
        where = f"; details in {record.report_path}" if record.report_path else ""
        raise ValidationGateError(
            f"validation failed on blocking expectation(s): {failed}{where}",
            hint="fix the data or the thresholds, then " + how,
        )
    return record
