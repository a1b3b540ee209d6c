"""Flower's simulation engine through `omopfed simulate`: the U-Net with missing labels, and the
seed paper's parity check (1-site federated training equals local training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from federation import checkpoint
from federation.store import MetricsStore
from models.config import TrainerConfig, seed_everything
from models.networks import build_model
from models.trainer import Trainer
from node.dataset import load_training_data
from omopfed.offline import child_env
from tests.e2e.conftest import SITES, Sites, set_gate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def _simulate(workspace: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "omopfed.cli", "simulate", "-w", str(workspace), *args,
         "--format", "json"],
        capture_output=True, text=True, env=child_env(env), timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_unet_round_with_sites_missing_different_labels(sites: Sites, tmp_path: Path) -> None:
    """site_b has no segmentations, site_c no 1p/19q: each reports only the heads it has."""
    set_gate(sites, "unet3d")
    site_args = [arg for site in SITES for arg in ("--site", str(sites.settings_file(site)))]
    # Two subjects per cell so the tiny validation splits report metrics at all.
    result = _simulate(
        tmp_path, *site_args, "--model", "unet3d", "--rounds", "1",
        env={"OMOPFED_MIN_CELL_COUNT": "2"},
    )  # fmt: skip
    store = MetricsStore(str(result["store_url"]))
    rows = store.site_metrics(str(result["run_name"]))
    metrics = {site: {r["metric"] for r in rows if r["site"] == site} for site in SITES}
    seg = {"seg_loss", "et_dice", "tc_dice", "wt_dice"}
    assert metrics["site_b"] & seg == set()
    assert not any(m.startswith("codeletion_1p19q") for m in metrics["site_c"])
    assert "codeletion_1p19q_loss" in metrics["site_a"] and "seg_loss" in metrics["site_a"]
    for site in SITES:
        assert {"loss", "idh_loss", "mgmt_loss"} <= metrics[site]


def test_one_site_federated_equals_local_training(sites: Sites, tmp_path: Path) -> None:
    """Fixed seed, 1 round x 1 epoch at one site == 1 epoch of local training."""
    set_gate(sites, "densenet2d")
    result = _simulate(
        tmp_path, "--site", str(sites.settings_file("site_a")), "--rounds", "1", "--seed", "7"
    )
    folder = tmp_path / "checkpoints" / str(result["run_name"])
    meta = checkpoint.latest(folder)
    assert meta is not None and meta.round == 1
    federated = list(checkpoint.load(folder, meta).values())

    data = load_training_data(sites.settings("site_a"), "densenet2d")
    seed_everything(7)
    config = TrainerConfig.for_densenet(seed=7, device="cpu", num_threads=1)
    local = Trainer(build_model("densenet2d"), data.train, data.validation, config=config)
    local.fit(1, validate=False)
    for ours, theirs in zip(federated, local.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    replayed = Trainer(build_model("densenet2d"), data.train, data.validation, config=config)
    replayed.set_weights(federated)
    np.testing.assert_array_equal(
        replayed.evaluate("validation")[1].probabilities["mgmt"],
        local.evaluate("validation")[1].probabilities["mgmt"],
    )
