"""``omopfed cohort`` end to end on a small DuckDB site: suppressed counts in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omopfed.cli import main
from tests.cohorts import cdm

DEFINITIONS = Path(__file__).resolve().parents[2] / "cohorts" / "definitions"


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    cdm.build(f"duckdb:///{tmp_path / 'cdm.duckdb'}").dispose()
    path = tmp_path / "site.toml"
    path.write_text('site_name = "t"\ndatabase_url = "duckdb:///cdm.duckdb"\nmin_cell_count = 6\n')
    return path


def test_run_json_format(settings: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "cohort",
            "run",
            str(DEFINITIONS / "reference_glioma.json"),
            "--settings",
            str(settings),
            "--id",
            "3",
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["cohort_id"] == 3
    assert [s["persons"] for s in report["attrition"]] == ["9", "8", "<6", "<6"]


def test_run_table_format(settings: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "cohort",
                "run",
                str(DEFINITIONS / "reference_glioma.sql"),
                "--settings",
                str(settings),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "<6" in text and " 4 " not in text


def test_sql_prints_compiled_query(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["cohort", "sql", str(DEFINITIONS / "reference_glioma.json"), "--dialect", "postgresql"]
        )
        == 0
    )
    assert "WITH codeset_glioma" in capsys.readouterr().out


def test_bad_definition_exits_with_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("DELETE FROM @cdm_schema.person")
    assert main(["cohort", "sql", str(bad)]) == 6
    assert "COHORT_SQL_REFUSED" in capsys.readouterr().err
