"""Errors the model layer raises on purpose.

Every one derives from :class:`omopfed.errors.OmopfedError`, so the CLI maps it to a stable code
and exit status; messages name the file or setting at fault but never carry patient data.
"""

from __future__ import annotations

from omopfed.errors import EXIT_CONFIG, EXIT_DATA, OmopfedError


class ModelError(OmopfedError):
    """Root of the model layer's expected errors."""

    code = "MODEL"
    exit_code = EXIT_DATA


class WeightsError(ModelError):
    """A weights file is missing, fails its checksum, or does not fit the network."""

    code = "MODEL_WEIGHTS"
    exit_code = EXIT_CONFIG


class InputShapeError(ModelError):
    """Arrays handed to a network or dataset have the wrong shape, dtype or length."""

    code = "MODEL_INPUT"
    exit_code = EXIT_DATA


class TrainerConfigError(ModelError):
    """A Trainer setting is invalid (unknown device or optimizer, missing split...)."""

    code = "MODEL_CONFIG"
    exit_code = EXIT_CONFIG
