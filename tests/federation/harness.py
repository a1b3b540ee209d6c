"""In-process federation for fast tests: real apps, real messages, no processes or network.

:class:`LoopbackGrid` implements Flower's ``Grid`` (the documented extension point) by handing each
message to a site callable in the same process, so the real ServerApp strategy and the real
ClientApp handlers exchange real Flower ``Message`` objects in a second. The e2e tests cover the
transport; these cover the logic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.app.metadata import Metadata
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from models.data import ArrayDataset
from node import client_app
from node.gate import ValidationRecord, write_record

SiteFn = Callable[[Message], Message | None]  # None: the site never answers (dropped)


def set_task_identity(run_id: int = 1) -> None:
    """Flower reads the sender's identity from the process (set by its runtime, here by us)."""
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 0


def delivered(message: Message, message_id: str) -> Message:
    """The message as the receiving site sees it: with the id the SuperLink would assign."""
    meta = message.metadata
    return Message(
        content=message.content,
        metadata=Metadata(
            run_id=meta.run_id,
            message_id=message_id,
            src_node_id=meta.src_node_id,
            dst_node_id=meta.dst_node_id,
            reply_to_message_id="",
            group_id=meta.group_id,
            created_at=meta.created_at,
            ttl=meta.ttl,
            message_type=meta.message_type,
        ),
    )


def instruction(content: RecordDict, node_id: int = 7, kind: str = "train") -> Message:
    """A message from the aggregator to ``node_id`` as it arrives at the site."""
    meta = Metadata(
        run_id=1,
        message_id="m-1",
        src_node_id=0,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id="1",
        created_at=0.0,
        ttl=3600.0,
        message_type=kind,
    )
    return Message(content=content, metadata=meta)


class LoopbackGrid(Grid):
    """Delivers each message to ``sites[dst_node_id]`` synchronously and collects the replies."""

    def __init__(self, sites: dict[int, SiteFn]) -> None:
        self.sites = dict(sites)
        self.sent: list[Message] = []
        self.replies: list[Message] = []
        self._ids = itertools.count(1)
        self._run = Run.create_empty(1)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(  # type: ignore[override]
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl=None
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.sites)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("use send_and_receive")

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            incoming = delivered(message, f"msg-{next(self._ids)}")
            self.sent.append(incoming)
            site = self.sites.get(message.metadata.dst_node_id)
            reply = site(incoming) if site is not None else None
            if reply is not None:
                replies.append(reply)
        self.replies.extend(replies)
        return replies


@dataclass(frozen=True)
class TrainingData:
    """The data contract of ``node.dataset.load_training_data``, built in memory."""

    train: ArrayDataset
    validation: ArrayDataset
    data_hash: str

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_validation(self) -> int:
        return len(self.validation)


def tiny_2d(seed: int, n_train: int = 12, n_val: int = 6, size: int = 32) -> TrainingData:
    """Grey 2D slices whose MGMT label shows as brightness, so a model can learn something."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> ArrayDataset:
        labels = np.arange(n) % 2
        images = rng.normal(0.3, 0.1, (n, 1, size, size)).astype(np.float32)
        images += labels[:, None, None, None].astype(np.float32) * 0.4
        return ArrayDataset(images, {"mgmt": labels})

    return TrainingData(split(n_train), split(n_val), f"hash-{seed}")


def tiny_3d(
    seed: int, *, seg: bool, codeletion: bool, n_train: int = 6, n_val: int = 5
) -> TrainingData:
    """Tiny 4-channel volumes with every marker label, minus 1p/19q or masks when asked."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> ArrayDataset:
        images = rng.normal(0, 1, (n, 4, 4, 16, 16)).astype(np.float32)
        labels = {
            "idh": np.arange(n) % 2,
            "mgmt": (np.arange(n) + 1) % 2,
            "grade": np.arange(n) % 3,
        }
        labels["codeletion_1p19q"] = np.arange(n) % 2 if codeletion else np.full(n, -1)
        masks = rng.integers(0, 4, (n, 4, 16, 16)) if seg else None
        return ArrayDataset(images, labels, masks=masks)

    return TrainingData(split(n_train), split(n_val), f"hash3d-{seed}")


def make_site(
    root: Path, name: str, data: TrainingData, *, min_cell_count: int = 5, validated: bool = True
) -> Path:
    """A site folder with settings and (unless told otherwise) a passing gate record."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "site.toml"
    settings.write_text(
        f'site_name = "{name}"\ndatabase_url = "duckdb:///cdm.duckdb"\n'
        f'min_cell_count = {min_cell_count}\ndevice = "cpu"\n'
    )
    if validated:
        # TODO(issue 6): `omopfed validate` writes this record once it exists.
        write_record(folder / "workspace", ValidationRecord(data.data_hash, True, {}))
    return settings


def site_fn(
    settings: Path,
    data: TrainingData,
    *,
    node_id: int = 0,
    node_config: dict[str, str] | None = None,
) -> SiteFn:
    """A site that answers with the real ClientApp handlers on injected in-memory data."""
    config = {"settings": str(settings), **(node_config or {})}
    context = Context(
        run_id=1, node_id=node_id, node_config=config, state=RecordDict(), run_config={}
    )

    def load(_settings: object, _model: str, _cohort: int) -> TrainingData:
        return data

    def answer(message: Message) -> Message:
        step = (
            client_app.train_step
            if message.metadata.message_type == "train"
            else client_app.evaluate_step
        )
        return client_app.handle(message, context, step, load_data=load)

    return answer
