"""Builders shared by the validation tests (no tests here): a clean synthetic CDM, and a
"doctor" that breaks one row per expectation so that one suite run proves every expectation
can fail.

The clean CDM comes from the synthetic generator with its dirt switched off (no exclusion
kinds, no null or missing labels), plus rows the generator does not write (observations,
deaths after every event), so that every table the suite covers has rows and every
expectation, warnings included, passes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from cohorts.db import Database
from cohorts.loader import load_definition
from cohorts.runner import run_cohort
from node.cache import build_dataset
from node.concept_map import load_concept_map
from node.manifest import resolve
from node.settings import SiteSettings, load_site_settings
from node.synth import omop
from node.synth import vocabulary as v
from node.synth.dicom import series_specs
from node.synth.federation import FederationRequest, generate_federation
from node.synth.profiles import get_profile, site_styles
from node.synth.subjects import plan_site
from node.validation import cdm_spec
from node.validation.model import Check

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 1, 1)
UNKNOWN_ID = 999_999_999
NONSTANDARD_CONCEPT = 2_000_009_999
# Thresholds a 12-patient tiny site meets (its slices are 230/17 mm apart, its cohort small).
SMALL_SITE = (
    "\n[validation]\nmin_cohort_size = 3\nmin_train_per_class = 1\n"
    "min_validation_per_class = 0\nmax_spacing_mm = 20.0\n"
)


def markers() -> dict[str, list[int]]:
    return {n: list(m.test_concept_ids) for n, m in load_concept_map().markers.items()}


def clean_frames(patients: int = 40, seed: int = 7) -> dict[str, pd.DataFrame]:
    """A synthetic site's CDM frames with no dirt at all."""
    profile = replace(
        get_profile("tiny"), exclusions={}, mgmt_null_rate=0.0, missing_sequence_rate=0.0
    )
    style = site_styles(1, profile)[0]
    subjects = plan_site(style, profile, patients, seed, exclusions=False)
    specs = {s.person_id: series_specs(s, style, Path("/site"), "omop", seed) for s in subjects}
    frames = omop.site_frames(subjects, specs, load_concept_map(), style.name)
    frames["observation"] = pd.DataFrame(
        {
            "observation_id": [s.person_id for s in subjects],
            "person_id": [s.person_id for s in subjects],
            "observation_concept_id": v.SEQUENCE_FEATURES["FLAIR"],
            "observation_date": [s.index_date for s in subjects],
            "observation_type_concept_id": v.EHR,
        }
    )
    dead = subjects[::5]
    frames["death"] = pd.DataFrame(
        {
            "person_id": [s.person_id for s in dead],
            "death_date": [s.obs_end + timedelta(days=10) for s in dead],
            "death_type_concept_id": v.EHR,
        }
    )
    return frames


def write_clean_cdm(url: str, patients: int = 40) -> Database:
    db = Database(url, must_exist=False)
    omop.write_site_database(db, clean_frames(patients), replace=False)
    return db


def source_column(check: Check) -> str:
    """The CDM column a check is about (derived columns are named ``<rule>__<column>``)."""
    column = str(check.kwargs.get("column") or check.kwargs.get("column_A") or "")
    return column.split("__", 1)[1] if "__" in column else column


