"""Flower's FedAvg adapted to :func:`federation.aggregate.fedavg`, with per-site round reports.

The strategy does no I/O. It adapts: replies in, :func:`~federation.aggregate.fedavg` on their
arrays (dtypes kept, unlike Flower's built-in average that turns int64 BatchNorm counters into
float64), a :class:`RoundReport` out to each observer (the metrics store, the checkpointer) when
the round ends. Flower's ``Strategy.start`` keeps running the loop; nothing of it is copied.

What Flower 1.42 leaves open and this class closes:

* **Bounded wait.** Flower's sampling waits forever for ``min_available_nodes``; here each round
  first waits at most ``wait_for_sites`` seconds, then fails with :class:`TooFewSitesError`.
* **Per-site results.** ``start()`` keeps only averaged metrics; the report keeps every site's.
  Site names come from the SuperLink's registry (authenticated by the node's key) and, where a
  node has none (simulation), from the reply's ``site`` record.
* **Drops and failures.** A node that got the instruction but sent no reply before the round
  timeout is *dropped*; one that replied with an error *failed* (its code, never a message).
  A round with fewer good replies than ``min_sites`` fails the run (the last checkpoint stays).
* **Continuous rounds.** ``round_offset`` makes a resumed run count on from its checkpoint.
* **One evaluation.** Sites already report validation metrics in their train replies, so the
  global model is shipped for evaluation only after the final round (``final_evaluation``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from federation.aggregate import fedavg
from federation.errors import FederationError
from omopfed.protocol import (
    ConfigKey,
    RecordKey,
    ReplyMetric,
    SiteKey,
    describe_error,
    parse_metric_key,
)

log = logging.getLogger(__name__)

SiteMetrics = dict[str, dict[str, float]]  # split -> metric -> value


class TooFewSitesError(FederationError):
    """Fewer sites than the run's minimum connected in time, or replied in a round."""

    code = "TOO_FEW_SITES"


@dataclass
class SiteResult:
    """One site's part of a round: what it trained on, how long, how many bytes, its metrics."""

    site: str
    node_id: int
    num_examples: int
    bytes_from_site: int
    metrics: SiteMetrics = field(default_factory=dict)


@dataclass
class RoundReport:
    """Everything observers learn about a finished (or failed) round."""

    round: int
    planned_rounds: int
    wall_seconds: float = 0.0
    bytes_to_sites: int = 0
    bytes_from_sites: int = 0
    sites: list[SiteResult] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # site -> error code name
    arrays: ArrayRecord | None = None  # the new global model (None if the round failed)


class RoundObserver(Protocol):
    """Gets each round's report: the metrics store, the checkpointer, a progress printer."""

    def round_finished(self, report: RoundReport) -> None: ...

    def round_failed(self, report: RoundReport, reason: str) -> None: ...


def wait_for_sites(
    grid: Grid,
    minimum: int,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll: float = 1.0,
) -> list[int]:
    """The connected node ids once at least ``minimum`` are online; fail after ``timeout`` s."""
    deadline = clock() + timeout
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= minimum:
            return nodes
        if clock() >= deadline:
            raise TooFewSitesError(
                f"only {len(nodes)} of the minimum {minimum} site(s) connected "
                f"within {timeout:g} s",
                hint="start the missing SuperNodes, or lower --min-sites",
            )
        log.info("waiting for sites: %d of %d connected", len(nodes), minimum)
        sleep(min(poll, max(deadline - clock(), 0.0)))


