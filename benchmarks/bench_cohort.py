"""Benchmark: the reference glioma cohort as native JSON vs Circe (duckcdm) vs hand-written SQL.

Generates a synthetic CDM inside the database with SQL (default 1M persons, 10M measurements;
no DICOM), then times, in the same run, on the same data and on one connection:

- like for like, the statement(s) that produce the cohort rows and nothing else: (a) the
  native definition's compiled cohort query, (b) the Circe-translated script (temporary
  tables, then reading its output table), (c) the hand-written query
  (``reference_glioma.sql``). All three must return the same rows. Runs are interleaved
  (a, b, c, a, b, c, ...) after one warm-up run each, and the median is reported;
- separately, the full :func:`cohorts.runner.run_cohort` of each form (read-only connection,
  concept-set checks, attrition, writing ``results.cohort``), to show the overhead.

On PostgreSQL ``--index-study`` also times the native and hand-written queries with no
secondary index on the tables they read and with each index of ``sql/postgresql/indexes.sql``
left out in turn; ``--explain DIR`` writes EXPLAIN ANALYZE of the three forms (PostgreSQL:
also without indexes). Usage:

    python benchmarks/bench_cohort.py [--persons N] [--repeat R] [--url URL | --postgres]
                                      [--index-study] [--explain DIR]

Without ``--url`` a temporary DuckDB file is used; ``--postgres`` starts a throwaway cluster the
way the test suite does (tests/pgserver.py). Numbers are in docs/explanation/database.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.pgserver for --postgres

from cohorts import circe, ddl, sqldef  # noqa: E402
from cohorts.compiler import Target, compile_definition, render_sql  # noqa: E402
from cohorts.db import Database  # noqa: E402
from cohorts.errors import CohortTimeoutError  # noqa: E402
from cohorts.execute import guarded, read_only_database  # noqa: E402
from cohorts.loader import load_definition  # noqa: E402
from cohorts.runner import run_cohort  # noqa: E402
from cohorts.schema import init_cdm  # noqa: E402

DEFINITIONS = ROOT / "cohorts" / "definitions"
FORMS = {
    "native": "reference_glioma.json",
    "circe": "reference_glioma.circe.json",
    "hand": "reference_glioma.sql",
}
# The hand-written query again, with the first diagnosis as min() per person instead of
# row_number() (as the native compiler does): the best a person writing SQL would do.
HAND_MIN = """
WITH glioma AS (
    SELECT c.concept_id FROM @vocab_schema.concept c WHERE c.concept_id = 2000000100
    UNION
    SELECT c.concept_id
    FROM @vocab_schema.concept c
    JOIN @vocab_schema.concept_ancestor ca ON ca.descendant_concept_id = c.concept_id
    WHERE ca.ancestor_concept_id = 2000000100 AND c.invalid_reason IS NULL
),
first_diagnosis AS (
    SELECT person_id, min(condition_start_date) AS index_date
    FROM @cdm_schema.condition_occurrence
    WHERE condition_concept_id IN (SELECT concept_id FROM glioma)
    GROUP BY person_id
)
SELECT d.person_id AS subject_id,
       d.index_date AS cohort_start_date,
       op.observation_period_end_date AS cohort_end_date
FROM first_diagnosis d
JOIN @cdm_schema.observation_period op
  ON op.person_id = d.person_id
 AND d.index_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date
JOIN @cdm_schema.person p ON p.person_id = d.person_id
WHERE EXTRACT(YEAR FROM d.index_date) - p.year_of_birth >= 18
  AND EXISTS (
      SELECT 1 FROM @cdm_schema.measurement m
      WHERE m.person_id = d.person_id
        AND m.measurement_concept_id = 2000000201
        AND m.measurement_date BETWEEN d.index_date - 30 AND d.index_date + 365)
  AND EXISTS (
      SELECT 1 FROM @cdm_schema.procedure_occurrence po
      WHERE po.person_id = d.person_id
        AND po.procedure_concept_id = 37311324
        AND po.procedure_date BETWEEN d.index_date - 30 AND d.index_date + 365)
