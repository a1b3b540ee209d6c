"""Labels of one subject from its measurement rows, through the concept map.

A marker may be recorded more than once (a repeat test, a second laboratory). Rows that agree
are one label. Rows that disagree are a *conflict*, handled by the site's policy:

* ``exclude`` (default): the marker has no label, and the conflict is recorded; if the marker
  is the target, the subject is excluded with ``conflicting_label``.
* ``latest``: the class of the row with the latest ``measurement_date`` wins; rows of the same
  date are ordered by ``measurement_id`` (the one entered last wins). The conflict is recorded.
* ``fail``: the resolver stops (:class:`~node.errors.LabelConflictError`) after counting all.

Rows outside the label window, and rows none of whose values the map classifies (NULL results),
are ignored: a marker with no classifiable row has no label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from node.concept_map import ConceptMap
from node.resolver.query import LabelRow


@dataclass(frozen=True)
class SubjectLabels:
    """Class name per marker (None: no label) and the markers whose results conflicted."""

    labels: dict[str, str | None]
    conflicts: tuple[str, ...]


def resolve_labels(
    rows: Iterable[LabelRow],
    concept_map: ConceptMap,
    *,
    index_date: date,
    window_days: tuple[int, int],
    policy: str,
) -> SubjectLabels:
    """Each marker's label under ``policy`` (``exclude`` or ``latest``; ``fail`` as exclude,
    the caller raises once it has counted every conflict)."""
    markers = concept_map.test_concept_ids()
    found: dict[str, list[tuple[date, int, str]]] = {name: [] for name in concept_map.markers}
    for row in rows:
        marker = markers.get(row.concept_id)
        days = (row.on - index_date).days
        if marker is None or not window_days[0] <= days <= window_days[1]:
            continue
        klass = concept_map.markers[marker].classify(
            row.value_as_concept_id, row.value_source_value, row.value_as_number
        )
        if klass is not None:
            found[marker].append((row.on, row.measurement_id, klass))
    labels: dict[str, str | None] = {}
    conflicts = []
    for marker, results in found.items():
        classes = {klass for _, _, klass in results}
        if len(classes) <= 1:
            labels[marker] = next(iter(classes), None)
            continue
        conflicts.append(marker)
        labels[marker] = max(results)[2] if policy == "latest" else None
    return SubjectLabels(labels, tuple(sorted(conflicts)))