class FederatedAveraging(FedAvg):
    """FedAvg over whole sites, reporting every site's metrics to observers each round."""

    def __init__(
        self,
        *,
        min_sites: int,
        planned_rounds: int,
        wait_for_sites: float,
        round_offset: int = 0,
        final_evaluation: bool = True,
        observers: Sequence[RoundObserver] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            min_train_nodes=min_sites,
            min_evaluate_nodes=min_sites,
            min_available_nodes=min_sites,
            weighted_by_key=ReplyMetric.NUM_EXAMPLES,
            arrayrecord_key=RecordKey.ARRAYS,
            configrecord_key=RecordKey.CONFIG,
        )
        self.min_sites = min_sites
        self.planned_rounds = planned_rounds
        self.wait_seconds = wait_for_sites
        self.round_offset = round_offset
        self.final_evaluation = final_evaluation
        self.observers = list(observers)
        self.clock = clock
        self._names: dict[int, str] = {}
        self._sent: set[int] = set()
        self._started = 0.0
        self._report: RoundReport | None = None

    def summary(self) -> None:
        log.info(
            "FedAvg over sites: rounds %d..%d, min %d site(s), wait %g s",
            self.round_offset + 1,
            self.planned_rounds,
            self.min_sites,
            self.wait_seconds,
        )

    # -- training --------------------------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._started = self.clock()
        run_round = self.round_offset + server_round
        self._report = RoundReport(run_round, self.planned_rounds)
        wait_for_sites(grid, self.min_sites, self.wait_seconds, clock=self.clock)
        self._remember_names(grid)
        config[ConfigKey.ROUND] = run_round
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent = {m.metadata.dst_node_id for m in messages}
        self._report.bytes_to_sites += arrays.count_bytes() * len(messages)
        log.info("round %d: instructions ready for %d site(s)", run_round, len(messages))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        report = self._current()
        replies = list(replies)
        log.info(
            "round %d: %d train replies after %.1f s",
            report.round, len(replies), self.clock() - self._started,
        )  # fmt: skip
        good = self._collect(report, replies, phase="train")
        report.dropped = sorted(
            self._name(n) for n in self._sent - {r.metadata.src_node_id for r in replies}
        )
        if len(good) < self.min_sites:
            reason = (
                f"round {report.round}: {len(good)} of the minimum {self.min_sites} site(s) "
                f"replied{_listing(report)}"
            )
            for observer in self.observers:
                observer.round_failed(report, reason)
            raise TooFewSitesError(
                reason, hint="resume from the last checkpoint when sites are back"
            )
        report.arrays = _average([reply for reply, _ in good], [site for _, site in good])
        report.sites = [site for _, site in good]
        return report.arrays, _mean_metrics(report.sites, "train")

    # -- evaluation ------------------------------------------------------------------------

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        run_round = self.round_offset + server_round
        if not (self.final_evaluation and run_round == self.planned_rounds):
            self._sent = set()
            return []
        config[ConfigKey.ROUND] = run_round
        messages = list(super().configure_evaluate(server_round, arrays, config, grid))
        self._sent = {m.metadata.dst_node_id for m in messages}
        self._current().bytes_to_sites += arrays.count_bytes() * len(messages)
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The round's last step: merge evaluation results, then tell the observers."""
        report = self._current()
        replies = list(replies)
        good = self._collect(report, replies, phase="evaluate")
        by_name = {site.site: site for site in report.sites}
        for _, result in good:
            target = by_name.get(result.site)
            if target is None:
                report.sites.append(result)
            else:
                target.metrics |= result.metrics
        missing = self._sent - {r.metadata.src_node_id for r in replies}
        report.dropped = sorted({*report.dropped, *(self._name(n) for n in missing)})
        report.wall_seconds = self.clock() - self._started
        for observer in self.observers:
            observer.round_finished(report)
        self._report = None
        return _mean_metrics([site for _, site in good], "global") if good else None

    # -- helpers ---------------------------------------------------------------------------

    def _current(self) -> RoundReport:
        if self._report is None:
            raise FederationError("a reply arrived outside of a round")
        return self._report

    def _remember_names(self, grid: Grid) -> None:
        """Registered SuperNode names (authenticated by their keys), where the SuperLink has them."""
        for node in grid.get_nodes():
            if getattr(node, "name", ""):
                self._names[node.node_id] = node.name

    def _name(self, node_id: int) -> str:
        return self._names.get(node_id, f"node-{node_id}")

    def _collect(
        self, report: RoundReport, replies: list[Message], *, phase: str
    ) -> list[tuple[Message, SiteResult]]:
        """Good replies as site results; errors and malformed replies recorded as failures."""
        good = []
        for reply in replies:
            node = reply.metadata.src_node_id
            prefix = "" if phase == "train" else f"{phase}: "
            if reply.has_error():
                report.failed[self._name(node)] = prefix + describe_error(reply.error.code)
                continue
            result = _site_result(reply, self._names.get(node))
            if result is None or (phase == "train" and RecordKey.ARRAYS not in reply.content):
                report.failed[self._name(node)] = prefix + "MALFORMED_REPLY"
                continue
            self._names.setdefault(node, result.site)
            report.bytes_from_sites += result.bytes_from_site
            good.append((reply, result))
        if report.failed:
            log.warning("round %d %s failures: %s", report.round, phase, report.failed)
        return good


