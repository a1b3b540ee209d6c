"""The site's Flower ClientApp: train and evaluate on the local dataset cache, reply through egress.

Flower 1.42 starts a fresh ``flwr-clientapp`` process for every message, so this module imports
only Flower's message types, pydantic and the site's settings at import time; torch, the networks
and the dataset cache are imported inside the handlers, after the cheap refusals (bad settings,
wrong protocol, model not allowed) have had their chance.

Every message goes through the same steps: the site settings named by the SuperNode's
``node_config`` (or, under simulation, by the run config and the virtual node's partition), the
instruction's config parsed into :class:`Instruction`, the allowed-models check, the data, the
training gate (:func:`node.gate.require_validated` on the data's hash), the Trainer, and finally
:mod:`node.egress`, which builds and checks the reply. Any failure becomes an error reply with a
code and a fixed text; the detail is logged here, at the site, and never sent.

Under ``omopfed node start`` the ClientApp process hands the message to the site's warm worker
(:mod:`node.worker`), which runs these same steps with the training stack already imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp import ClientApp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from node import egress, worker
from node.gate import require_validated
from node.settings import SiteSettings, load_site_settings
from omopfed import offline
from omopfed.errors import OmopfedError
from omopfed.protocol import (
    MODEL_KINDS,
    PROTOCOL_VERSION,
    NodeConfigKey,
    RecordKey,
    ReplyError,
    RunConfigKey,
)

if TYPE_CHECKING:
    from torch.utils.data import Dataset

log = logging.getLogger(__name__)


class TrainingDataLike(Protocol):
    """What ``node.dataset.load_training_data`` returns (the data contract)."""

    @property
    def train(self) -> Any: ...
    @property
    def validation(self) -> Any: ...
    @property
    def data_hash(self) -> str: ...


#: ``(settings, model, cohort_id) -> TrainingData``: the seam tests use to inject datasets.
DataLoaderFn = Callable[[SiteSettings, str, int], TrainingDataLike]


def load_site_data(settings: SiteSettings, model: str, cohort_id: int) -> TrainingDataLike:
    """The site's cached dataset for ``model`` (imported late: it pulls in numpy and torch)."""
    from node.dataset import load_training_data

    data: TrainingDataLike = load_training_data(settings, model, cohort_id=cohort_id)
    return data


def _dashed(name: str) -> str:
    return name.replace("_", "-")


class Instruction(BaseModel):
    """The aggregator's ``config`` record, validated at the boundary."""

    # Field names are the ConfigKey values with "_" for "-" (a test keeps them in step).
    model_config = ConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, alias_generator=_dashed
    )

    protocol_version: int
    round: int = Field(1, ge=1)
    model: str
    local_epochs: int = Field(1, ge=1, le=1000)
    seed: int = Field(0, ge=0)
    cohort_id: int = Field(1, ge=1)
    batch_size: int = Field(0, ge=0)
    lr: float = Field(0.0, ge=0.0)
    num_threads: int = Field(0, ge=0)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_KINDS:
            raise ValueError(f"unknown model {value!r}")
        return value


@dataclass(frozen=True)
class Site:
    """The site as this message sees it: settings, allowed models, optional data partition."""

    settings: SiteSettings
    allowed_models: frozenset[str]
    partition: tuple[int, int] | None = None  # (index, count) of a pooled dataset

    @property
    def policy(self) -> egress.Policy:
        return egress.Policy(self.settings.site_name, self.settings.min_cell_count)


class Refusal(Exception):
    """Stop handling a message and reply with ``code`` (the cause is logged, not sent)."""

    def __init__(self, code: ReplyError) -> None:
        super().__init__(code.name)
        self.code = code


@contextmanager
def refuse_as(code: ReplyError) -> Iterator[None]:
    """Turn expected errors of one step into a refusal with that step's code."""
    try:
        yield
    except Refusal:
        raise
    except egress.EgressError as exc:
        raise Refusal(exc.reply_code) from exc
    except (OmopfedError, ValidationError, ValueError, OSError) as exc:
        raise Refusal(code) from exc


def resolve_site(context: Context) -> Site:
    """The site settings named by the node config, or by the run config under simulation."""
    node = context.node_config
    allowed = frozenset(m for m in str(node.get(NodeConfigKey.ALLOWED_MODELS, "")).split(",") if m)
    if NodeConfigKey.SETTINGS in node:
        return Site(load_site_settings(Path(str(node[NodeConfigKey.SETTINGS]))), allowed)
    if NodeConfigKey.PARTITION_ID not in node:
        raise ValueError("the node config names no site settings file")
    index = int(node[NodeConfigKey.PARTITION_ID])
    count = int(node.get(NodeConfigKey.NUM_PARTITIONS, 1))
    run = context.run_config
    sites = [s for s in str(run.get(RunConfigKey.SIM_SITES, "")).split(",") if s]
    if sites:
        return Site(load_site_settings(Path(sites[index % len(sites)])), allowed)
    pooled = str(run.get(RunConfigKey.SIM_POOLED, ""))
    if not pooled:
        raise ValueError("simulation needs sim-sites or sim-pooled in the run config")
    settings = load_site_settings(Path(pooled))
    name = f"{settings.site_name}-p{index}"
    return Site(settings.model_copy(update={"site_name": name}), allowed, (index, count))


