"""The native cohort definition: a small, versioned JSON format a steward can write by hand.

It covers what radiogenomics cohorts need and nothing more, so every field has one meaning and
the compiler (:mod:`cohorts.compiler`) can turn it into one query. The JSON Schema published in
``docs/reference/cohort-definition.schema.json`` is generated from these classes
(``python -m cohorts.model``) and a test keeps it in step. Unknown keys are errors: a typo in
``min_count`` must not silently widen a cohort.

Age follows the OHDSI/Circe convention: year of the index date minus year of birth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cohorts.errors import CohortDefinitionError

SCHEMA_VERSION = 1
# OMOP concept ids are 32-bit integers in the CDM DDL; anything else is a typo.
ConceptId = Annotated[int, Field(ge=0, le=2_147_483_647)]
# A window bound in days: about ±100 years keeps date arithmetic in range on both databases.
Days = Annotated[int, Field(ge=-36_600, le=36_600)]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ConceptRef(_Strict):
    """One concept of a concept set, optionally with all its descendants (concept_ancestor)."""

    concept_id: ConceptId
    descendants: bool = Field(False, description="Also every descendant in concept_ancestor.")


class ConceptSet(_Strict):
    """Concepts to match: the included ones minus the excluded ones (each with descendants)."""

    include: list[ConceptRef] = Field(min_length=1, max_length=10_000)
    exclude: list[ConceptRef] = Field(default_factory=list, max_length=10_000)


Domain = Literal["condition", "procedure", "measurement", "observation"]


class Window(_Strict):
    """Days relative to the index date, both ends included (negative = before the index)."""

    start_days: Days
    end_days: Days

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start_days > self.end_days:
            raise ValueError("start_days must not be after end_days")
        return self


class IndexEvent(_Strict):
    """The event that puts a person in the cohort; its date is the index date."""

    domain: Domain
    concept_set: Name
    occurrence: Literal["first", "all"] = Field(
        "first", description="first: each person's earliest event; all: every event."
    )
    prior_observation_days: Annotated[int, Field(ge=0, le=36_600)] = Field(
        0, description="Days of observation required before the index date."
    )
    post_observation_days: Annotated[int, Field(ge=0, le=36_600)] = Field(
        0, description="Days of observation required after the index date."
    )


class AgeRule(_Strict):
    """Age at index (year of index - year of birth) within [min, max], both included."""

    kind: Literal["age"]
    name: str = Field(min_length=1, max_length=255)
    min: Annotated[int, Field(ge=0, le=150)] | None = None
    max: Annotated[int, Field(ge=0, le=150)] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AgeRule:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class SexRule(_Strict):
    """Gender concept (person.gender_concept_id) among the listed ids (8507 male, 8532 female)."""

    kind: Literal["sex"]
    name: str = Field(min_length=1, max_length=255)
    concept_ids: list[ConceptId] = Field(min_length=1, max_length=100)


class ValueRange(_Strict):
    """A numeric value_as_number range, both ends included."""

    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)


class EventRule(_Strict):
    """At least ``min_count`` events of a domain in a concept set within a window of the index.

    For measurements and observations, ``value_concept_set`` restricts value_as_concept_id and
    ``value_range`` restricts value_as_number.
    """

    kind: Literal["event"]
    name: str = Field(min_length=1, max_length=255)
    domain: Domain
    concept_set: Name
    window: Window
    min_count: Annotated[int, Field(ge=1, le=1000)] = 1
    value_concept_set: Name | None = None
    value_range: ValueRange | None = None
    within_observation_period: bool = Field(
        False, description="Count only events inside the index event's observation period."
    )

    @model_validator(mode="after")
    def _values(self) -> EventRule:
        has_value = self.value_concept_set is not None or self.value_range is not None
        if has_value and self.domain not in ("measurement", "observation"):
            raise ValueError("value filters apply to measurement and observation only")
        return self


class ImageRule(_Strict):
    """At least ``min_count`` image series (MI-CDM image_occurrence) within a window."""

    kind: Literal["image"]
    name: str = Field(min_length=1, max_length=255)
    window: Window
    min_count: Annotated[int, Field(ge=1, le=1000)] = 1
    modality_concept_set: Name | None = None


InclusionRule = Annotated[AgeRule | SexRule | EventRule | ImageRule, Field(discriminator="kind")]


class EndRule(_Strict):
    """Cohort end: the observation period's end, or index + days capped at that end."""

    rule: Literal["observation_period_end", "days_after_index"] = "observation_period_end"
    days: Annotated[int, Field(ge=0, le=36_600)] | None = None

    @model_validator(mode="after")
    def _days(self) -> EndRule:
        if (self.rule == "days_after_index") != (self.days is not None):
            raise ValueError("days is required with days_after_index and only there")
        return self


class CohortDefinition(_Strict):
    """A native cohort definition (``schema_version`` 1)."""

    schema_version: Literal[1]
    name: str = Field(min_length=1, max_length=255)
    description: str = Field("", max_length=10_000)
    concept_sets: dict[Name, ConceptSet] = Field(min_length=1, max_length=100)
    index_event: IndexEvent
    inclusion_rules: list[InclusionRule] = Field(default_factory=list, max_length=50)
    end: EndRule = Field(default_factory=EndRule)

    @model_validator(mode="after")
    def _references(self) -> CohortDefinition:
        used = [("index_event.concept_set", self.index_event.concept_set)]
        for i, rule in enumerate(self.inclusion_rules):
            for attr in ("concept_set", "value_concept_set", "modality_concept_set"):
                value = getattr(rule, attr, None)
                if value is not None:
                    used.append((f"inclusion_rules[{i}].{attr}", value))
        for where, name in used:
            if name not in self.concept_sets:
                raise ValueError(f"{where}: unknown concept set {name!r}")
        return self


def parse_definition(data: Any, source: str = "definition") -> CohortDefinition:
    """Validate parsed JSON as a native definition; errors name each JSON path and problem."""
    if not isinstance(data, dict):
        raise CohortDefinitionError(f"{source}: a cohort definition must be a JSON object")
    try:
        return CohortDefinition.model_validate(data)
    except ValidationError as exc:
        raise CohortDefinitionError(f"{source}: {format_errors(exc)}") from None


def load_definition_text(text: str, source: str = "definition") -> CohortDefinition:
    """Parse JSON text as a native definition (see :func:`parse_definition`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CohortDefinitionError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return parse_definition(data, source)


def format_errors(exc: ValidationError) -> str:
    """One ``$.path: problem`` per error, so a steward can find each mistake in the file."""
    problems = []
    for error in exc.errors()[:10]:
        path = "$"
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{path}: {message}")
    return "; ".join(problems)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the native format, as published in docs/reference."""
    schema = CohortDefinition.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://omopfed.example/schemas/cohort-definition-1.json"
    return schema


def schema_path() -> Path:
    return Path(__file__).resolve().parent.parent / "docs/reference/cohort-definition.schema.json"


def main() -> int:
    """Write (or with ``--check`` compare) the published JSON Schema."""
    text = json.dumps(json_schema(), indent=2) + "\n"
    path = schema_path()
    if "--check" in sys.argv[1:]:
        return 0 if path.exists() and path.read_text("utf-8") == text else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
