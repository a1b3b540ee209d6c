"""The FedAvg adapter: weighting, dtypes, per-site reports, drops, failures, bounded waits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from federation.strategy import (
    FederatedAveraging,
    RoundReport,
    TooFewSitesError,
    wait_for_sites,
)
from omopfed.protocol import RecordKey
from tests.federation.harness import LoopbackGrid, set_task_identity


@pytest.fixture(autouse=True)
def _identity() -> None:
    set_task_identity()


class Recorder:
    def __init__(self) -> None:
        self.finished: list[RoundReport] = []
        self.failed: list[tuple[RoundReport, str]] = []

    def round_finished(self, report: RoundReport) -> None:
        self.finished.append(report)

    def round_failed(self, report: RoundReport, reason: str) -> None:
        self.failed.append((report, reason))


def _model(weight: float = 0.0, counter: int = 0) -> ArrayRecord:
    return ArrayRecord(
        {
            "w": Array(np.full((2, 2), weight, dtype=np.float32)),
            "bn.num_batches_tracked": Array(np.array(counter, dtype=np.int64)),
        }
    )


def trainer_site(name: str, weight: float, examples: int, counter: int):
    """A site that 'trains' to a fixed model and reports a few metrics."""

    def answer(message: Message) -> Message:
        metrics = {"num-examples": examples, "train.loss": weight, "validation.mgmt_auc": 0.5}
        if message.metadata.message_type == "evaluate":
            metrics = {"num-examples": examples, "global.mgmt_auc": weight / 10}
            content = RecordDict({RecordKey.METRICS: MetricRecord(metrics)})
        else:
            content = RecordDict(
                {
                    RecordKey.ARRAYS: _model(weight, counter),
                    RecordKey.METRICS: MetricRecord(metrics),
                }
            )
        content[RecordKey.SITE] = ConfigRecord({"name": name})
        return Message(content, reply_to=message)

    return answer


def failing_site(code: int):
    return lambda message: Message(Error(code=code, reason="X: text"), reply_to=message)


def _strategy(recorder: Recorder, *, min_sites: int = 2, rounds: int = 1, **kw: object):
    return FederatedAveraging(
        min_sites=min_sites,
        planned_rounds=rounds,
        wait_for_sites=1.0,
        observers=[recorder],
        **kw,  # type: ignore[arg-type]
    )


def test_averages_by_examples_keeps_dtypes_and_reports_every_site() -> None:
    grid = LoopbackGrid({1: trainer_site("a", 1.0, 10, 4), 2: trainer_site("b", 4.0, 30, 7)})
    recorder = Recorder()
    result = _strategy(recorder).start(grid, _model(), num_rounds=1)
    arrays = result.arrays
    assert arrays["w"].dtype == "float32"
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 3.25))  # (10*1 + 30*4) / 40
    assert arrays["bn.num_batches_tracked"].dtype == "int64"
    assert int(arrays["bn.num_batches_tracked"].numpy()) == 6  # rint(0.25*4 + 0.75*7)
    (report,) = recorder.finished
    by_site = {s.site: s.metrics for s in report.sites}
    assert by_site["a"]["train"]["loss"] == 1.0 and by_site["b"]["validation"]["mgmt_auc"] == 0.5
    assert by_site["b"]["global"]["mgmt_auc"] == 0.4  # the final evaluation, merged in
    assert by_site["a"]["train"]["num-examples"] == 10
    assert report.bytes_to_sites == 4 * _model().count_bytes()  # train + evaluate, 2 sites each
    assert report.bytes_from_sites == 2 * _model().count_bytes()
    assert report.dropped == [] and report.failed == {}


def test_rounds_count_on_after_a_resume_and_evaluate_only_at_the_end() -> None:
    grid = LoopbackGrid({1: trainer_site("a", 1.0, 10, 1), 2: trainer_site("b", 2.0, 10, 1)})
    recorder = Recorder()
    _strategy(recorder, rounds=5, round_offset=3).start(grid, _model(), num_rounds=2)
    assert [r.round for r in recorder.finished] == [4, 5]
    evaluated = [m for m in grid.sent if m.metadata.message_type == "evaluate"]
    assert len(evaluated) == 2 and {m.content["config"]["round"] for m in evaluated} == {5}
    assert "global" not in recorder.finished[0].sites[0].metrics


def test_failed_and_dropped_sites_are_reported_and_the_round_goes_on() -> None:
    sites = {
        1: trainer_site("a", 1.0, 10, 1),
        2: trainer_site("b", 2.0, 10, 1),
        3: failing_site(104),
        4: lambda message: None,
    }
    recorder = Recorder()
    _strategy(recorder, final_evaluation=False).start(LoopbackGrid(sites), _model(), num_rounds=1)
    (report,) = recorder.finished
    assert report.failed == {"node-3": "VALIDATION_GATE"}
    assert report.dropped == ["node-4"]
    assert sorted(s.site for s in report.sites) == ["a", "b"]


def test_too_few_good_replies_fail_the_run_with_a_clear_reason() -> None:
    sites = {1: trainer_site("a", 1.0, 10, 1), 2: failing_site(106), 3: lambda m: None}
    recorder = Recorder()
    with pytest.raises(TooFewSitesError) as caught:
        _strategy(recorder, min_sites=2).start(LoopbackGrid(sites), _model(), num_rounds=1)
    message = str(caught.value)
    assert "round 1: 1 of the minimum 2 site(s) replied" in message
    assert "dropped: node-3" in message and "node-2 (TOO_FEW_EXAMPLES)" in message
    (report, reason) = recorder.failed[0]
    assert report.arrays is None and reason in message and recorder.finished == []


def test_malformed_replies_count_as_failures() -> None:
    def no_metrics(message: Message) -> Message:
        return Message(RecordDict({RecordKey.ARRAYS: _model()}), reply_to=message)

    sites = {1: trainer_site("a", 1.0, 10, 1), 2: trainer_site("b", 1.0, 10, 1), 3: no_metrics}
    recorder = Recorder()
    _strategy(recorder, final_evaluation=False).start(LoopbackGrid(sites), _model(), num_rounds=1)
    assert recorder.finished[0].failed == {"node-3": "MALFORMED_REPLY"}


def test_wait_for_sites_is_bounded() -> None:
    ticks = itertools.count()
    grid = LoopbackGrid({1: trainer_site("a", 1.0, 10, 1)})
    with pytest.raises(TooFewSitesError, match="only 1 of the minimum 3 site"):
        wait_for_sites(grid, 3, 5.0, clock=lambda: float(next(ticks)), sleep=lambda s: None)
    assert wait_for_sites(grid, 1, 5.0) == [1]


def test_a_round_fails_when_too_few_sites_connect_in_time() -> None:
    grid = LoopbackGrid({1: trainer_site("a", 1.0, 10, 1)})
    strategy = FederatedAveraging(min_sites=2, planned_rounds=1, wait_for_sites=0.2)
    with pytest.raises(TooFewSitesError, match=r"within 0\.2 s"):
        strategy.start(grid, _model(), num_rounds=1)