def _site_result(reply: Message, registered: str | None) -> SiteResult | None:
    """Parse one reply; None when it lacks the records every reply must carry."""
    content = reply.content
    metrics = content.get(RecordKey.METRICS)
    site = content.get(RecordKey.SITE)
    if not isinstance(metrics, MetricRecord) or not isinstance(site, ConfigRecord):
        return None
    examples = metrics.get(ReplyMetric.NUM_EXAMPLES)
    if isinstance(examples, bool) or not isinstance(examples, int) or examples <= 0:
        return None
    name = registered or str(site.get(SiteKey.NAME, "")) or f"node-{reply.metadata.src_node_id}"
    by_split: SiteMetrics = {}
    for key, value in metrics.items():
        parsed = parse_metric_key(key)
        if parsed is not None and isinstance(value, int | float):
            by_split.setdefault(parsed[0], {})[parsed[1]] = float(value)
    arrays = content.get(RecordKey.ARRAYS)
    split = "train" if isinstance(arrays, ArrayRecord) else "global"
    extras = by_split.setdefault(split, {})
    extras[ReplyMetric.NUM_EXAMPLES.value] = float(examples)
    for timing in (ReplyMetric.TRAIN_SECONDS, ReplyMetric.EVALUATE_SECONDS):
        if isinstance(metrics.get(timing), int | float):
            extras[timing.value] = float(metrics[timing])  # type: ignore[arg-type]
    size = arrays.count_bytes() if isinstance(arrays, ArrayRecord) else 0
    extras["bytes-from-site"] = float(size)
    return SiteResult(name, reply.metadata.src_node_id, examples, size, by_split)


def _average(replies: list[Message], sites: list[SiteResult]) -> ArrayRecord:
    """FedAvg of the replies' arrays by training examples, names and dtypes kept."""
    records = [reply.content.array_records[RecordKey.ARRAYS] for reply in replies]
    names = list(records[0].keys())
    for record, site in zip(records[1:], sites[1:], strict=True):
        if list(record.keys()) != names:
            raise FederationError(f"site {site.site} sent arrays with different names")
    updates = [
        (record.to_numpy_ndarrays(), site.num_examples)
        for record, site in zip(records, sites, strict=True)
    ]
    averaged = fedavg(updates)
    return ArrayRecord(
        {name: Array(np.asarray(a)) for name, a in zip(names, averaged, strict=True)}
    )


def _mean_metrics(sites: list[SiteResult], split: str) -> MetricRecord:
    """Example-weighted mean of each metric over the sites that report it (for Flower's log)."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for site in sites:
        for name, value in site.metrics.get(split, {}).items():
            if name != ReplyMetric.NUM_EXAMPLES and np.isfinite(value):
                sums[name] = sums.get(name, 0.0) + value * site.num_examples
                weights[name] = weights.get(name, 0.0) + site.num_examples
    return MetricRecord({str(name): sums[name] / weights[name] for name in sums})


def _listing(report: RoundReport) -> str:
    parts = []
    if report.dropped:
        parts.append(f"dropped: {', '.join(report.dropped)}")
    if report.failed:
        parts.append("failed: " + ", ".join(f"{s} ({c})" for s, c in report.failed.items()))
    return f" ({'; '.join(parts)})" if parts else ""
