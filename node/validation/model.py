"""What a suite is and what running it gives: plain data, no pandas, no Great Expectations.

A :class:`Suite` is a named, versioned list of :class:`Check` objects. Each check is one Great
Expectations expectation (its class name and keyword arguments) applied to one *frame* (a
pandas DataFrame the suite prepares from the data), tagged with a stable id, the
DataQualityDashboard-style kind it mirrors, and whether it blocks training.

The suite hash is the SHA-256 of the canonical JSON of everything that decides an outcome:
suite name and version, and per check its id, kind, blocking flag, frame, expectation, keyword
arguments and derivation. Prose (descriptions) is left out, so rewording a message does not
invalidate approvals; thresholds are in (they are keyword arguments), so tightening one does.
The version names the code that prepares the frames: bump it when a derivation changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

SUITE_NAMES = ("cdm", "manifest", "images")


def canonical_json(data: Any) -> str:
    """JSON with sorted keys, no whitespace and dates as ISO strings: stable across runs."""

    def default(value: Any) -> Any:
        if isinstance(value, date | datetime):
            return value.isoformat()
        if isinstance(value, set | frozenset | tuple):
            return sorted(value) if isinstance(value, set | frozenset) else list(value)
        raise TypeError(f"not JSON-serialisable: {type(value).__name__}")

    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=default)


@dataclass(frozen=True)
class Check:
    """One expectation of a suite.

    ``derive`` names how the suite computed the column it checks when it is not a column of
    the source table (``"orphan(person_id -> person.person_id)"``); it is part of the hash.
    """

    id: str
    kind: str
    frame: str
    expectation: str
    kwargs: dict[str, Any]
    blocking: bool
    description: str
    derive: str = ""
    # What the frame's rows are: "rows" (records of patients: counts suppressed when shown) or
    # "classes" (label classes of the manifest's count table: not patient counts).
    unit: str = "rows"

    def identity(self) -> dict[str, Any]:
        """What the suite hash covers for this check."""
        return {
            "id": self.id,
            "kind": self.kind,
            "frame": self.frame,
            "expectation": self.expectation,
            "kwargs": self.kwargs,
            "blocking": self.blocking,
            "derive": self.derive,
        }


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    checks: tuple[Check, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.checks]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"suite {self.name}: duplicate check ids {duplicates}")

    @property
    def sha256(self) -> str:
        payload = {
            "suite": self.name,
            "version": self.version,
            "checks": [c.identity() for c in self.checks],
        }
        return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()

    def frames(self) -> list[str]:
        return list(dict.fromkeys(c.frame for c in self.checks))

    def check(self, check_id: str) -> Check:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: counts are raw here and suppressed only when shown or sent."""

    id: str
    kind: str
    blocking: bool
    success: bool
    description: str
    element_count: int | None = None  # rows examined
    unexpected_count: int | None = None  # rows that broke the expectation
    observed: Any = None  # aggregate expectations: the observed value
    observed_is_count: bool = False  # the observed value is a count (suppress it)
    unit: str = "rows"  # Check.unit
    error: str = ""  # Great Expectations raised instead of judging

    @property
    def status(self) -> str:
        if self.success:
            return "pass"
        return "FAIL" if self.blocking else "warn"


@dataclass
class SuiteResult:
    """A suite run: which suite, on which data, with what outcome."""

    suite: str
    version: str
    suite_hash: str
    data_hash: str  # the content hash of the data this suite read
    dataset_hash: str  # the training dataset's hash when the suite ran ("" if none yet)
    results: list[CheckResult] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. tables missing from the CDM

    @property
    def failed_blocking(self) -> list[str]:
        return [r.id for r in self.results if r.blocking and not r.success]

    @property
    def warnings(self) -> list[str]:
        return [r.id for r in self.results if not r.blocking and not r.success]

    @property
    def passed(self) -> bool:
        return not self.failed_blocking
