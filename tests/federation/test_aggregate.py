"""FedAvg on plain arrays: hand-computed cases, dtypes, errors, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from federation.aggregate import fedavg
from federation.errors import AggregationError


def test_weighted_mean_by_number_of_examples() -> None:
    site_a = [np.array([1.0, 2.0], dtype=np.float32), np.array([[0.0]], dtype=np.float32)]
    site_b = [np.array([3.0, 6.0], dtype=np.float32), np.array([[4.0]], dtype=np.float32)]
    result = fedavg([(site_a, 1), (site_b, 3)])
    np.testing.assert_allclose(result[0], [2.5, 5.0])  # (1*1 + 3*3)/4, (2 + 18)/4
    np.testing.assert_allclose(result[1], [[3.0]])
    assert [a.dtype for a in result] == [np.float32, np.float32]


def test_integer_buffers_stay_integers() -> None:
    counters = fedavg([([np.array(10, dtype=np.int64)], 1), ([np.array(13, dtype=np.int64)], 1)])
    assert counters[0].dtype == np.int64 and int(counters[0]) == 12  # 11.5 rounds to even


def test_one_site_returns_its_own_weights_exactly() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4)).astype(np.float32), np.array(7, dtype=np.int64)]
    result = fedavg([(arrays, 17)])
    for got, expected in zip(result, arrays, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_float16_is_kept() -> None:
    result = fedavg([([np.ones(2, np.float16)], 2), ([np.zeros(2, np.float16)], 2)])
    assert result[0].dtype == np.float16 and result[0].tolist() == [0.5, 0.5]


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ([], "no updates"),
        ([([np.zeros(2)], 0)], "must be positive"),
        ([([np.zeros(2)], 2.5)], "must be an integer"),
        ([([np.zeros(2)], 1), ([np.zeros(3)], 1)], r"float64\[3\] does not match float64\[2\]"),
        ([([np.zeros(2)], 1), ([np.zeros(2, np.float32)], 1)], "does not match"),
        ([([np.zeros(2)], 1), ([np.zeros(2), np.zeros(1)], 1)], "has 2 arrays, expected 1"),
    ],
)
def test_bad_updates_are_refused(updates: list, message: str) -> None:
    with pytest.raises(AggregationError, match=message):
        fedavg(updates)


def test_memory_stays_proportional_to_one_model() -> None:
    size, sites = 1_000_000, 8  # 4 MB of float32 per model copy, two layers
    updates = [
        ([np.full(size, float(s), np.float32), np.full(size, 1.0, np.float32)], s + 1)
        for s in range(sites)
    ]
    tracemalloc.start()
    result = fedavg(updates)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    expected = sum(s * (s + 1) for s in range(sites)) / sum(range(1, sites + 1))
    assert result[0][0] == pytest.approx(expected, rel=1e-6)
    model_bytes = 2 * size * 4
    assert peak < 2 * model_bytes  # the result + one layer's temporaries, not a copy per site