"""
# The statements timed like for like: the three definition files and HAND_MIN.
QUERY_FORMS = ["native", "circe", "hand", "hand_min"]
FORMS_SHOWN = ["circe", "hand", "hand_min"]
GLIOMA_SET = (2000000100, 4174444, 40571980, 2000000101, 2000000102)
Row = tuple[int, date, date]

# Per person: birth year 1930-2010, one observation period 2005-2024; 3% get a condition in the
# glioma set (plus a distractor for 1%); 10 measurements per person, of which MGMT for glioma
# patients; brain MRI for 80% of glioma patients. Every person also has 3 background conditions
# and 2 background procedures (filler concepts), so the index event and the MRI rule look for
# rare concepts in tables of millions of rows, as on a real CDM. All derived from the row number
# with modular arithmetic: the same data on both databases.
GENERATE = [
    """INSERT INTO {cdm}.person (person_id, gender_concept_id, year_of_birth, race_concept_id,
       ethnicity_concept_id)
       SELECT i, CASE WHEN i % 2 = 0 THEN 8507 ELSE 8532 END, 1930 + (i * 7919) % 81, 0, 0
       FROM generate_series(CAST(1 AS BIGINT), {n}) t(i)""",
    """INSERT INTO {cdm}.observation_period (observation_period_id, person_id,
       observation_period_start_date, observation_period_end_date, period_type_concept_id)
       SELECT i, i, DATE '2005-01-01' + CAST((i * 31) % 1500 AS INTEGER),
              DATE '2024-12-31', 32817 FROM generate_series(CAST(1 AS BIGINT), {n}) t(i)""",
    """INSERT INTO {cdm}.condition_occurrence (condition_occurrence_id, person_id,
       condition_concept_id, condition_start_date, condition_type_concept_id)
       SELECT i, i, CASE ((i - i % 100) / 100) % 6 WHEN 0 THEN 2000000100 WHEN 1 THEN 4174444
              WHEN 2 THEN 40571980 WHEN 3 THEN 2000000101 WHEN 4 THEN 2000000102
              ELSE 2000000103 END,
              DATE '2008-01-01' + CAST((i * 37) % 5000 AS INTEGER), 32817
       FROM generate_series(CAST(1 AS BIGINT), {n}) t(i) WHERE i % 100 < 3""",
    """INSERT INTO {cdm}.measurement (measurement_id, person_id, measurement_concept_id,
       measurement_date, measurement_type_concept_id, value_as_number)
       SELECT k, 1 + k % {n},
              CASE WHEN k < {n} AND k % 100 < 3 THEN 2000000201 ELSE 3000000 + (k % 50) END,
              CASE WHEN k < {n} AND k % 100 < 3
                   THEN DATE '2008-01-01' + CAST(((k + 1) * 37) % 5000 + k % 60 - 10 AS INTEGER)
                   ELSE DATE '2008-01-01' + CAST((k * 13) % 6000 AS INTEGER) END,
              32817, (k % 100) / 10.0
       FROM generate_series(CAST(0 AS BIGINT), {n} * 10 - 1) t(k)""",
    """INSERT INTO {cdm}.procedure_occurrence (procedure_occurrence_id, person_id,
       procedure_concept_id, procedure_date, procedure_type_concept_id)
       SELECT i, i, 37311324, DATE '2008-01-01' + CAST((i * 37) % 5000 + i % 40 AS INTEGER), 32817
       FROM generate_series(CAST(1 AS BIGINT), {n}) t(i) WHERE i % 100 < 3 AND i % 1000 < 800""",
    """INSERT INTO {cdm}.condition_occurrence (condition_occurrence_id, person_id,
       condition_concept_id, condition_start_date, condition_type_concept_id)
       SELECT {n} + k, 1 + k % {n}, 3000100 + k % 1000,
              DATE '2006-01-01' + CAST((k * 17) % 6500 AS INTEGER), 32817
       FROM generate_series(CAST(1 AS BIGINT), {n} * 3) t(k)""",
    """INSERT INTO {cdm}.procedure_occurrence (procedure_occurrence_id, person_id,
       procedure_concept_id, procedure_date, procedure_type_concept_id)
       SELECT {n} + k, 1 + k % {n}, 3002000 + k % 500,
              DATE '2006-01-01' + CAST((k * 23) % 6500 AS INTEGER), 32817
       FROM generate_series(CAST(1 AS BIGINT), {n} * 2) t(k)""",
]
# A vocabulary of realistic depth around the cohort's concepts: ``v`` filler concepts (ids from
# 3,000,000, which include the 50 measurement concepts) in a 5-level hierarchy, so concept-set
# resolution reads a concept_ancestor of ~5 x v rows as it would on an OHDSI vocabulary.
VOCABULARY = [
    """INSERT INTO {concept} (concept_id, concept_name, domain_id, vocabulary_id, concept_class_id,
       concept_code, valid_start_date, valid_end_date)
       SELECT 3000000 + i, 'filler', 'Measurement', 'v', 'c', CAST(i AS VARCHAR(50)),
              DATE '2000-01-01', DATE '2099-12-31'
       FROM generate_series(CAST(0 AS BIGINT), {v} - 1) t(i)""",
    """INSERT INTO {ancestor} (ancestor_concept_id, descendant_concept_id,
       min_levels_of_separation, max_levels_of_separation)
       SELECT a, d, min(lvl), min(lvl) FROM (
           SELECT 3000000 + (i - i % p) / p AS a, 3000000 + i AS d, lvl
           FROM generate_series(CAST(0 AS BIGINT), {v} - 1) t(i),
                (VALUES (1, 0), (10, 1), (100, 2), (1000, 3), (10000, 4)) l(p, lvl)) x
       GROUP BY a, d""",
]
# Tables the cohort queries read; their secondary indexes are the ones the study varies.
COHORT_TABLES = (
    "person",
    "observation_period",
    "condition_occurrence",
    "procedure_occurrence",
    "measurement",
    "concept",
    "concept_ancestor",
)


# --- the database ------------------------------------------------------------------------------


def secondary_indexes(db: Database) -> dict[str, str]:
    """name -> CREATE INDEX statement, from sql/<dialect>/indexes.sql, for the cohort tables."""
    text = ddl.ddl_path(db.dialect, "indexes.sql").read_text("utf-8")
    found = {}
    for statement in ddl.render_sql(text, db.placeholders()):
        words = statement.split()
        if words[:2] != ["CREATE", "INDEX"]:
            continue
        name = words[5] if words[2:5] == ["IF", "NOT", "EXISTS"] else words[2]
        table = statement.split(" ON ", 1)[1].split("(")[0].strip().split(".")[-1].strip('"')
        if table in COHORT_TABLES:
            found[name] = statement
    return found


def set_indexes(db: Database, wanted: set[str]) -> None:
    """Create the wanted secondary indexes of the cohort tables and drop the others."""
    statements = secondary_indexes(db)
    cdm_schema = db.schema_ref(db.schemas.cdm)
    vocab_schema = db.schema_ref(db.schemas.vocab)
    with db.begin() as conn:
        for name, statement in statements.items():
            if name in wanted:
                conn.exec_driver_sql(statement)
            else:
                schema = vocab_schema if "concept_ancestor" in name else cdm_schema
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {schema}.{name}")
    analyze(db)


def analyze(db: Database) -> None:
    if db.dialect == "postgresql":
        with db.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    db.dispose()


def generate(db: Database, persons: int, vocabulary: int = 100_000) -> None:
    """Create the CDM and fill it with SQL inside the database (no data crosses Python).

    PostgreSQL: the secondary indexes are dropped for the load and built afterwards (faster),
    then the tables are vacuumed and analysed, as a site would after its ETL.
    """
    init_cdm(db)
    indexes = set(secondary_indexes(db))
    if db.dialect == "postgresql":
        set_indexes(db, set())
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
        for statement in VOCABULARY:
            sql = statement.format(concept=vocab, ancestor=ancestor, v=int(vocabulary))
            if db.dialect == "postgresql":
                sql = sql.replace("%", "%%")
            conn.exec_driver_sql(sql)
        for statement in GENERATE:
            sql = statement.format(cdm=cdm, n=int(persons))
            if db.dialect == "postgresql":  # psycopg reads % as a parameter marker
                sql = sql.replace("%", "%%")
            conn.exec_driver_sql(sql)
    if db.dialect == "postgresql":
        set_indexes(db, indexes)
    db.dispose()


# --- the three forms, statement(s) only --------------------------------------------------------


def _rows(result: object) -> list[Row]:
    return sorted((int(r[0]), r[1], r[2]) for r in result)  # type: ignore[attr-defined]


def form_runners(db: Database) -> dict[str, Callable[[Connection], list[Row]]]:
    """Per form, a function running only the statements that produce its rows."""
    definitions = {form: load_definition(DEFINITIONS / name) for form, name in FORMS.items()}
    native = definitions["native"].native
    assert native is not None
    cohort_query = compile_definition(native, Target.of(db)).cohort
    circe_json = definitions["circe"].circe_json
    assert circe_json is not None
    statements = circe.circe_script(circe_json, db.dialect, db.placeholders())
    hand_sql = definitions["hand"].sql
    assert hand_sql is not None
    hand = sqldef.prepare_sql(hand_sql, db.placeholders())
    hand_min = sqldef.prepare_sql(HAND_MIN, db.placeholders())

    def run_native(conn: Connection) -> list[Row]:
        return _rows(conn.execute(cohort_query))

    def run_circe(conn: Connection) -> list[Row]:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {circe.OUTPUT_TABLE} (cohort_definition_id BIGINT, "
            "subject_id BIGINT, cohort_start_date DATE, cohort_end_date DATE)"
        )
        for statement in statements:
            conn.exec_driver_sql(statement)
        return _rows(
            conn.exec_driver_sql(
                f"SELECT subject_id, cohort_start_date, cohort_end_date FROM {circe.OUTPUT_TABLE}"
            )
        )

    def run_hand(conn: Connection) -> list[Row]:
        return _rows(conn.exec_driver_sql(hand))

    def run_hand_min(conn: Connection) -> list[Row]:
        return _rows(conn.exec_driver_sql(hand_min))

    return {"native": run_native, "circe": run_circe, "hand": run_hand, "hand_min": run_hand_min}


def query_connection(db: Database) -> Database:
    """Where the queries run: read-only DuckDB (as cohorts.execute does); PostgreSQL as is,
    each run in a transaction that is rolled back (Circe needs temporary tables)."""
    db.dispose()
    return read_only_database(db) if db.dialect == "duckdb" else db


def cpu_clock(conn: Connection) -> Callable[[], float] | None:
    """CPU seconds of whoever runs the query: this process (DuckDB, all its threads) or the
    PostgreSQL backend of ``conn`` (read from /proc; None when the server is elsewhere).

    On a shared machine CPU time is steadier than wall time: another tenant's load delays a
    query without making it do more work.
    """
    if conn.dialect.name == "duckdb":
        return time.process_time
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    conn.rollback()
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def clock() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    return clock


@dataclass
class Timing:
    """Wall seconds (median and best of the runs) and CPU seconds (median) of one form."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rows: int = 0
    timed_out: float | None = None  # the timeout it ran past, if it did

    @property
    def median(self) -> float:
        return statistics.median(self.wall) if self.wall else float("inf")

    @property
    def best(self) -> float:
        return min(self.wall) if self.wall else float("inf")

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu) if self.cpu else None

    def short(self) -> str:
        if self.timed_out is not None:
            return f"> {self.timed_out:g} s"
        cpu = "" if self.cpu_median is None else f"/{self.cpu_median:.3f}"
        return f"{self.median:.3f}{cpu}"

    def __str__(self) -> str:
        if self.timed_out is not None:
            return f"did not finish within {self.timed_out:g} s"
        cpu = "" if self.cpu_median is None else f"  cpu {self.cpu_median:6.3f} s"
        return f"median {self.median:6.3f} s  best {self.best:6.3f} s{cpu}"


