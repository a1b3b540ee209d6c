"""Statistics of a centralized-versus-federated study: summaries, rank-sum tests, effect sizes.

MGMT from MRI is a weak signal, so differences between configurations are often smaller than the
spread between repeated runs; a study table without tests and intervals is noise. These are pure
functions on plain lists and DataFrames (no I/O), so each number can be checked by hand.

Choices, and why:

* **Bootstrap 95 % CI of the mean**: ``scipy.stats.bootstrap`` with the *percentile* method and a
  fixed seed. BCa is undefined when the jackknife values are all equal (ties are common with
  accuracy on small validation sets) and scipy then warns and returns NaN; the percentile interval
  is always defined. With fewer than two values there is no interval: NaN with a note.
* **Wilcoxon rank-sum** (the seed paper's test) is computed with ``scipy.stats.mannwhitneyu``,
  which is the same test (U = W - n1(n1+1)/2) but, unlike ``scipy.stats.ranksums``, corrects the
  variance for ties and uses the exact distribution for small samples without ties; ``ranksums``
  uses the plain normal approximation, which is wrong for 10 runs with tied values.
* **Effect size**: the rank-biserial correlation r = 2U/(n1 n2) - 1, with U the federated group's
  statistic. It equals Cliff's delta: P(fed > cen) - P(fed < cen), in [-1, 1]; positive means
  federated runs tend to score higher.
* **Holm** step-down correction across the federated configurations of one metric (optional).
* **% of centralized**: 100 x federated mean / centralized mean (Sheller et al., the JIP thesis).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from federation.errors import FederationError

CENTRALIZED = "centralized"
_CONFIG = re.compile(r"^(centralized|federated-[1-9][0-9]*|local-[A-Za-z0-9_.-]+)$")
BOOTSTRAP_SEED = 20260101
BOOTSTRAP_RESAMPLES = 2000
RESULT_KEYS = ("configuration", "repeat", "seed")

Values = Sequence[float] | np.ndarray


class StudyDataError(FederationError):
    """A study results table that cannot be analysed (missing columns, unknown configurations)."""

    code = "STUDY_DATA"


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one metric in one configuration."""

    n: int
    mean: float
    median: float
    q1: float
    q3: float
    iqr: float
    ci_low: float
    ci_high: float
    note: str = ""


@dataclass(frozen=True)
class RankSum:
    """A two-sided Wilcoxon rank-sum test of ``x`` (federated) against ``y`` (centralized)."""

    u: float
    p_value: float
    effect_size: float  # rank-biserial correlation == Cliff's delta
    note: str = ""


def _clean(values: Values) -> np.ndarray:
    """Finite values only: a run whose metric is undefined (NaN AUC) is not a zero."""
    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def bootstrap_ci(
    values: Values, *, seed: int = BOOTSTRAP_SEED, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float, str]:
    """Percentile bootstrap 95 % CI of the mean; NaN (and why) when it is not defined."""
    data = _clean(values)
    if data.size < 2:
        return math.nan, math.nan, "n < 2: no confidence interval"
    if np.all(data == data[0]):
        return float(data[0]), float(data[0]), "all values equal"
    result = sps.bootstrap(
        (data,),
        np.mean,
        method="percentile",
        n_resamples=resamples,
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return float(ci.low), float(ci.high), ""


def describe(values: Values, *, seed: int = BOOTSTRAP_SEED) -> Summary:
    """n, mean, median, quartiles (linear interpolation, numpy's default), IQR, bootstrap CI."""
    data = _clean(values)
    if data.size == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, "no values")
    q1, median, q3 = (float(v) for v in np.percentile(data, [25, 50, 75]))
    low, high, note = bootstrap_ci(data, seed=seed)
    return Summary(
        n=int(data.size),
        mean=float(data.mean()),
        median=median,
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        ci_low=low,
        ci_high=high,
        note=note,
    )


