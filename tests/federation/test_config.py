"""Run configuration: the pyproject defaults parse, keys match the protocol, errors are clear."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from federation.config import RunConfigError, RunSettings
from omopfed.protocol import PROTOCOL_VERSION, ConfigKey, RunConfigKey

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _defaults() -> dict[str, object]:
    with PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)["tool"]["flwr"]["app"]["config"]


def test_pyproject_defaults_parse_and_cover_every_key() -> None:
    defaults = _defaults()
    assert set(defaults) == {key.value for key in RunConfigKey}
    settings = RunSettings.from_run_config(defaults)
    assert settings.model == "densenet2d" and settings.final_evaluation is True
    assert settings.as_run_config() == defaults


def test_the_instruction_carries_the_protocol_version_and_training_keys() -> None:
    record = RunSettings.from_run_config(_defaults()).instruction()
    assert record[ConfigKey.PROTOCOL] == PROTOCOL_VERSION
    assert set(record) <= {key.value for key in ConfigKey}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model": "resnet"}, "model: use one of densenet2d, unet3d"),
        ({"num-rounds": 0}, "num-rounds: Input should be greater than or equal to 1"),
        ({"min-sites": "three"}, "min-sites: Input should be a valid integer"),
        ({"num-round": 3}, "num-round: Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_the_key(override: dict[str, object], message: str) -> None:
    with pytest.raises(RunConfigError, match=message):
        RunSettings.from_run_config({**_defaults(), **override})
