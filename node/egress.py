"""The site's egress policy: the one place every outgoing reply is built and checked.

Only three things may leave a site: the model arrays (train replies only, with exactly the names,
shapes and dtypes of the model that came in), whitelisted aggregate metrics
(:mod:`omopfed.protocol`) and the site's configured name. Error replies carry a fixed code and a
fixed text per code, never the exception's message (which may name a path or a subject).

Small cells, decided here (OHDSI suppresses counts below ``min_cell_count``):

* A site with fewer *training* examples than ``min_cell_count`` declines to train
  (``TOO_FEW_EXAMPLES``) instead of sending its count: FedAvg needs the true count as a weight,
  and rounding it up to the threshold would silently distort the average.
* An evaluate reply is declined the same way when the validation split is that small.
* Inside a reply, a split's metrics are left out when the split has fewer examples than the
  threshold, and a head's metrics (AUC, accuracy, its loss, its labelled count ``<head>_n``,
  Dice for the segmentation head) are left out when fewer subjects carry that head's label: an
  accuracy over two subjects is close to their labels. Left out, not replaced: the aggregator
  sees "no value", never a number derived from a small cell.

:func:`seal` re-checks the finished ``RecordDict`` against all of this, so a later change that
builds a reply another way still cannot send something the policy forbids.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from omopfed.errors import OmopfedError
from omopfed.protocol import (
    COUNT_METRICS,
    METRIC_SUBJECTS,
    RecordKey,
    ReplyError,
    ReplyMetric,
    SiteKey,
    Split,
    error_reason,
    is_whitelisted,
    metric_key,
    parse_metric_key,
)

log = logging.getLogger(__name__)

TRAIN = "train"
EVALUATE = "evaluate"


class EgressError(OmopfedError):
    """A reply would break the egress policy; the site sends ``reply_code`` instead."""

    code = "EGRESS"

    def __init__(self, message: str, *, reply_code: ReplyError = ReplyError.EGRESS) -> None:
        super().__init__(message)
        self.reply_code = reply_code


@dataclass(frozen=True)
class Policy:
    """What the site allows out: its name and its minimum cell count."""

    site_name: str
    min_cell_count: int


@dataclass(frozen=True)
class SplitSummary:
    """What the Trainer produced on one split, with the counts that decide what may leave.

    ``labelled`` maps a head (``mgmt``, ``seg``...) to how many subjects of the split carry its
    label (for ``seg``: a segmentation mask); ``metrics`` uses the Trainer's names.
    """

    examples: int
    labelled: Mapping[str, int] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


def split_metrics(split: Split, summary: SplitSummary, policy: Policy) -> dict[str, float]:
    """The whitelisted metrics of a split whose governing count reaches the threshold."""
    if summary.examples < policy.min_cell_count:
        if summary.metrics:
            log.info("%s metrics withheld: split below the minimum cell count", split)
        return {}
    kept: dict[str, float] = {}
    for name, value in summary.metrics.items():
        if name not in METRIC_SUBJECTS:
            log.debug("metric %s is not whitelisted; not sent", name)
            continue
        subject = METRIC_SUBJECTS[name]
        count = summary.examples if subject is None else summary.labelled.get(subject, 0)
        if count >= policy.min_cell_count:
            kept[metric_key(split, name)] = float(value)
    if dropped := len(summary.metrics) - len(kept):
        log.info("%s: %d metric(s) withheld by the egress policy", split, dropped)
    return kept


def train_reply(
    message: Message,
    arrays: ArrayRecord,
    train: SplitSummary,
    validation: SplitSummary | None,
    seconds: float,
    policy: Policy,
) -> Message:
    """The reply to a train instruction: new weights, train and validation metrics, site name."""
    _require_examples(train.examples, policy)
    metrics: dict[str, float] = {
        ReplyMetric.NUM_EXAMPLES.value: train.examples,
        ReplyMetric.TRAIN_SECONDS.value: float(seconds),
    }
    metrics |= split_metrics(Split.TRAIN, train, policy)
    if validation is not None:
        metrics |= split_metrics(Split.VALIDATION, validation, policy)
    content = RecordDict(
        {
            RecordKey.ARRAYS: arrays,
            RecordKey.METRICS: MetricRecord(metrics),  # type: ignore[arg-type]
            RecordKey.SITE: ConfigRecord({SiteKey.NAME: policy.site_name}),
        }
    )
    return seal(message, content, policy)


def evaluate_reply(
    message: Message, validation: SplitSummary, seconds: float, policy: Policy
) -> Message:
    """The reply to an evaluate instruction: the global model's metrics on the validation split."""
    _require_examples(validation.examples, policy)
    metrics: dict[str, float] = {
        ReplyMetric.NUM_EXAMPLES.value: validation.examples,
        ReplyMetric.EVALUATE_SECONDS.value: float(seconds),
    }
    metrics |= split_metrics(Split.GLOBAL, validation, policy)
    content = RecordDict(
        {
            RecordKey.METRICS: MetricRecord(metrics),  # type: ignore[arg-type]
            RecordKey.SITE: ConfigRecord({SiteKey.NAME: policy.site_name}),
        }
    )
    return seal(message, content, policy)


