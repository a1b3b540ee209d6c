"""Which MR sequence (FLAIR, T1, T1ce, T2) a series holds, from its DICOM header.

MI-CDM has no sequence column and sites spell series differently, so the rules live in a
versioned TOML file (``node/data/sequence_map.toml``, overridable with the ``sequence_map``
setting) rather than in code; this module reads, validates and applies it. The file's comments
are the reference for how a series is classified.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from omopfed.errors import ConfigError, field_problems

DEFAULT_SEQUENCE_MAP = Path(__file__).resolve().parent.parent / "data" / "sequence_map.toml"
SEQUENCES = ("FLAIR", "T1", "T1ce", "T2")  # the channel names of node.imaging.CHANNELS
HEADER_FIELDS = ("SeriesDescription", "ProtocolName")
_NORMALISE = re.compile(r"[^a-z0-9+*]+")


def normalise(text: str) -> str:
    """Lower case; runs of anything but a-z, 0-9, '+' and '*' become one space."""
    return _NORMALISE.sub(" ", text.lower()).strip()


def _compile(patterns: list[str]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from None
    return compiled


class SequenceRule(BaseModel):
    """Patterns that name one sequence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequence: str
    patterns: Annotated[list[str], Field(min_length=1)]

    @field_validator("sequence")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SEQUENCES:
            raise ValueError(f"unknown sequence {value!r}; use one of {', '.join(SEQUENCES)}")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        _compile(value)
        return value


class SequenceMap(BaseModel):
    """The whole map; :meth:`classify` answers which sequence a header describes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    fields: Annotated[list[str], Field(min_length=1)] = list(HEADER_FIELDS)
    ignore: list[str] = Field(default_factory=list)
    contrast_upgrade: dict[str, str] = Field(default_factory=dict)
    rules: Annotated[list[SequenceRule], Field(min_length=1)]
    source: str = Field("", exclude=True)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(HEADER_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; use {HEADER_FIELDS}")
        return value

    @field_validator("ignore")
    @classmethod
    def _ignore(cls, value: list[str]) -> list[str]:
        _compile(value)
        return value

    @field_validator("contrast_upgrade")
    @classmethod
    def _upgrade(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted({*value, *value.values()} - set(SEQUENCES))
        if unknown:
            raise ValueError(f"unknown sequence(s) {', '.join(unknown)}")
        return value

    def classify(self, header: dict[str, str], *, contrast: bool = False) -> str | None:
        """The sequence of a series from its header fields, or None if no rule names one."""
        ignore = _compile(self.ignore)
        for name in self.fields:
            text = normalise(header.get(name, ""))
            if not text or any(p.search(text) for p in ignore):
                continue
            for rule in self.rules:
                if any(p.search(text) for p in _compile(rule.patterns)):
                    found = rule.sequence
                    return self.contrast_upgrade.get(found, found) if contrast else found
        return None


def load_sequence_map(path: Path | str | None = None) -> SequenceMap:
    """Read and validate a sequence map TOML (the shipped default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_SEQUENCE_MAP
    if not path.is_file():
        raise ConfigError(f"sequence map {path} does not exist or is not a file")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sequence map {path}: not valid TOML: {exc}") from None
    try:
        return SequenceMap(**data, source=str(path))
    except ValidationError as exc:
        problems = field_problems(exc.errors(), lead="key ")
        raise ConfigError(f"sequence map {path}: {problems}") from None
