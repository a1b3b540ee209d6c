"""Compile a native cohort definition to one SQLAlchemy Core query per question.

The cohort query is a single ``WITH ... SELECT`` (no temporary tables, so it runs inside a
read-only transaction): one CTE per concept set, one CTE of index events (the person's first
event as ``min(date)`` per person, or every distinct event date, ordered by person, inside an
observation period, joined to ``person``), and inclusion rules as ``EXISTS``/``count``
predicates on that CTE. Both databases turn the correlated ``EXISTS`` into semi-joins; the
measured effect of each choice is in docs/explanation/database.md.

Every value (concept ids, days, ages) is a bound parameter; schema references come from
:class:`cohorts.db.Database` (quoted, catalog-qualified on DuckDB) and table and column names
are constants of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.elements import quoted_name

from cohorts.db import Database, Schemas, quote_identifier
from cohorts.model import CohortDefinition, ConceptSet, EventRule, ImageRule, InclusionRule

# domain -> (table, id column, concept column, date column)
DOMAINS = {
    "condition": (
        "condition_occurrence",
        "condition_occurrence_id",
        "condition_concept_id",
        "condition_start_date",
    ),
    "procedure": (
        "procedure_occurrence",
        "procedure_occurrence_id",
        "procedure_concept_id",
        "procedure_date",
    ),
    "measurement": ("measurement", "measurement_id", "measurement_concept_id", "measurement_date"),
    "observation": ("observation", "observation_id", "observation_concept_id", "observation_date"),
}
_VALUE_COLUMNS = ("value_as_concept_id", "value_as_number")


@dataclass(frozen=True)
class Target:
    """Where the query runs: its dialect and the SQL text of each schema reference."""

    dialect: str
    cdm: str
    vocab: str

    @classmethod
    def of(cls, db: Database) -> Target:
        return cls(db.dialect, db.schema_ref(db.schemas.cdm), db.schema_ref(db.schemas.vocab))

    @classmethod
    def offline(cls, dialect: str, schemas: Schemas | None = None) -> Target:
        """For printing SQL without a database: schemas quoted but not catalog-qualified."""
        schemas = schemas or Schemas()
        return cls(dialect, quote_identifier(schemas.cdm), quote_identifier(schemas.vocab))


@dataclass(frozen=True)
class CompiledCohort:
    """The queries of one definition: rows, attrition counts and concept-set sizes."""

    cohort: Select  # subject_id, cohort_start_date, cohort_end_date
    attrition: Select  # one row: index_persons, rule_1 ... rule_n (cumulative persons)
    concept_set_sizes: dict[str, Select]  # name -> SELECT count(*) of resolved concepts
    rule_names: list[str]


class _Tables:
    """The CDM tables as Core objects, with only the columns the compiler reads."""

    def __init__(self, target: Target) -> None:
        md = sa.MetaData()
        cdm, vocab = quoted_name(target.cdm, False), quoted_name(target.vocab, False)

        def table(name: str, schema: str, *columns: tuple[str, sa.types.TypeEngine]) -> sa.Table:
            return sa.Table(name, md, *(sa.Column(c, t) for c, t in columns), schema=schema)

        i: sa.types.TypeEngine[Any] = sa.Integer()
        d: sa.types.TypeEngine[Any] = sa.Date()
        self.person = table(
            "person", cdm, ("person_id", i), ("year_of_birth", i), ("gender_concept_id", i)
        )
        self.observation_period = table(
            "observation_period",
            cdm,
            ("person_id", i),
            ("observation_period_start_date", d),
            ("observation_period_end_date", d),
        )
        self.events = {}
        for domain, (name, id_col, concept_col, date_col) in DOMAINS.items():
            extra: list[tuple[str, sa.types.TypeEngine[Any]]] = [
                (c, sa.Float() if "number" in c else i) for c in _VALUE_COLUMNS
            ]
            columns = [(id_col, i), ("person_id", i), (concept_col, i), (date_col, d)]
            if domain in ("measurement", "observation"):
                columns += extra
            self.events[domain] = table(name, cdm, *columns)
        self.image_occurrence = table(
            "image_occurrence",
            cdm,
            ("person_id", i),
            ("image_occurrence_date", d),
            ("modality_concept_id", i),
        )
        self.concept = table("concept", vocab, ("concept_id", i), ("invalid_reason", sa.String()))
        self.concept_ancestor = table(
            "concept_ancestor", vocab, ("ancestor_concept_id", i), ("descendant_concept_id", i)
        )


def _ids(values: list[int]) -> sa.BindParameter[Any]:
    return sa.bindparam(None, values, type_=sa.Integer(), expanding=True)


def _days(col: ColumnElement[object], days: int) -> ColumnElement[object]:
    """``col`` shifted by ``days``: date + integer means days on both DuckDB and PostgreSQL."""
    if days == 0:
        return col
    return col + sa.cast(sa.bindparam(None, days, type_=sa.Integer()), sa.Integer())


def _resolve(t: _Tables, concept_set: ConceptSet) -> Select:
    """Concept ids of a set, Circe's way: listed concepts that exist in ``concept``, plus valid
    descendants through ``concept_ancestor``; then the same for the excluded ones removed."""

    def expand(refs: list) -> Select:
        direct = [r.concept_id for r in refs]
        query = sa.select(t.concept.c.concept_id).where(t.concept.c.concept_id.in_(_ids(direct)))
        with_descendants = [r.concept_id for r in refs if r.descendants]
        if with_descendants:
            ca, c = t.concept_ancestor, t.concept
            descendants = (
                sa.select(c.c.concept_id)
                .join(ca, ca.c.descendant_concept_id == c.c.concept_id)
                .where(ca.c.ancestor_concept_id.in_(_ids(with_descendants)))
                .where(c.c.invalid_reason.is_(None))
            )
            return sa.union(query, descendants)  # type: ignore[return-value]
        return query

    included = expand(concept_set.include)
    if concept_set.exclude:
        return sa.except_(included, expand(concept_set.exclude))  # type: ignore[return-value]
    return included


def compile_definition(definition: CohortDefinition, target: Target) -> CompiledCohort:
    """Build the cohort, attrition and concept-set queries of ``definition`` for ``target``."""
    t = _Tables(target)
    resolved = {name: _resolve(t, cs) for name, cs in definition.concept_sets.items()}
    codesets = {name: q.cte(f"codeset_{name.lower()}") for name, q in resolved.items()}
    index = _index_events(definition, t, codesets)
    predicates = [_rule(rule, t, index, codesets) for rule in definition.inclusion_rules]
    end: ColumnElement[Any] = index.c.op_end
    if definition.end.rule == "days_after_index" and definition.end.days is not None:
        end = sa.func.least(_days(index.c.index_date, definition.end.days), index.c.op_end)
    cohort = (
        sa.select(
            index.c.person_id.label("subject_id"),
            index.c.index_date.label("cohort_start_date"),
            end.label("cohort_end_date"),
        )
        .where(sa.true(), *predicates)
        .distinct()
    )
    sizes = {name: _count(q) for name, q in resolved.items()}
    return CompiledCohort(
        cohort=cohort,
        attrition=_attrition(index, predicates),
        concept_set_sizes=sizes,
        rule_names=[rule.name for rule in definition.inclusion_rules],
    )


def _attrition(index: sa.CTE, predicates: list[ColumnElement[bool]]) -> Select:
    """One row: persons with an index event, then with an event passing rules 1..k, each k.

    Each event gets the number of leading rules it passes from a nested ``CASE`` (``CASE WHEN
    rule_1 THEN CASE WHEN rule_2 THEN ... ELSE 1 END ELSE 0 END``): a rule is evaluated at most
    once per event and only when the earlier ones passed, where counting
    ``CASE WHEN rule_1 AND ... AND rule_k`` for every k made PostgreSQL evaluate rule j's
    correlated ``EXISTS`` once for each k >= j. Grouping by person then keeps each person's
    best event, so the counts need no ``DISTINCT``.
    """
    passed: ColumnElement[Any] = sa.literal(len(predicates), sa.Integer())
    for k in range(len(predicates), 0, -1):
        passed = sa.case((predicates[k - 1], passed), else_=sa.literal(k - 1, sa.Integer()))
    best = (
        sa.select(index.c.person_id, sa.func.max(passed).label("best"))
        .group_by(index.c.person_id)
        .subquery("persons")
    )
    counts = [sa.func.count().label("index_persons")]
    for k in range(1, len(predicates) + 1):
        reached = sa.case((best.c.best >= sa.literal(k, sa.Integer()), 1), else_=None)
        counts.append(sa.func.count(reached).label(f"rule_{k}"))
    return sa.select(*counts).select_from(best)


def _count(query: Select) -> Select:
    return sa.select(sa.func.count()).select_from(query.subquery())


def concept_set_size_query(concept_set: ConceptSet, target: Target) -> Select:
    """``SELECT count(*)`` of the concepts ``concept_set`` resolves to on ``target``."""
    return _count(_resolve(_Tables(target), concept_set))


def _index_events(definition: CohortDefinition, t: _Tables, codesets: dict[str, sa.CTE]) -> sa.CTE:
    """Index events inside an observation period, with the person's demographics.

    ``first`` is pre-aggregated to one row per person (``min`` of the event date, grouped by
    person) rather than ranked with ``row_number()``: the same rows, less work, and the planner
    estimates the grouped row count from ``person_id``'s statistics, where a filter on a window
    function's result gets a default guess (0.5 % of the events on PostgreSQL) that misleads
    every join above it. ``all`` keeps one row per person and event date.

    The events are ordered by person: PostgreSQL then probes ``person``, ``observation_period``
    and the rules' (concept, person, date) indexes in key order, touching neighbouring index
    and heap pages, which measured ~45 % less CPU than the same plan over a hash aggregate's
    unordered output (docs/explanation/database.md). DuckDB's plans are unaffected.
    """
    spec = definition.index_event
    table = t.events[spec.domain]
    _, _, concept_col, date_col = DOMAINS[spec.domain]
    in_set = table.c[concept_col].in_(sa.select(codesets[spec.concept_set].c.concept_id))
    if spec.occurrence == "first":
        events = (
            sa.select(table.c.person_id, sa.func.min(table.c[date_col]).label("index_date"))
            .where(in_set)
            .group_by(table.c.person_id)
            .order_by(table.c.person_id)
        )
    else:
        events = (
            sa.select(table.c.person_id, table.c[date_col].label("index_date"))
            .where(in_set)
            .distinct()
            .order_by(table.c.person_id)
        )
    ev = events.subquery("events")
    op, person = t.observation_period, t.person
    within = sa.and_(
        op.c.person_id == ev.c.person_id,
        _days(op.c.observation_period_start_date, spec.prior_observation_days) <= ev.c.index_date,
        _days(ev.c.index_date, spec.post_observation_days) <= op.c.observation_period_end_date,
    )
    return (
        sa.select(
            ev.c.person_id,
            ev.c.index_date,
            op.c.observation_period_start_date.label("op_start"),
            op.c.observation_period_end_date.label("op_end"),
            person.c.year_of_birth,
            person.c.gender_concept_id,
        )
        .join(op, within)
        .join(person, person.c.person_id == ev.c.person_id)
        .cte("index_events")
    )


def _rule(
    rule: InclusionRule, t: _Tables, index: sa.CTE, codesets: dict[str, sa.CTE]
) -> ColumnElement[bool]:
    if rule.kind == "age":
        age = sa.extract("year", index.c.index_date) - index.c.year_of_birth
        bounds = []
        if rule.min is not None:
            bounds.append(age >= sa.bindparam(None, rule.min, type_=sa.Integer()))
        if rule.max is not None:
            bounds.append(age <= sa.bindparam(None, rule.max, type_=sa.Integer()))
        return sa.and_(*bounds)
    if rule.kind == "sex":
        return index.c.gender_concept_id.in_(_ids(rule.concept_ids))
    if rule.kind == "event":
        return _event_rule(rule, t, index, codesets)
    return _image_rule(rule, t, index, codesets)


def _count_at_least(table: sa.Table, conditions: list, min_count: int) -> ColumnElement[bool]:
    """EXISTS for one event (a semi-join), a correlated count for more."""
    if min_count == 1:
        return sa.exists().where(*conditions)
    count = sa.select(sa.func.count()).select_from(table).where(*conditions).scalar_subquery()
    return count >= sa.bindparam(None, min_count, type_=sa.Integer())


def _in_window(date: sa.Column, index: sa.CTE, rule: EventRule | ImageRule) -> list:
    return [
        date >= _days(index.c.index_date, rule.window.start_days),
        date <= _days(index.c.index_date, rule.window.end_days),
    ]


def _event_rule(
    rule: EventRule, t: _Tables, index: sa.CTE, codesets: dict[str, sa.CTE]
) -> ColumnElement[bool]:
    table = t.events[rule.domain]
    _, _, concept_col, date_col = DOMAINS[rule.domain]
    date = table.c[date_col]
    conditions = [
        table.c.person_id == index.c.person_id,
        table.c[concept_col].in_(sa.select(codesets[rule.concept_set].c.concept_id)),
        *_in_window(date, index, rule),
    ]
    if rule.within_observation_period:
        conditions += [date >= index.c.op_start, date <= index.c.op_end]
    if rule.value_concept_set is not None:
        values = sa.select(codesets[rule.value_concept_set].c.concept_id)
        conditions.append(table.c.value_as_concept_id.in_(values))
    if rule.value_range is not None:
        if rule.value_range.min is not None:
            conditions.append(table.c.value_as_number >= rule.value_range.min)
        if rule.value_range.max is not None:
            conditions.append(table.c.value_as_number <= rule.value_range.max)
    return _count_at_least(table, conditions, rule.min_count)


def _image_rule(
    rule: ImageRule, t: _Tables, index: sa.CTE, codesets: dict[str, sa.CTE]
) -> ColumnElement[bool]:
    table = t.image_occurrence
    conditions = [
        table.c.person_id == index.c.person_id,
        *_in_window(table.c.image_occurrence_date, index, rule),
    ]
    if rule.modality_concept_set is not None:
        modalities = sa.select(codesets[rule.modality_concept_set].c.concept_id)
        conditions.append(table.c.modality_concept_id.in_(modalities))
    return _count_at_least(table, conditions, rule.min_count)


def render_sql(query: Select, dialect: str) -> str:
    """The query as SQL text with its values inlined, for reading (``omopfed cohort sql``)."""
    from sqlalchemy.dialects import postgresql

    if dialect == "duckdb":
        from duckdb_engine import Dialect as DuckDBDialect

        target_dialect: sa.Dialect = DuckDBDialect()
    else:
        target_dialect = postgresql.psycopg.dialect()
    compiled = query.compile(dialect=target_dialect, compile_kwargs={"literal_binds": True})
    return str(compiled) + ";\n"
