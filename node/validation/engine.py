"""Run a :class:`~node.validation.model.Suite` on pandas frames with Great Expectations.

The only module that imports Great Expectations, and only inside :func:`run_suite`: importing
it costs seconds (design.md section 8), and the training gate, the dataset loader and the Flower
ClientApp must never pay that. Everything runs in an *ephemeral* context (no project folder, no
analytics; ``omopfed.offline`` switches analytics off for the whole process as well), one per
suite run, with a Data Docs site written to the folder the caller names.

Each of our suites spans several frames (CDM tables); Great Expectations validates one batch
against one expectation suite, so a suite becomes one Great Expectations suite per frame, named
``<suite>.<frame>``, each expectation carrying our check id, kind and blocking flag in ``meta``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from node.validation.model import Check, CheckResult, Suite

log = logging.getLogger(__name__)

# Frames up to this many rows get every failing row index in their results ("COMPLETE");
# larger ones a sample of 20 ("SUMMARY"), which keeps results and Data Docs small.
COMPLETE_ROWS = 50_000
# Aggregate expectations whose observed value is a count (suppressed below min_cell_count).
_COUNT_OBSERVED = {"ExpectTableRowCountToBeBetween", "ExpectColumnUniqueValueCountToBeBetween"}


@dataclass(frozen=True)
class EngineRun:
    results: list[CheckResult]
    docs_index: Path | None
    seconds: float


def _context(docs_dir: Path | None) -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # No temporary Data Docs site: by default each ephemeral context creates one in /tmp.
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    )
    context = gx.get_context(project_config=config, mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site(
            "omopfed",
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def _expectation(check: Check) -> Any:
    import great_expectations.expectations as gxe

    cls = getattr(gxe, check.expectation)
    meta = {"id": check.id, "kind": check.kind, "blocking": check.blocking}
    if check.derive:
        meta["derive"] = check.derive
    notes = f"{check.id} ({check.kind}, {'blocking' if check.blocking else 'warning'})"
    return cls(**check.kwargs, meta=meta, notes=f"{notes}: {check.description}")


def _vectorisable(frame: pd.DataFrame, checks: list[Check]) -> pd.DataFrame:
    """``frame`` with the columns of range checks as numpy float64 (NA as NaN).

    Great Expectations compares ranges vectorised only on numpy int/float columns; on pandas'
    nullable dtypes (Int32, Float64: what DuckDB and Parquet give) it calls Python per row,
    seconds per million rows.
    """
    columns = {
        str(c.kwargs["column"])
        for c in checks
        if c.expectation == "ExpectColumnValuesToBeBetween" and c.kwargs.get("column") in frame
    }
    extension = pd.api.extensions.ExtensionDtype
    slow = [
        c
        for c in columns
        if is_numeric_dtype(frame[c])
        and (frame[c].dtype.kind not in "if" or isinstance(frame[c].dtype, extension))
    ]
    if not slow:
        return frame
    frame = frame.copy(deep=False)
    for column in slow:
        frame[column] = frame[column].to_numpy(dtype="float64", na_value=np.nan)
    return frame


def _result_format(rows: int, index_columns: list[str]) -> dict[str, Any]:
    if rows > COMPLETE_ROWS:
        return {"result_format": "SUMMARY", "partial_unexpected_count": 20}
    fmt: dict[str, Any] = {"result_format": "COMPLETE"}
    if index_columns:
        fmt["unexpected_index_column_names"] = index_columns
    return fmt


def _to_result(check: Check, outcome: Any) -> CheckResult:
    info = outcome.exception_info or {}
    raised = info.get("raised_exception") or any(
        isinstance(v, dict) and v.get("raised_exception") for v in info.values()
    )
    error = ""
    if raised:
        messages = [info.get("exception_message")] + [
            v.get("exception_message") for v in info.values() if isinstance(v, dict)
        ]
        error = next((str(m) for m in messages if m), "Great Expectations raised an error")
    result = outcome.result or {}
    element = result.get("element_count")
    missing = result.get("missing_count")
    if (
        element is not None
        and missing is not None
        and check.expectation != "ExpectColumnValuesToBeNull"
    ):
        element = element - missing  # map checks ignore nulls: report the rows they judged
    observed = result.get("observed_value")
    return CheckResult(
        id=check.id,
        kind=check.kind,
        blocking=check.blocking,
        success=bool(outcome.success) and not raised,
        description=check.description,
        element_count=None if element is None else int(element),
        unexpected_count=None if result.get("unexpected_count") is None else int(result["unexpected_count"]),
        observed=observed if isinstance(observed, int | float | str | bool) or observed is None else str(observed),
        observed_is_count=check.expectation in _COUNT_OBSERVED,
        unit=check.unit,
        error=error,
    )  # fmt: skip


def run_suite(
    suite: Suite,
    frames: Mapping[str, pd.DataFrame],
    *,
    docs_dir: Path | None = None,
    index_columns: Mapping[str, list[str]] | None = None,
) -> EngineRun:
    """Validate ``frames`` against ``suite``; write Data Docs to ``docs_dir`` (replaced) if given.

    ``index_columns`` names, per frame, columns that identify a failing row in the Data Docs
    (the manifest's subject key) instead of its position.
    """
    started = time.perf_counter()
    import great_expectations as gx

    if docs_dir is not None and docs_dir.exists():
        shutil.rmtree(docs_dir)
    context = _context(docs_dir)
    source = context.data_sources.add_pandas(f"omopfed_{suite.name}")
    results: dict[str, CheckResult] = {}
    for frame_name in suite.frames():
        checks = [c for c in suite.checks if c.frame == frame_name]
        frame = _vectorisable(frames[frame_name], checks)
        # Built whole and added once: add_expectation re-serialises the suite on every call.
        gx_suite = context.suites.add(
            gx.ExpectationSuite(
                name=f"{suite.name}.{frame_name}",
                expectations=[_expectation(c) for c in checks],
            )
        )
        batch = source.add_dataframe_asset(frame_name).add_batch_definition_whole_dataframe("all")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite.name}.{frame_name}", data=batch, suite=gx_suite)
        )
        columns = [c for c in (index_columns or {}).get(frame_name, []) if c in frame.columns]
        outcome = definition.run(
            batch_parameters={"dataframe": frame},
            result_format=_result_format(len(frame), columns),
        )
        by_id = {r.expectation_config.meta["id"]: r for r in outcome.results}
        for check in checks:
            results[check.id] = _to_result(check, by_id[check.id])
    docs_index = None
    if docs_dir is not None:
        context.build_data_docs(site_names=["omopfed"])
        docs_index = docs_dir / "index.html"
    seconds = time.perf_counter() - started
    log.info("suite %s: %d checks in %.2f s", suite.name, len(results), seconds)
    return EngineRun([results[c.id] for c in suite.checks], docs_index, seconds)