def rank_sum(x: Values, y: Values) -> RankSum:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) of x vs y, with the rank-biserial r."""
    a, b = _clean(x), _clean(y)
    if a.size == 0 or b.size == 0:
        return RankSum(math.nan, math.nan, math.nan, "a group has no values")
    if np.all(np.concatenate([a, b]) == a[0]):
        # No rank information at all: scipy returns p = 1; say so explicitly.
        return RankSum(a.size * b.size / 2, 1.0, 0.0, "all values equal")
    result = sps.mannwhitneyu(a, b, alternative="two-sided", method="auto")
    u = float(result.statistic)
    effect = 2.0 * u / (a.size * b.size) - 1.0
    smallest = min(1.0, 2.0 / math.comb(a.size + b.size, a.size))  # exact, complete separation
    note = f"too few runs: the smallest possible p is {smallest:.3g}" if smallest >= 0.05 else ""
    return RankSum(u, float(result.pvalue), effect, note)


def cliffs_delta(x: Values, y: Values) -> float:
    """P(x > y) - P(x < y) over all pairs; the definition, to check the rank-biserial r against."""
    a, b = _clean(x), _clean(y)
    if a.size == 0 or b.size == 0:
        return math.nan
    diff = a[:, None] - b[None, :]
    return float((np.sum(diff > 0) - np.sum(diff < 0)) / diff.size)


def holm(p_values: Values) -> list[float]:
    """Holm step-down adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full(p.shape, math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    running = 0.0
    for rank, index in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return [float(v) for v in adjusted]


def percent_of(numerator: float, denominator: float) -> float:
    """100 x numerator / denominator; NaN when the denominator is 0 or undefined."""
    if not math.isfinite(numerator) or not math.isfinite(denominator) or denominator == 0:
        return math.nan
    return 100.0 * numerator / denominator


def configuration_order(configurations: Sequence[str]) -> list[str]:
    """centralized first, then federated-K by K, then local-SITE by name: the plots' x order."""

    def key(name: str) -> tuple[int, int, str]:
        if name == CENTRALIZED:
            return (0, 0, "")
        if name.startswith("federated-"):
            return (1, int(name.split("-", 1)[1]), "")
        return (2, 0, name)

    return sorted(set(configurations), key=key)


def validate_results(results: pd.DataFrame) -> list[str]:
    """Check a study results table; return its metric columns (every numeric non-key column)."""
    missing = [c for c in RESULT_KEYS if c not in results.columns]
    if missing:
        raise StudyDataError(
            f"the study results table lacks the column(s) {', '.join(missing)}",
            hint="one row per run: configuration, repeat, seed, then one column per metric",
        )
    bad = sorted({str(c) for c in results["configuration"] if not _CONFIG.match(str(c))})
    if bad:
        raise StudyDataError(
            f"unknown configuration(s) {', '.join(bad)}",
            hint="use centralized, federated-K or local-SITE",
        )
    metrics = [
        str(c)
        for c in results.columns
        if c not in RESULT_KEYS and pd.api.types.is_numeric_dtype(results[c])
    ]
    if not metrics:
        raise StudyDataError("the study results table has no numeric metric column")
    return metrics


def summarize(results: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (metric, configuration): :class:`Summary` fields plus % of centralized."""
    metrics = list(metrics) if metrics is not None else validate_results(results)
    rows = []
    for metric in metrics:
        groups = values_by_configuration(results, metric)
        reference = groups.get(CENTRALIZED)
        central_mean = describe(reference).mean if reference is not None else math.nan
        for configuration, values in groups.items():
            summary = describe(values)
            rows.append(
                {
                    "metric": metric,
                    "configuration": configuration,
                    **asdict(summary),
                    "pct_of_centralized": percent_of(summary.mean, central_mean),
                }
            )
    return pd.DataFrame(rows)


def compare(
    results: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    reference: str = CENTRALIZED,
    correction: str | None = "holm",
) -> pd.DataFrame:
    """Each non-reference configuration against the reference, per metric.

    Columns: metric, configuration, n, n_reference, u, p_value, p_adjusted (Holm across the
    configurations of that metric, or equal to p_value without correction), effect_size,
    pct_of_centralized, note. Empty when the reference configuration is absent.
    """
    metrics = list(metrics) if metrics is not None else validate_results(results)
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        groups = values_by_configuration(results, metric)
        if reference not in groups:
            continue
        base = groups[reference]
        block: list[dict[str, Any]] = []
        for configuration, values in groups.items():
            if configuration == reference:
                continue
            test = rank_sum(values, base)
            block.append(
                {
                    "metric": metric,
                    "configuration": configuration,
                    "n": int(_clean(values).size),
                    "n_reference": int(_clean(base).size),
                    "u": test.u,
                    "p_value": test.p_value,
                    "effect_size": test.effect_size,
                    "pct_of_centralized": percent_of(
                        float(np.mean(_clean(values))) if _clean(values).size else math.nan,
                        float(np.mean(_clean(base))) if _clean(base).size else math.nan,
                    ),
                    "note": test.note,
                }
            )
        adjusted = holm([r["p_value"] for r in block]) if correction == "holm" else None
        for i, row in enumerate(block):
            row["p_adjusted"] = adjusted[i] if adjusted is not None else row["p_value"]
        rows.extend(block)
    columns = [
        "metric", "configuration", "n", "n_reference", "u", "p_value", "p_adjusted",
        "effect_size", "pct_of_centralized", "note",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def values_by_configuration(results: pd.DataFrame, metric: str) -> dict[str, list[float]]:
    """Values of a metric per configuration, configurations in plot order."""
    if metric not in results.columns:
        raise StudyDataError(f"no metric column {metric!r} in the study results table")
    order = configuration_order([str(c) for c in results["configuration"]])
    frame = results.assign(configuration=results["configuration"].astype(str))
    return {c: frame.loc[frame["configuration"] == c, metric].astype(float).tolist() for c in order}
