"""The egress policy on every reply kind: train, evaluate and error replies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from node import egress
from node.egress import EgressError, Policy, SplitSummary
from omopfed.protocol import RecordKey, ReplyError
from tests.federation.harness import instruction

POLICY = Policy("site_a", min_cell_count=5)


def _model() -> ArrayRecord:
    return ArrayRecord(
        {
            "w": Array(np.ones((2, 3), dtype=np.float32)),
            "bn.num_batches_tracked": Array(np.array(4, dtype=np.int64)),
        }
    )


def _train_message() -> object:
    return instruction(RecordDict({RecordKey.ARRAYS: _model(), RecordKey.CONFIG: ConfigRecord()}))


def _train_summary() -> SplitSummary:
    return SplitSummary(
        examples=40,
        labelled={"mgmt": 40, "idh": 3},
        metrics={"loss": 0.5, "mgmt_loss": 0.5, "idh_loss": 0.7},
    )


def _validation() -> SplitSummary:
    return SplitSummary(
        examples=10,
        labelled={"mgmt": 10, "idh": 2, "seg": 0},
        metrics={
            "loss": 0.6,
            "mgmt_auc": 0.8,
            "mgmt_n": 10.0,
            "idh_auc": 1.0,
            "idh_n": 2.0,
            "et_dice": math.nan,
            "patient_123_probability": 0.9,
        },
    )


def test_train_reply_keeps_arrays_whitelisted_metrics_and_site_name() -> None:
    message = _train_message()
    reply = egress.train_reply(message, _model(), _train_summary(), _validation(), 1.5, POLICY)
    content = reply.content
    assert set(content.keys()) == {RecordKey.ARRAYS, RecordKey.METRICS, RecordKey.SITE}
    assert dict(content[RecordKey.SITE]) == {"name": "site_a"}
    metrics = dict(content[RecordKey.METRICS])
    assert metrics == {
        "num-examples": 40,
        "train-seconds": 1.5,
        "train.loss": 0.5,
        "train.mgmt_loss": 0.5,
        "validation.loss": 0.6,
        "validation.mgmt_auc": 0.8,
        "validation.mgmt_n": 10.0,
    }  # idh (2-3 labelled) and seg (0) are small cells; the made-up metric is not whitelisted
    assert content[RecordKey.ARRAYS]["bn.num_batches_tracked"].dtype == "int64"
    assert reply.metadata.reply_to_message_id == message.metadata.message_id


def test_a_small_validation_split_sends_no_validation_metrics() -> None:
    small = SplitSummary(4, {"mgmt": 4}, {"loss": 0.6, "mgmt_auc": 0.8})
    reply = egress.train_reply(_train_message(), _model(), _train_summary(), small, 1.0, POLICY)
    assert not [k for k in reply.content[RecordKey.METRICS] if k.startswith("validation.")]


def test_too_few_training_examples_declines_instead_of_sending_a_small_count() -> None:
    with pytest.raises(EgressError) as caught:
        egress.train_reply(
            _train_message(), _model(), SplitSummary(4, {}, {"loss": 1.0}), None, 1.0, POLICY
        )
    assert caught.value.reply_code is ReplyError.TOO_FEW_EXAMPLES


def test_evaluate_reply_has_global_metrics_and_no_arrays() -> None:
    message = instruction(
        RecordDict({RecordKey.ARRAYS: _model(), RecordKey.CONFIG: ConfigRecord()}), kind="evaluate"
    )
    reply = egress.evaluate_reply(message, _validation(), 0.25, POLICY)
    assert set(reply.content.keys()) == {RecordKey.METRICS, RecordKey.SITE}
    assert dict(reply.content[RecordKey.METRICS]) == {
        "num-examples": 10,
        "evaluate-seconds": 0.25,
        "global.loss": 0.6,
        "global.mgmt_auc": 0.8,
        "global.mgmt_n": 10.0,
    }
    small = SplitSummary(3, {"mgmt": 3}, {"loss": 0.6})
    with pytest.raises(EgressError) as caught:
        egress.evaluate_reply(message, small, 0.1, POLICY)
    assert caught.value.reply_code is ReplyError.TOO_FEW_EXAMPLES


def test_error_reply_carries_only_the_code_and_its_fixed_text() -> None:
    reply = egress.error_reply(_train_message(), ReplyError.VALIDATION_GATE)
    assert reply.has_error() and not reply.has_content()
    assert reply.error.code == 104
    assert reply.error.reason == (
        "VALIDATION_GATE: the site's data has no passing validation result"
    )


def _content(metrics: dict[str, float], site: str = "site_a", **extra: object) -> RecordDict:
    records: dict[str, object] = {
        RecordKey.ARRAYS: _model(),
        RecordKey.METRICS: MetricRecord(metrics),  # type: ignore[arg-type]
        RecordKey.SITE: ConfigRecord({"name": site}),
        **extra,
    }
    return RecordDict(records)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (_content({"num-examples": 40, "secret": 1.0}), "not whitelisted"),
        (_content({"num-examples": 3}), "below the minimum cell count"),
        (_content({"num-examples": 40, "validation.idh_n": 2.0}), "below the minimum cell count"),
        (_content({"num-examples": 40}, site="site_b"), "configured site name"),
        (
            _content({"num-examples": 40}, paths=ConfigRecord({"p": "/data/x.dcm"})),
            "may not leave",
        ),
        (
            _content({"num-examples": 40}, extra=MetricRecord({"n": 1.0})),
            "may not leave",
        ),
    ],
)
def test_seal_refuses_anything_outside_the_policy(content: RecordDict, problem: str) -> None:
    with pytest.raises(EgressError, match=problem):
        egress.seal(_train_message(), content, POLICY)


def test_seal_refuses_arrays_that_differ_from_the_model_sent() -> None:
    content = _content({"num-examples": 40})
    content[RecordKey.ARRAYS]["extra"] = Array(np.zeros(3, dtype=np.float32))
    with pytest.raises(EgressError, match="do not match"):
        egress.seal(_train_message(), content, POLICY)
    changed = _content({"num-examples": 40})
    changed[RecordKey.ARRAYS]["w"] = Array(np.ones((2, 3), dtype=np.float64))
    with pytest.raises(EgressError, match="shape or dtype"):
        egress.seal(_train_message(), changed, POLICY)


def test_seal_refuses_arrays_in_an_evaluate_reply() -> None:
    message = instruction(RecordDict({RecordKey.ARRAYS: _model()}), kind="evaluate")
    with pytest.raises(EgressError, match="may not leave"):
        egress.seal(message, _content({"num-examples": 40}), POLICY)


def test_audit_appends_what_each_reply_carries(tmp_path: Path) -> None:
    message = _train_message()
    reply = egress.train_reply(message, _model(), _train_summary(), _validation(), 1.5, POLICY)
    egress.audit(reply, tmp_path)
    egress.audit(egress.error_reply(message, ReplyError.DATA), tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "egress.jsonl").read_text().splitlines()]
    assert lines[0]["records"]["arrays"]["arrays"]["w"] == ["float32", [2, 3]]
    assert lines[0]["records"]["metrics"]["values"]["validation.mgmt_auc"] == 0.8
    assert lines[0]["records"]["site"]["values"] == {"name": "site_a"}
    assert lines[1]["error"] == {"code": 105, "reason": egress.error_reason(ReplyError.DATA)}
    assert oct((tmp_path / "egress.jsonl").stat().st_mode & 0o777) == "0o600"
