"""The omopfed command as a user runs it: exit statuses, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cohorts.db import Database
from omopfed import offline
from omopfed.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_db_init_check_info_round_trip(cdm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "init", "--url", cdm_url)
    assert code == 0 and "created 42 table(s)" in out
    code, out, _ = run(capsys, "db", "init", "--url", cdm_url)
    assert code == 0 and "created 0 table(s), 42 already present" in out
    code, out, _ = run(capsys, "db", "check", "--url", cdm_url)
    assert code == 0 and "matches the CDM 5.4 spec" in out
    code, out, _ = run(capsys, "db", "info", "--url", cdm_url, "--format", "json")
    assert code == 0 and json.loads(out)["tables"]["cdm.person"] == 0


def test_db_check_fails_on_a_dropped_required_column(
    cdm_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "db", "init", "--url", cdm_url)[0] == 0
    with Database(cdm_url) as db, db.begin() as conn:
        conn.exec_driver_sql(
            f"ALTER TABLE {db.qualified('cdm', 'person')} DROP COLUMN year_of_birth"
        )
    code, out, _ = run(capsys, "db", "check", "--url", cdm_url, "--format", "json")
    report = json.loads(out)
    assert code == 5 and report["errors"] == 1
    assert report["differences"][0]["column"] == "year_of_birth"


def test_db_init_refuses_a_foreign_cdm(cdm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Database(cdm_url, must_exist=False) as db, db.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA cdm")
        conn.exec_driver_sql(f"CREATE TABLE {db.qualified('cdm', 'person')} (person_id INTEGER)")
    code, _, err = run(capsys, "db", "init", "--url", cdm_url)
    assert code == 5 and "error[SCHEMA]" in err and "--adopt" in err
    assert run(capsys, "db", "init", "--url", cdm_url, "--adopt")[0] == 0


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("postgresql://nobody@127.0.0.1:1/x", 4, "cannot open postgresql+psycopg://nobody@"),
        ("::not a url::", 4, "malformed database URL"),
        ("oracle://a@b/c", 4, "unsupported database backend 'oracle'"),
        ("duckdb:////no/such/dir/cdm.duckdb", 4, "directory /no/such/dir does not exist"),
    ],
)
def test_bad_database_urls(
    capsys: pytest.CaptureFixture[str], url: str, code: int, message: str
) -> None:
    status, _, err = run(capsys, "db", "init", "--url", url)
    assert status == code and message in err and "Traceback" not in err


def test_check_on_a_missing_duckdb_file_does_not_create_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cdm.duckdb"
    code, _, err = run(capsys, "db", "check", "--url", f"duckdb:///{path}")
    assert code == 4 and "no DuckDB database" in err and not path.exists()


def test_bad_schema_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"duckdb:///{tmp_path / 'cdm.duckdb'}"
    code, _, err = run(capsys, "db", "init", "--url", url, "--cdm-schema", 'cdm"; drop')
    assert code == 6 and "not a plain SQL name" in err and not (tmp_path / "cdm.duckdb").exists()


def test_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site_name = "a"\ndatabase_url = "postgresql://u:pw@h/db"\n')
    code, out, _ = run(capsys, "config", "check", str(path), "--format", "json")
    shown = json.loads(out)
    assert code == 0 and shown["database_url"] == "postgresql+psycopg://u:***@h/db"
    assert "pw@" not in out
    code, _, err = run(capsys, "config", "check", str(tmp_path / "missing.toml"))
    assert code == 3 and "error[CONFIG]" in err and "missing.toml does not exist" in err


def test_url_and_settings_are_exclusive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "db", "check")
    assert code == 3 and "exactly one of --url or --settings" in err


def test_db_commands_take_a_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'site_name = "a"\ndatabase_url = "duckdb:///site.duckdb"\ncdm_schema = "omop"\n'
    )
    assert run(capsys, "db", "init", "--settings", str(path))[0] == 0
    code, out, _ = run(capsys, "db", "info", "--settings", str(path), "--format", "json")
    assert code == 0 and "omop.person" in json.loads(out)["tables"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "db", "init", "--no-such-flag")[0] == 2


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_runs_the_whole_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`omopfed demo` on the tiny profile: three sites pass the gate, both runs, the report."""
    workspace = tmp_path / "demo"
    args = ("demo", "--workspace", str(workspace), "--profile", "tiny", "--epochs", "1")
    code, out, err = run(capsys, *args, "--rounds", "1")
    assert code == 0, err + out
    report = workspace / "study" / "report" / "report.html"
    assert report.is_file() and f"report: {report}" in out
    state = json.loads((workspace / "demo.json").read_text())
    for site in ("site_a", "site_b", "site_c"):
        assert state["done"][f"site:{site}"]["result"]["gate_passed"] is True
        assert site in out
    assert "FAILED" not in out
    # A rerun reuses every finished step; other options are refused with a hint.
    code, out, _ = run(capsys, *args, "--rounds", "1")
    assert code == 0 and out.count("(reused)") == 7
    code, _, err = run(capsys, *args, "--rounds", "2")
    assert code != 0 and "--force" in err


def test_console_script_sets_offline_environment_and_hides_tracebacks(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in offline.OFFLINE_ENV}
    script = (
        "import os, sys\n"
        "from omopfed import cli\n"
        "code = cli.main(sys.argv[1:])\n"
        "print({k: os.environ.get(k) for k in ('FLWR_TELEMETRY_ENABLED', "
        "'FLWR_DISABLE_UPDATE_CHECK', 'GX_ANALYTICS_ENABLED')})\n"
        "sys.exit(code)\n"
    )
    args = ["db", "check", "--url", f"duckdb:///{tmp_path / 'x.duckdb'}"]
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 4 and "Traceback" not in result.stderr
    assert "'FLWR_TELEMETRY_ENABLED': '0'" in result.stdout
    assert "'GX_ANALYTICS_ENABLED': 'False'" in result.stdout
    debug = subprocess.run(
        [sys.executable, "-c", script, "--debug", *args], capture_output=True, text=True, env=env
    )
    assert debug.returncode == 4 and "Traceback" in debug.stderr
