"""The metrics store on SQLite and PostgreSQL: transactional rounds, queries, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from federation.store import MetricsStore, RoundRecord, StoreError


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MetricsStore:
    if request.param == "sqlite":
        return MetricsStore(f"sqlite:///{tmp_path / 'metrics.sqlite'}")
    return MetricsStore(request.getfixturevalue("pg_url"))


def _record(round_: int, auc_b: float = 0.7) -> RoundRecord:
    return RoundRecord(
        round=round_,
        wall_seconds=12.5,
        bytes_to_sites=3 * 28_000_000,
        bytes_from_sites=3 * 28_000_000,
        metrics={
            "site-a": {"train": {"loss": 0.5, "num_examples": 40.0}, "validation": {"auc": 0.8}},
            "site-b": {"train": {"loss": 0.6, "num_examples": 25.0}, "validation": {"auc": auc_b}},
        },
    )


def test_round_trip(store: MetricsStore) -> None:
    store.start_run("run-1", "densenet2d", 2, {"local_epochs": 1})
    store.record_round("run-1", _record(1))
    store.record_round("run-1", _record(2, auc_b=math.nan))
    store.record_event(
        "run-1", "dropped", "no reply before the round timeout", round=2, site="site-c"
    )
    store.finish_run("run-1", "completed")
    [run] = store.list_runs()
    assert run["status"] == "completed" and run["planned_rounds"] == 2
    assert store.last_round("run-1") == 2
    metrics = store.site_metrics("run-1")
    assert len(metrics) == 12  # 2 rounds × 2 sites × 3 metrics
    nan_row = [
        m for m in metrics if m["round"] == 2 and m["site"] == "site-b" and m["metric"] == "auc"
    ]
    assert nan_row[0]["value"] is None
    [event] = store.events("run-1")
    assert (event["kind"], event["site"], event["round"]) == ("dropped", "site-c", 2)


def test_a_failed_round_write_leaves_nothing(store: MetricsStore) -> None:
    store.start_run("run-1", "densenet2d", 2, {})
    store.record_round("run-1", _record(1))
    with pytest.raises(StoreError, match="refused a write"):
        store.record_round("run-1", _record(1))  # the same round twice
    assert len(store.site_metrics("run-1")) == 6
    bad = RoundRecord(2, 1.0, 0, 0, {"site-a": {"test": {"auc": 0.5}}})
    with pytest.raises(StoreError, match="unknown split"):
        store.record_round("run-1", bad)
    assert store.last_round("run-1") == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "SQLite or PostgreSQL"),
        ("::", "malformed"),
        ("sqlite:////no/such/dir/m.sqlite", "cannot open"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        MetricsStore(url)


def test_unknown_status(store: MetricsStore) -> None:
    store.start_run("r", "unet3d", 1, {})
    with pytest.raises(StoreError, match="unknown run status"):
        store.finish_run("r", "exploded")
