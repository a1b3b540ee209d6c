"""The ServerApp's run on real ClientApp handlers in one process: store, checkpoints, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation import checkpoint
from federation.config import RunSettings
from federation.server_app import run_federation
from federation.store import MetricsStore
from federation.strategy import TooFewSitesError
from tests.federation.harness import (
    LoopbackGrid,
    TrainingData,
    make_site,
    set_task_identity,
    site_fn,
    tiny_2d,
    tiny_3d,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(autouse=True)
def _identity() -> None:
    set_task_identity()


def _settings(tmp_path: Path, **overrides: object) -> RunSettings:
    values: dict[str, object] = {
        "model": "densenet2d",
        "num-rounds": 2,
        "min-sites": 2,
        "wait-for-sites": 1.0,
        "num-threads": 1,
        "store-url": f"sqlite:///{tmp_path / 'metrics.sqlite'}",
        "checkpoint-dir": str(tmp_path / "checkpoints"),
    }
    return RunSettings.from_run_config(values | overrides)


def _grid(tmp_path: Path, datasets: dict[str, TrainingData]) -> LoopbackGrid:
    sites = {}
    for node_id, (name, data) in enumerate(datasets.items(), start=1):
        sites[node_id] = site_fn(make_site(tmp_path, name, data), data, node_id=node_id)
    return LoopbackGrid(sites)


def _rows(store: MetricsStore, run: str) -> set[tuple[int, str, str]]:
    return {(r["round"], r["site"], r["split"]) for r in store.site_metrics(run)}


def test_three_sites_two_rounds_fill_the_store_and_checkpoint_every_round(tmp_path: Path) -> None:
    datasets = {f"site_{c}": tiny_2d(i) for i, c in enumerate("abc")}
    grid = _grid(tmp_path, datasets)
    run = run_federation(grid, _settings(tmp_path), flower_run=77)
    assert run == "77"
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.sqlite'}")
    assert store.list_runs()[0]["status"] == "completed"
    expected = {
        (r, s, split) for r in (1, 2) for s in datasets for split in ("train", "validation")
    }
    assert _rows(store, run) == expected | {(2, s, "global") for s in datasets}
    assert store.last_round(run) == 2 and store.events(run) == []
    meta = checkpoint.latest(tmp_path / "checkpoints" / "77")
    assert meta is not None and meta.round == 2 and meta.model == "densenet2d"
    counter = "net.features.norm0.num_batches_tracked"
    assert checkpoint.load(tmp_path / "checkpoints" / "77", meta)[counter].dtype == "int64"


def test_a_failed_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    datasets = {"site_a": tiny_2d(0), "site_b": tiny_2d(1)}
    grid = _grid(tmp_path, datasets)
    answer_b = grid.sites[2]
    calls = {"n": 0}

    def flaky(message):  # site_b answers round 1, then goes silent
        calls["n"] += 1
        return answer_b(message) if calls["n"] == 1 else None

    grid.sites[2] = flaky
    settings = _settings(tmp_path, **{"num-rounds": 3, "run-name": "study-1"})
    with pytest.raises(TooFewSitesError, match="round 2: 1 of the minimum 2"):
        run_federation(grid, settings, flower_run=1)
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.sqlite'}")
    assert store.get_run("study-1")["status"] == "failed"
    kinds = [(e["kind"], e["round"], e["site"]) for e in store.events("study-1")]
    assert ("dropped", 2, "site_b") in kinds and kinds[-1][0] == "run_failed"

    grid.sites[2] = answer_b
    resumed = RunSettings.from_run_config(settings.as_run_config() | {"resume-from": "study-1"})
    assert run_federation(grid, resumed, flower_run=2) == "study-1"
    assert store.get_run("study-1")["status"] == "completed"
    assert sorted({r for r, _, _ in _rows(store, "study-1")}) == [1, 2, 3]
    assert any(
        e["kind"] == "resumed" and "from round 1" in e["detail"] for e in store.events("study-1")
    )
    rounds = [m.content["config"]["round"] for m in grid.sent if m.metadata.message_type == "train"]
    assert rounds[-2:] == [3, 3]


def test_unet_sites_with_missing_labels_report_only_the_heads_they_have(tmp_path: Path) -> None:
    datasets = {
        "full": tiny_3d(0, seg=True, codeletion=True),
        "no_seg": tiny_3d(1, seg=False, codeletion=True),
        "no_1p19q": tiny_3d(2, seg=True, codeletion=False),
    }
    grid = _grid(tmp_path, datasets)
    settings = _settings(
        tmp_path, model="unet3d", **{"num-rounds": 1, "min-sites": 3, "final-evaluation": False}
    )
    run = run_federation(grid, settings, flower_run=5)
    rows = MetricsStore(f"sqlite:///{tmp_path / 'metrics.sqlite'}").site_metrics(run)
    names = {
        site: {r["metric"] for r in rows if r["site"] == site and r["split"] == "validation"}
        for site in datasets
    }
    assert {"et_dice", "idh_auc", "codeletion_1p19q_auc"} <= names["full"]
    assert "et_dice" not in names["no_seg"] and "idh_auc" in names["no_seg"]
    assert not any(n.startswith("codeletion_1p19q") for n in names["no_1p19q"])
    assert "et_dice" in names["no_1p19q"]
