"""Local and centralized runs (node.train, ``omopfed train``) on small hand-written caches.

The caches here are written in the dataset-cache format directly (a few 32x32 slices or tiny
volumes) with gate records for their hashes, so the whole run path -- pointer, entry, gate,
pooling, Trainer, run folder -- is exercised in seconds. tests/node/test_train_pipeline.py runs
the same code on sites taken through the real pipeline (slow).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.cache import HEADS, INDEX_FORMAT
from models.densenet import DenseNet2D
from node.gate import ValidationGateError, ValidationRecord, write_record
from node.settings import SiteSettings, load_site_settings
from node.train import FLAIR_CHANNEL, RunRequest, train
from omopfed.cli import main
from omopfed.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Runs here use one torch thread (``num_threads=1``): on a loaded 2-core machine two
    threads spin against each other (an epoch went from 0.7 s to 25 s); restored afterwards,
    since the Trainer sets torch's thread count process-wide."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


RUN_FILES = {
    "config.json",
    "data.json",
    "code.json",
    "metrics.json",
    "checkpoint.pt",
    "predictions.csv",
    "roc.png",
    "learning_curve.png",
}


def _labels(n: int, heads: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.stack([np.arange(n) % 2] * heads, axis=1).astype(np.int64)
    if heads == 4:  # grade has three classes; one missing 1p/19q label
        labels[:, 3] = np.arange(n) % 3
        labels[0, 1] = -1
    return labels


def _split_2d(folder: Path, name: str, n: int, rng: np.random.Generator) -> dict[str, Any]:
    labels = _labels(n, 1, rng)
    images = rng.random((n, 1, 32, 32)).astype(np.float16) * 0.5
    images[labels[:, 0] == 1, :, 8:24, 8:24] += 0.5  # learnable: a bright square means MGMT 1
    np.save(folder / f"{name}_images.npy", images)
    np.save(folder / f"{name}_labels.npy", labels)
    return {"n": n, "labels": f"{name}_labels.npy", "images": f"{name}_images.npy"}


def _split_3d(cache: Path, folder: Path, name: str, n: int, rng: np.random.Generator) -> Any:
    items = cache / "items" / "unet3d" / "00"
    items.mkdir(parents=True, exist_ok=True)
    images, masks = [], []
    for i in range(n):
        stem = items / f"{folder.name[:8]}-{name}-{i}"
        np.save(f"{stem}.image.npy", rng.random((4, 2 + i % 2, 16, 16)).astype(np.float16))
        images.append(f"items/unet3d/00/{stem.name}.image.npy")
        if i % 2 == 0:
            np.save(f"{stem}.seg.npy", rng.integers(0, 4, (2 + i % 2, 16, 16)).astype(np.uint8))
        masks.append(f"items/unet3d/00/{stem.name}.seg.npy" if i % 2 == 0 else None)
    np.save(folder / f"{name}_labels.npy", _labels(n, 4, rng))
    return {"n": n, "labels": f"{name}_labels.npy", "images": images, "masks": masks}


def write_site(
    root: Path,
    name: str,
    *,
    model: str = "densenet2d",
    sizes: tuple[int, int] = (8, 4),
    validated: bool = True,
    seed: int = 0,
) -> Path:
    """A site folder: site.toml, a current cache entry for ``model`` and a passing record."""
    site = root / name
    cache = site / "workspace" / "cache"
    rng = np.random.default_rng(seed)
    data_hash = hashlib.sha256(f"{name}-{model}-{seed}-{sizes}".encode()).hexdigest()
    folder = cache / "entries" / data_hash
    folder.mkdir(parents=True)
    splits = {}
    for split, n in zip(("train", "validation"), sizes, strict=True):
        spec = (
            _split_2d(folder, split, n, rng)
            if model == "densenet2d"
            else _split_3d(cache, folder, split, n, rng)
        )
        spec["subjects"] = [hashlib.md5(f"{name}{split}{i}".encode()).hexdigest() for i in range(n)]
        splits[split] = spec
    index = {
        "format": INDEX_FORMAT,
        "model": model,
        "data_hash": data_hash,
        "params": {"image_size": 32 if model == "densenet2d" else 16},
        "heads": [str(h) for h in HEADS[model]],
        "splits": splits,
    }
    (folder / "index.json").write_text(json.dumps(index))
    (cache / "current").mkdir()
    (cache / "current" / f"{model}-cohort1.json").write_text(json.dumps({"data_hash": data_hash}))
    (site / "site.toml").write_text(
        f'site_name = "{name}"\ndatabase_url = "duckdb:///cdm.duckdb"\nworkspace = "workspace"\n'
        'device = "cpu"\nmin_cell_count = 1\n'
    )
    if validated:
        write_record(site / "workspace", ValidationRecord(data_hash, True, {"cdm": "x"}))
    return site / "site.toml"


def settings(path: Path) -> SiteSettings:
    return load_site_settings(path)


def request(tmp_path: Path, *sites: Path, **kwargs: Any) -> RunRequest:
    defaults: dict[str, Any] = {
        "model": "densenet2d",
        "mode": "local" if len(sites) == 1 else "centralized",
        "epochs": 1,
        "out": tmp_path / "runs",
        "num_threads": 1,
    }
    return RunRequest(sites=tuple(settings(s) for s in sites), **(defaults | kwargs))


def read_predictions(folder: Path) -> list[dict[str, str]]:
    with (folder / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_local_run_writes_a_complete_run_folder(tmp_path: Path) -> None:
    site = write_site(tmp_path, "site_a")
    result = train(request(tmp_path, site, epochs=2, seed=1, gradcam=2))
    files = {p.name for p in result.folder.iterdir()}
    assert RUN_FILES | {"gradcam"} == files
    assert [p.name for p in (result.folder.parent).iterdir()] == [result.folder.name]  # no tmp
    assert len(list((result.folder / "gradcam").glob("*.png"))) == 2
    config = json.loads((result.folder / "config.json").read_text())
    assert (config["epochs"], config["seed"], config["mode"]) == (2, 1, "local")
    assert config["trainer"]["optimizer"] == "adam" and config["trainer"]["lr"] == 1e-4
    assert config["trainer"]["batch_size"] == 16
    data = json.loads((result.folder / "data.json").read_text())
    index = json.loads(
        next((site.parent / "workspace/cache/entries").glob("*/index.json")).read_text()
    )
    assert data["sites"][0]["data_hash"] == index["data_hash"]
    assert json.loads((result.folder / "code.json").read_text())["package"]
    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert {"train_loss", "validation_loss", "validation_mgmt_auc"} <= set(metrics["epochs"][0])
    assert metrics["final"]["validation"]["mgmt_n"] == 4  # the validation split, not train
    rows = read_predictions(result.folder)
    assert [r["subject_key"] for r in rows] == index["splits"]["validation"]["subjects"]
    assert {r["head"] for r in rows} == {"mgmt"} and all(r["p1"] for r in rows)
    model = DenseNet2D()
    model.load_state_dict(torch.load(result.folder / "checkpoint.pt", weights_only=True))


def test_a_fixed_seed_run_is_reproducible_to_the_last_prediction(tmp_path: Path) -> None:
    site = write_site(tmp_path, "site_a")
    first, second, other = (
        train(request(tmp_path, site, epochs=2, seed=s)).folder for s in (7, 7, 8)
    )
    assert (first / "predictions.csv").read_bytes() == (second / "predictions.csv").read_bytes()
    a, b = (torch.load(f / "checkpoint.pt", weights_only=True) for f in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (first / "predictions.csv").read_bytes() != (other / "predictions.csv").read_bytes()


def test_training_is_refused_without_a_passing_validation(tmp_path: Path) -> None:
    never = write_site(tmp_path, "site_a", validated=False)
    with pytest.raises(ValidationGateError, match=r"site_a: .*never been validated"):
        train(request(tmp_path, never))
    changed = write_site(tmp_path, "site_b")
    write_record(changed.parent / "workspace", ValidationRecord("0" * 64, True, {}))
    with pytest.raises(ValidationGateError, match="site_b: the data changed"):
        train(request(tmp_path, write_site(tmp_path, "site_c"), changed))
    failed = write_site(tmp_path, "site_d", seed=1)
    record_hash = json.loads(next(failed.parent.glob("workspace/cache/current/*")).read_text())
    write_record(
        failed.parent / "workspace",
        ValidationRecord(record_hash["data_hash"], False, {}, ["manifest.mgmt.min"]),
    )
    with pytest.raises(ValidationGateError, match=r"manifest\.mgmt\.min"):
        train(request(tmp_path, failed))
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    assert main(["train", "--model", "densenet2d", "--settings", str(never), "--threads", "1"]) == 8


def test_centralized_pools_each_split_across_sites(tmp_path: Path) -> None:
    a = write_site(tmp_path, "site_a", sizes=(6, 3))
    b = write_site(tmp_path, "site_b", sizes=(5, 2), seed=1)
    result = train(request(tmp_path, a, b))
    assert (result.num_train, result.num_validation) == (6 + 5, 3 + 2)
    assert [r["site"] for r in read_predictions(result.folder)] == ["site_a"] * 3 + ["site_b"] * 2
    assert {s: m["mgmt_n"] for s, m in result.per_site.items()} == {"site_a": 3, "site_b": 2}
    data = json.loads((result.folder / "data.json").read_text())
    assert [(s["num_train"], s["num_validation"]) for s in data["sites"]] == [(6, 3), (5, 2)]
    assert result.history[0]["validation_mgmt_n"] == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "local"}, "one site's data"),
        ({"mode": "federated"}, "unknown mode"),
        ({"model": "resnet"}, "unknown model"),
        ({"epochs": 0}, "--epochs"),
    ],
)
def test_requests_that_cannot_mean_what_they_say(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    sites = (write_site(tmp_path, "site_a"), write_site(tmp_path, "site_b"))
    with pytest.raises(ConfigError, match=message):
        train(request(tmp_path, *sites, **kwargs))


def test_a_site_cannot_be_pooled_twice(tmp_path: Path) -> None:
    site = write_site(tmp_path, "site_a")
    with pytest.raises(ConfigError, match="given twice"):
        train(request(tmp_path, site, site))


def test_unet_local_run_with_masks_missing_labels_and_gradcam(tmp_path: Path) -> None:
    site = write_site(tmp_path, "site_a", model="unet3d", sizes=(2, 2))
    result = train(request(tmp_path, site, model="unet3d", gradcam=1))
    metrics = json.loads((result.folder / "metrics.json").read_text())
    final = metrics["final"]["validation"]
    assert {"idh_auc", "grade_auc", "wt_dice", "et_dice"} <= set(final)
    assert json.loads((result.folder / "config.json").read_text())["trainer"]["optimizer"] == "sgd"
    heads = {r["head"] for r in read_predictions(result.folder)}
    assert heads == {"idh", "codeletion_1p19q", "mgmt", "grade"}
    assert len(list((result.folder / "gradcam").glob("*.png"))) == 1


def test_cli_json_and_default_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, "site_a", sizes=(4, 2))
    out = tmp_path / "cli-runs"
    args = [
        "train",
        "--model",
        "densenet2d",
        "--settings",
        str(site),
        "--epochs",
        "1",
        "--threads",
        "1",
    ]
    assert main([*args, "--out", str(out), "--seed", "2", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert Path(shown["run"]).parent == out and shown["num_validation"] == "2"
    assert RunRequest("unet3d", "local", ()).num_epochs == 60
    assert RunRequest("densenet2d", "local", ()).num_epochs == 10


def test_the_3d_overlay_shows_flair() -> None:
    from node.imaging import CHANNELS

    assert CHANNELS[FLAIR_CHANNEL] == "FLAIR"
