"""Which CDM tables and columns the conformance suite covers, read from the CDM field spec.

Required and primary-key flags come from :func:`cohorts.ddl.load_spec` (the same spec the DDL is
generated from), foreign keys and their expected domain from the same CSV files' ``isForeignKey``
/ ``fkTableName`` / ``fkDomain`` columns, so the suite cannot drift from the schema omopfed
creates. Only the tables the pipeline reads are covered; a foreign key into a table outside
them (provider, care_site, location, visit_detail) is not checked, and DQD's ``fkClass`` has no
rows in these tables (it concerns drug_strength), so it has no check here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache

from cohorts.ddl import SPEC_FILES, FieldSpec, load_spec, sql_dir

# The tables the suite reads, in load order (referenced tables first).
TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
    "image_occurrence",
    "image_feature",
    "concept",
)
# Tables that must hold rows for the pipeline to work at all (blocking "cdmTable" checks); the
# vocabulary only warns: without it the concept checks are vacuous, which the warning says.
NON_EMPTY_BLOCKING = (
    "person",
    "observation_period",
    "procedure_occurrence",
    "measurement",
    "image_occurrence",
)
NON_EMPTY_WARNING = ("concept",)
# Tables whose rows are referenced by foreign keys the suite checks.
REFERENCED = {
    "person": "person_id",
    "visit_occurrence": "visit_occurrence_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "image_occurrence": "image_occurrence_id",
    "concept": "concept_id",
}
# Start (and end) date of each table's events: temporal plausibility checks.
EVENT_DATES: dict[str, tuple[str, str | None]] = {
    "observation_period": ("observation_period_start_date", "observation_period_end_date"),
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "condition_occurrence": ("condition_start_date", "condition_end_date"),
    "procedure_occurrence": ("procedure_date", "procedure_end_date"),
    "measurement": ("measurement_date", None),
    "observation": ("observation_date", None),
    "image_occurrence": ("image_occurrence_date", None),
    "death": ("death_date", None),
}
# Events that must fall inside an observation period of their person.
OBSERVED_EVENTS = (
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "measurement",
    "observation",
    "image_occurrence",
)
# The concept column that says what each row *is*: standard and valid, rarely 0 (DQD
# isStandardValidConcept / standardConceptRecordCompleteness).
MAIN_CONCEPTS = {
    "person": "gender_concept_id",
    "visit_occurrence": "visit_concept_id",
    "condition_occurrence": "condition_concept_id",
    "procedure_occurrence": "procedure_concept_id",
    "measurement": "measurement_concept_id",
    "observation": "observation_concept_id",
    "image_occurrence": "modality_concept_id",
    "image_feature": "image_feature_concept_id",
}
# Columns of the concept table the concept checks need.
CONCEPT_COLUMNS = ("concept_id", "domain_id", "standard_concept", "invalid_reason")


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    ref_table: str
    ref_column: str
    domain: str | None  # DQD fkDomain: the concept's domain_id must be this


@cache
def fields(table: str) -> tuple[FieldSpec, ...]:
    """The spec's fields of one table, in spec order."""
    return tuple(load_spec()[table].fields)


@cache
def foreign_keys() -> tuple[ForeignKey, ...]:
    """Foreign keys of the suite's tables into tables the suite reads."""
    found = []
    for name in SPEC_FILES:
        with (sql_dir() / "spec" / name).open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                table = row["cdmTableName"].strip().lower()
                ref = row.get("fkTableName", "NA").strip().lower()
                if table not in TABLES or row.get("isForeignKey", "").strip() != "Yes":
                    continue
                if ref not in REFERENCED:
                    continue
                domain = row.get("fkDomain", "NA").strip()
                found.append(
                    ForeignKey(
                        table=table,
                        column=row["cdmFieldName"].strip().lower().strip('"'),
                        ref_table=ref,
                        ref_column=row["fkFieldName"].strip().lower(),
                        domain=None if domain in ("", "NA") else domain,
                    )
                )
    return tuple(found)


def loaded_columns(table: str) -> tuple[str, ...]:
    """The columns the suite reads from a table: all spec columns (a subset for concept)."""
    if table == "concept":
        return CONCEPT_COLUMNS
    return tuple(f.name for f in fields(table))


def datatype(table: str, column: str) -> str:
    for f in fields(table):
        if f.name == column:
            return f.datatype
    raise KeyError(f"{table}.{column}")
