"""The federation's wire vocabulary, shared by the site (``node``) and the aggregator
(``federation``) so neither has to import the other.

Everything a message may carry is named here once: record keys, config keys, metric names, the
whitelist of metrics allowed to leave a site, error codes with their safe texts, and the keys of
Flower's ``run_config`` and ``node_config``. The module is standard library only: the ClientApp
starts in a fresh process for every message, and the layering test forbids anything heavier.

Metric names mirror ``models.names`` (heads, regions, metrics) as plain strings because this
module may not import ``models``; ``tests/federation/test_protocol.py`` checks that every metric
the Trainer can produce is whitelisted, so the two cannot drift apart silently.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: Bumped when a message layout changes incompatibly; a site refuses other versions.
PROTOCOL_VERSION = 1

#: Model kinds a run may ask for (the values of ``models.networks.ModelKind``).
MODEL_KINDS = ("densenet2d", "unet3d")


class RecordKey(StrEnum):
    """Keys of the records inside a message's ``RecordDict``."""

    ARRAYS = "arrays"  # ArrayRecord: model weights, state_dict names and order
    CONFIG = "config"  # ConfigRecord: instructions from the aggregator
    METRICS = "metrics"  # MetricRecord: whitelisted aggregate numbers from a site
    SITE = "site"  # ConfigRecord: the site's name (MetricRecord holds numbers only)


class SiteKey(StrEnum):
    """Keys of the ``site`` ConfigRecord of a reply."""

    NAME = "name"


class ConfigKey(StrEnum):
    """Keys of the ``config`` ConfigRecord the aggregator sends with every instruction."""

    SERVER_ROUND = "server-round"  # set by Flower's strategies: counts from 1 in each attempt
    ROUND = "round"  # the run's round, continuous across resumes
    PROTOCOL = "protocol-version"
    MODEL = "model"
    LOCAL_EPOCHS = "local-epochs"
    SEED = "seed"
    COHORT_ID = "cohort-id"
    BATCH_SIZE = "batch-size"  # 0: the model recipe's default
    LR = "lr"  # 0: the model recipe's default
    NUM_THREADS = "num-threads"  # 0: torch's default


class NodeConfigKey(StrEnum):
    """Keys of a SuperNode's ``--node-config`` (set by ``omopfed node start``)."""

    SETTINGS = "settings"  # path of the site settings TOML
    ALLOWED_MODELS = "allowed-models"  # comma-separated model kinds; empty: any
    WORKER = "worker"  # Unix socket of the site's warm worker (omopfed node worker)
    PARTITION_ID = "partition-id"  # set by Flower's simulation engine
    NUM_PARTITIONS = "num-partitions"


class RunConfigKey(StrEnum):
    """Keys of the run configuration (``[tool.flwr.app.config]``, ``flwr run --run-config``)."""

    MODEL = "model"
    NUM_ROUNDS = "num-rounds"
    LOCAL_EPOCHS = "local-epochs"
    MIN_SITES = "min-sites"
    WAIT_FOR_SITES = "wait-for-sites"  # seconds to wait for min-sites before failing
    ROUND_TIMEOUT = "round-timeout"  # seconds a round waits for replies
    FINAL_EVALUATION = "final-evaluation"  # evaluate the last global model at every site
    SEED = "seed"
    COHORT_ID = "cohort-id"
    BATCH_SIZE = "batch-size"
    LR = "lr"
    NUM_THREADS = "num-threads"
    STORE_URL = "store-url"  # aggregator side: metrics store
    CHECKPOINT_DIR = "checkpoint-dir"  # aggregator side: one folder per run
    RUN_NAME = "run-name"  # metrics-store run id; empty: the Flower run id
    RESUME_FROM = "resume-from"  # run name whose last checkpoint to continue
    SIM_SITES = "sim-sites"  # simulation: comma-separated site settings, one per virtual node
    SIM_POOLED = "sim-pooled"  # simulation: one settings file whose data is partitioned


class Split(StrEnum):
    """Prefixes of reply metric keys: which data a metric was computed on."""

    TRAIN = "train"  # the site's training split, during local training
    VALIDATION = "validation"  # the site's validation split, model after local training
    GLOBAL = "global"  # the site's validation split, global model (evaluate messages)


