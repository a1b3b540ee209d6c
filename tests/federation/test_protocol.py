"""The wire vocabulary stays in step with the model layer and keeps its promises."""

from __future__ import annotations

import numpy as np

from models.evaluation import Predictions
from models.names import MARKER_HEADS, Head, Metric, Region
from models.networks import ModelKind
from omopfed import protocol
from omopfed.protocol import ReplyError, Split


def test_model_kinds_heads_and_regions_match_the_model_layer() -> None:
    assert tuple(kind.value for kind in ModelKind) == protocol.MODEL_KINDS
    assert tuple(h.value for h in MARKER_HEADS) == protocol.MARKER_HEADS
    assert Head.SEG.value == protocol.SEG_HEAD
    assert tuple(r.value for r in Region) == protocol.REGIONS
    assert Metric.COUNT.value == protocol.COUNT_SUFFIX


def test_every_metric_the_trainer_reports_is_whitelisted() -> None:
    n = 6
    probabilities = {h.value: np.full((n, 3 if h is Head.GRADE else 2), 0.5) for h in MARKER_HEADS}
    labels = {h.value: np.arange(n) % 2 for h in MARKER_HEADS}
    dice = {r.value: np.array([0.5, 0.7]) for r in Region}
    produced = set(Predictions(labels, probabilities, dice).metrics())
    produced |= {"loss"} | {f"{h}_loss" for h in Head}
    assert produced - set(protocol.METRIC_SUBJECTS) == set()


def test_metric_keys_round_trip_and_unknown_keys_are_refused() -> None:
    key = protocol.metric_key(Split.VALIDATION, "mgmt_auc")
    assert key == "validation.mgmt_auc" and protocol.parse_metric_key(key) == (
        "validation",
        "mgmt_auc",
    )
    for bad in ("validation.person_id", "test.loss", "mgmt_auc", "validation."):
        assert not protocol.is_whitelisted(bad)
    assert protocol.is_whitelisted("num-examples")


def test_error_texts_are_fixed_and_name_nothing_specific() -> None:
    for code in ReplyError:
        reason = protocol.error_reason(code)
        assert (
            reason.startswith(code.name)
            and "/" not in reason
            and not any(c.isdigit() for c in reason)
        )
    assert protocol.describe_error(104) == "VALIDATION_GATE"
    assert protocol.describe_error(5) == "FLOWER_5"
