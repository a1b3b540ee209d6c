"""The one Trainer used by centralized, local-only and federated (Flower) runs.

Keeping a single training loop is what makes the CL-vs-FL comparison fair: the runs differ only
in the driver (how many epochs, where weights come from), never in the loop. The Flower client
calls ``set_weights`` -> ``fit`` -> ``get_weights`` / ``num_examples``; the baselines call
``fit`` and ``evaluate`` directly.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.config import TrainerConfig, resolve_device, seed_everything
from models.data import Sample, collate
from models.errors import TrainerConfigError, WeightsError
from models.evaluation import Accumulator, Predictions
from models.losses import LossResult, MultitaskLoss
from models.names import BatchKey, Metric, Split

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, float]], None]


class Trainer:
    """Fit, evaluate and exchange the weights of one network on caller-supplied splits.

    Args:
        model: a network whose forward returns ``{head: logits}`` (both of ours do).
        train: training split (required for ``fit``).
        validation: optional split evaluated after each epoch.
        test: optional held-out split, evaluated only on request.
        config: optimiser, batch, device and determinism settings.
        loss: defaults to :class:`~models.losses.MultitaskLoss` (masked per head).
    """

    def __init__(
        self,
        model: nn.Module,
        train: Dataset[Sample] | None = None,
        validation: Dataset[Sample] | None = None,
        test: Dataset[Sample] | None = None,
        *,
        config: TrainerConfig | None = None,
        loss: MultitaskLoss | None = None,
    ) -> None:
        self.config = config or TrainerConfig()
        if self.config.seed is not None:
            seed_everything(self.config.seed, deterministic=self.config.deterministic)
        elif self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        self.device = resolve_device(self.config.device)
        self.amp = self.device.type == "cuda" if self.config.amp is None else self.config.amp
        if self.amp and self.device.type != "cuda":
            raise TrainerConfigError("mixed precision (amp) is only supported on CUDA devices")
        self.model = model.to(self.device)
        self.splits: dict[Split, Dataset[Sample]] = {
            split: data
            for split, data in (
                (Split.TRAIN, train),
                (Split.VALIDATION, validation),
                (Split.TEST, test),
            )
            if data is not None
        }
        self.loss = loss or MultitaskLoss()
        self.optimizer = self.config.build_optimizer(self.model.parameters())
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        # Separate generators: a DataLoader draws from its generator every time it is iterated,
        # so evaluating (or not) must not shift the training shuffle or the global RNG.
        self._generator = torch.Generator()
        self._eval_generator = torch.Generator()
        if self.config.seed is not None:
            self._generator.manual_seed(self.config.seed)
        self.epochs_done = 0

    # -- data ------------------------------------------------------------------------------

    def _dataset(self, split: Split | str) -> Dataset[Sample]:
        try:
            return self.splits[Split(split)]
        except (KeyError, ValueError):
            raise TrainerConfigError(f"no {split!s} split was given to this Trainer") from None

    def num_examples(self, split: Split | str = Split.TRAIN) -> int:
        """Number of samples (subjects or slices) in a split; 0 when the split is absent."""
        data = self.splits.get(Split(split))
        return 0 if data is None else len(data)  # type: ignore[arg-type]

    def _loader(self, split: Split | str, *, train: bool) -> DataLoader[Sample]:
        cfg = self.config
        return DataLoader(
            self._dataset(split),
            batch_size=cfg.batch_size if train else cfg.eval_batch_size or cfg.batch_size,
            shuffle=train and cfg.shuffle,
            generator=self._generator if train else self._eval_generator,
            num_workers=cfg.num_workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    def _to_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        non_blocking = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=non_blocking) for k, v in batch.items()}

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return nullcontext()

    # -- training --------------------------------------------------------------------------

    def _train_step(self, batch: dict[str, torch.Tensor]) -> LossResult:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            outputs = self.model(batch[BatchKey.IMAGE])
        result = self.loss(outputs, batch)
        if result.has_grad:  # a batch where every label is missing teaches nothing
            self.scaler.scale(result.total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return result

    def fit(
        self,
        epochs: int,
        *,
        validate: bool = True,
        on_epoch_end: EpochCallback | None = None,
    ) -> list[dict[str, float]]:
        """Train ``epochs`` epochs; return one metrics dict per epoch.

        Each dict holds ``epoch``, ``train_loss`` and ``train_<head>_loss``, ``seconds``,
        ``images_per_second`` and, when a validation split exists and ``validate`` is true, its
        metrics prefixed ``validation_`` (a federated client running many local epochs may
        prefer ``validate=False`` and one ``evaluate`` at the end). ``on_epoch_end`` receives
        the same dict (for progress bars or logs).
        """
        history = []
        for _ in range(epochs):
            start = time.perf_counter()
            self.model.train()
            acc = Accumulator()
            for batch in self._loader(Split.TRAIN, train=True):
                acc.add_loss(self._train_step(self._to_device(batch)), len(batch[BatchKey.IMAGE]))
            seconds = time.perf_counter() - start
            self.epochs_done += 1
            record = {"epoch": float(self.epochs_done), "seconds": seconds}
            record |= {f"train_{k}": v for k, v in acc.loss_metrics(self.loss).items()}
            record["images_per_second"] = acc.samples / seconds if seconds > 0 else float("nan")
            if validate and Split.VALIDATION in self.splits:
                metrics, _ = self.evaluate(Split.VALIDATION)
                record |= {f"validation_{k}": v for k, v in metrics.items()}
            log.info("epoch %d: train loss %.4f", self.epochs_done, record["train_loss"])
            if on_epoch_end is not None:
                on_epoch_end(record)
            history.append(record)
        return history

    # -- evaluation ------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self, split: Split | str
    ) -> Iterator[tuple[dict[str, torch.Tensor], LossResult, dict[str, torch.Tensor]]]:
        """Yield ``(outputs, loss, batch)`` per batch of a split, in dataset order, eval mode."""
        self.model.eval()
        for raw in self._loader(split, train=False):
            batch = self._to_device(raw)
            with self._autocast():
                outputs = self.model(batch[BatchKey.IMAGE])
            yield outputs, self.loss(outputs, batch), batch

    def evaluate(
        self, split: Split | str = Split.VALIDATION
    ) -> tuple[dict[str, float], Predictions]:
        """Metrics (``loss``, ``<head>_<metric>``, ``<region>_dice``) and per-sample predictions."""
        acc = Accumulator()
        for outputs, loss, batch in self.predict(split):
            acc.add_loss(loss, len(batch[BatchKey.IMAGE]))
            acc.add_outputs(outputs, batch)
        predictions = acc.predictions()
        metrics = {Metric.LOSS.value: acc.loss_metrics(self.loss)[Metric.LOSS]}
        metrics |= predictions.metrics()
        return metrics, predictions

    # -- weights ---------------------------------------------------------------------------

    def state_keys(self) -> list[str]:
        """Names of the arrays ``get_weights`` returns, in the same order."""
        return list(self.model.state_dict().keys())

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every parameter *and buffer* in ``state_dict`` order, dtypes preserved.

        Buffers matter: BatchNorm running statistics are part of the model a federation averages,
        and ``num_batches_tracked`` stays int64.
        """
        return [t.detach().cpu().numpy().copy() for t in self.model.state_dict().values()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Load arrays from ``get_weights`` (or an aggregate of them) into the model.

        Arrays are cast back to each entry's own dtype, so an average that came back as float64
        still loads; integer buffers are rounded first.
        """
        state = self.model.state_dict()
        if len(weights) != len(state):
            raise WeightsError(f"got {len(weights)} arrays, the model has {len(state)} entries")
        new: OrderedDict[str, torch.Tensor] = OrderedDict()
        for (key, current), array in zip(state.items(), weights, strict=True):
            array = np.asarray(array)
            if tuple(array.shape) != tuple(current.shape):
                raise WeightsError(
                    f"{key} has shape {tuple(array.shape)}, expected {tuple(current.shape)}"
                )
            if not current.is_floating_point() and np.issubdtype(array.dtype, np.floating):
                array = np.rint(array)
            new[key] = torch.from_numpy(np.ascontiguousarray(array)).to(current.dtype)
        self.model.load_state_dict(new, strict=True)