def time_forms(
    db: Database, forms: list[str], repeat: int, timeout_s: float = 600
) -> dict[str, Timing]:
    """Per form, ``repeat`` timed runs interleaved across forms after one untimed warm-up run
    each; every form must return the same rows. A form that runs past ``timeout_s`` (the
    statement timeout of cohorts.execute) is cancelled and not run again."""
    runners = form_runners(db)
    timings = {form: Timing() for form in forms}
    first: list[Row] | None = None
    source = query_connection(db)
    with source.connect() as conn:
        clock = cpu_clock(conn)
        for attempt in range(repeat + 1):
            for form in forms:
                if timings[form].timed_out is not None:
                    continue
                transaction = conn.begin()
                cpu_start = clock() if clock else 0.0
                start = time.perf_counter()
                try:
                    with guarded(conn, timeout_s):
                        result = runners[form](conn)
                except CohortTimeoutError:
                    transaction.rollback()
                    timings[form].timed_out = timeout_s
                    continue
                elapsed = time.perf_counter() - start
                cpu = (clock() - cpu_start) if clock else None
                transaction.rollback()
                first = result if first is None else first
                if result != first:
                    raise SystemExit(f"{form} returned other rows than {forms[0]}")
                timings[form].rows = len(result)
                if attempt:
                    timings[form].wall.append(elapsed)
                    if cpu is not None:
                        timings[form].cpu.append(cpu)
    if source is not db:
        source.dispose()
    return timings


