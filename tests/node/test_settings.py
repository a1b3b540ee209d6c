"""Site settings: file + environment, clear errors naming the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.settings import load_site_settings
from omopfed.errors import ConfigError

GOOD = 'site_name = "site-a"\ndatabase_url = "duckdb:///cdm.duckdb"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    settings = load_site_settings(_write(tmp_path, GOOD + 'dicom_roots = ["dicom"]\n'), environ={})
    assert settings.min_cell_count == 5
    assert settings.device == "auto"
    assert settings.schemas.cdm == settings.schemas.vocab == "cdm"
    assert settings.workspace == tmp_path / "workspace"
    assert settings.cache_dir == tmp_path / "workspace" / "cache"
    assert settings.dicom_roots == [tmp_path / "dicom"]
    assert settings.database_url.get_secret_value() == f"duckdb:///{tmp_path / 'cdm.duckdb'}"


def test_site_table_is_accepted(tmp_path: Path) -> None:
    settings = load_site_settings(_write(tmp_path, "[site]\n" + GOOD), environ={})
    assert settings.site_name == "site-a"


def test_site_table_beside_other_tables(tmp_path: Path) -> None:
    text = "[site]\n" + GOOD + '\n[resolver]\nconflict_policy = "latest"\n'
    settings = load_site_settings(_write(tmp_path, text), environ={})
    assert settings.site_name == "site-a" and settings.resolver.conflict_policy == "latest"
    clash = 'site_name = "b"\n[site]\n' + GOOD
    with pytest.raises(ConfigError, match=r"site_name given both in \[site\] and outside it"):
        load_site_settings(_write(tmp_path, clash), environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "min_cell_count = 10\n")
    settings = load_site_settings(path, environ={"OMOPFED_MIN_CELL_COUNT": "20"})
    assert settings.min_cell_count == 20


def test_password_is_masked_in_display(tmp_path: Path) -> None:
    text = 'site_name = "a"\ndatabase_url = "postgresql://omop:s3cret@db.local:5432/cdm"\n'
    settings = load_site_settings(_write(tmp_path, text), environ={})
    shown = settings.display()
    assert "s3cret" not in str(shown) and "s3cret" not in repr(settings)
    assert shown["database_url"] == "postgresql+psycopg://omop:***@db.local:5432/cdm"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        (GOOD + "min_cel_count = 3\n", {}, "unknown key 'min_cel_count'"),
        (GOOD + 'min_cell_count = "five"\n', {}, "key 'min_cell_count'"),
        (GOOD + "min_cell_count = 0\n", {}, "greater than or equal to 1"),
        (GOOD, {"OMOPFED_MIN_CELL_COUNT": "0"}, "environment variable OMOPFED_MIN_CELL_COUNT"),
        (GOOD + 'cdm_schema = "cdm; drop"\n', {}, "not a plain SQL name"),
        (GOOD + "cdm_schema = 'my \"cdm\"'\n", {}, "not a plain SQL name"),
        (GOOD + 'results_schema = "My Results"\n', {}, "key 'results_schema'"),
        (GOOD + 'device = "gpu"\n', {}, "key 'device'"),
        ('site_name = "a"\n', {}, "required key 'database_url' is missing"),
        ('site_name = "a"\ndatabase_url = "mysql://x/y"\n', {}, "unsupported database backend"),
        ('site_name = "a"\ndatabase_url = "not a url"\n', {}, "malformed database URL"),
        ('site_name = "a/b"\ndatabase_url = "duckdb:///x.duckdb"\n', {}, "key 'site_name'"),
        ("site_name = \n", {}, "not valid TOML"),
    ],
)
def test_bad_settings_name_the_key_and_file(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_site_settings(path, environ=environ)
    assert expected in str(info.value)
    if "environment" not in expected:
        assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_site_settings(tmp_path / "nope.toml")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a file"):
        load_site_settings(tmp_path)
