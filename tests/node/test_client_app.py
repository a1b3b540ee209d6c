"""The ClientApp's handlers on in-memory data: replies, refusals, parity with local training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from federation.config import RunSettings
from federation.server_app import initial_arrays
from models.config import TrainerConfig, seed_everything
from models.networks import build_model
from models.trainer import Trainer
from node import client_app
from node.client_app import Instruction, balanced_partition, resolve_site
from omopfed.protocol import ConfigKey, RecordKey, ReplyError
from tests.federation.harness import instruction, make_site, site_fn, tiny_2d

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _message(kind: str = "train", model: str = "densenet2d", **config: object) -> object:
    settings = RunSettings(model=model, num_rounds=1, local_epochs=1, seed=3, num_threads=1)
    record = settings.instruction()
    record[ConfigKey.ROUND] = 1
    for key, value in config.items():
        record[key] = value  # type: ignore[assignment]
    arrays = initial_arrays(model, seed=3)
    return instruction(RecordDict({RecordKey.ARRAYS: arrays, RecordKey.CONFIG: record}), kind=kind)


@pytest.fixture(scope="module")
def train_message() -> object:
    return _message()


def test_train_reply_holds_new_weights_metrics_and_the_site_name(
    tmp_path: Path, train_message: object
) -> None:
    data = tiny_2d(0)
    reply = site_fn(make_site(tmp_path, "site_a", data), data)(train_message)
    assert not reply.has_error()
    sent = train_message.content[RecordKey.ARRAYS]
    arrays = reply.content[RecordKey.ARRAYS]
    assert list(arrays.keys()) == list(sent.keys())
    counter = "net.features.norm0.num_batches_tracked"
    assert arrays[counter].dtype == "int64"
    assert int(arrays[counter].numpy()) == int(sent[counter].numpy()) + 1  # 12 examples, batch 16
    metrics = reply.content[RecordKey.METRICS]
    assert metrics["num-examples"] == 12
    assert {"train.loss", "validation.loss", "validation.mgmt_auc", "validation.mgmt_n"} <= set(
        metrics
    )
    assert dict(reply.content[RecordKey.SITE]) == {"name": "site_a"}


def test_evaluate_reply_scores_the_global_model(tmp_path: Path) -> None:
    data = tiny_2d(1)
    reply = site_fn(make_site(tmp_path, "site_a", data), data)(_message("evaluate"))
    metrics = reply.content[RecordKey.METRICS]
    assert metrics["num-examples"] == 6 and "global.mgmt_auc" in metrics
    assert RecordKey.ARRAYS not in reply.content


def _error(reply: object) -> tuple[int, str]:
    assert reply.has_error()
    return reply.error.code, reply.error.reason


def test_refuses_data_without_a_passing_validation(tmp_path: Path, train_message: object) -> None:
    data = tiny_2d(0)
    settings = make_site(tmp_path, "site_a", data, validated=False)
    code, reason = _error(site_fn(settings, data)(train_message))
    assert code == ReplyError.VALIDATION_GATE
    audit = (tmp_path / "site_a" / "workspace" / "audit" / "egress.jsonl").read_text()
    assert '"code": 104' in audit  # refusals are audited too
    changed = tiny_2d(5)  # validated hash-0, now hash-5
    settings = make_site(tmp_path, "site_b", data)
    assert _error(site_fn(settings, changed)(train_message))[0] == ReplyError.VALIDATION_GATE
    assert "validate" not in reason and str(tmp_path) not in reason


def test_refuses_a_model_the_site_does_not_allow(tmp_path: Path, train_message: object) -> None:
    data = tiny_2d(0)
    site = site_fn(make_site(tmp_path, "a", data), data, node_config={"allowed-models": "unet3d"})
    assert _error(site(train_message))[0] == ReplyError.MODEL_NOT_ALLOWED


def test_refuses_another_protocol_version(tmp_path: Path) -> None:
    data = tiny_2d(0)
    site = site_fn(make_site(tmp_path, "a", data), data)
    assert _error(site(_message(**{ConfigKey.PROTOCOL: 99})))[0] == ReplyError.PROTOCOL
    assert _error(site(_message(**{ConfigKey.LOCAL_EPOCHS: "many"})))[0] == ReplyError.PROTOCOL


def test_bad_settings_path_is_a_config_error_that_names_no_path(
    tmp_path: Path, train_message: object
) -> None:
    data = tiny_2d(0)
    code, reason = _error(site_fn(tmp_path / "missing" / "site.toml", data)(train_message))
    assert code == ReplyError.CONFIG and "missing" not in reason and "/" not in reason


def test_too_few_examples_declines(tmp_path: Path, train_message: object) -> None:
    data = tiny_2d(0, n_train=4, n_val=2)
    code, _ = _error(site_fn(make_site(tmp_path, "a", data), data)(train_message))
    assert code == ReplyError.TOO_FEW_EXAMPLES


def test_data_errors_and_bugs_become_codes(tmp_path: Path, train_message: object) -> None:
    settings = make_site(tmp_path, "a", tiny_2d(0))
    context = Context(1, 7, {"settings": str(settings)}, RecordDict(), {})

    def missing(*_: object) -> object:
        raise FileNotFoundError("/site/cache/secret-subject-42.npy")

    def bug(*_: object) -> object:
        raise RuntimeError("boom")

    reply = client_app.handle(train_message, context, client_app.train_step, load_data=missing)
    assert _error(reply) == (
        ReplyError.DATA,
        "DATA: the site's dataset cache is missing or unreadable",
    )
    reply = client_app.handle(train_message, context, client_app.train_step, load_data=bug)
    assert _error(reply)[0] == ReplyError.INTERNAL and "boom" not in _error(reply)[1]


def test_instruction_keys_are_the_protocol_keys() -> None:
    aliases = {field.alias for field in Instruction.model_fields.values()}
    assert aliases <= {key.value for key in ConfigKey}


def test_simulation_maps_partitions_to_site_files_or_to_shards(tmp_path: Path) -> None:
    a = make_site(tmp_path, "site_a", tiny_2d(0))
    b = make_site(tmp_path, "site_b", tiny_2d(1))
    sim = {"sim-sites": f"{a},{b}"}
    site = resolve_site(Context(1, 9, {"partition-id": 1, "num-partitions": 2}, RecordDict(), sim))
    assert site.settings.site_name == "site_b" and site.partition is None
    pooled = {"sim-pooled": str(a)}
    site = resolve_site(
        Context(1, 9, {"partition-id": 2, "num-partitions": 3}, RecordDict(), pooled)
    )
    assert site.settings.site_name == "site_a-p2" and site.partition == (2, 3)


def test_balanced_partition_gives_every_shard_every_class_in_proportion() -> None:
    labels = np.array([0] * 12 + [1] * 6 + [-1] * 3)
    shards = [balanced_partition(labels, i, 3, seed=0) for i in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(labels)))
    for shard in shards:
        assert np.bincount(labels[shard] + 1).tolist() == [1, 4, 2]


def test_one_site_one_round_equals_local_training(tmp_path: Path, train_message: object) -> None:
    """The seed paper's parity check: same seed, same data, same predictions."""
    data = tiny_2d(0)
    reply = site_fn(make_site(tmp_path, "a", data), data)(train_message)
    federated = reply.content[RecordKey.ARRAYS].to_numpy_ndarrays()

    seed_everything(3)
    config = TrainerConfig.for_densenet(seed=3, device="cpu", num_threads=1)
    local = Trainer(build_model("densenet2d"), data.train, data.validation, config=config)
    local.fit(1, validate=False)
    for ours, theirs in zip(federated, local.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    after = Trainer(build_model("densenet2d"), data.train, data.validation, config=config)
    after.set_weights(federated)
    _, fed_predictions = after.evaluate("validation")
    _, local_predictions = local.evaluate("validation")
    np.testing.assert_array_equal(
        fed_predictions.probabilities["mgmt"], local_predictions.probabilities["mgmt"]
    )


def test_a_pooled_site_trains_each_virtual_client_on_its_shard(
    tmp_path: Path, train_message: object
) -> None:
    data = tiny_2d(0, n_train=20, n_val=10)
    settings = make_site(tmp_path, "pool", data)
    run_config = {"sim-pooled": str(settings)}

    def load(*_: object) -> object:
        return data

    examples = []
    for index in range(2):
        node = {"partition-id": index, "num-partitions": 2}
        context = Context(1, 10 + index, node, RecordDict(), run_config)
        reply = client_app.handle(train_message, context, client_app.train_step, load_data=load)
        assert dict(reply.content[RecordKey.SITE]) == {"name": f"pool-p{index}"}
        examples.append(reply.content[RecordKey.METRICS]["num-examples"])
    assert examples == [10, 10]
