"""Run a cohort definition for a site: rows into results.cohort, attrition out, small cells hidden.

:func:`run_cohort` executes the definition read-only (:mod:`cohorts.execute`), then in ONE
read-write transaction replaces the cohort's rows in ``results.cohort`` and its row in
``results.cohort_definition``. The report it returns holds counts only as text already passed
through :func:`suppress`: a count below the site's ``min_cell_count`` is ``"<N"`` and the raw
number never leaves this module, so no output format can show it by mistake.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from cohorts.db import Database
from cohorts.errors import CohortDefinitionError
from cohorts.execute import Execution, execute
from cohorts.load import insert_dataframe
from cohorts.loader import Definition

log = logging.getLogger(__name__)

# cohort_definition columns the CDM requires NOT NULL but for which OMOP 5.4 has no standard
# concept we could confirm: 0 is OMOP's "No matching concept" (docs/reference/cohort-json.md).
DEFINITION_TYPE_CONCEPT_ID = 0
SUBJECT_CONCEPT_ID = 0
DEFAULT_TIMEOUT_S = 300.0


def suppress(count: int, min_cell_count: int) -> str:
    """A count as shown anywhere: ``"<N"`` when below the minimum cell count."""
    return f"<{min_cell_count}" if count < min_cell_count else str(count)


@dataclass(frozen=True)
class AttritionStep:
    step: str
    persons: str  # suppressed text, never the raw number


@dataclass(frozen=True)
class CohortReport:
    """What a run tells the steward; every count in it is already suppressed."""

    cohort_id: int
    name: str
    kind: str
    definition_hash: str
    persons: str
    rows: str
    empty: bool
    attrition: list[AttritionStep]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _index_label(definition: Definition) -> str:
    if definition.native is not None:
        spec = definition.native.index_event
        return f"index event: {spec.occurrence} {spec.domain} in {spec.concept_set!r}"
    if definition.kind == "circe":
        return "index event: qualifying primary criteria"
    return "persons returned by the SQL definition"


def attrition_steps(
    definition: Definition, execution: Execution, min_cell_count: int
) -> list[AttritionStep]:
    """The ATLAS-style attrition: persons after the index event, then after each rule."""
    steps = [
        AttritionStep(_index_label(definition), suppress(execution.index_persons, min_cell_count))
    ]
    for i, (name, count) in enumerate(
        zip(definition.rule_names, execution.rule_persons, strict=True), start=1
    ):
        steps.append(AttritionStep(f"rule {i}: {name}", suppress(count, min_cell_count)))
    return steps


def run_cohort(
    db: Database,
    definition: Definition,
    cohort_id: int,
    *,
    min_cell_count: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allow_empty_concept_sets: bool = False,
) -> CohortReport:
    """Execute ``definition`` read-only and store its rows as cohort ``cohort_id``."""
    if not 1 <= cohort_id <= 2_147_483_647:
        raise CohortDefinitionError(f"cohort id {cohort_id} is not a positive 32-bit integer")
    execution = execute(db, definition, timeout_s=timeout_s, allow_empty=allow_empty_concept_sets)
    write_cohort(db, definition, cohort_id, execution.rows)
    persons = len({row[0] for row in execution.rows})
    if persons == 0:
        log.warning("cohort %d (%s) is empty", cohort_id, definition.name)
    return CohortReport(
        cohort_id=cohort_id,
        name=definition.name,
        kind=definition.kind,
        definition_hash=definition.sha256,
        persons=suppress(persons, min_cell_count),
        rows=suppress(len(execution.rows), min_cell_count),
        empty=persons == 0,
        attrition=attrition_steps(definition, execution, min_cell_count),
    )


def write_cohort(
    db: Database, definition: Definition, cohort_id: int, rows: list[tuple[int, date, date]]
) -> None:
    """Replace cohort ``cohort_id``'s rows and definition record in one transaction."""
    cohort = db.qualified(db.schemas.results, "cohort")
    registry = db.qualified(db.schemas.results, "cohort_definition")
    frame = pd.DataFrame(
        [(cohort_id, *row) for row in rows],
        columns=["cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"],
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    with db.begin() as conn:
        conn.execute(
            sa.text(f"DELETE FROM {cohort} WHERE cohort_definition_id = :id"), {"id": cohort_id}
        )
        insert_dataframe(conn, cohort, frame)
        conn.execute(
            sa.text(f"DELETE FROM {registry} WHERE cohort_definition_id = :id"), {"id": cohort_id}
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {registry} (cohort_definition_id, cohort_definition_name, "
                "cohort_definition_description, definition_type_concept_id, "
                "cohort_definition_syntax, subject_concept_id, cohort_initiation_date, "
                "definition_kind, definition_hash, recorded_at) VALUES (:id, :name, :description, "
                ":type_concept, :syntax, :subject_concept, :initiated, :kind, :hash, :recorded)"
            ),
            {
                "id": cohort_id,
                "name": definition.name[:255],
                "description": definition.native.description if definition.native else None,
                "type_concept": DEFINITION_TYPE_CONCEPT_ID,
                "syntax": definition.canonical,
                "subject_concept": SUBJECT_CONCEPT_ID,
                "initiated": now.date(),
                "kind": definition.kind,
                "hash": definition.sha256,
                "recorded": now,
            },
        )
