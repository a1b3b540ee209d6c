"""Benchmark: the reference glioma cohort as native JSON vs Circe (duckdb-translated) vs SQL.

Generates a synthetic CDM inside the database with SQL (default 1M persons, 10M measurements;
no DICOM), then times, in the same run and on the same data, the three forms of the reference
cohort through the same read-only execution path, and prints the ratios. Usage:

    python benchmarks/bench_cohort.py [--persons N] [--url URL] [--repeat R]

Without --url a temporary DuckDB file is used. Numbers are in docs/explanation/database.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cohorts.compiler import Target, compile_definition
from cohorts.db import Database
from cohorts.execute import execute, read_only_database
from cohorts.loader import load_definition
from cohorts.schema import init_cdm

DEFINITIONS = Path(__file__).resolve().parents[1] / "cohorts" / "definitions"
GLIOMA_SET = (2000000100, 4174444, 40571980, 2000000101, 2000000102)

# Per person: birth year 1930-2010, one observation period 2005-2024; 3% get a condition in the
# glioma set (plus a distractor for 1%); 10 measurements per person, of which MGMT for glioma
# patients; brain MRI for 60% of glioma patients. All generated from person_id with hash().
GENERATE = [
    """INSERT INTO {cdm}.person (person_id, gender_concept_id, year_of_birth, race_concept_id,
       ethnicity_concept_id)
       SELECT i, CASE WHEN i % 2 = 0 THEN 8507 ELSE 8532 END, 1930 + (i * 7919) % 81, 0, 0
       FROM generate_series(1, {n}) t(i)""",
    """INSERT INTO {cdm}.observation_period (observation_period_id, person_id,
       observation_period_start_date, observation_period_end_date, period_type_concept_id)
       SELECT i, i, DATE '2005-01-01' + CAST((i * 31) % 1500 AS INTEGER),
              DATE '2024-12-31', 32817 FROM generate_series(1, {n}) t(i)""",
    """INSERT INTO {cdm}.condition_occurrence (condition_occurrence_id, person_id,
       condition_concept_id, condition_start_date, condition_type_concept_id)
       SELECT i, i, CASE ((i - i % 100) / 100) % 6 WHEN 0 THEN 2000000100 WHEN 1 THEN 4174444
              WHEN 2 THEN 40571980 WHEN 3 THEN 2000000101 WHEN 4 THEN 2000000102
              ELSE 2000000103 END,
              DATE '2008-01-01' + CAST((i * 37) % 5000 AS INTEGER), 32817
       FROM generate_series(1, {n}) t(i) WHERE i % 100 < 3""",
    """INSERT INTO {cdm}.measurement (measurement_id, person_id, measurement_concept_id,
       measurement_date, measurement_type_concept_id, value_as_number)
       SELECT k, 1 + k % {n},
              CASE WHEN k < {n} AND k % 100 < 3 THEN 2000000201 ELSE 3000000 + (k % 50) END,
              CASE WHEN k < {n} AND k % 100 < 3
                   THEN DATE '2008-01-01' + CAST(((k + 1) * 37) % 5000 + k % 60 - 10 AS INTEGER)
                   ELSE DATE '2008-01-01' + CAST((k * 13) % 6000 AS INTEGER) END,
              32817, (k % 100) / 10.0
       FROM generate_series(0, {n} * 10 - 1) t(k)""",
    """INSERT INTO {cdm}.procedure_occurrence (procedure_occurrence_id, person_id,
       procedure_concept_id, procedure_date, procedure_type_concept_id)
       SELECT i, i, 37311324, DATE '2008-01-01' + CAST((i * 37) % 5000 + i % 40 AS INTEGER), 32817
       FROM generate_series(1, {n}) t(i) WHERE i % 100 < 3 AND i % 1000 < 800""",
]


def generate(db: Database, persons: int) -> None:
    """Create the CDM and fill it with SQL inside the database (no data crosses Python)."""
    init_cdm(db)
    cdm = db.schema_ref(db.schemas.cdm)
    vocab = db.qualified(db.schemas.vocab, "concept")
    ancestor = db.qualified(db.schemas.vocab, "concept_ancestor")
    with db.begin() as conn:
        for concept in (*GLIOMA_SET, 2000000103, 2000000201, 37311324):
            conn.exec_driver_sql(
                f"INSERT INTO {vocab} (concept_id, concept_name, domain_id, vocabulary_id, "
                "concept_class_id, concept_code, valid_start_date, valid_end_date) VALUES "
                f"({concept}, 'c', 'd', 'v', 'c', '{concept}', DATE '2000-01-01', DATE '2099-12-31')"
            )
        for child in GLIOMA_SET:
            conn.exec_driver_sql(f"INSERT INTO {ancestor} VALUES (2000000100, {child}, 1, 1)")
        for statement in GENERATE:
            conn.exec_driver_sql(statement.format(cdm=cdm, n=int(persons)))
    db.dispose()


def time_form(db: Database, name: str, repeat: int) -> tuple[float, int]:
    definition = load_definition(DEFINITIONS / name)
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = len(execute(db, definition, timeout_s=600, allow_empty=False).rows)
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def time_native_query(db: Database, repeat: int) -> float:
    """The compiled native cohort query alone (no concept-set checks, no attrition)."""
    definition = load_definition(DEFINITIONS / "reference_glioma.json")
    assert definition.native is not None
    db.dispose()
    times = []
    with read_only_database(db) as ro, ro.connect() as conn:
        query = compile_definition(definition.native, Target.of(ro)).cohort
        for _ in range(repeat):
            start = time.perf_counter()
            conn.execute(query).all()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--url", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = args.url or f"duckdb:///{Path(tempfile.mkdtemp()) / 'bench.duckdb'}"
    db = Database(url, must_exist=False)
    start = time.perf_counter()
    generate(db, args.persons)
    print(
        f"{db.dialect}: generated {args.persons:,} persons, {args.persons * 10:,} "
        f"measurements in {time.perf_counter() - start:.1f} s"
    )
    results = {}
    for name in ("reference_glioma.json", "reference_glioma.circe.json", "reference_glioma.sql"):
        results[name] = time_form(db, name, args.repeat)
        print(f"  {name:30s} {results[name][0]:8.3f} s  {results[name][1]:,} rows")
    native, circe_t, hand = (results[n][0] for n in results)
    print(
        f"  native / circe = {native / circe_t:.2f}   native / hand-written = {native / hand:.2f}"
    )
    print("  (each time: the full read-only run incl. concept-set checks and attrition)")
    query_only = time_native_query(db, args.repeat)
    print(
        f"  native cohort query alone {query_only:.3f} s: / circe = {query_only / circe_t:.2f}, "
        f"/ hand-written = {query_only / hand:.2f}"
    )


if __name__ == "__main__":
    main()
