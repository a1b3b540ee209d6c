"""P3 benchmark: the Trainer's epoch time against a bare PyTorch loop on identical tensors.

Same model (same initial weights), same batch size, same optimiser, same thread count, same
data; the bare loop indexes pre-built tensors directly while the Trainer goes through
``ArrayDataset`` -> ``DataLoader`` -> masked multitask loss -> metric accumulation. Epochs are
interleaved (Trainer, bare, Trainer, bare...) after one untimed warm-up epoch each, so drift in
machine load hits both sides alike. The ratio uses the fastest epoch of each side (the least
disturbed one, the usual choice for timing on a shared machine); medians are printed too.
Goal: ratio <= 1.05.

    .venv/bin/python benchmarks/bench_trainer.py            # both models, ~2-4 min on 2 cores
    .venv/bin/python benchmarks/bench_trainer.py --only densenet --epochs 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.config import TrainerConfig, seed_everything
from models.data import ArrayDataset
from models.densenet import DenseNet2D
from models.losses import MultitaskLoss
from models.names import MARKER_HEADS, BatchKey, Head
from models.trainer import Trainer
from models.unet import MultitaskUNet3D


def bare_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    batch_size: int,
    loss_fn: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], torch.Tensor],
    generator: torch.Generator,
) -> None:
    """The loop a researcher would write by hand: shuffle indices, slice, step."""
    model.train()
    n = len(tensors[BatchKey.IMAGE])
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v[idx] for k, v in tensors.items()}
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch[BatchKey.IMAGE]), batch)
        loss.backward()
        optimizer.step()


def compare(
    name: str,
    model: nn.Module,
    data: ArrayDataset,
    tensors: dict[str, torch.Tensor],
    config: TrainerConfig,
    loss_fn: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], torch.Tensor],
    epochs: int,
) -> dict[str, float]:
    """Best and median epoch seconds for both loops on copies of the same initial model."""
    bare_model = copy.deepcopy(model)
    trainer = Trainer(model, data, config=config)
    bare_opt = config.build_optimizer(bare_model.parameters())
    generator = torch.Generator().manual_seed(0)
    trainer_s, bare_s = [], []
    for epoch in range(epochs + 1):  # epoch 0 warms both up and is not counted
        t0 = time.perf_counter()
        trainer.fit(1)
        t1 = time.perf_counter()
        bare_epoch(bare_model, bare_opt, tensors, config.batch_size, loss_fn, generator)
        t2 = time.perf_counter()
        if epoch:
            trainer_s.append(t1 - t0)
            bare_s.append(t2 - t1)
    n = len(data)
    result = {
        "trainer_s": min(trainer_s),
        "bare_s": min(bare_s),
        "trainer_median_s": statistics.median(trainer_s),
        "bare_median_s": statistics.median(bare_s),
    }
    result["ratio"] = result["trainer_s"] / result["bare_s"]
    result["trainer_ips"] = n / result["trainer_s"]
    result["bare_ips"] = n / result["bare_s"]
    print(
        f"{name:>9}: trainer {result['trainer_s']:.2f} s/epoch ({result['trainer_ips']:.1f} img/s)"
        f" | bare {result['bare_s']:.2f} s/epoch ({result['bare_ips']:.1f} img/s)"
        f" | ratio {result['ratio']:.3f} (medians {result['trainer_median_s']:.2f} / "
        f"{result['bare_median_s']:.2f})  [{n} samples, batch {config.batch_size}, "
        f"{epochs} timed epochs; per-epoch trainer {[round(s, 2) for s in trainer_s]}, "
        f"bare {[round(s, 2) for s in bare_s]}]",
        flush=True,
    )
    return result


def bench_densenet(images: int, epochs: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.random((images, 1, 128, 128), dtype=np.float32)
    y = rng.integers(0, 2, images)
    seed_everything(0)
    model = DenseNet2D()
    tensors = {BatchKey.IMAGE: torch.from_numpy(x), Head.MGMT: torch.from_numpy(y)}

    def loss_fn(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(out[Head.MGMT], batch[Head.MGMT])

    config = TrainerConfig.for_densenet(device="cpu")
    data = ArrayDataset(x, {Head.MGMT: y})
    return compare("densenet", model, data, tensors, config, loss_fn, epochs)


def bench_unet(volumes: int, depth: int, epochs: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    x = rng.random((volumes, 4, depth, 128, 128), dtype=np.float32)
    masks = rng.integers(0, 4, (volumes, depth, 128, 128))
    labels = {h: rng.integers(0, 2, volumes) for h in MARKER_HEADS}
    seed_everything(0)
    model = MultitaskUNet3D()
    tensors = {
        BatchKey.IMAGE: torch.from_numpy(x),
        Head.SEG: torch.from_numpy(masks),
        BatchKey.HAS_SEG: torch.ones(volumes, dtype=torch.bool),
        **{h: torch.from_numpy(v) for h, v in labels.items()},
    }
    multitask = MultitaskLoss()  # same loss maths on both sides: we measure the loop only

    def loss_fn(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return multitask(out, batch).total

    config = TrainerConfig.for_unet(device="cpu")
    data = ArrayDataset(x, labels, masks=masks)
    return compare("unet3d", model, data, tensors, config, loss_fn, epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per side")
    parser.add_argument("--densenet-images", type=int, default=64)
    parser.add_argument("--unet-volumes", type=int, default=2)
    parser.add_argument("--unet-depth", type=int, default=8)
    parser.add_argument("--only", choices=["densenet", "unet"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU", flush=True)
    if args.only in (None, "densenet"):
        bench_densenet(args.densenet_images, args.epochs)
    if args.only in (None, "unet"):
        bench_unet(args.unet_volumes, args.unet_depth, args.epochs)


if __name__ == "__main__":
    main()
