"""Shared checks of the synthetic-federation tests: the reference cohort in SQL, label counts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from cohorts.db import Database
from node.concept_map import load_concept_map

# The reference cohort (docs/explanation/synthetic-data.md), written independently of the
# generator's truth so that the two can disagree.
REFERENCE_COHORT_SQL = """
WITH idx AS (
  SELECT co.person_id, MIN(co.condition_start_date) AS index_date
  FROM {cdm}.condition_occurrence co
  JOIN {vocab}.concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
  WHERE ca.ancestor_concept_id = 2000000100
  GROUP BY co.person_id
)
SELECT i.person_id, i.index_date, op.observation_period_end_date
FROM idx i
JOIN {cdm}.person p ON p.person_id = i.person_id
JOIN {cdm}.observation_period op ON op.person_id = i.person_id
  AND i.index_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date
WHERE EXTRACT(YEAR FROM i.index_date) - p.year_of_birth >= 18
  AND EXISTS (SELECT 1 FROM {cdm}.measurement m WHERE m.person_id = i.person_id
    AND m.measurement_concept_id = 2000000201
    AND m.measurement_date BETWEEN i.index_date - INTERVAL '30 days'
                               AND i.index_date + INTERVAL '365 days')
  AND EXISTS (SELECT 1 FROM {cdm}.procedure_occurrence po WHERE po.person_id = i.person_id
    AND po.procedure_concept_id = 37311324
    AND po.procedure_date BETWEEN i.index_date - INTERVAL '30 days'
                              AND i.index_date + INTERVAL '365 days')
ORDER BY i.person_id
"""


def query(db: Database, sql: str) -> list[Any]:
    refs = {"cdm": db.schema_ref(db.schemas.cdm), "vocab": db.schema_ref(db.schemas.vocab)}
    with db.connect() as conn:
        return list(conn.execute(sa.text(sql.format(**refs))).all())


def reference_members(db: Database) -> list[int]:
    return [int(r[0]) for r in query(db, REFERENCE_COHORT_SQL)]


def label_counts(
    db: Database, members: list[int]
) -> tuple[dict[str, int], dict[str, dict[str, int]], int]:
    """Labelled members per marker, classes per marker, members with conflicting MGMT."""
    concept_map = load_concept_map()
    markers = concept_map.test_concept_ids()
    rows = query(
        db,
        "SELECT person_id, measurement_concept_id, value_as_concept_id, value_source_value, "
        "value_as_number FROM {cdm}.measurement",
    )
    found: dict[tuple[int, str], set[str]] = defaultdict(set)
    member_set = set(members)
    for pid, concept, value_concept, source, number in rows:
        if pid in member_set and concept in markers:
            marker = markers[concept]
            klass = concept_map.marker(marker).classify(value_concept, source, number)
            if klass is not None:
                found[(pid, marker)].add(klass)
    labelled: dict[str, int] = dict.fromkeys(concept_map.markers, 0)
    classes: dict[str, dict[str, int]] = {m: {} for m in concept_map.markers}
    conflicts = 0
    for (_, marker), values in found.items():
        if len(values) > 1:
            conflicts += marker == "mgmt"
            continue
        labelled[marker] += 1
        (klass,) = values
        classes[marker][klass] = classes[marker].get(klass, 0) + 1
    return labelled, {m: dict(sorted(c.items())) for m, c in classes.items()}, conflicts
