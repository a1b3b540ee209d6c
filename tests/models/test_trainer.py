"""The Trainer: one real optimisation step, determinism, weights exchange, evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from models.config import TrainerConfig, seed_everything
from models.data import ArrayDataset
from models.densenet import DenseNet2D
from models.errors import InputShapeError, TrainerConfigError, WeightsError
from models.losses import MultitaskLoss
from models.names import BatchKey, Head, Split
from models.trainer import Trainer
from models.unet import MultitaskUNet3D


def _train_mode_loss(trainer: Trainer) -> float:
    """Loss on the whole training split as one batch, in train mode (batch-norm statistics)."""
    batch = trainer._to_device(next(iter(trainer._loader(Split.TRAIN, train=False))))
    trainer.model.train()
    with torch.no_grad():
        return trainer.loss(trainer.model(batch[BatchKey.IMAGE]), batch).total.item()


def _changed(before: list[np.ndarray], after: list[np.ndarray]) -> int:
    return sum(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_densenet_step_changes_weights_and_lowers_loss(slices: ArrayDataset) -> None:
    seed_everything(0)
    trainer = Trainer(DenseNet2D(), slices, config=TrainerConfig.for_densenet(batch_size=8))
    before, loss_before = trainer.get_weights(), _train_mode_loss(trainer)
    history = trainer.fit(1)  # 8 samples, batch 8: exactly one step
    assert _changed(before, trainer.get_weights()) > 0
    assert _train_mode_loss(trainer) < loss_before
    assert history[0]["epoch"] == 1 and history[0]["train_loss"] > 0


def test_unet_step_changes_weights_and_lowers_loss() -> None:
    rng = np.random.default_rng(2)
    images = rng.random((2, 4, 4, 32, 32), dtype=np.float32)
    masks = rng.integers(0, 4, (2, 4, 32, 32))
    labels = {Head.IDH: [0, 1], Head.MGMT: [1, -1], Head.GRADE: [2, 0]}
    data = ArrayDataset(images, labels, masks=masks)
    seed_everything(0)
    model = MultitaskUNet3D(dropout=0.0)
    trainer = Trainer(model, data, config=TrainerConfig.for_unet(batch_size=2, lr=1e-2))
    before, loss_before = trainer.get_weights(), _train_mode_loss(trainer)
    trainer.fit(1)
    assert _changed(before, trainer.get_weights()) > 0
    assert _train_mode_loss(trainer) < loss_before


def _run(seed: int, data: ArrayDataset) -> list[np.ndarray]:
    seed_everything(seed)
    model = DenseNet2D()
    trainer = Trainer(model, data, config=TrainerConfig.for_densenet(batch_size=4, seed=seed))
    trainer.fit(2)
    return trainer.get_weights()


def test_same_seed_gives_bit_identical_weights(slices: ArrayDataset) -> None:
    first, second = _run(7, slices), _run(7, slices)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert _changed(first, _run(8, slices)) > 0  # and the seed does matter


def test_validation_does_not_change_the_training_trajectory(slices: ArrayDataset) -> None:
    """Centralized and federated drivers evaluate at different times; training must not care."""
    runs = []
    for validation in (None, slices):
        seed_everything(3)
        config = TrainerConfig.for_densenet(batch_size=4, seed=3)
        trainer = Trainer(DenseNet2D(), slices, validation, config=config)
        trainer.fit(2)
        runs.append(trainer.get_weights())
    assert _changed(*runs) == 0


def test_weights_round_trip_preserves_order_and_dtypes(volumes: ArrayDataset) -> None:
    trainer = Trainer(MultitaskUNet3D(), volumes, config=TrainerConfig.for_unet())
    trainer.fit(1)
    weights = trainer.get_weights()
    state = trainer.model.state_dict()
    assert len(weights) == len(state) == len(trainer.state_keys())
    assert [w.dtype for w in weights] == [
        torch.empty(0, dtype=t.dtype).numpy().dtype for t in state.values()
    ]
    counters = [w for k, w in zip(state, weights, strict=True) if "num_batches_tracked" in k]
    assert counters and all(c.dtype == np.int64 and c == 3 for c in counters)

    other = Trainer(MultitaskUNet3D(), volumes, config=TrainerConfig.for_unet(seed=99))
    assert _changed(weights, other.get_weights()) > 0
    other.set_weights(weights)
    assert _changed(weights, other.get_weights()) == 0
    weights[0] += 1.0  # get_weights hands out copies, not views into the model
    assert _changed(weights, trainer.get_weights()) == 1


def test_set_weights_casts_aggregates_back(volumes: ArrayDataset) -> None:
    trainer = Trainer(MultitaskUNet3D(), volumes, config=TrainerConfig.for_unet())
    averaged = [
        w.astype(np.float64) + (0.4 if w.dtype == np.int64 else 0) for w in trainer.get_weights()
    ]
    trainer.set_weights(averaged)
    state = trainer.model.state_dict()
    assert all(t.dtype == torch.float32 for k, t in state.items() if k.endswith("weight"))
    tracked = [t for k, t in state.items() if k.endswith("num_batches_tracked")]
    assert all(t.dtype == torch.int64 and t.item() == 0 for t in tracked)


def test_set_weights_rejects_wrong_arrays(volumes: ArrayDataset) -> None:
    trainer = Trainer(MultitaskUNet3D(), volumes, config=TrainerConfig.for_unet())
    weights = trainer.get_weights()
    with pytest.raises(WeightsError, match="arrays"):
        trainer.set_weights(weights[:-1])
    weights[0] = np.zeros((1, 2, 3), dtype=np.float32)
    with pytest.raises(WeightsError, match="shape"):
        trainer.set_weights(weights)


def test_evaluate_reports_per_head_and_region_metrics(volumes: ArrayDataset) -> None:
    trainer = Trainer(MultitaskUNet3D(), volumes, volumes, config=TrainerConfig.for_unet())
    metrics, predictions = trainer.evaluate(Split.VALIDATION)
    assert metrics["idh_n"] == 2 and metrics["grade_n"] == 2 and metrics["mgmt_n"] == 3
    assert metrics["codeletion_1p19q_n"] == 0 and math.isnan(metrics["codeletion_1p19q_auc"])
    assert {"et_dice", "tc_dice", "wt_dice", "wt_dice_median"} <= set(metrics)
    assert predictions.dice["wt"].shape == (2,)  # two of three subjects have a mask
    assert predictions.probabilities[Head.GRADE].shape == (3, 3)
    np.testing.assert_array_equal(predictions.labels[Head.IDH], [0, 1, -1])
    assert math.isfinite(metrics["loss"])


def test_fit_reports_validation_and_calls_back(slices: ArrayDataset) -> None:
    seen: list[dict[str, float]] = []
    trainer = Trainer(DenseNet2D(), slices, slices, config=TrainerConfig.for_densenet(batch_size=8))
    history = trainer.fit(2, on_epoch_end=seen.append)
    assert seen == history and [h["epoch"] for h in history] == [1, 2]
    assert {"validation_loss", "validation_mgmt_auc", "images_per_second"} <= set(history[-1])
    assert trainer.num_examples(Split.TRAIN) == 8 and trainer.num_examples("test") == 0
    quiet = trainer.fit(1, validate=False)[0]
    assert quiet["epoch"] == 3 and not any(k.startswith("validation_") for k in quiet)


def test_varying_depth_needs_batch_size_one(volumes: ArrayDataset) -> None:
    trainer = Trainer(MultitaskUNet3D(), volumes, config=TrainerConfig.for_unet(batch_size=2))
    with pytest.raises(InputShapeError, match="batch_size=1"):
        trainer.fit(1)


@pytest.mark.parametrize(
    "config",
    [
        TrainerConfig(device="tpu"),
        TrainerConfig(device="nonsense:x"),
        TrainerConfig(device="cpu", amp=True),
        TrainerConfig(optimizer="lbfgs"),  # type: ignore[arg-type]
    ],
    ids=["tpu", "garbage", "amp-on-cpu", "optimizer"],
)
def test_bad_config_is_a_trainer_config_error(config: TrainerConfig) -> None:
    with pytest.raises(TrainerConfigError):
        Trainer(nn.Linear(2, 2), config=config)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_trainer_config_error() -> None:
    with pytest.raises(TrainerConfigError, match="CUDA"):
        Trainer(nn.Linear(2, 2), config=TrainerConfig(device="cuda:0"))


def test_missing_split_is_a_trainer_config_error(slices: ArrayDataset) -> None:
    trainer = Trainer(DenseNet2D(), slices)
    with pytest.raises(TrainerConfigError, match="validation"):
        trainer.evaluate(Split.VALIDATION)


def test_custom_loss_weights_are_used(slices: ArrayDataset) -> None:
    trainer = Trainer(DenseNet2D(), slices, slices, loss=MultitaskLoss({Head.MGMT: 0.0}))
    metrics, _ = trainer.evaluate(Split.VALIDATION)
    assert metrics["loss"] == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_gpu_trains_and_returns_cpu_arrays(volumes: ArrayDataset) -> None:
    trainer = Trainer(MultitaskUNet3D(), volumes, volumes, config=TrainerConfig.for_unet())
    assert trainer.amp and trainer.device.type == "cuda"
    history = trainer.fit(1)
    assert math.isfinite(history[0]["train_loss"])
    assert all(np.isfinite(w).all() for w in trainer.get_weights())
