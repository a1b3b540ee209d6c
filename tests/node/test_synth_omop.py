"""The synthetic CDM holds exactly what truth.json says, checked by SQL on both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cohorts.db import Database, Schemas
from node.settings import load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from node.synth.vocabulary import GLIOMA, glioma_concept_set
from tests.node.synth_helpers import label_counts, query, reference_members


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("fed")
    truths = generate_federation(
        FederationRequest(out=out, sites=3, patients=20, seed=11, workers=2)
    )
    return out, truths


def _db(out: Path, site: str) -> Database:
    settings = load_site_settings(out / site / "site.toml")
    return Database(settings.database_url.get_secret_value(), settings.schemas, read_only=True)


def _check_site(db: Database, truth: dict[str, Any]) -> None:
    assert query(db, "SELECT count(*) FROM {cdm}.person")[0][0] == truth["persons"]
    members = reference_members(db)
    assert members == truth["reference_cohort"]["person_ids"]
    assert len(members) == truth["reference_cohort"]["members"]
    labelled, classes, conflicts = label_counts(db, members)
    assert labelled == truth["labelled_members"]
    assert classes == truth["label_classes"]
    assert conflicts == truth["conflicting_mgmt_members"]
    minors = query(
        db,
        "SELECT count(*) FROM {cdm}.person p JOIN (SELECT person_id, MIN(condition_start_date) d "
        "FROM {cdm}.condition_occurrence GROUP BY person_id) c ON c.person_id = p.person_id "
        "WHERE EXTRACT(YEAR FROM c.d) - p.year_of_birth < 18",
    )[0][0]
    assert minors == truth["minors"]
    no_images = query(
        db,
        "SELECT count(*) FROM {cdm}.procedure_occurrence po WHERE NOT EXISTS (SELECT 1 FROM "
        "{cdm}.image_occurrence io WHERE io.procedure_occurrence_id = po.procedure_occurrence_id)",
    )[0][0]
    assert no_images == truth["procedures_without_images"]
    with_all = query(
        db,
        "SELECT person_id FROM {cdm}.image_feature GROUP BY person_id "
        "HAVING count(DISTINCT image_feature_concept_id) = 4",
    )
    assert len({r[0] for r in with_all} & set(members)) == truth["members_with_all_sequences"]
    for table, rows in truth["table_rows"].items():
        schema = "vocab" if table.startswith(("concept", "domain", "vocabulary")) else "cdm"
        assert query(db, f"SELECT count(*) FROM {{{schema}}}.{table}")[0][0] == rows, table


def test_every_site_matches_its_truth(federation: tuple[Path, dict[str, Any]]) -> None:
    out, truths = federation
    assert sorted(truths) == ["site_a", "site_b", "site_c"]
    for site, truth in truths.items():
        assert json.loads((out / site / "truth.json").read_text("utf-8")) == json.loads(
            json.dumps(truth, default=str)
        )
        with _db(out, site) as db:
            _check_site(db, truth)


def test_dirt_is_present_in_known_amounts(federation: tuple[Path, dict[str, Any]]) -> None:
    _, truths = federation
    for truth in truths.values():
        excluded = truth["reference_cohort"]["excluded"]
        assert set(excluded) == {
            "minor",
            "meningioma",
            "no_mgmt",
            "mgmt_late",
            "mri_early",
            "outside_observation",
            "index_first",
        }
        assert truth["conflicting_mgmt_members"] == 1
        assert truth["procedures_without_images"] == 1
        assert len(truth["corrupt_files"]) == 1
        assert len(truth["non_dicom_files"]) == 1
        assert truth["members_with_all_sequences"] < truth["members_with_images"]
    assert truths["site_c"]["labelled_members"]["codeletion_1p19q"] == 0
    prevalences = sorted(t["style"]["mgmt_prevalence"] for t in truths.values())
    assert prevalences == pytest.approx([0.18, 0.42, 0.66])


def test_vocabulary_supports_include_descendants(federation: tuple[Path, dict[str, Any]]) -> None:
    out, _ = federation
    with _db(out, "site_a") as db:
        rows = query(
            db,
            "SELECT descendant_concept_id FROM {vocab}.concept_ancestor "
            f"WHERE ancestor_concept_id = {GLIOMA}",
        )
        assert {r[0] for r in rows} == glioma_concept_set()
        assert 2000000103 not in glioma_concept_set()
        self_rows = query(
            db,
            "SELECT count(*) FROM {vocab}.concept c JOIN {vocab}.concept_ancestor a ON "
            "a.ancestor_concept_id = c.concept_id AND a.descendant_concept_id = c.concept_id "
            "AND a.min_levels_of_separation = 0",
        )[0][0]
        total = query(db, "SELECT count(*) FROM {vocab}.concept WHERE standard_concept = 'S'")
        assert self_rows == total[0][0]


def test_db_url_writes_site_schemas_on_each_backend(cdm_url: str, tmp_path: Path) -> None:
    truths = generate_federation(
        FederationRequest(
            out=tmp_path / "fed", sites=1, patients=16, seed=5, db_url=cdm_url, workers=1
        )
    )
    truth = truths["site_a"]
    settings = load_site_settings(tmp_path / "fed" / "site_a" / "site.toml")
    assert settings.schemas == Schemas(
        cdm="site_a_cdm", vocab="site_a_cdm", results="site_a_results"
    )
    with Database(cdm_url, settings.schemas) as db:
        _check_site(db, truth)


def test_relative_out_gives_absolute_local_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    request = FederationRequest(out=Path("fed"), sites=1, patients=12, seed=3, workers=1)
    generate_federation(request)
    db = Database(f"duckdb:///{tmp_path / 'fed' / 'site_a' / 'cdm.duckdb'}")
    with db.connect() as conn:
        paths = (
            conn.exec_driver_sql(
                f"SELECT DISTINCT local_path FROM {db.qualified('cdm', 'image_occurrence')}"
            )
            .scalars()
            .all()
        )
    db.dispose()
    assert paths and all(Path(p).is_absolute() and Path(p).exists() for p in paths)
