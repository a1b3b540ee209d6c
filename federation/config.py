"""The run configuration, parsed once at the ServerApp's boundary into a typed model.

Flower hands the ServerApp an untyped ``run_config`` (``[tool.flwr.app.config]`` in
pyproject.toml, overridden by ``flwr run --run-config``). It is validated here, in one place, so a
typo or a string where a number belongs fails the run at its start with one clear line instead
of deep inside round 3. Keys are :class:`omopfed.protocol.RunConfigKey`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import ConfigRecord
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from federation.errors import FederationError
from omopfed.errors import EXIT_CONFIG, field_problems
from omopfed.protocol import MODEL_KINDS, PROTOCOL_VERSION, ConfigKey


def _dashed(name: str) -> str:
    return name.replace("_", "-")


class RunConfigError(FederationError):
    """The run configuration is missing a key, has an unknown one, or a bad value."""

    code = "RUN_CONFIG"
    exit_code = EXIT_CONFIG


class RunSettings(BaseModel):
    """A federated run, as the coordinator asked for it."""

    # Field names are the RunConfigKey values with "_" for "-" (a test keeps them in step).
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, alias_generator=_dashed
    )

    model: str
    num_rounds: int = Field(ge=1)
    local_epochs: int = Field(1, ge=1)
    min_sites: int = Field(2, ge=1)
    wait_for_sites: float = Field(300.0, gt=0)
    round_timeout: float = Field(3600.0, gt=0)
    final_evaluation: bool = True
    seed: int = Field(0, ge=0)
    cohort_id: int = Field(1, ge=1)
    batch_size: int = Field(0, ge=0)
    lr: float = Field(0.0, ge=0.0)
    num_threads: int = Field(0, ge=0)
    store_url: str = ""
    checkpoint_dir: str = ""
    run_name: str = ""
    resume_from: str = ""
    sim_sites: str = ""
    sim_pooled: str = ""

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_KINDS:
            raise ValueError(f"use one of {', '.join(MODEL_KINDS)}")
        return value

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunSettings:
        """Validate Flower's run config; every problem named in one line."""
        try:
            return cls.model_validate(dict(run_config))
        except ValidationError as exc:
            problems = field_problems(exc.errors(), whole="(run config)")
            raise RunConfigError(f"invalid run config: {problems}") from None

    def as_run_config(self) -> dict[str, Any]:
        """The settings as Flower run-config keys (for the metrics store and for resuming)."""
        return self.model_dump(by_alias=True)

    def instruction(self) -> ConfigRecord:
        """What every site receives in the ``config`` record of a train or evaluate message."""
        return ConfigRecord(
            {
                ConfigKey.PROTOCOL: PROTOCOL_VERSION,
                ConfigKey.MODEL: self.model,
                ConfigKey.LOCAL_EPOCHS: self.local_epochs,
                ConfigKey.SEED: self.seed,
                ConfigKey.COHORT_ID: self.cohort_id,
                ConfigKey.BATCH_SIZE: self.batch_size,
                ConfigKey.LR: self.lr,
                ConfigKey.NUM_THREADS: self.num_threads,
            }
        )