def error_reply(message: Message, code: ReplyError) -> Message:
    """An error reply: the code and its fixed text, nothing else."""
    return Message(Error(code=int(code), reason=error_reason(code)), reply_to=message)


def seal(message: Message, content: RecordDict, policy: Policy) -> Message:
    """Check a complete reply against the policy and wrap it; raise EgressError otherwise."""
    kind = message.metadata.message_type.split(".")[0]
    allowed = {RecordKey.METRICS, RecordKey.SITE} | ({RecordKey.ARRAYS} if kind == TRAIN else set())
    if unexpected := set(content.keys()) - allowed:
        raise EgressError(f"records {sorted(unexpected)} may not leave the site")
    _check_site(content.get(RecordKey.SITE), policy)
    _check_metrics(content.get(RecordKey.METRICS), policy)
    if kind == TRAIN:
        _check_arrays(content.get(RecordKey.ARRAYS), message.content.get(RecordKey.ARRAYS))
    return Message(content, reply_to=message)


def audit(reply: Message, folder: Path) -> Path:
    """Append what a reply carries to ``folder/egress.jsonl``: the site's record of what left.

    Metric values, config values, array names, shapes and dtypes (not their values), and error
    codes. One JSON object per line, appended with O_APPEND so concurrent replies never
    interleave within a line.
    """
    entry: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "type": reply.metadata.message_type,
    }
    if reply.has_error():
        entry["error"] = {"code": reply.error.code, "reason": reply.error.reason}
    else:
        entry["records"] = {key: _describe(record) for key, record in reply.content.items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "egress.jsonl"
    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def _describe(record: object) -> dict[str, Any]:
    if isinstance(record, ArrayRecord):
        return {"arrays": {k: [a.dtype, list(a.shape)] for k, a in record.items()}}
    if isinstance(record, MetricRecord | ConfigRecord):
        return {"values": dict(record)}
    return {"unknown": type(record).__name__}


def _require_examples(examples: int, policy: Policy) -> None:
    if examples < policy.min_cell_count:
        raise EgressError(
            f"{examples} example(s) is below the minimum cell count {policy.min_cell_count}",
            reply_code=ReplyError.TOO_FEW_EXAMPLES,
        )


def _check_site(record: object, policy: Policy) -> None:
    if not isinstance(record, ConfigRecord) or dict(record) != {SiteKey.NAME: policy.site_name}:
        raise EgressError("the site record must hold exactly the configured site name")


def _check_metrics(record: object, policy: Policy) -> None:
    if not isinstance(record, MetricRecord):
        raise EgressError("a reply must carry its metrics as a MetricRecord")
    for key, value in record.items():
        if not is_whitelisted(key):
            raise EgressError(f"metric {key!r} is not whitelisted")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EgressError(f"metric {key!r} must be one number")
        parsed = parse_metric_key(key)
        is_count = key == ReplyMetric.NUM_EXAMPLES or (parsed and parsed[1] in COUNT_METRICS)
        if is_count and not (math.isfinite(value) and value >= policy.min_cell_count):
            raise EgressError(f"count {key!r} is below the minimum cell count")


def _check_arrays(record: object, received: object) -> None:
    if not isinstance(record, ArrayRecord) or not isinstance(received, ArrayRecord):
        raise EgressError("a train reply must carry the model as an ArrayRecord")
    if list(record.keys()) != list(received.keys()):
        raise EgressError("the reply's arrays do not match the model that was sent")
    for key, array in record.items():
        sent = received[key]
        if array.dtype != sent.dtype or tuple(array.shape) != tuple(sent.shape):
            raise EgressError(f"array {key!r} changed shape or dtype")
