"""P5: FedAvg of 5 × DenseNet121 updates against a plain numpy weighted sum, same run.

Both get the same arrays (DenseNet121's state dict shapes: 1 input channel, 2 classes, float32
weights and int64 BatchNorm counters). The baseline stacks nothing and keeps float32; ours
accumulates in float64 and restores dtypes. Prints the time ratio and peak extra memory.
Goal: ratio ≤ 1.5, peak memory O(model).
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

import numpy as np
import torch
import torchvision

from federation.aggregate import fedavg

SITES = 5
REPEATS = 15


def densenet_arrays(seed: int) -> list[np.ndarray]:
    model = torchvision.models.densenet121(weights=None, num_classes=2)
    model.features.conv0 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.state_dict().values():
        array = tensor.numpy()
        if np.issubdtype(array.dtype, np.floating):
            array = rng.standard_normal(array.shape).astype(array.dtype)
        arrays.append(array.copy())
    return arrays


def baseline(updates: list[tuple[list[np.ndarray], int]]) -> list[np.ndarray]:
    total = sum(n for _, n in updates)
    out = []
    for layer in range(len(updates[0][0])):
        acc = updates[0][0][layer] * (updates[0][1] / total)
        for arrays, n in updates[1:]:
            acc = acc + arrays[layer] * (n / total)
        out.append(acc)
    return out


def timed(fn, updates) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(updates)
    return time.perf_counter() - start


def peak_memory(fn, updates) -> int:  # type: ignore[no-untyped-def]
    """Measured in a separate call: tracemalloc slows every allocation."""
    tracemalloc.start()
    fn(updates)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    updates = [(densenet_arrays(seed), 100 + 10 * seed) for seed in range(SITES)]
    model_bytes = sum(a.nbytes for a in updates[0][0])
    ours, base = [], []
    for _ in range(REPEATS):  # interleaved, so load from other processes hits both alike
        ours.append(timed(fedavg, updates))
        base.append(timed(baseline, updates))
    ratio = statistics.median(ours) / statistics.median(base)
    print(f"model: {len(updates[0][0])} arrays, {model_bytes / 1e6:.1f} MB fp32; {SITES} sites")
    print(f"numpy weighted sum: {statistics.median(base) * 1000:.0f} ms (median of {REPEATS})")
    print(f"omopfed fedavg:     {statistics.median(ours) * 1000:.0f} ms")
    print(f"ratio ours/baseline: {ratio:.2f} (goal <= 1.5)")
    print(f"peak extra memory: {peak_memory(fedavg, updates) / model_bytes:.2f} x model size")


if __name__ == "__main__":
    main()