def time_run_cohort(db: Database, repeat: int) -> dict[str, Timing]:
    """Wall seconds of the full run_cohort (what `omopfed cohort run` does) per form, runs
    interleaved across forms after a warm-up run each."""
    definitions = {form: load_definition(DEFINITIONS / name) for form, name in FORMS.items()}
    timings = {form: Timing() for form in FORMS}
    for attempt in range(repeat + 1):
        for i, (form, definition) in enumerate(definitions.items(), start=1):
            start = time.perf_counter()
            run_cohort(db, definition, 100 + i, min_cell_count=5, timeout_s=600)
            if attempt:
                timings[form].wall.append(time.perf_counter() - start)
    return timings


# --- EXPLAIN -----------------------------------------------------------------------------------


def compact_duckdb_plan(yaml: str) -> str:
    """DuckDB's ``EXPLAIN (ANALYZE, FORMAT YAML)`` as one indented line per operator."""
    wanted = ("Table", "Join Type", "Conditions", "Filters", "Row Groups Scanned")
    lines: list[tuple[str, list[str]]] = []
    key = ""
    for raw in yaml.splitlines():
        text = raw.strip()
        if text.startswith("- name:"):
            depth = (len(raw) - len(raw.lstrip())) // 4
            lines.append(("  " * depth + text[7:].strip().strip('"'), []))
            key = ""
        elif lines and text.startswith('"') and '":' in text:
            key, value = (part.strip().strip('"') for part in text.split('":', 1))
            if value and (key in wanted or key in ("Cardinality", "Timing")):
                lines[-1][1].append(f"{key}: {' '.join(value.split())[:90]}")
        elif lines and text.startswith('- "') and key in wanted:
            lines[-1][1].append(f"{key}: {text[2:].strip(chr(34))[:90]}")
    return "\n".join(f"{name}  [{'; '.join(info)}]" for name, info in lines)