class Doctor:
    """Breaks the raw CDM tables, one row per expectation, rows never shared between defects."""

    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        self.t = {name: frame.copy().reset_index(drop=True) for name, frame in tables.items()}
        self.used: dict[str, set[int]] = defaultdict(set)
        self.touched_persons: set[int] = set()
        self.protected_concepts = {v.EHR, v.MALE, NONSTANDARD_CONCEPT}

    def _row(self, table: str, *, clean_person: bool = False) -> int:
        frame = self.t[table]
        for row in range(len(frame)):
            if row in self.used[table]:
                continue
            if table == "concept" and int(frame.at[row, "concept_id"]) in self.protected_concepts:
                continue
            if clean_person and int(frame.at[row, "person_id"]) in self.touched_persons:
                continue
            self.used[table].add(row)
            if table == "person":
                self.touched_persons.add(int(frame.at[row, "person_id"]))
            return row
        raise AssertionError(f"no row of {table} left to doctor")

    def _set(self, table: str, row: int, column: str, value: Any) -> None:
        frame = self.t[table]
        if value is not None and not isinstance(value, pd.Timestamp | date):
            frame[column] = frame[column].astype(object)
        frame.at[row, column] = value

    def _person_of(self, table: str, row: int) -> int:
        return int(self.t[table].at[row, "person_id"])

    def _date_of(self, table: str, row: int, column: str) -> pd.Timestamp:
        return pd.Timestamp(self.t[table].at[row, column])

    def break_check(self, check: Check) -> None:
        getattr(self, "_" + check.kind)(check, check.frame, source_column(check))

    def _isRequired(self, check: Check, table: str, column: str) -> None:
        self._set(table, self._row(table), column, None)

    def _cdmDatatype(self, check: Check, table: str, column: str) -> None:
        fields = [
            f for f in cdm_spec.fields(table) if f.datatype == "integer" and not f.primary_key
        ]
        self._set(table, self._row(table), fields[0].name, "not-a-number")

    def _isPrimaryKey(self, check: Check, table: str, column: str) -> None:
        row, other = self._row(table), self._row(table)
        self._set(table, row, column, self.t[table].at[other, column])

    def _isForeignKey(self, check: Check, table: str, column: str) -> None:
        self._set(table, self._row(table), column, UNKNOWN_ID)

    def _fkDomain(self, check: Check, table: str, column: str) -> None:
        wrong = v.MALE if "type" in column else v.EHR
        self._set(table, self._row(table), column, wrong)

    def _isStandardValidConcept(self, check: Check, table: str, column: str) -> None:
        concept = self.t["concept"]
        if NONSTANDARD_CONCEPT not in set(concept["concept_id"].dropna().astype(int)):
            extra = {"concept_id": NONSTANDARD_CONCEPT, "domain_id": "Observation"}
            self.t["concept"] = pd.concat([concept, pd.DataFrame([extra])], ignore_index=True)
        self._set(table, self._row(table), column, NONSTANDARD_CONCEPT)

    def _plausibleValueLow(self, check: Check, table: str, column: str) -> None:
        low = 1800 if column == "year_of_birth" else pd.Timestamp("1900-01-01")
        self._set(table, self._row(table), column, low)

    def _plausibleValueHigh(self, check: Check, table: str, column: str) -> None:
        high = (
            TODAY.year + 1
            if column == "year_of_birth"
            else pd.Timestamp(TODAY) + pd.Timedelta(days=30)
        )
        self._set(table, self._row(table), column, high)

    def _plausibleTemporalAfter(self, check: Check, table: str, column: str) -> None:
        row = self._row(table, clean_person=True)
        if check.id.endswith("plausible_after_birth"):
            person = self.t["person"]
            born = int(
                person.loc[
                    person["person_id"] == self._person_of(table, row), "year_of_birth"
                ].iloc[0]
            )
            self._set(table, row, column, pd.Timestamp(year=born - 1, month=6, day=1))
            return
        start = str(check.kwargs["column_B"])
        self._set(table, row, column, self._date_of(table, row, start) - pd.Timedelta(days=1))

    def _plausibleDuringLife(self, check: Check, table: str, column: str) -> None:
        row = self._row(table, clean_person=True)
        death = {
            "person_id": self._person_of(table, row),
            "death_date": self._date_of(table, row, column) - pd.Timedelta(days=100),
            "death_type_concept_id": v.EHR,
        }
        self.t["death"] = pd.concat([self.t["death"], pd.DataFrame([death])], ignore_index=True)

    def _withinObservationPeriod(self, check: Check, table: str, column: str) -> None:
        row = self._row(table, clean_person=True)
        periods = self.t["observation_period"]
        mine = periods[periods["person_id"] == self._person_of(table, row)]
        first = pd.Timestamp(mine["observation_period_start_date"].min())
        self._set(table, row, column, first - pd.Timedelta(days=10))

    def _standardConceptRecordCompleteness(self, check: Check, table: str, column: str) -> None:
        self.t[table][column] = 0

    def _measureValueCompleteness(self, check: Check, table: str, column: str) -> None:
        marker = check.id.split(".")[2]
        frame = self.t["measurement"]
        rows = frame["measurement_concept_id"].isin(markers()[marker])
        for value in ("value_as_concept_id", "value_source_value", "value_as_number"):
            frame[value] = frame[value].astype(object)
            frame.loc[rows, value] = None

    def _cdmTable(self, check: Check, table: str, column: str) -> None:
        self.t[table] = self.t[table].iloc[0:0]


ROW_KINDS = {
    "isRequired",
    "cdmDatatype",
    "isPrimaryKey",
    "isForeignKey",
    "fkDomain",
    "isStandardValidConcept",
    "plausibleValueLow",
    "plausibleValueHigh",
    "plausibleTemporalAfter",
    "plausibleDuringLife",
    "withinObservationPeriod",
}
RATE_KINDS = {"standardConceptRecordCompleteness", "measureValueCompleteness"}
TABLE_KINDS = {"cdmTable"}


def pipeline_site(out: Path, patients: int = 12, seed: int = 5) -> SiteSettings:
    """A synthetic site taken through cohort, manifest and 2D dataset, with thresholds it meets."""
    generate_federation(FederationRequest(out=out, sites=1, patients=patients, seed=seed))
    site_toml = out / "site_a" / "site.toml"
    site_toml.write_text(site_toml.read_text() + SMALL_SITE)
    settings = load_site_settings(site_toml)
    definition = load_definition(ROOT / "cohorts" / "definitions" / "reference_glioma.json")
    with Database(settings.database_url.get_secret_value(), settings.schemas) as db:
        run_cohort(db, definition, 1, min_cell_count=5)
    resolve(settings, 1)
    build_dataset(settings, "densenet2d")
    return settings
