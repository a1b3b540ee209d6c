"""The three reads the resolver makes from the CDM: cohort members, their images, their labels.

All three are plain SELECTs on one read-only connection, with values bound as parameters and
identifiers from :meth:`cohorts.db.Database.qualified`. Date windows are applied in Python, not
in SQL: interval arithmetic differs between DuckDB and PostgreSQL, and the rows per cohort are
few (one per series, a handful of measurements per person).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from cohorts.db import Database
from node.errors import CohortNotFoundError, EmptyCohortError


@dataclass(frozen=True)
class Member:
    """A cohort member: the person and the index date (earliest cohort_start_date)."""

    person_id: int
    index_date: date


@dataclass(frozen=True)
class ImageRow:
    """One ``image_occurrence`` row: a DICOM series somewhere under a DICOM root."""

    image_occurrence_id: int
    person_id: int
    on: date
    local_path: str
    series_uid: str
    study_uid: str


@dataclass(frozen=True)
class LabelRow:
    """One ``measurement`` row whose concept the concept map knows."""

    measurement_id: int
    person_id: int
    on: date
    concept_id: int
    value_as_concept_id: int | None
    value_source_value: str | None
    value_as_number: float | None


def _members_sql(db: Database) -> str:
    cohort = db.qualified(db.schemas.results, "cohort")
    return f"SELECT subject_id FROM {cohort} WHERE cohort_definition_id = :cohort_id"


def fetch_members(conn: Connection, db: Database, cohort_id: int) -> list[Member]:
    """Members of ``cohort_id``; a missing id or an empty cohort is an error that says so."""
    cohort = db.qualified(db.schemas.results, "cohort")
    registry = db.qualified(db.schemas.results, "cohort_definition")
    try:
        rows = conn.execute(
            sa.text(
                f"SELECT subject_id, MIN(cohort_start_date) FROM {cohort} "
                "WHERE cohort_definition_id = :cohort_id GROUP BY subject_id ORDER BY subject_id"
            ),
            {"cohort_id": cohort_id},
        ).all()
        defined = conn.execute(
            sa.text(f"SELECT count(*) FROM {registry} WHERE cohort_definition_id = :cohort_id"),
            {"cohort_id": cohort_id},
        ).scalar_one()
    except DBAPIError as exc:
        raise CohortNotFoundError(
            f"cannot read cohort {cohort_id} from schema {db.schemas.results!r} of "
            f"{db.display_url}",
            hint="create the tables with `omopfed db init` and run the cohort with "
            "`omopfed cohort run`",
        ) from exc
    if not rows and not defined:
        raise CohortNotFoundError(
            f"cohort {cohort_id} does not exist in {db.schemas.results}.cohort",
            hint=f"run it first: omopfed cohort run DEFINITION --settings SITE.toml --id "
            f"{cohort_id}",
        )
    if not rows:
        raise EmptyCohortError(
            f"cohort {cohort_id} is empty", hint="read its attrition with `omopfed cohort run`"
        )
    return [Member(int(pid), _as_date(start)) for pid, start in rows]


def fetch_images(conn: Connection, db: Database, cohort_id: int) -> dict[int, list[ImageRow]]:
    """Every ``image_occurrence`` row of the cohort's members, by person."""
    table = db.qualified(db.schemas.cdm, "image_occurrence")
    rows = conn.execute(
        sa.text(
            "SELECT image_occurrence_id, person_id, image_occurrence_date, local_path, "
            f"image_series_uid, image_study_uid FROM {table} "
            f"WHERE person_id IN ({_members_sql(db)}) ORDER BY image_occurrence_id"
        ),
        {"cohort_id": cohort_id},
    ).all()
    found: dict[int, list[ImageRow]] = defaultdict(list)
    for oid, pid, on, path, series, study in rows:
        found[int(pid)].append(
            ImageRow(int(oid), int(pid), _as_date(on), path or "", series or "", study or "")
        )
    return dict(found)


def fetch_labels(
    conn: Connection, db: Database, cohort_id: int, concept_ids: list[int]
) -> dict[int, list[LabelRow]]:
    """The cohort members' measurements of the concept map's test concepts, by person."""
    table = db.qualified(db.schemas.cdm, "measurement")
    query = sa.text(
        "SELECT measurement_id, person_id, measurement_date, measurement_concept_id, "
        f"value_as_concept_id, value_source_value, value_as_number FROM {table} "
        f"WHERE person_id IN ({_members_sql(db)}) AND measurement_concept_id IN :concepts "
        "ORDER BY measurement_id"
    ).bindparams(sa.bindparam("concepts", expanding=True))
    rows = conn.execute(query, {"cohort_id": cohort_id, "concepts": concept_ids}).all()
    found: dict[int, list[LabelRow]] = defaultdict(list)
    for mid, pid, on, concept, value_concept, source, number in rows:
        found[int(pid)].append(
            LabelRow(
                int(mid),
                int(pid),
                _as_date(on),
                int(concept),
                None if value_concept is None else int(value_concept),
                source,
                None if number is None else float(number),
            )
        )
    return dict(found)


def _as_date(value: object) -> date:
    """DuckDB and psycopg give ``date``; a timestamp column (some ETLs) gives ``datetime``."""
    if hasattr(value, "date") and callable(value.date):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
