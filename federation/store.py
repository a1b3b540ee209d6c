"""The aggregator's metrics store: runs, rounds, per-site metrics and events.

SQLite by default (one file in the aggregator's workspace), PostgreSQL by URL, through SQLAlchemy
Core. Every write is one transaction: a round's metrics from all sites land together or not at
all, so a crash mid-write never leaves a half-recorded round. Metrics are stored long
(one row per site, split and metric name) because which whitelisted metrics a site sends
depends on the model and the labels it has (a site without 1p/19q labels sends no 1p/19q AUC).

Only aggregate numbers ever reach this store: the node's egress policy has already removed
anything patient-level and suppressed small counts before a reply left the site.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from federation.errors import FederationError

RUN_STATUSES = ("running", "completed", "failed", "stopped")
# "global": the final global model evaluated on each site's validation split.
SPLITS = ("train", "validation", "global")

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(32), nullable=False),
    sa.Column("planned_rounds", sa.Integer, nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

rounds = sa.Table(
    "rounds",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("wall_seconds", sa.Float, nullable=False),
    sa.Column("bytes_to_sites", sa.BigInteger, nullable=False),
    sa.Column("bytes_from_sites", sa.BigInteger, nullable=False),
    sa.Column("sites", sa.Integer, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

site_metrics = sa.Table(
    "site_metrics",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("split", sa.String(16), primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("round", sa.Integer),
    sa.Column("site", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

SiteMetrics = Mapping[str, Mapping[str, Mapping[str, float]]]  # site -> split -> name -> value


class StoreError(FederationError):
    """The metrics store cannot be opened or refuses a write."""

    code = "METRICS_STORE"


@dataclass(frozen=True)
class RoundRecord:
    round: int
    wall_seconds: float
    bytes_to_sites: int
    bytes_from_sites: int
    metrics: SiteMetrics


def _now() -> datetime:
    return datetime.now(UTC)


def default_url(workspace: Path) -> str:
    return f"sqlite:///{workspace / 'metrics.sqlite'}"


class MetricsStore:
    """Open (and create if needed) the store at ``url``."""

    def __init__(self, url: str) -> None:
        try:
            url_obj = sa.engine.make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"malformed metrics store URL {url!r}") from exc
        if url_obj.get_backend_name() == "postgresql":
            url_obj = url_obj.set(drivername="postgresql+psycopg")
        elif url_obj.get_backend_name() != "sqlite":
            raise StoreError(
                f"metrics store must be SQLite or PostgreSQL, not {url_obj.drivername}"
            )
        self.engine: Engine = sa.create_engine(url_obj)
        try:
            metadata.create_all(self.engine)
        except DBAPIError as exc:
            raise StoreError(f"cannot open the metrics store: {str(exc.orig).strip()}") from exc

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise StoreError(f"metrics store refused a write: {str(exc.orig).strip()}") from exc

    def start_run(
        self, run_id: str, model: str, planned_rounds: int, config: Mapping[str, Any]
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    model=model,
                    planned_rounds=planned_rounds,
                    config_json=json.dumps(dict(config), sort_keys=True, default=str),
                    status="running",
                    started_at=_now(),
                )
            )

    def reopen_run(self, run_id: str) -> dict[str, Any]:
        """Mark a stopped or failed run as running again (a resume); return its row."""
        with self._begin() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
            if row is None:
                raise StoreError(f"no run {run_id!r} in the metrics store")
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(status="running", finished_at=None)
            )
        return dict(row._mapping)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return None if row is None else dict(row._mapping)

    def record_round(self, run_id: str, record: RoundRecord) -> None:
        """A round's timings and every site's metrics, in one transaction."""
        rows = [
            {
                "run_id": run_id,
                "round": record.round,
                "site": site,
                "split": split,
                "metric": name,
                "value": _finite(value),
            }
            for site, splits in record.metrics.items()
            for split, values in splits.items()
            for name, value in values.items()
        ]
        for row in rows:
            if row["split"] not in SPLITS:
                raise StoreError(f"unknown split {row['split']!r} (expected {SPLITS})")
        with self._begin() as conn:
            conn.execute(
                rounds.insert().values(
                    run_id=run_id,
                    round=record.round,
                    wall_seconds=record.wall_seconds,
                    bytes_to_sites=record.bytes_to_sites,
                    bytes_from_sites=record.bytes_from_sites,
                    sites=len(record.metrics),
                    recorded_at=_now(),
                )
            )
            if rows:
                conn.execute(site_metrics.insert(), rows)

    def record_event(
        self,
        run_id: str,
        kind: str,
        detail: str,
        *,
        round: int | None = None,
        site: str | None = None,
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                events.insert().values(
                    run_id=run_id, round=round, site=site, kind=kind, detail=detail, at=_now()
                )
            )

    def finish_run(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}")
        with self._begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(status=status, finished_at=_now())
            )

    def list_runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(runs).order_by(runs.c.started_at))
            return [dict(row._mapping) for row in result]

    def last_round(self, run_id: str) -> int:
        """The last fully recorded round of a run (0 if none): where a resume continues."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.max(rounds.c.round)).where(rounds.c.run_id == run_id)
            ).scalar()
        return int(value or 0)

    def site_metrics(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = (
                sa.select(site_metrics)
                .where(site_metrics.c.run_id == run_id)
                .order_by(
                    site_metrics.c.round,
                    site_metrics.c.site,
                    site_metrics.c.split,
                    site_metrics.c.metric,
                )
            )
            return [dict(row._mapping) for row in conn.execute(query)]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = sa.select(events).where(events.c.run_id == run_id).order_by(events.c.event_id)
            return [dict(row._mapping) for row in conn.execute(query)]

    def dispose(self) -> None:
        self.engine.dispose()


def _finite(value: float) -> float | None:
    """NaN (for example AUC with one class present) is stored as NULL, not as a number."""
    value = float(value)
    return None if math.isnan(value) else value
