"""The CDM's table specification and the DDL generated from it.

The spec is OHDSI's own field-level CSV for CDM 5.4 (``sql/spec/OMOP_CDMv5.4_Field_Level.csv``,
Apache-2.0) plus ``sql/spec/omopfed_Field_Level.csv`` in the same format for the MI-CDM imaging
tables (``image_occurrence``, ``image_feature``) and omopfed's additions. The DDL files in
``sql/<dialect>/cdm.sql`` are generated from it (``python -m cohorts.ddl``) and a test keeps
them in step, so the schema we create and the schema ``db check`` expects cannot drift apart.

Types: ``float`` becomes DOUBLE on DuckDB (its DECIMAL default keeps 3 decimals) and NUMERIC on
PostgreSQL as in OHDSI's own DDL. Primary keys follow the spec; foreign keys are not declared
(as in OHDSI's default DDL, they make loading order-dependent) and are checked by validation.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cohorts.db import Schemas

SPEC_FILES = ("OMOP_CDMv5.4_Field_Level.csv", "omopfed_Field_Level.csv")
DIALECTS = ("duckdb", "postgresql")

VOCAB_TABLES = frozenset(
    {
        "concept",
        "vocabulary",
        "domain",
        "concept_class",
        "concept_relationship",
        "relationship",
        "concept_synonym",
        "concept_ancestor",
        "source_to_concept_map",
        "drug_strength",
    }
)
RESULTS_TABLES = frozenset({"cohort", "cohort_definition", "omopfed_meta"})
# The tables the pipeline reads or writes: `db check` fails when one of these is missing;
# other spec tables missing are only warnings (many sites do not populate them).
PIPELINE_TABLES = frozenset(
    {
        "person",
        "observation_period",
        "visit_occurrence",
        "condition_occurrence",
        "procedure_occurrence",
        "measurement",
        "observation",
        "concept",
        "concept_ancestor",
        "cdm_source",
        "image_occurrence",
        "image_feature",
        "cohort",
        "cohort_definition",
    }
)
# omopfed's own bookkeeping: created by `db init`, never required by `db check`.
OPTIONAL_TABLES = frozenset({"omopfed_meta"})


@dataclass(frozen=True)
class FieldSpec:
    table: str
    name: str
    required: bool
    datatype: str  # as the spec writes it, lower-cased: integer, float, date, varchar(50)...
    primary_key: bool
    reserved: bool = False  # the spec quotes it (note_nlp."offset"): quote it in DDL too

    @property
    def sql_name(self) -> str:
        return f'"{self.name}"' if self.reserved else self.name


@dataclass
class TableSpec:
    name: str
    role: str  # "cdm" | "vocab" | "results"
    fields: list[FieldSpec] = field(default_factory=list)

    def schema(self, schemas: Schemas) -> str:
        return {"cdm": schemas.cdm, "vocab": schemas.vocab, "results": schemas.results}[self.role]


def sql_dir() -> Path:
    """The ``sql/`` folder: beside the packages in a checkout, inside ``omopfed`` in a wheel."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "sql", here / "omopfed" / "sql"):
        if (candidate / "spec").is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of omopfed is missing from this installation")


def _role(table: str) -> str:
    if table in VOCAB_TABLES:
        return "vocab"
    if table in RESULTS_TABLES:
        return "results"
    return "cdm"


def load_spec() -> dict[str, TableSpec]:
    """All tables of the spec files in file order; extension rows add columns to spec tables."""
    tables: dict[str, TableSpec] = {}
    for name in SPEC_FILES:
        with (sql_dir() / "spec" / name).open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                table = row["cdmTableName"].strip().lower()
                spec = tables.setdefault(table, TableSpec(table, _role(table)))
                raw_name = row["cdmFieldName"].strip().lower()
                spec.fields.append(
                    FieldSpec(
                        table=table,
                        name=raw_name.strip('"'),
                        reserved=raw_name.startswith('"'),
                        required=row["isRequired"].strip() == "Yes",
                        datatype=row["cdmDatatype"].strip().lower(),
                        primary_key=row["isPrimaryKey"].strip() == "Yes",
                    )
                )
    return tables


_VARCHAR = re.compile(r"^varchar\((\d+|max)\)$")


def column_type(datatype: str, dialect: str) -> str:
    """The column type for a spec datatype on one dialect."""
    if datatype == "integer":
        return "INTEGER"
    if datatype == "float":
        return "DOUBLE" if dialect == "duckdb" else "NUMERIC"
    if datatype == "date":
        return "DATE"
    if datatype == "datetime":
        return "TIMESTAMP"
    match = _VARCHAR.match(datatype)
    if match:
        return "TEXT" if match.group(1) == "max" else f"VARCHAR({match.group(1)})"
    raise ValueError(f"unknown datatype {datatype!r} in the CDM spec")


_PLACEHOLDER = {"cdm": "@cdm_schema", "vocab": "@vocab_schema", "results": "@results_schema"}


def render_ddl(dialect: str) -> str:
    """The CREATE TABLE statements for every spec table, with schema placeholders."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    parts = [
        "-- Generated by `python -m cohorts.ddl` from sql/spec/*.csv: do not edit by hand.",
        f"-- OMOP CDM 5.4 + MI-CDM imaging tables + omopfed additions, {dialect} dialect.",
        "",
    ]
    for table in load_spec().values():
        lines = [
            f"    {f.sql_name} {column_type(f.datatype, dialect)}{' NOT NULL' if f.required else ''}"
            for f in table.fields
        ]
        keys = [f.name for f in table.fields if f.primary_key]
        if keys:
            lines.append(f"    PRIMARY KEY ({', '.join(keys)})")
        parts.append(
            f"CREATE TABLE IF NOT EXISTS {_PLACEHOLDER[table.role]}.{table.name} (\n"
            + ",\n".join(lines)
            + "\n);\n"
        )
    return "\n".join(parts)


def ddl_path(dialect: str, name: str = "cdm.sql") -> Path:
    return sql_dir() / dialect / name


def render_sql(text: str, placeholders: dict[str, str]) -> list[str]:
    """Substitute the schema references (``Database.placeholders()``); split into statements."""
    values = placeholders
    text = re.sub(r"@(cdm_schema|vocab_schema|results_schema)\b", lambda m: values[m[1]], text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


def main(argv: list[str] | None = None) -> int:
    """Regenerate ``sql/<dialect>/cdm.sql`` (``--check`` only reports drift)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for dialect in DIALECTS:
        path = ddl_path(dialect)
        text = render_ddl(dialect)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(path))
        if not check:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(("stale: " if check else "wrote: ") + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
