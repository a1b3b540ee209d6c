"""The analyst commands as a user runs them: runs, show, export, study report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from federation.store import MetricsStore, RoundRecord
from omopfed.cli import main

SITES = ("site-a", "site-b")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'metrics.sqlite'}"
    store = MetricsStore(url)
    store.start_run("run-1", "densenet2d", 2, {"local-epochs": 1})
    for round_, auc in ((1, 0.55), (2, 0.6)):
        metrics = {
            "site-a": {"validation": {"mgmt_auc": auc, "mgmt_n": 3.0, "loss": 0.7}},
            "site-b": {"validation": {"mgmt_auc": auc + 0.1, "mgmt_n": 12.0, "loss": 0.6}},
        }
        store.record_round("run-1", RoundRecord(round_, 1.0, 10, 10, metrics))
    store.finish_run("run-1", "completed")
    store.dispose()
    return url


def test_metrics_runs_and_show(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "metrics", "runs", "--store", store_url, "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["run_id"], row["rounds"], row["sites"]) == ("run-1", "2/2", 2)
    code, out, _ = run(capsys, "metrics", "show", "run-1", "--store", store_url)
    assert code == 0 and "completed" in out and "<5" in out
    args = ("metrics", "show", "run-1", "--store", store_url, "--metric", "mgmt_n")
    code, out, _ = run(capsys, *args, "--format", "json")
    shown = {(m["round"], m["site"]): m["shown"] for m in json.loads(out)["metrics"]}
    assert shown == {(r, s): "<5" if s == "site-a" else "12" for r in (1, 2) for s in SITES}


def test_metrics_export_formats(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = {}
    for fmt in ("csv", "json", "parquet"):
        target = tmp_path / f"out.{fmt}"
        args = ("metrics", "export", "run-1", "--store", store_url, "--format", fmt)
        assert run(capsys, *args, "--out", str(target))[0] == 0
        reader = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt]
        frames[fmt] = reader(target)
    for frame in frames.values():
        assert len(frame) == 12
        small = frame[(frame["metric"] == "mgmt_n") & (frame["site"] == "site-a")]
        assert small["value"].isna().all() and set(small["shown"]) == {"<5"}
    assert not list(tmp_path.glob(".out.*"))  # atomic: no temporary files left
    bad = ("metrics", "export", "run-1", "--store", store_url, "--format", "xlsx")
    assert run(capsys, *bad, "--out", str(tmp_path / "x"))[0] == 2


def test_missing_store_and_run_are_one_line_errors(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "metrics", "runs", "--store", f"sqlite:///{tmp_path}/none.db")
    assert code == 9 and "error[METRICS_STORE]" in err and "Traceback" not in err
    assert not (tmp_path / "none.db").exists()
    code, _, err = run(capsys, "metrics", "show", "nope", "--store", store_url)
    assert code == 9 and "no run 'nope'" in err


def test_study_report(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [("centralized", i, 0.6 + 0.01 * i) for i in range(3)]
    rows += [("federated-2", i, 0.5 + 0.01 * i) for i in range(3)]
    frame = pd.DataFrame(rows, columns=["configuration", "repeat", "auc"]).assign(seed=1)
    frame.to_parquet(tmp_path / "results.parquet")
    pd.DataFrame({"curve": ["c", "c"], "fpr": [0, 1], "tpr": [0, 1]}).to_csv(
        tmp_path / "roc.csv", index=False
    )
    args = ["study", "report", str(tmp_path), "--store", store_url, "--run", "run-1"]
    code, out, _ = run(capsys, *args, "--curve-metric", "mgmt_auc", "--format", "json")
    assert code == 0
    payload = json.loads(out)
    assert payload["tests"][0]["configuration"] == "federated-2"
    assert payload["tests"][0]["p_adjusted"] == pytest.approx(0.1)
    names = {Path(p).name for p in payload["files"]}
    assert {"report.html", "stats_summary.csv", "box_auc.svg"} <= names
    assert sum(name.startswith("curve_") for name in names) == 4  # learning curve + ROC
    code, _, err = run(capsys, "study", "report", str(tmp_path / "empty"))
    assert code == 9 and "error[STUDY_DATA]" in err
