"""The reference cohort on generated synthetic sites equals their truth.json, on both backends.

One small federation (two sites of the tiny profile) is generated per backend and module; each
of the three forms of the reference cohort (SQL, native JSON, Circe) is run through
:func:`cohorts.runner.run_cohort` (and once through the CLI) and must store exactly the
``reference_cohort.person_ids`` of the site's truth, with the attrition the plan implies.

The expected attrition is derived from the exclusion *kinds* the generator planned
(docs/explanation/synthetic-data.md), never from running a definition: each kind fails exactly
one step of the reference cohort.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cohorts.db import Database
from cohorts.execute import execute
from cohorts.loader import load_definition
from cohorts.runner import run_cohort, suppress
from node.settings import load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from omopfed.cli import main

DEFINITIONS = Path(__file__).resolve().parents[2] / "cohorts" / "definitions"
FORMS = {"reference_glioma.sql": 11, "reference_glioma.json": 12, "reference_glioma.circe.json": 13}
# Which attrition step each exclusion kind fails (index event, age, MGMT, MRI).
STEP_OF_KIND = {
    "meningioma": 0,  # no condition in the glioma set
    "outside_observation": 0,  # the first diagnosis lies before the observation period
    "minor": 1,
    "no_mgmt": 2,
    "mgmt_late": 2,
    "index_first": 2,  # MGMT and MRI only around a later diagnosis; the index is the first
    "mri_early": 3,
}


@dataclass(frozen=True)
class Federation:
    out: Path
    truths: dict[str, dict[str, Any]]

    def database(self, site: str) -> Database:
        settings = load_site_settings(self.out / site / "site.toml")
        return Database(settings.database_url.get_secret_value(), settings.schemas)


@pytest.fixture(
    scope="module",
    params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Federation:
    """Two tiny sites (20 persons each; every exclusion kind present), generated once."""
    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("pg_server").create_database()
    out = tmp_path_factory.mktemp(f"federation-{request.param}")
    truths = generate_federation(
        FederationRequest(out=out, sites=2, patients=20, seed=5, workers=1, db_url=db_url)
    )
    return Federation(out, truths)


def expected_attrition(truth: dict[str, Any]) -> list[int]:
    """Persons after the index event and after each rule, from the planned exclusion kinds."""
    excluded = truth["reference_cohort"]["excluded"]
    assert set(excluded) == set(STEP_OF_KIND), "every exclusion kind must be present"
    remaining, steps = truth["persons"], []
    for step in range(4):
        remaining -= sum(n for kind, n in excluded.items() if STEP_OF_KIND[kind] == step)
        steps.append(remaining)
    assert steps[-1] == truth["reference_cohort"]["members"]
    return steps


def _stored(db: Database, cohort_id: int) -> list[tuple[int, Any, Any]]:
    table = db.qualified(db.schemas.results, "cohort")
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT subject_id, cohort_start_date, cohort_end_date FROM {table} "
                "WHERE cohort_definition_id = :id ORDER BY subject_id"
            ),
            {"id": cohort_id},
        ).all()
    return [(int(r[0]), r[1], r[2]) for r in rows]


@pytest.mark.parametrize("form", list(FORMS))
def test_reference_cohort_equals_truth(federation: Federation, form: str) -> None:
    definition = load_definition(DEFINITIONS / form)
    for site, truth in federation.truths.items():
        members = truth["reference_cohort"]["person_ids"]
        with federation.database(site) as db:
            report = run_cohort(db, definition, FORMS[form], min_cell_count=1)
            stored = _stored(db, FORMS[form])
        assert [row[0] for row in stored] == sorted(members), site
        assert report.persons == report.rows == str(truth["reference_cohort"]["members"])
        assert not report.empty
        attrition = [int(step.persons) for step in report.attrition]
        if definition.kind == "sql":  # one step: the persons the query returns
            assert attrition == [len(members)]
        else:
            assert attrition == expected_attrition(truth), site


def test_three_forms_give_identical_rows(federation: Federation) -> None:
    """Same subjects, start and end dates from SQL, native JSON and Circe (parity on real data)."""
    for site, truth in federation.truths.items():
        with federation.database(site) as db:
            results = {
                form: sorted(
                    execute(
                        db, load_definition(DEFINITIONS / form), timeout_s=60, allow_empty=False
                    ).rows
                )
                for form in FORMS
            }
        reference = results["reference_glioma.sql"]
        assert [row[0] for row in reference] == sorted(truth["reference_cohort"]["person_ids"])
        for form, rows in results.items():
            assert rows == reference, f"{site}: {form} differs from the SQL form"


def test_cli_run_with_site_settings_suppresses_counts(
    federation: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    """The generated site.toml as-is (min_cell_count 5): truth's numbers, suppressed."""
    truth = federation.truths["site_b"]
    settings = federation.out / "site_b" / "site.toml"
    min_cell = load_site_settings(settings).min_cell_count
    code = main(
        [
            "cohort",
            "run",
            str(DEFINITIONS / "reference_glioma.circe.json"),
            "--settings",
            str(settings),
            "--id",
            "1",
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    members = truth["reference_cohort"]["members"]
    assert report["persons"] == suppress(members, min_cell)
    expected = [suppress(n, min_cell) for n in expected_attrition(truth)]
    assert [step["persons"] for step in report["attrition"]] == expected
    with federation.database("site_b") as db:
        assert [row[0] for row in _stored(db, 1)] == truth["reference_cohort"]["person_ids"]
