"""`omopfed study run` for real: centralized, local and federated runs (Flower's simulation
engine) on the tiny synthetic sites, resumed after more repeats and after an interrupted
federated run, then the report and its exports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from federation.store import MetricsStore
from omopfed.offline import child_env
from tests.e2e.conftest import SITES, Sites, set_gate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def _study(config: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "omopfed.cli", "study", "run", "--config", str(config), *args,
         "--format", "json"],
        capture_output=True, text=True, env=child_env(), timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _config(path: Path, body: str) -> Path:
    path.write_text('[study]\nmodel = "densenet2d"\nepochs = 1\nrounds = 1\n' + body)
    return path


def test_sites_study_runs_resumes_and_reports(sites: Sites, tmp_path: Path) -> None:
    set_gate(sites, "densenet2d")
    files = ", ".join(f'"{sites.settings_file(s)}"' for s in SITES)
    config = _config(tmp_path / "study.toml", f"repeats = 1\n[study.data]\nsites = [{files}]\n")
    first = _study(config)
    assert (first["runs_done"], first["runs_reused"]) == (5, 0)
    results = pd.read_parquet(tmp_path / "study" / "results.parquet")
    assert sorted(results["configuration"]) == [
        "centralized", "federated-3", "local-site_a", "local-site_b", "local-site_c",
    ]  # fmt: skip
    # Every final model is evaluated on the same subjects: the union of the validation splits.
    assert results["n_validation"].nunique() == 1
    assert results["mgmt_auc"].between(0, 1).all()
    local = results.set_index("configuration")["n_train"]
    assert local["centralized"] == local["federated-3"] == local.filter(like="local-").sum()

    # A federated run interrupted after its last checkpoint: the record is gone and the store
    # says the run failed. The rerun continues it (resume-from) instead of starting over.
    record = tmp_path / "study" / "runs" / "federated-3-r0" / "run.json"
    before = json.loads(record.read_text())
    record.unlink()
    store = MetricsStore(str(before["store_url"]))
    store.finish_run("federated-3-r0", "failed")
    store.dispose()
    _config(config, f"repeats = 2\n[study.data]\nsites = [{files}]\n")  # one more repeat
    second = _study(config)
    assert (second["runs_done"], second["runs_reused"]) == (6, 4)
    after = json.loads(record.read_text())
    assert after["metrics"] == before["metrics"]  # the same final model, evaluated again
    store = MetricsStore(str(before["store_url"]))
    try:
        assert store.get_run("federated-3-r0")["status"] == "completed"  # type: ignore[index]
        assert [e["kind"] for e in store.events("federated-3-r0")].count("resumed") == 1
    finally:
        store.dispose()
    results = pd.read_parquet(tmp_path / "study" / "results.parquet")
    assert sorted(results["repeat"].tolist()) == [0] * 5 + [1] * 5
    assert set(results.loc[results["repeat"] == 1, "seed"]) == {1}

    report = Path(str(second["report"]))
    page = report.read_text()
    assert "federated-3" in page and "local-site_a" in page
    assert re.search(r"(src|href)=[\"']?https?:", page) is None  # self-contained
    tests = pd.read_csv(report.parent / "stats_tests.csv")
    assert set(tests["configuration"]) == {
        "federated-3", "local-site_a", "local-site_b", "local-site_c",
    }  # fmt: skip
    assert (report.parent / "plots" / "box_mgmt_auc.png").is_file()
    roc = pd.read_csv(tmp_path / "study" / "roc.csv")
    assert {"centralized r0", "federated-3 r0"} <= set(roc["curve"])


def test_pooled_study_splits_one_site_into_clients(sites: Sites, tmp_path: Path) -> None:
    set_gate(sites, "densenet2d")
    pooled = sites.settings_file("site_a")
    body = (
        'repeats = 1\nclients = [2]\nconfigurations = ["local", "federated"]\n'
        f'[study.data]\npooled = "{pooled}"\n'
    )
    result = _study(_config(tmp_path / "study.toml", body), "--no-report")
    assert result["report"] is None
    results = pd.read_parquet(tmp_path / "study" / "results.parquet").set_index("configuration")
    assert list(results.index) == ["local-1of2", "federated-2"]
    # Client 0 of 2 holds about half the pooled training set; the federation trains on all of it.
    assert results.loc["federated-2", "n_train"] / 2 == pytest.approx(
        results.loc["local-1of2", "n_train"], abs=2
    )


def test_unet_study_compares_per_head_auc_and_dice(sites: Sites, tmp_path: Path) -> None:
    """The 3D multitask U-Net in a study: the heads' AUCs and the regions' Dice are compared."""
    set_gate(sites, "unet3d")
    files = ", ".join(f'"{sites.settings_file(s)}"' for s in SITES)
    body = (
        'model = "unet3d"\nepochs = 1\nrounds = 1\nrepeats = 1\n'
        'configurations = ["centralized", "federated"]\n'
        f"[study.data]\nsites = [{files}]\n"
    )
    (tmp_path / "study.toml").write_text("[study]\n" + body)
    _study(tmp_path / "study.toml")
    results = pd.read_parquet(tmp_path / "study" / "results.parquet").set_index("configuration")
    assert list(results.index) == ["centralized", "federated-3"]
    assert {"idh_auc", "codeletion_1p19q_auc", "mgmt_auc", "grade_auc", "wt_dice"} <= set(
        results.columns
    )
    assert results["wt_dice"].between(0, 1).all()  # site_a and site_c have masks
    tests = pd.read_csv(tmp_path / "study" / "report" / "stats_tests.csv")
    assert set(tests["metric"]) >= {"mgmt_auc", "wt_dice"}
