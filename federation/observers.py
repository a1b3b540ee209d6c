"""Round observers: where a round's report goes once the strategy has averaged it.

The strategy only computes; these do the I/O. The checkpointer runs before the metrics store
(see :func:`federation.server_app.observers_for`): a crash between the two leaves a checkpoint
one round ahead of the store, and a resume continues after the checkpoint, so no round is ever
trained twice into the same run's records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from federation import checkpoint
from federation.store import MetricsStore, RoundRecord
from federation.strategy import RoundReport

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves the global model after every round (atomic; the newest ``keep`` are kept)."""

    def __init__(
        self, folder: Path, *, run: str, model: str, run_config: Mapping[str, Any], keep: int = 2
    ) -> None:
        self.folder = folder
        self.meta = {"run": run, "model": model, "run_config": dict(run_config)}
        self.keep = keep

    def round_finished(self, report: RoundReport) -> None:
        if report.arrays is None:
            return
        arrays = dict(zip(report.arrays.keys(), report.arrays.to_numpy_ndarrays(), strict=True))
        meta = {**self.meta, "round": report.round, "planned_rounds": report.planned_rounds}
        path = checkpoint.save(self.folder, meta, arrays, keep=self.keep)
        log.info("round %d checkpoint: %s", report.round, path.name)

    def round_failed(self, report: RoundReport, reason: str) -> None:
        """Nothing to save: the last good round's checkpoint is the one to resume from."""


class MetricsRecorder:
    """Writes each round's timings, bytes and every site's metrics, and drops and failures."""

    def __init__(self, store: MetricsStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def round_finished(self, report: RoundReport) -> None:
        self._events(report)
        self.store.record_round(
            self.run_id,
            RoundRecord(
                round=report.round,
                wall_seconds=report.wall_seconds,
                bytes_to_sites=report.bytes_to_sites,
                bytes_from_sites=report.bytes_from_sites,
                metrics={site.site: site.metrics for site in report.sites},
            ),
        )

    def round_failed(self, report: RoundReport, reason: str) -> None:
        self._events(report)
        self.store.record_event(self.run_id, "round_failed", reason, round=report.round)

    def _events(self, report: RoundReport) -> None:
        for site in report.dropped:
            self.store.record_event(
                self.run_id, "dropped", "no reply within the round", round=report.round, site=site
            )
        for site, code in report.failed.items():
            self.store.record_event(self.run_id, "failed", code, round=report.round, site=site)
