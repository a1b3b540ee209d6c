"""The CDM conformance suite: DataQualityDashboard check kinds as Great Expectations checks.

Every check runs on one CDM table loaded into pandas (:mod:`node.validation.cdm_data`). Checks
that need another table (foreign keys, concept domains, dates against birth, death and
observation periods) read a *derived* column the data module adds: it holds the offending value
where a row breaks the rule and is null elsewhere, so the Great Expectations check is
"values must be null" and the Data Docs list the offending ids or dates themselves.

Blocking: what breaks the pipeline (required fields, types, primary keys, foreign keys between
clinical tables, empty core tables). Warnings: what degrades it (concept conformance, plausible
values and dates, value completeness). ``[validation] blocking`` promotes warnings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from node.validation import cdm_spec as spec
from node.validation.model import Check, Suite
from node.validation.policy import promote
from node.validation.thresholds import ValidationSettings

VERSION = "cdm-1"  # bump when a derivation in cdm_derive changes
NULL = "ExpectColumnValuesToBeNull"


def _c(check_id: str, kind: str, frame: str, expectation: str, blocking: bool, text: str,
       derive: str = "", **kwargs: object) -> Check:  # fmt: skip
    return Check(check_id, kind, frame, expectation, dict(kwargs), blocking, text, derive)


def _tables() -> Iterator[Check]:
    for table in (*spec.NON_EMPTY_BLOCKING, *spec.NON_EMPTY_WARNING):
        blocking = table in spec.NON_EMPTY_BLOCKING
        yield _c(f"cdm.{table}.cdm_table", "cdmTable", table, "ExpectTableRowCountToBeBetween",
                 blocking, f"{table} exists and holds rows", min_value=1)  # fmt: skip


def _fields(table: str) -> Iterator[Check]:
    for f in spec.fields(table) if table != "concept" else ():
        prefix = f"cdm.{table}.{f.name}"
        if f.required:
            yield _c(f"{prefix}.is_required", "isRequired", table, "ExpectColumnValuesToNotBeNull",
                     True, f"{table}.{f.name} is never null", column=f.name)  # fmt: skip
        if f.primary_key:
            yield _c(f"{prefix}.is_primary_key", "isPrimaryKey", table,
                     "ExpectColumnValuesToBeUnique", True, f"{table}.{f.name} is unique",
                     column=f.name)  # fmt: skip


def _datatypes(table: str) -> Iterator[Check]:
    typed = [f.name for f in spec.fields(table) if f.datatype in ("integer", "date")]
    yield _c(f"cdm.{table}.cdm_datatype", "cdmDatatype", table, NULL, True,
             f"the integer and date fields of {table} hold only integers and dates",
             derive=f"not_integer_or_date({', '.join(typed)})", column="bad_type")  # fmt: skip


def _concept_table() -> Iterator[Check]:
    yield _c("cdm.concept.concept_id.is_primary_key", "isPrimaryKey", "concept",
             "ExpectColumnValuesToBeUnique", True, "concept.concept_id is unique",
             column="concept_id")  # fmt: skip


def _foreign_keys(table: str) -> Iterator[Check]:
    for fk in spec.foreign_keys():
        if fk.table != table:
            continue
        prefix = f"cdm.{table}.{fk.column}"
        clinical = fk.ref_table != "concept"
        zero = "" if clinical else "; 0 allowed"
        yield _c(f"{prefix}.is_foreign_key", "isForeignKey", table, NULL, clinical,
                 f"every {table}.{fk.column} exists in {fk.ref_table}.{fk.ref_column}",
                 derive=f"orphan({fk.column} -> {fk.ref_table}.{fk.ref_column}{zero})",
                 column=f"orphan__{fk.column}")  # fmt: skip
        if fk.domain:
            yield _c(f"{prefix}.fk_domain", "fkDomain", table, NULL, False,
                     f"{table}.{fk.column} concepts are in domain {fk.domain!r}",
                     derive=f"domain({fk.column}) == {fk.domain}",
                     column=f"wrong_domain__{fk.column}")  # fmt: skip


def _concepts(table: str, t: ValidationSettings) -> Iterator[Check]:
    column = spec.MAIN_CONCEPTS.get(table)
    if column is None:
        return
    prefix = f"cdm.{table}.{column}"
    yield _c(f"{prefix}.is_standard_valid_concept", "isStandardValidConcept", table, NULL, False,
             f"{table}.{column} concepts are standard and valid",
             derive=f"nonstandard({column})", column=f"nonstandard__{column}")  # fmt: skip
    yield _c(f"{prefix}.standard_concept_record_completeness",
             "standardConceptRecordCompleteness", table, "ExpectColumnValuesToNotBeInSet", False,
             f"at most {t.max_unmapped_concept_fraction:.0%} of {table}.{column} are 0",
             column=column, value_set=[0],
             mostly=round(1 - t.max_unmapped_concept_fraction, 6))  # fmt: skip


def _person(t: ValidationSettings) -> Iterator[Check]:
    yield _c("cdm.person.year_of_birth.plausible_value_low", "plausibleValueLow", "person",
             "ExpectColumnValuesToBeBetween", False,
             f"year_of_birth is {t.earliest_year_of_birth} or later",
             column="year_of_birth", min_value=t.earliest_year_of_birth)  # fmt: skip
    yield _c("cdm.person.year_of_birth.plausible_value_high", "plausibleValueHigh", "person",
             NULL, False, "year_of_birth is not in the future", derive="future(year_of_birth)",
             column="future__year_of_birth")  # fmt: skip


def _dates(table: str, t: ValidationSettings) -> Iterator[Check]:
    if table not in spec.EVENT_DATES:
        return
    start, end = spec.EVENT_DATES[table]
    prefix = f"cdm.{table}.{start}"
    # Derived, not ExpectColumnValuesToBeBetween: on dates that one calls Python per row.
    yield _c(f"{prefix}.plausible_value_low", "plausibleValueLow", table, NULL, False,
             f"{table}.{start} is {t.earliest_plausible_date} or later",
             derive=f"before({start}, {t.earliest_plausible_date})",
             column=f"too_early__{start}")  # fmt: skip
    yield _c(f"{prefix}.plausible_value_high", "plausibleValueHigh", table, NULL, False,
             f"{table}.{start} is not in the future", derive=f"future({start})",
             column=f"future__{start}")  # fmt: skip
    yield _c(f"{prefix}.plausible_after_birth", "plausibleTemporalAfter", table, NULL, False,
             f"{table}.{start} is not before the year of birth",
             derive=f"before_birth({start})", column=f"before_birth__{start}")  # fmt: skip
    if end is not None:
        yield _c(f"cdm.{table}.{end}.plausible_temporal_after", "plausibleTemporalAfter", table,
                 "ExpectColumnPairValuesAToBeGreaterThanB", False,
                 f"{table}.{end} is not before {start}", column_A=end, column_B=start,
                 or_equal=True, ignore_row_if="either_value_is_missing")  # fmt: skip
    if table not in ("death", "observation_period"):
        yield _c(f"{prefix}.plausible_during_life", "plausibleDuringLife", table, NULL, False,
                 f"{table}.{start} is at most {t.max_days_after_death} days after death",
                 derive=f"after_death({start}, {t.max_days_after_death} days)",
                 column=f"after_death__{start}")  # fmt: skip
    if table in spec.OBSERVED_EVENTS:
        share = t.max_outside_observation_fraction
        yield _c(f"{prefix}.within_observation_period", "withinObservationPeriod", table, NULL,
                 False, f"at most {share:.0%} of {table}.{start} fall outside observation",
                 derive=f"outside_observation({start})", column=f"outside_observation__{start}",
                 mostly=round(1 - share, 6))  # fmt: skip


def _markers(t: ValidationSettings, markers: Mapping[str, list[int]]) -> Iterator[Check]:
    for marker, concept_ids in sorted(markers.items()):
        yield _c(f"cdm.measurement.{marker}.measure_value_completeness",
                 "measureValueCompleteness", "measurement_markers", "ExpectColumnValuesToBeInSet",
                 False, f"at least {t.min_marker_value_completeness:.0%} of {marker} "
                 "measurements carry a value",
                 derive=f"has_value(measurement_concept_id in {sorted(concept_ids)})",
                 column=f"has_value__{marker}", value_set=[True],
                 mostly=t.min_marker_value_completeness)  # fmt: skip


def build_cdm_suite(t: ValidationSettings, markers: Mapping[str, list[int]]) -> Suite:
    """The CDM suite for these thresholds and marker test concepts (from the concept map)."""
    checks: list[Check] = list(_tables())
    for table in spec.TABLES:
        if table == "concept":
            checks.extend(_concept_table())
            continue
        checks.extend(_fields(table))
        checks.extend(_datatypes(table))
        checks.extend(_foreign_keys(table))
        checks.extend(_concepts(table, t))
        checks.extend(_dates(table, t))
    checks.extend(_person(t))
    checks.extend(_markers(t, markers))
    return Suite("cdm", VERSION, tuple(promote(checks, t.blocking)))