def parse_instruction(message: Message) -> Instruction:
    config = message.content.get(RecordKey.CONFIG)
    if not isinstance(config, ConfigRecord):
        raise ValueError("the instruction has no config record")
    instruction = Instruction.model_validate(dict(config))
    if instruction.protocol_version != PROTOCOL_VERSION:
        raise ValueError(
            f"protocol {instruction.protocol_version}, this site speaks {PROTOCOL_VERSION}"
        )
    return instruction


def _prepare(
    message: Message, site: Site, load_data: DataLoaderFn
) -> tuple[Instruction, TrainingDataLike]:
    """Instruction, model check, data and gate: the steps before any training."""
    with refuse_as(ReplyError.PROTOCOL):
        instruction = parse_instruction(message)
        if not isinstance(message.content.get(RecordKey.ARRAYS), ArrayRecord):
            raise ValueError("the instruction carries no model")
    if site.allowed_models and instruction.model not in site.allowed_models:
        raise Refusal(ReplyError.MODEL_NOT_ALLOWED)
    with refuse_as(ReplyError.DATA):
        data = load_data(site.settings, instruction.model, instruction.cohort_id)
    with refuse_as(ReplyError.VALIDATION_GATE):
        require_validated(site.settings.workspace, data.data_hash)
    if site.partition is not None:
        data = _partitioned(data, *site.partition, seed=instruction.seed)
    return instruction, data


def handle(
    message: Message,
    context: Context,
    step: Callable[[Message, Site, Instruction, TrainingDataLike], Message],
    load_data: DataLoaderFn = load_site_data,
) -> Message:
    """Run one message through the common steps and ``step``; every failure becomes a code.

    Every reply, error replies included, is appended to the site's egress audit log before it
    is handed to Flower; a reply that cannot be logged is not sent.
    """
    kind = message.metadata.message_type
    started = time.perf_counter()
    site: Site | None = None
    try:
        with refuse_as(ReplyError.CONFIG):
            site = resolve_site(context)
        instruction, data = _prepare(message, site, load_data)
        with refuse_as(ReplyError.TRAINING):
            reply = step(message, site, instruction, data)
    except Refusal as refusal:
        log.warning("%s refused (%s): %s", kind, refusal.code.name, refusal.__cause__ or "")
        reply = egress.error_reply(message, refusal.code)
    except Exception:
        log.exception("%s failed unexpectedly", kind)
        reply = egress.error_reply(message, ReplyError.INTERNAL)
    if site is None:
        return reply
    try:
        egress.audit(reply, site.settings.workspace / "audit")
    except OSError:
        log.exception("cannot write the egress audit log; the reply is withheld")
        return egress.error_reply(message, ReplyError.EGRESS)
    log.info("%s handled in %.1f s", kind, time.perf_counter() - started)
    return reply


def train_step(
    message: Message, site: Site, instruction: Instruction, data: TrainingDataLike
) -> Message:
    """Local epochs from the global model, then the new model's metrics on the validation split."""
    policy = site.policy
    if len(data.train) < policy.min_cell_count:
        raise egress.EgressError("too few examples", reply_code=ReplyError.TOO_FEW_EXAMPLES)
    received = message.content.array_records[RecordKey.ARRAYS]
    trainer = _trainer(site, instruction, data, received)
    start = time.perf_counter()
    history = trainer.fit(instruction.local_epochs, validate=False)
    seconds = time.perf_counter() - start
    last = history[-1] if history else {}
    train_metrics = {k.removeprefix("train_"): v for k, v in last.items() if k.startswith("train_")}
    train = egress.SplitSummary(len(data.train), _labelled(data.train), train_metrics)
    # Metrics the egress policy would withhold anyway are not computed at all.
    validation = None
    if len(data.validation) >= policy.min_cell_count:
        validation = _evaluate(trainer, data.validation)
    arrays = _arrays(received, trainer.get_weights())
    return egress.train_reply(message, arrays, train, validation, seconds, policy)


def evaluate_step(
    message: Message, site: Site, instruction: Instruction, data: TrainingDataLike
) -> Message:
    """The global model's metrics on the validation split (the model is not trained)."""
    policy = site.policy
    if len(data.validation) < policy.min_cell_count:
        raise egress.EgressError("too few examples", reply_code=ReplyError.TOO_FEW_EXAMPLES)
    trainer = _trainer(site, instruction, data, message.content.array_records[RecordKey.ARRAYS])
    start = time.perf_counter()
    summary = _evaluate(trainer, data.validation)
    return egress.evaluate_reply(message, summary, time.perf_counter() - start, policy)


