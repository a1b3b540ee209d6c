"""Federated averaging as pure functions on numpy arrays.

The maths lives here, free of Flower, so it is unit-tested on plain arrays and the Flower
strategy only adapts it. The replies of a round are already in memory when the strategy
aggregates them; :func:`fedavg` adds no copy per site: it walks layer by layer, keeping one
running sum for the current layer, so its extra memory is the result plus one layer (O(model),
not O(sites × model)). Walking layers in the outer loop also keeps each running sum in cache
while every site's contribution is added (site-by-site streaming through a whole-model sum was
2× slower in benchmarks/bench_fedavg.py).

Dtypes are preserved. Floating arrays are summed in their own precision, at least float32
(relative rounding error ~1e-7 per site, far below the noise of SGD). Integer arrays (BatchNorm's
``num_batches_tracked``) are summed in float64 and rounded back to their integer dtype: Flower's
built-in FedAvg turns them into float64, which breaks loading the state dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from federation.errors import AggregationError

Update = tuple[Sequence[np.ndarray], int]


def fedavg(updates: Sequence[Update]) -> list[np.ndarray]:
    """FedAvg (McMahan et al. 2017): the mean of the sites' arrays weighted by their examples."""
    if not updates:
        raise AggregationError("no updates to aggregate")
    counts = [_num_examples(n) for _, n in updates]
    fractions = np.asarray(counts, dtype=np.float64) / float(sum(counts))
    reference = [np.asarray(a) for a in updates[0][0]]
    for index, (arrays, _) in enumerate(updates[1:], start=2):
        _check(index, arrays, reference)
    averaged = []
    for layer, first in enumerate(reference):
        accumulate = _accumulator_dtype(first.dtype)
        total = np.asarray(first * accumulate.type(fractions[0]), dtype=accumulate)
        for (arrays, _), fraction in zip(updates[1:], fractions[1:], strict=True):
            total += np.asarray(arrays[layer]) * accumulate.type(fraction)
        if total.dtype != first.dtype:
            total = np.rint(total) if first.dtype.kind in "iub" else total
            total = total.astype(first.dtype)
        averaged.append(total)
    return averaged


def _num_examples(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise AggregationError(f"number of examples must be an integer, got {value!r}")
    if value <= 0:
        raise AggregationError(f"number of examples must be positive, got {value}")
    return int(value)


def _check(index: int, arrays: Sequence[np.ndarray], reference: list[np.ndarray]) -> None:
    if len(arrays) != len(reference):
        raise AggregationError(
            f"update {index} has {len(arrays)} arrays, expected {len(reference)}"
        )
    for layer, (array, expected) in enumerate(zip(arrays, reference, strict=True)):
        array = np.asarray(array)
        if array.shape != expected.shape or array.dtype != expected.dtype:
            raise AggregationError(
                f"update {index}, array {layer}: {array.dtype}{list(array.shape)} "
                f"does not match {expected.dtype}{list(expected.shape)}"
            )


def _accumulator_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f":
        return np.promote_types(dtype, np.float32)
    return np.dtype(np.float64)
