"""The concept map: how a site's measurement rows become class labels.

OMOP has no confirmed standard concepts for MGMT methylation, IDH mutation, 1p/19q codeletion
or WHO grade (design.md section 4), so ids are never hard-coded in code: they live in a
versioned TOML file shipped with omopfed (``node/data/concept_map.toml``) that a site overrides
with the ``concept_map`` key of its settings. This module reads and validates that file and
answers one question: which class does a measurement row carry?

A row is classified by, in order: ``value_as_concept_id`` (when not NULL/0), then
``value_source_value`` (case-insensitive, trimmed), then ``value_as_number`` against the
marker's numeric threshold. A row none of these classify carries no label.
"""

from __future__ import annotations

import logging
import math
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from omopfed.errors import ConfigError, field_problems

log = logging.getLogger(__name__)

DEFAULT_CONCEPT_MAP = Path(__file__).parent / "data" / "concept_map.toml"
# The markers the pipeline knows; a map naming another one is a typo, not an extension.
MARKERS = ("mgmt", "idh", "codeletion_1p19q", "grade")


class NumericRule(BaseModel):
    """value_as_number >= threshold gives ``at_or_above``, anything lower ``below``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str = ""
    threshold: float
    at_or_above: str
    below: str


class MarkerMap(BaseModel):
    """One marker: its test concepts, its classes and how values map onto them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    test_concept_ids: Annotated[list[int], Field(min_length=1)]
    classes: Annotated[list[str], Field(min_length=2)]
    value_concepts: dict[int, str] = Field(default_factory=dict)
    value_source_values: dict[str, str] = Field(default_factory=dict)
    numeric: NumericRule | None = None

    @model_validator(mode="after")
    def _known_classes(self) -> MarkerMap:
        targets = [*self.value_concepts.values(), *self.value_source_values.values()]
        if self.numeric is not None:
            targets += [self.numeric.at_or_above, self.numeric.below]
        unknown = sorted(set(targets) - set(self.classes))
        if unknown:
            raise ValueError(f"values map to classes not in `classes`: {', '.join(unknown)}")
        return self

    def classify(
        self,
        value_as_concept_id: int | None,
        value_source_value: str | None,
        value_as_number: float | None,
    ) -> str | None:
        """The class one measurement row carries, or None when it carries none."""
        if value_as_concept_id:
            found = self.value_concepts.get(int(value_as_concept_id))
            if found is not None:
                return found
        if value_source_value:
            found = self._source_lookup().get(value_source_value.strip().lower())
            if found is not None:
                return found
        if self.numeric is not None and value_as_number is not None:
            number = float(value_as_number)
            if not math.isnan(number):
                rule = self.numeric
                return rule.at_or_above if number >= rule.threshold else rule.below
        return None

    def _source_lookup(self) -> dict[str, str]:
        return {k.strip().lower(): v for k, v in self.value_source_values.items()}

    def class_index(self, name: str) -> int:
        """The integer label of a class (its position in ``classes``)."""
        return self.classes.index(name)


class ConceptMap(BaseModel):
    """The whole map: a version string and one :class:`MarkerMap` per marker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    markers: dict[str, MarkerMap]
    source: str = Field("", exclude=True, description="The file it was read from.")

    def marker(self, name: str) -> MarkerMap:
        """The map of one marker; a ConfigError naming the file when it is not there."""
        try:
            return self.markers[name]
        except KeyError:
            raise ConfigError(
                f"concept map {self.source or '<memory>'}: no key markers.{name}",
                hint=f"markers defined: {', '.join(sorted(self.markers)) or 'none'}",
            ) from None

    def test_concept_ids(self) -> dict[int, str]:
        """measurement_concept_id -> marker name, for every marker."""
        return {cid: name for name, m in self.markers.items() for cid in m.test_concept_ids}


def load_concept_map(path: Path | str | None = None) -> ConceptMap:
    """Read and validate a concept map TOML (the shipped default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_CONCEPT_MAP
    if not path.is_file():
        raise ConfigError(f"concept map {path} does not exist or is not a file")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"concept map {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data.get("markers", {}) or {}) - set(MARKERS))
    if unknown:
        raise ConfigError(
            f"concept map {path}: unknown marker key markers.{unknown[0]}",
            hint=f"known markers: {', '.join(MARKERS)}",
        )
    try:
        concept_map = ConceptMap(**data, source=str(path))
    except ValidationError as exc:
        problems = field_problems(exc.errors(), lead="key ")
        raise ConfigError(f"concept map {path}: {problems}") from None
    log.debug("concept map %s version %s loaded", path, concept_map.version)
    return concept_map