def explain(db: Database, out: Path, label: str, timeout_s: float = 600) -> None:
    """EXPLAIN ANALYZE of each form's statements, to ``out/<dialect>_<form>_<label>.txt``."""
    definitions = {form: load_definition(DEFINITIONS / name) for form, name in FORMS.items()}
    native = definitions["native"].native
    assert native is not None
    target = Target.of(db)
    texts: dict[str, list[str]] = {
        "native": [render_sql(compile_definition(native, target).cohort, db.dialect)],
        "hand": [sqldef.prepare_sql(definitions["hand"].sql or "", db.placeholders())],
        "hand_min": [sqldef.prepare_sql(HAND_MIN, db.placeholders())],
    }
    circe_json = definitions["circe"].circe_json
    assert circe_json is not None
    texts["circe"] = circe.circe_script(circe_json, db.dialect, db.placeholders())
    if db.dialect == "postgresql":
        prefix = "EXPLAIN (ANALYZE, BUFFERS) "
    else:
        prefix = "EXPLAIN (ANALYZE, FORMAT YAML) "
    out.mkdir(parents=True, exist_ok=True)
    source = query_connection(db)
    with source.connect() as conn:
        for form, statements in texts.items():
            transaction = conn.begin()
            if form == "circe":
                conn.exec_driver_sql(
                    f"CREATE TEMP TABLE {circe.OUTPUT_TABLE} (cohort_definition_id BIGINT, "
                    "subject_id BIGINT, cohort_start_date DATE, cohort_end_date DATE)"
                )
            parts = []
            for statement in statements:
                body = statement.strip().rstrip(";").replace("%", "%%")
                if "SELECT" not in body.upper():  # ANALYZE, CREATE TEMP TABLE t (columns)
                    conn.exec_driver_sql(body)
                    continue
                try:
                    with guarded(conn, timeout_s):
                        result = conn.exec_driver_sql(prefix + body).all()
                except CohortTimeoutError:
                    transaction.rollback()
                    transaction = conn.begin()
                    try:  # the plan it would run (Circe's temporary tables are gone now)
                        estimated = conn.exec_driver_sql("EXPLAIN " + body).all()
                        plan = "\n".join(str(r[-1]) for r in estimated)
                    except DBAPIError:
                        plan = "(not available)"
                    parts.append(
                        f"-- {body.splitlines()[0][:100]}\n-- EXPLAIN ANALYZE did not finish "
                        f"within {timeout_s:g} s; the estimated plan:\n{plan}\n"
                    )
                    break
                if db.dialect == "postgresql":
                    plan = "\n".join(str(r[0]) for r in result)
                else:
                    plan = compact_duckdb_plan(str(result[0][-1]))
                parts.append(f"-- {body.splitlines()[0][:100]}\n{plan}\n")
            transaction.rollback()
            path = out / f"{db.dialect}_{form}_{label}.txt"
            path.write_text("\n".join(parts), "utf-8")
            print(f"  wrote {path}")
    if source is not db:
        source.dispose()


