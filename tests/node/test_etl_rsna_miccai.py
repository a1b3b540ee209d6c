"""The RSNA-MICCAI importer on a synthetic tree with every odd case, and on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from cohorts.db import Database
from node.concept_map import load_concept_map
from node.etl.errors import EtlInputError, EtlTargetError
from node.etl.rsna_miccai import ImportOptions, import_rsna_miccai
from node.settings import load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from omopfed.cli import main
from tests.node.synth_helpers import query


@pytest.fixture(scope="module")
def rsna_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("rsna")
    truths = generate_federation(
        FederationRequest(out=out, sites=1, patients=20, seed=4, layout="rsna-miccai", workers=2)
    )
    return out / "site_a", truths["site_a"]["rsna"]


@pytest.fixture
def site(rsna_tree: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A private copy (the import writes into the site's CDM)."""
    source, truth = rsna_tree
    copy = tmp_path / "site_a"
    shutil.copytree(source, copy)
    return copy, truth


def _db(site_dir: Path) -> Database:
    settings = load_site_settings(site_dir / "site.toml")
    return Database(settings.database_url.get_secret_value(), settings.schemas)


def _run(site_dir: Path) -> Any:
    with _db(site_dir) as db:
        return import_rsna_miccai(site_dir, site_dir / "train_labels.csv", db, load_concept_map())


def test_import_reports_every_odd_case(site: tuple[Path, dict[str, Any]]) -> None:
    site_dir, truth = site
    assert all(n >= 1 for n in truth["skipped"].values()), truth["skipped"]
    report = _run(site_dir)
    assert len(report.imported) == truth["imported_patients"]
    assert report.series == truth["imported_series"]
    assert report.mgmt_measurements == truth["mgmt_measurements"]
    assert report.default_dates == truth["patients_without_study_date"]
    assert report.skipped_by_reason() == truth["skipped"]
    with _db(site_dir) as db:
        assert query(db, "SELECT count(*) FROM {cdm}.person")[0][0] == truth["imported_patients"]
        assert (
            query(db, "SELECT count(*) FROM {cdm}.image_occurrence")[0][0]
            == truth["imported_series"]
        )
        methylated = query(
            db, "SELECT count(*) FROM {cdm}.measurement WHERE value_as_concept_id = 2000000301"
        )[0][0]
        assert methylated == truth["methylated"]
        ids = query(db, "SELECT person_source_value FROM {cdm}.person ORDER BY 1")
        assert ids[0][0].startswith("BraTS21ID:0000")  # leading zeros kept


def test_second_run_adds_nothing(site: tuple[Path, dict[str, Any]]) -> None:
    site_dir, truth = site
    _run(site_dir)
    with _db(site_dir) as db:
        before = query(db, "SELECT count(*) FROM {cdm}.measurement")[0][0]
    again = _run(site_dir)
    assert again.imported == []
    assert len(again.already_present) == truth["imported_patients"]
    with _db(site_dir) as db:
        assert query(db, "SELECT count(*) FROM {cdm}.measurement")[0][0] == before
        assert query(db, "SELECT count(*) FROM {cdm}.person")[0][0] == truth["imported_patients"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("BraTS21ID,MGMT\n00001,1\n", "missing column"),
        ("BraTS21ID,MGMT_value\n00001,2\n", "not 0 or 1"),
        ("BraTS21ID,MGMT_value\nabc,1\n", "not a number"),
        ("BraTS21ID,MGMT_value\n00001,1\n1,0\n", "appears twice"),
    ],
)
def test_bad_labels_file_imports_nothing(
    site: tuple[Path, dict[str, Any]], labels: str, message: str
) -> None:
    site_dir, _ = site
    bad = _write(site_dir / "bad.csv", labels)
    with _db(site_dir) as db, pytest.raises(EtlInputError, match=message):
        import_rsna_miccai(site_dir, bad, db, load_concept_map())
    with _db(site_dir) as db:
        assert query(db, "SELECT count(*) FROM {cdm}.person")[0][0] == 0


def test_missing_root_or_file_root_is_an_input_error(site: tuple[Path, dict[str, Any]]) -> None:
    site_dir, _ = site
    labels = site_dir / "train_labels.csv"
    with _db(site_dir) as db:
        with pytest.raises(EtlInputError, match="does not exist"):
            import_rsna_miccai(site_dir / "nowhere", labels, db, load_concept_map())
        with pytest.raises(EtlInputError, match="is a file"):
            import_rsna_miccai(labels, labels, db, load_concept_map())
        with pytest.raises(EtlInputError, match="labels file"):
            import_rsna_miccai(site_dir, site_dir / "none.csv", db, load_concept_map())


def test_cdm_without_tables_is_refused(site: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    site_dir, _ = site
    empty = Database(f"duckdb:///{tmp_path / 'empty.duckdb'}", must_exist=False)
    with empty, pytest.raises(EtlTargetError, match="db init"):
        import_rsna_miccai(
            site_dir, site_dir / "train_labels.csv", empty, load_concept_map(), ImportOptions()
        )


def test_cli_exit_codes(
    site: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    site_dir, truth = site
    args = ["etl", "rsna-miccai", str(site_dir), "--settings", str(site_dir / "site.toml")]
    assert main([*args, "--labels", str(site_dir / "train_labels.csv"), "--format", "json"]) == 0
    assert f'"imported": {truth["imported_patients"]}' in capsys.readouterr().out
    bad = _write(site_dir / "bad.csv", "id,value\n")
    assert main([*args, "--labels", str(bad)]) == 7
    assert "ETL_INPUT" in capsys.readouterr().err