class ReplyMetric(StrEnum):
    """Metrics of a reply that are not per split."""

    NUM_EXAMPLES = "num-examples"  # training examples: the FedAvg weight (>= min cell count)
    TRAIN_SECONDS = "train-seconds"
    EVALUATE_SECONDS = "evaluate-seconds"


# Heads, regions and metric suffixes (values of models.names, repeated as strings on purpose).
MARKER_HEADS = ("idh", "codeletion_1p19q", "mgmt", "grade")
SEG_HEAD = "seg"
REGIONS = ("et", "tc", "wt")
CLASSIFICATION_METRICS = ("accuracy", "f1", "kappa", "auc", "recall", "specificity", "loss")
COUNT_SUFFIX = "n"
DICE_METRICS = ("dice", "dice_median")
LOSS = "loss"


def _subjects() -> dict[str, str | None]:
    """Base metric name -> the head whose labelled count governs it (None: the whole split)."""
    subjects: dict[str, str | None] = {LOSS: None, f"{SEG_HEAD}_{LOSS}": SEG_HEAD}
    for head in MARKER_HEADS:
        for metric in (*CLASSIFICATION_METRICS, COUNT_SUFFIX):
            subjects[f"{head}_{metric}"] = head
    for region in REGIONS:
        for metric in DICE_METRICS:
            subjects[f"{region}_{metric}"] = SEG_HEAD
    return subjects


#: Whitelisted per-split metric names and the head each one describes.
METRIC_SUBJECTS: dict[str, str | None] = _subjects()

#: Counts: reported only when at least the site's minimum cell count.
COUNT_METRICS = frozenset(f"{head}_{COUNT_SUFFIX}" for head in MARKER_HEADS)


def metric_key(split: Split | str, name: str) -> str:
    """The wire key of a per-split metric, e.g. ``validation.mgmt_auc``."""
    return f"{split}.{name}"


_SPLITS = frozenset(s.value for s in Split)
_REPLY_METRICS = frozenset(m.value for m in ReplyMetric)


def parse_metric_key(key: str) -> tuple[str, str] | None:
    """``(split, name)`` of a whitelisted per-split key, or None for anything else."""
    split, dot, name = key.partition(".")
    if not dot or split not in _SPLITS or name not in METRIC_SUBJECTS:
        return None
    return split, name


def is_whitelisted(key: str) -> bool:
    """May a metric with this key leave a site (before the count checks)?"""
    return key in _REPLY_METRICS or parse_metric_key(key) is not None


class ReplyError(IntEnum):
    """Codes of error replies. Flower reserves 0-99; a site's reply says only code + text."""

    CONFIG = 101
    PROTOCOL = 102
    MODEL_NOT_ALLOWED = 103
    VALIDATION_GATE = 104
    DATA = 105
    TOO_FEW_EXAMPLES = 106
    TRAINING = 107
    EGRESS = 108
    INTERNAL = 199


#: The only text an error reply carries: fixed per code, so no path, id or value can leak.
SAFE_TEXT: dict[ReplyError, str] = {
    ReplyError.CONFIG: "the site's node configuration is invalid",
    ReplyError.PROTOCOL: "the instruction does not match this site's protocol or run config",
    ReplyError.MODEL_NOT_ALLOWED: "this site does not allow the requested model",
    ReplyError.VALIDATION_GATE: "the site's data has no passing validation result",
    ReplyError.DATA: "the site's dataset cache is missing or unreadable",
    ReplyError.TOO_FEW_EXAMPLES: "the site has fewer examples than its minimum cell count",
    ReplyError.TRAINING: "local training or evaluation failed",
    ReplyError.EGRESS: "the reply was withheld by the site's egress policy",
    ReplyError.INTERNAL: "unexpected error at the site",
}


def error_reason(code: ReplyError) -> str:
    """The ``reason`` of an error reply: ``NAME: safe text``."""
    return f"{code.name}: {SAFE_TEXT[code]}"


def describe_error(code: int) -> str:
    """Turn an error reply's code into a name for the aggregator's events (Flower's own too)."""
    try:
        return ReplyError(code).name
    except ValueError:
        return f"FLOWER_{code}"