def _trainer(site: Site, instruction: Instruction, data: TrainingDataLike, arrays: Any) -> Any:
    """A Trainer for the instruction's model, seeded per round, holding the global weights."""
    from models.config import TrainerConfig
    from models.networks import build_model
    from models.trainer import Trainer

    recipe = (
        TrainerConfig.for_densenet if instruction.model == "densenet2d" else TrainerConfig.for_unet
    )
    overrides: dict[str, object] = {
        "seed": instruction.seed + instruction.round - 1,
        "device": site.settings.device,
    }
    if instruction.batch_size:
        overrides["batch_size"] = instruction.batch_size
    if instruction.lr:
        overrides["lr"] = instruction.lr
    if instruction.num_threads:
        overrides["num_threads"] = instruction.num_threads
    trainer = Trainer(
        build_model(instruction.model), data.train, data.validation, config=recipe(**overrides)
    )
    if trainer.state_keys() != list(arrays.keys()):
        raise ValueError("the global model does not match this site's network")
    trainer.set_weights(arrays.to_numpy_ndarrays())
    return trainer


def _evaluate(trainer: Any, validation: Any) -> egress.SplitSummary:
    """The Trainer's metrics on the validation split, with the counts egress needs."""
    metrics, _ = trainer.evaluate("validation")
    return egress.SplitSummary(len(validation), _labelled(validation), metrics)


def _arrays(received: ArrayRecord, weights: list[Any]) -> ArrayRecord:
    """The trained weights under the names (and in the order) the aggregator sent."""
    from flwr.app import Array

    return ArrayRecord({key: Array(w) for key, w in zip(received.keys(), weights, strict=True)})


def _labelled(dataset: Dataset[Any]) -> dict[str, int]:
    """How many subjects of a split carry each head's label (``seg``: a mask)."""
    import numpy as np
    from torch.utils.data import Subset

    index: Any = slice(None)
    base: Any = dataset
    if isinstance(dataset, Subset):
        base, index = dataset.dataset, np.asarray(dataset.indices, dtype=np.int64)
    counts = {str(head): int((values[index] >= 0).sum()) for head, values in base.labels.items()}
    if getattr(base, "has_seg", None) is not None:
        counts["seg"] = int(np.asarray(base.has_seg)[index].sum())
    return counts


def balanced_partition(labels: Any, index: int, count: int, seed: int) -> Any:
    """Indices of shard ``index`` of ``count``: each class (and the unlabelled) dealt evenly.

    Unlike Flower's PathologicalPartitioner, every shard gets every class in the pooled
    proportion (the seed paper's class-balanced client shards).
    """
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    shards = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        rng.shuffle(members)
        shards.append(members[index::count])
    return np.sort(np.concatenate(shards)) if shards else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class _Partitioned:
    train: Any
    validation: Any
    data_hash: str


def client_share(split: Any, index: int, count: int, seed: int) -> Any:
    """Client ``index`` of ``count``'s class-balanced share (by MGMT label) of one split; the
    study trains ``local-1ofK`` on exactly what client 0 trains on here."""
    from torch.utils.data import Subset

    labels = split.labels.get("mgmt")
    labels = labels if labels is not None else [0] * len(split)
    return Subset(split, balanced_partition(labels, index, count, seed).tolist())


def _partitioned(data: TrainingDataLike, index: int, count: int, *, seed: int) -> _Partitioned:
    """One simulated site's share of a pooled dataset: of its train and of its validation split."""
    return _Partitioned(
        client_share(data.train, index, count, seed),
        client_share(data.validation, index, count, seed),
        data.data_hash,
    )


_STEPS = {"train": train_step, "evaluate": evaluate_step}


def handle_message(message: Message, context: Context) -> Message:
    """A train or evaluate message through :func:`handle` with its step."""
    return handle(message, context, _STEPS[message.metadata.message_type])


def dispatch(message: Message, context: Context) -> Message:
    """Hand the message to the site's warm worker (:mod:`node.worker`) if the node config
    names one, else handle it in this process: the same steps either way, the worker only
    saves this process the imports of torch and the networks."""
    address = str(context.node_config.get(NodeConfigKey.WORKER, ""))
    if address:
        try:
            return worker.call(Path(address), message, context)
        except worker.UNAVAILABLE as exc:
            log.warning("site worker unavailable (%s); handling the message here", exc)
    return handle_message(message, context)


def serve_worker(address: Path, *, ready: Callable[[], None] | None = None) -> None:
    """Be the site's warm worker: import the training stack once, then answer ClientApps."""
    import importlib

    for module in ("models.networks", "models.trainer", "node.dataset"):
        importlib.import_module(module)
    offline.apply()
    worker.serve(address, handle_message, ready=ready)


app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    offline.apply()
    return dispatch(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    offline.apply()
    return dispatch(message, context)
