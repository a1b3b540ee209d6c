"""The study's configuration, plan and folder (the runs themselves: tests/e2e/test_study.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.evaluation import Predictions
from omopfed.cli import main
from omopfed.study import (
    PlannedRun,
    StudyConfig,
    StudyError,
    StudyFolder,
    load_config,
    plan,
)


def _write(tmp_path: Path, body: str, sites: int = 2) -> Path:
    for i in range(sites):
        (tmp_path / f"s{i}").mkdir(exist_ok=True)
        (tmp_path / f"s{i}" / "site.toml").write_text("")
    file = tmp_path / "study.toml"
    file.write_text(body)
    return file


SITES = '[study.data]\nsites = ["s0/site.toml", "s1/site.toml"]\n'
POOLED = '[study.data]\npooled = "s0/site.toml"\n'


def test_paths_are_relative_to_the_study_file_and_defaults_follow_the_seed(
    tmp_path: Path,
) -> None:
    config = load_config(_write(tmp_path, '[study]\nmodel = "densenet2d"\n' + SITES))
    assert config.data.sites == [tmp_path / "s0" / "site.toml", tmp_path / "s1" / "site.toml"]
    assert config.compared_metrics == ["mgmt_accuracy", "mgmt_f1", "mgmt_kappa", "mgmt_auc"]
    assert (config.repeats, config.epochs, config.num_rounds, config.client_counts) == (
        5, 10, 10, [2],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[study]\nmodel = "densenet2d"\n' + SITES + POOLED.splitlines()[1], "not both"),
        ('[study]\nmodel = "resnet"\n' + SITES, "study.model"),
        ('[study]\nmodel = "densenet2d"\nrepeat = 3\n' + SITES, "study.repeat: Extra inputs"),
        ('[study]\nmodel = "densenet2d"\nclients = [2, 3]\n' + SITES, "only client count is 2"),
        ('[study]\nmodel = "densenet2d"\n' + POOLED, "needs the client counts"),
        ('[study]\nmodel = "densenet2d"\n[study.data]\nsites = ["nowhere.toml"]\n', "not a file"),
        ('[study]\nmodel = "densenet2d"\n' + SITES + "[other]\n", "one [study] table"),
        ("[study\n", "not a readable TOML file"),
    ],
)
def test_bad_study_files_are_refused_naming_the_field(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(StudyError, match=r"study\.toml") as caught:
        load_config(_write(tmp_path, body))
    assert message in caught.value.message


def test_the_cli_reports_a_bad_study_file_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path, '[study]\nmodel = "densenet2d"\nepochs = 0\n' + SITES)
    assert main(["study", "run", "--config", str(file)]) != 0
    error = capsys.readouterr().err
    assert "error[STUDY]" in error and "study.epochs" in error and "Traceback" not in error


def _config(tmp_path: Path, body: str) -> StudyConfig:
    return load_config(_write(tmp_path, '[study]\nmodel = "densenet2d"\n' + body))


def test_sites_plan_each_site_alone_and_all_sites_federated_repeat_by_repeat(
    tmp_path: Path,
) -> None:
    runs = plan(_config(tmp_path, "repeats = 2\nseed = 10\n" + SITES), ["site_a", "site_b"])
    assert [r.name for r in runs] == [
        "centralized-r0", "local-site_a-r0", "local-site_b-r0", "federated-2-r0",
        "centralized-r1", "local-site_a-r1", "local-site_b-r1", "federated-2-r1",
    ]  # fmt: skip
    assert {r.seed for r in runs if r.repeat == 1} == {11}  # one seed per repeat
    assert [r.site for r in runs if r.kind == "local"] == [0, 1, 0, 1]


def test_pooled_plan_splits_into_client_counts_and_one_client_alone(tmp_path: Path) -> None:
    body = "repeats = 1\nclients = [3, 2, 1]\n" + POOLED
    runs = plan(_config(tmp_path, body), ["pool"])
    assert [r.configuration for r in runs] == [
        "centralized", "local-1of2", "local-1of3", "federated-1", "federated-2", "federated-3",
    ]  # fmt: skip
    only = _config(
        tmp_path, 'repeats = 1\nclients = [2]\nconfigurations = ["federated"]\n' + POOLED
    )
    assert [r.name for r in plan(only, ["pool"])] == ["federated-2-r0"]


def _predictions() -> Predictions:
    return Predictions(
        labels={"mgmt": np.array([0, 1, 1, -1])},
        probabilities={"mgmt": np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]])},
    )


def test_the_folder_keeps_finished_runs_and_refuses_another_recipe_or_data(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "repeats = 1\n" + SITES)
    folder = StudyFolder(tmp_path / "out")
    folder.open(config, {"site_a": "h1"}, force=False)
    run = PlannedRun("centralized", "centralized", 0, 0)
    metrics = {"mgmt_auc": 0.75, "mgmt_accuracy": float("nan"), "loss": 0.6}
    record = {"metrics": metrics, "num_train": 40, "num_validation": 3}
    folder.save(run, record, _predictions())
    other = PlannedRun("federated-2", "federated", 0, 0, clients=2)
    table = folder.results([run, other], ["mgmt_auc", "mgmt_accuracy"])
    assert table.to_dict(orient="records")[0]["mgmt_auc"] == 0.75
    assert len(table) == 1 and np.isnan(table["mgmt_accuracy"][0])  # NaN stays undefined
    assert (
        json.loads((folder.runs / run.name / "run.json").read_text())["metrics"]["mgmt_accuracy"]
        is None
    )  # strict JSON
    folder.open(config.model_copy(update={"repeats": 3}), {"site_a": "h1"}, force=False)
    assert folder.record(run) is not None  # more repeats extend the study
    with pytest.raises(StudyError, match="another recipe"):
        folder.open(config.model_copy(update={"epochs": 3}), {"site_a": "h1"}, force=False)
    with pytest.raises(StudyError, match="sites' data"):
        folder.open(config, {"site_a": "h2"}, force=False)
    folder.open(config, {"site_a": "h2"}, force=True)
    assert folder.record(run) is None


def test_a_folder_with_other_files_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="not empty"):
        StudyFolder(tmp_path / "out").open(_config(tmp_path, SITES), {}, force=False)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(StudyError, match="is a file"):
        StudyFolder(tmp_path / "file").open(_config(tmp_path, SITES), {}, force=True)
    assert (tmp_path / "file").read_text() == "mine"  # --force never deletes a file