# --- main --------------------------------------------------------------------------------------


def index_study(db: Database, repeat: int, timeout_s: float) -> None:
    """The three forms with every secondary index, with none, and with each one left out."""
    indexes = sorted(secondary_indexes(db))
    configs: list[tuple[str, set[str]]] = [("all indexes", set(indexes)), ("none", set())]
    configs += [(f"all but {name}", set(indexes) - {name}) for name in indexes]
    print(f"  index study ({db.dialect}): median wall s / median CPU s of {repeat} runs")
    for label, wanted in configs:
        set_indexes(db, wanted)
        timings = time_forms(db, QUERY_FORMS, repeat, timeout_s)
        shown = "  ".join(f"{form} {t.short():>13s}" for form, t in timings.items())
        print(f"    {label:45s} {shown}", flush=True)
    set_indexes(db, set(indexes))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--vocabulary", type=int, default=100_000, help="filler concepts")
    parser.add_argument("--url", default=None, help="duckdb:///... or postgresql://...")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway cluster")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--index-study", action="store_true")
    parser.add_argument(
        "--timeout", type=float, default=120, help="statement timeout (s) without indexes"
    )
    parser.add_argument("--explain", type=Path, default=None, help="write EXPLAIN ANALYZE here")
    args = parser.parse_args()
    server = None
    if args.postgres:
        from tests.pgserver import PostgresServer

        server = PostgresServer()
        url = server.create_database()
    else:
        url = args.url or f"duckdb:///{Path(tempfile.mkdtemp()) / 'bench.duckdb'}"
    try:
        db = Database(url, must_exist=False)
        bench(db, args)
    finally:
        if server is not None:
            server.stop()


def bench(db: Database, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    generate(db, args.persons, args.vocabulary)
    with db.connect() as conn:
        version = conn.exec_driver_sql("SELECT version()").scalar()
        load = os.getloadavg()[0]
    print(
        f"{db.dialect} {version}: {args.persons:,} persons, {args.persons * 10:,} measurements, "
        f"{args.vocabulary:,} filler concepts generated in {time.perf_counter() - start:.1f} s; "
        f"{os.cpu_count()} CPUs, load average {load:.1f}",
        flush=True,
    )
    timings = time_forms(db, QUERY_FORMS, args.repeat)
    print(f"  cohort statements alone, {args.repeat} interleaved runs after a warm-up:")
    for form, timing in timings.items():
        print(f"    {form:8s} {timing}  {timing.rows:,} rows")
    for what, get in (("median wall", "median"), ("best wall", "best"), ("median CPU", "cpu")):
        values = {
            form: t.cpu_median if get == "cpu" else getattr(t, get) for form, t in timings.items()
        }
        if None in values.values() or 0 in values.values():  # no CPU clock, or < its 10 ms tick
            continue
        n = float(values["native"] or 0)
        ratios = "   ".join(f"/ {form} {n / float(values[form] or 1):.2f}" for form in FORMS_SHOWN)
        print(f"    {what:12s} native {ratios}")
    full = time_run_cohort(db, args.repeat)
    print("  full run_cohort (read-only run, concept-set checks, attrition, write results):")
    for form, timing in full.items():
        overhead = timing.median - timings[form].median
        print(f"    {form:8s} {timing}  (overhead {overhead:+.3f} s over the statements)")
    print(
        f"    median wall  native / circe = {full['native'].median / full['circe'].median:.2f}"
        f"   native / hand-written = {full['native'].median / full['hand'].median:.2f}",
        flush=True,
    )
    if args.explain is not None:
        explain(db, args.explain, "indexes")
        if db.dialect == "postgresql":
            indexes = set(secondary_indexes(db))
            set_indexes(db, set())
            explain(db, args.explain, "noindexes", args.timeout)
            set_indexes(db, indexes)
    if args.index_study and db.dialect == "postgresql":
        index_study(db, args.repeat, args.timeout)


if __name__ == "__main__":
    main()
