"""The study statistics against hand-computed cases: ties, tiny samples, equal values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from federation import stats


def test_describe_quartiles_by_hand() -> None:
    s = stats.describe([4.0, 1.0, 3.0, 2.0])
    # numpy linear quartiles of 1..4: 1.75 and 3.25.
    assert (s.n, s.mean, s.median, s.q1, s.q3, s.iqr) == (4, 2.5, 2.5, 1.75, 3.25, 1.5)
    assert 1.0 <= s.ci_low <= s.mean <= s.ci_high <= 4.0
    assert s.note == ""
    assert stats.describe([4.0, 1.0, 3.0, 2.0]) == s  # fixed seed: reproducible


def test_describe_tiny_and_degenerate_samples() -> None:
    one = stats.describe([0.61])
    assert (one.n, one.mean, one.median, one.iqr) == (1, 0.61, 0.61, 0.0)
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high) and "n < 2" in one.note
    equal = stats.describe([0.7, 0.7, 0.7])
    assert (equal.ci_low, equal.ci_high, equal.note) == (0.7, 0.7, "all values equal")
    two = stats.describe([0.5, float("nan"), 0.7])  # NaN runs are dropped, not zeros
    assert two.n == 2 and two.mean == pytest.approx(0.6)
    assert 0.5 <= two.ci_low <= two.ci_high <= 0.7
    assert stats.describe([]).n == 0


def test_rank_sum_exact_small_sample() -> None:
    # x = {3, 4} all above y = {1, 2}: U = 4, exact two-sided p = 2 / C(4, 2) = 1/3, r = 1.
    t = stats.rank_sum([3.0, 4.0], [1.0, 2.0])
    assert t.u == 4.0
    assert t.p_value == pytest.approx(1 / 3)
    assert t.effect_size == 1.0
    assert t.note == "too few runs: the smallest possible p is 0.333"
    assert stats.rank_sum([5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0]).note == ""  # min p 2/70


def test_rank_sum_with_ties_by_hand() -> None:
    # Pooled ranks: 1 -> 1; 2, 2, 2 -> 3; 3 -> 5; 4 -> 6. R_x = 7, U_x = 7 - 6 = 1.
    # Tie-corrected variance 9/12 * (7 - 24/30) = 4.65; z = (3.5 - 0.5) / sqrt(4.65).
    x, y = [1.0, 2.0, 2.0], [2.0, 3.0, 4.0]
    t = stats.rank_sum(x, y)
    z = 3.0 / math.sqrt(4.65)
    p = math.erfc(z / math.sqrt(2))
    assert t.u == 1.0
    assert t.p_value == pytest.approx(p, rel=1e-9)
    assert t.effect_size == pytest.approx(2 / 9 - 1)
    assert t.effect_size == pytest.approx(stats.cliffs_delta(x, y))


def test_rank_sum_degenerate_cases() -> None:
    equal = stats.rank_sum([0.5, 0.5], [0.5, 0.5, 0.5])
    assert (equal.p_value, equal.effect_size, equal.note) == (1.0, 0.0, "all values equal")
    single = stats.rank_sum([0.4], [0.6])
    assert (single.u, single.p_value, single.effect_size) == (0.0, 1.0, -1.0)
    empty = stats.rank_sum([], [0.6])
    assert math.isnan(empty.p_value)


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04).
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.02, float("nan"), 0.5])
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1])
    assert adjusted[2] == 0.5
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]


def test_percent_of_centralized() -> None:
    assert stats.percent_of(0.745, 0.7554) == pytest.approx(98.6232, abs=1e-4)
    assert math.isnan(stats.percent_of(0.5, 0.0))


def _results() -> pd.DataFrame:
    rows = [("centralized", i, 0.60 + 0.01 * i) for i in range(4)]
    rows += [("federated-2", i, 0.50 + 0.01 * i) for i in range(4)]
    rows += [("federated-10", 0, 0.62), ("local-a", 0, 0.55)]
    frame = pd.DataFrame(rows, columns=["configuration", "repeat", "auc"])
    return frame.assign(seed=frame["repeat"] + 100)


def test_summarize_and_compare_tables() -> None:
    results = _results()
    summary = stats.summarize(results)
    assert list(summary["configuration"]) == [
        "centralized", "federated-2", "federated-10", "local-a",
    ]  # fmt: skip
    fed2 = summary.set_index("configuration").loc["federated-2"]
    assert fed2["pct_of_centralized"] == pytest.approx(100 * 0.515 / 0.615)
    table = stats.compare(results).set_index("configuration")
    # federated-2 entirely below centralized: U = 0, exact p = 2 / C(8, 4) = 1/35.
    assert table.loc["federated-2", "u"] == 0.0
    assert table.loc["federated-2", "p_value"] == pytest.approx(2 / 70)
    assert table.loc["federated-2", "effect_size"] == -1.0
    assert table.loc["federated-2", "p_adjusted"] == pytest.approx(3 * 2 / 70)
    uncorrected = stats.compare(results, correction=None).set_index("configuration")
    assert uncorrected.loc["federated-2", "p_adjusted"] == pytest.approx(2 / 70)


def test_validate_results_refuses_bad_tables() -> None:
    with pytest.raises(stats.StudyDataError, match="seed"):
        stats.validate_results(pd.DataFrame({"configuration": ["centralized"], "repeat": [0]}))
    bad = _results().assign(configuration="federated-0")
    with pytest.raises(stats.StudyDataError, match="federated-0"):
        stats.validate_results(bad)
    assert stats.validate_results(_results()) == ["auc"]
