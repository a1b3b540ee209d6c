"""Errors of the synthetic federation generator."""

from __future__ import annotations

from omopfed.errors import EXIT_DATA, EXIT_USAGE, OmopfedError


class SynthError(OmopfedError):
    """The generator was asked for something it cannot make (bad sizes, unknown profile)."""

    code = "SYNTH"
    exit_code = EXIT_USAGE


class SynthOutputError(OmopfedError):
    """The output folder cannot be written, or already holds a site that would be overwritten."""

    code = "SYNTH_OUTPUT"
    exit_code = EXIT_DATA
