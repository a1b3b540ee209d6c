"""Bad input is refused with a clear, typed error before anything runs."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cohorts.compiler import Target, compile_definition, render_sql
from cohorts.db import Schemas
from cohorts.errors import (
    CohortDefinitionError,
    CohortError,
    IdentifierError,
    UnsafeSqlError,
    UnsupportedCirceError,
)
from cohorts.loader import json_definition, load_definition
from cohorts.model import json_schema, parse_definition, schema_path
from cohorts.sqldef import prepare_sql

DEFINITIONS = Path(__file__).resolve().parents[2] / "cohorts" / "definitions"
NATIVE = json.loads((DEFINITIONS / "reference_glioma.json").read_text())
CIRCE = json.loads((DEFINITIONS / "reference_glioma.circe.json").read_text())
PLACEHOLDERS = {"cdm_schema": '"cdm"', "vocab_schema": '"cdm"', "results_schema": '"results"'}


def _with(path: list, value: object) -> dict:
    data = copy.deepcopy(NATIVE)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(["index_event", "domian"], "x"), r"\$\.index_event\.domian: unknown key"),
        (_with(["inclusion_rules", 0, "min"], "18"), r"inclusion_rules\[0\]"),
        (_with(["inclusion_rules", 0, "min"], True), r"inclusion_rules\[0\]"),
        (_with(["concept_sets", "mgmt", "include"], []), r"concept_sets\.mgmt\.include"),
        (_with(["index_event", "concept_set"], "nope"), "unknown concept set 'nope'"),
        (_with(["schema_version"], 2), r"\$\.schema_version"),
        (_with(["concept_sets", "a; drop"], NATIVE["concept_sets"]["mgmt"]), "concept_sets"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_native_model_refuses(data: object, message: str) -> None:
    with pytest.raises(CohortDefinitionError, match=message):
        parse_definition(data)


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"schema_version": 1,\n "name": }')
    with pytest.raises(CohortDefinitionError, match="line 2"):
        load_definition(path)


def test_missing_file() -> None:
    with pytest.raises(CohortDefinitionError, match="does not exist"):
        load_definition(Path("/nonexistent/cohort.json"))


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (
            ["PrimaryCriteria", "CriteriaList", 0],
            {"DrugExposure": {"CodesetId": 0}},
            r"\$\.PrimaryCriteria\.CriteriaList\[0\]\.DrugExposure",
        ),
        (
            ["InclusionRules", 1, "expression", "CriteriaList", 0, "RestrictVisit"],
            True,
            r"\$\.InclusionRules\[1\]\.expression\.CriteriaList\[0\]\.RestrictVisit",
        ),
        (["EndStrategy"], {"CustomEra": {"DrugCodesetId": 1}}, r"\$\.EndStrategy\.CustomEra"),
        (["AdditionalCriteria"], {"Type": "ALL"}, r"\$\.AdditionalCriteria"),
        (["ConceptSets", 0, "expression", "items", 0, "includeMapped"], True, "includeMapped"),
    ],
)
def test_unsupported_circe_element_names_its_path(path: list, value: object, where: str) -> None:
    data = copy.deepcopy(CIRCE)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(UnsupportedCirceError, match=where):
        json_definition(json.dumps(data), "test")


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO @cdm_schema.person (person_id) VALUES (1)",
        "UPDATE @cdm_schema.person SET year_of_birth = 1",
        "DELETE FROM @cdm_schema.person",
        "DROP TABLE @cdm_schema.person",
        "CREATE TABLE x AS SELECT 1",
        "COPY @cdm_schema.person TO '/tmp/x.csv'",
        "ATTACH '/tmp/other.duckdb' AS other",
        "PRAGMA database_list",
        "SET statement_timeout = 0",
        "SELECT 1 AS subject_id; SELECT 2",
        "SELECT 1 AS subject_id /* harmless */; DROP TABLE @cdm_schema.person",
        "SELECT 1 AS subject_id -- comment\n; DELETE FROM @cdm_schema.person",
        "WITH d AS (DELETE FROM @cdm_schema.person RETURNING *) SELECT * FROM d",
        "SELECT * INTO new_table FROM @cdm_schema.person",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT E'\\'' AS x; DROP TABLE t; --'",
        "SELECT * FROM @cdm_schema.person WHERE 'unterminated",
        "SELECT * FROM @cdm_schema;DROP.person",
        "SELECT * FROM @other_schema.person",
        "   -- only a comment\n",
        "",
    ],
)
def test_sql_refused_before_running(sql: str) -> None:
    with pytest.raises(UnsafeSqlError):
        prepare_sql(sql, PLACEHOLDERS)


def test_sql_keywords_inside_strings_and_comments_are_text() -> None:
    sql = "SELECT 'drop; delete' AS note /* insert; */ FROM @cdm_schema.person -- update;\n;"
    prepared = prepare_sql(sql, PLACEHOLDERS)
    assert "'drop; delete'" in prepared and '"cdm".person' in prepared
    assert "insert" not in prepared and "update" not in prepared


@pytest.mark.parametrize("name", ['cdm"; DROP TABLE person; --', "CDM", "cdm.person", "1cdm"])
def test_injection_through_schema_names_is_refused(name: str) -> None:
    with pytest.raises(IdentifierError):
        Schemas(cdm=name)


def test_json_schema_is_published_and_current() -> None:
    assert json.loads(schema_path().read_text()) == json_schema()


def test_compiled_sql_binds_values() -> None:
    compiled = compile_definition(parse_definition(NATIVE), Target.offline("postgresql"))
    text = str(compiled.cohort.compile())
    assert "2000000100" not in text and "365" not in text  # bound, not pasted
    assert "2000000100" in render_sql(compiled.cohort, "postgresql")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _mutate(data: dict, keys: list[str], value: object) -> dict:
    data = copy.deepcopy(data)
    target = data
    for key in keys[:-1]:
        if not isinstance(target, dict) or key not in target:
            break
        target = target[key]
    if isinstance(target, dict):
        target[keys[-1]] = value
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(
        st.sampled_from(
            [
                "index_event",
                "inclusion_rules",
                "concept_sets",
                "end",
                "domain",
                "occurrence",
                "concept_set",
                "glioma",
                "include",
                "window",
                "kind",
                "min",
                "days",
                "rule",
                "name",
            ]
        ),
        min_size=1,
        max_size=3,
    ),
    value=_json,
)
def test_fuzzed_native_definitions_only_raise_cohort_errors(keys: list[str], value: object) -> None:
    for dialect in ("duckdb", "postgresql"):
        try:
            definition = parse_definition(_mutate(NATIVE, keys, value))
            render_sql(compile_definition(definition, Target.offline(dialect)).cohort, dialect)
        except CohortError:
            pass


@settings(max_examples=200, deadline=None)
@given(value=_json)
def test_fuzzed_whole_documents_only_raise_cohort_errors(value: object) -> None:
    with contextlib.suppress(CohortError):
        parse_definition(value)
