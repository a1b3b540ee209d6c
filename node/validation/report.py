"""What a suite run looks like to people and to the aggregator: small cells suppressed.

Three views of one :class:`~node.validation.model.SuiteResult`:

* :func:`summary` -- the JSON summary written into the workspace. Counts are already suppressed
  (OHDSI: ``0 < count < min_cell_count`` becomes ``"<N"``), so the file can be handed to
  someone off-site; the row-level detail stays in the Data Docs beside it.
* :func:`table_rows` -- the compact table ``omopfed validate`` prints.
* :func:`aggregate_summary` -- what may leave the site: the suite hash and, per expectation,
  pass/fail and its suppressed counts. No data hashes, no observed values (a proportion over a
  known denominator is a count in disguise), no notes (they may name tables or paths).
"""

from __future__ import annotations

from typing import Any

from node.validation.model import CheckResult, SuiteResult

SUMMARY_SCHEMA = "omopfed-validation-summary/1"
AGGREGATE_SCHEMA = "omopfed-validation-aggregate/1"


def suppress(count: int | None, min_cell_count: int) -> int | str | None:
    """A count fit to show: ``"<N"`` when ``0 < count < N`` (zero is shown, as in OHDSI)."""
    if count is None:
        return None
    if 0 < count < min_cell_count:
        return f"<{min_cell_count}"
    return int(count)


def _number(value: int | str | None) -> str:
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int) else value


def observed_text(result: CheckResult, min_cell_count: int) -> str:
    """The observed value for humans: rows that broke the check out of rows judged, or the
    aggregate value (counts suppressed), or the error Great Expectations raised."""
    if result.error:
        return f"error: {result.error.splitlines()[0][:80]}"
    if result.unexpected_count is not None and result.element_count is not None:
        if result.unit != "rows":  # not patient counts: nothing to suppress
            return f"{result.unexpected_count} of {result.element_count} {result.unit}"
        bad = suppress(result.unexpected_count, min_cell_count)
        total = suppress(result.element_count, min_cell_count)
        text = f"{_number(bad)} of {_number(total)}"
        if isinstance(bad, int) and bad and isinstance(total, int):
            text += f" ({bad / total:.1%})"
        return text
    if result.observed is None:
        return ""
    if result.observed_is_count and isinstance(result.observed, int | float):
        return _number(suppress(int(result.observed), min_cell_count))
    if isinstance(result.observed, float):
        return f"{result.observed:.1%}" if 0 <= result.observed <= 1 else f"{result.observed:g}"
    return str(result.observed)


def _count(result: CheckResult, count: int | None, min_cell_count: int) -> int | str | None:
    return count if result.unit != "rows" else suppress(count, min_cell_count)


def _result_entry(result: CheckResult, min_cell_count: int) -> dict[str, Any]:
    return {
        "id": result.id,
        "kind": result.kind,
        "blocking": result.blocking,
        "status": result.status,
        "unit": result.unit,
        "element_count": _count(result, result.element_count, min_cell_count),
        "unexpected_count": _count(result, result.unexpected_count, min_cell_count),
        "observed": observed_text(result, min_cell_count),
        "description": result.description,
    }


def summary(run: SuiteResult, min_cell_count: int, docs_index: str = "") -> dict[str, Any]:
    """The JSON summary of one suite run (counts suppressed)."""
    return {
        "schema": SUMMARY_SCHEMA,
        "suite": run.suite,
        "version": run.version,
        "suite_hash": run.suite_hash,
        "data_hash": run.data_hash,
        "dataset_hash": run.dataset_hash,
        "passed": run.passed,
        "failed_blocking": run.failed_blocking,
        "warnings": run.warnings,
        "started_at": run.started_at,
        "seconds": round(run.seconds, 3),
        "min_cell_count": min_cell_count,
        "notes": run.notes,
        "data_docs": docs_index,
        "results": [_result_entry(r, min_cell_count) for r in run.results],
    }


def table_rows(run: SuiteResult, min_cell_count: int, *, all_rows: bool) -> list[list[str]]:
    """Rows (expectation, result, observed) for the terminal: failures first, then passes
    unless ``all_rows`` is False (a 200-line table of passes hides the two that matter)."""
    order = {"FAIL": 0, "warn": 1, "pass": 2}
    chosen = [r for r in run.results if all_rows or not r.success]
    chosen.sort(key=lambda r: order[r.status])
    return [[r.id, r.status, observed_text(r, min_cell_count)] for r in chosen]


def aggregate_summary(summary_data: dict[str, Any]) -> dict[str, Any]:
    """What the aggregator may see of a suite run, built from its (already suppressed) summary.

    Per expectation: id, blocking flag, pass/fail and the suppressed counts. Nothing else.
    """
    return {
        "schema": AGGREGATE_SCHEMA,
        "suite": summary_data["suite"],
        "version": summary_data["version"],
        "suite_hash": summary_data["suite_hash"],
        "passed": summary_data["passed"],
        "min_cell_count": summary_data["min_cell_count"],
        "expectations": [
            {
                "id": r["id"],
                "blocking": r["blocking"],
                "passed": r["status"] == "pass",
                "element_count": r["element_count"],
                "unexpected_count": r["unexpected_count"],
            }
            for r in summary_data["results"]
        ],
    }
