"""The site's settings: one pydantic model, read from a TOML file plus ``OMOPFED_*`` variables.

Built once in the entry point (``load_site_settings``) and passed down; never created at import
time. Environment variables override the file (``OMOPFED_MIN_CELL_COUNT=10``), so a container can
inject secrets without writing them to disk. Relative paths in the file are relative to the file,
so a site folder can be moved as a whole. Unknown keys are errors, not silently ignored: a typo in
``min_cell_count`` must not leave a site with the default privacy threshold.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cohorts.db import Schemas, check_identifier, parse_url, safe_url
from cohorts.errors import DatabaseUrlError, IdentifierError
from node.concept_map import MARKERS
from node.validation.thresholds import ValidationSettings
from omopfed.errors import ConfigError

ENV_PREFIX = "OMOPFED_"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
Sequence = Literal["FLAIR", "T1", "T1ce", "T2"]


class ResolverSettings(BaseModel):
    """How cohort members become manifest rows (``[resolver]``; docs/explanation/dataset-cache.md).

    Windows are days relative to the index date (the cohort start): [-30, 365] matches the
    reference cohort's MRI and MGMT rules, so a member the cohort accepted is not lost here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_window_days: tuple[int, int] = Field(
        default=(-30, 365),
        description="image_occurrence dates accepted, [from, to] days from index.",
    )
    label_window_days: tuple[int, int] = Field(
        default=(-30, 365), description="measurement dates accepted, [from, to] days from index."
    )
    required_sequences: tuple[Sequence, ...] = Field(
        default=("FLAIR", "T1", "T1ce", "T2"),
        min_length=1,
        description="Sequences a subject needs.",
    )
    target_marker: str = Field(
        default="mgmt", description="Marker a subject must have a label for."
    )
    conflict_policy: Literal["exclude", "latest", "fail"] = Field(
        default="exclude", description="Conflicting results of one marker: exclude, latest or fail."
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Share of each target-label stratum for validation.",
    )
    workers: int = Field(default=2, ge=1, le=64, description="Processes reading series headers.")

    @field_validator("image_window_days", "label_window_days")
    @classmethod
    def _window(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError("the window's start must not lie after its end")
        return value

    @field_validator("target_marker")
    @classmethod
    def _marker(cls, value: str) -> str:
        if value not in MARKERS:
            raise ValueError(f"unknown marker; use one of {', '.join(MARKERS)}")
        return value


class DatasetSettings(BaseModel):
    """Preprocessing of the dataset cache (``[dataset]``): part of every cache entry's hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(
        default=128, ge=16, le=512, description="In-plane size of model inputs."
    )
    dtype: Literal["float16", "float32"] = Field(
        default="float16", description="Stored image dtype."
    )
    scaling: Literal["minmax", "percentile"] = Field(
        default="minmax", description="2D intensity scaling to [0, 1]."
    )
    percentiles: tuple[float, float] = Field(
        default=(0.5, 99.5), description="Clip percentiles for scaling = percentile."
    )
    workers: int = Field(default=2, ge=1, le=64, description="Processes building cache items.")


class SiteSettings(BaseSettings):
    """Everything one site's processes need to know. See docs/reference/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    site_name: Annotated[str, Field(description="Short, stable name of this site.")]
    database_url: Annotated[
        SecretStr,
        Field(
            description="OMOP CDM database: duckdb:///path/cdm.duckdb or "
            "postgresql+psycopg://user:password@host:5432/db. Secret: it may hold a password."
        ),
    ]
    cdm_schema: str = Field("cdm", description="Schema of the CDM clinical tables.")
    vocab_schema: str | None = Field(
        None, description="Schema of the vocabulary tables; defaults to cdm_schema."
    )
    results_schema: str = Field("results", description="Schema of cohort and cohort_definition.")
    dicom_roots: list[Path] = Field(
        default_factory=list, description="Folders DICOM local_path values may point into."
    )
    workspace: Path = Field(Path("workspace"), description="Where the site writes its outputs.")
    cache_dir: Path | None = Field(
        None, description="Dataset cache; defaults to <workspace>/cache."
    )
    min_cell_count: int = Field(
        5, ge=1, description="Counts below this are shown as '<N' (OHDSI convention)."
    )
    concept_map: Path | None = Field(
        None, description="Concept map TOML; defaults to the one shipped with omopfed."
    )
    device: str = Field("auto", description="Training device: auto, cpu or cuda:N.")
    sequence_map: Path | None = Field(
        None, description="Sequence map TOML (series headers -> FLAIR/T1/T1ce/T2); shipped default."
    )
    resolver: Annotated[
        ResolverSettings, Field(description="Cohort -> manifest options ([resolver] table).")
    ] = ResolverSettings()
    dataset: Annotated[
        DatasetSettings, Field(description="Dataset cache preprocessing ([dataset] table).")
    ] = DatasetSettings()
    validation: ValidationSettings = Field(
        default_factory=ValidationSettings,
        description="Thresholds of the data contracts (`[validation]` table); "
        "see docs/how-to/validate-data.md.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init kwargs by load_site_settings).
        return (env_settings, init_settings)

    @field_validator("site_name")
    @classmethod
    def _site_name(cls, value: str) -> str:
        if not _SITE_NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 63 characters)")
        return value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        try:
            parse_url(value.get_secret_value())
        except DatabaseUrlError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("cdm_schema", "vocab_schema", "results_schema")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_identifier(value, "schema name")
            except IdentifierError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("use auto, cpu or cuda:N")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> SiteSettings:
        if self.cache_dir is None:
            object.__setattr__(self, "cache_dir", self.workspace / "cache")
        return self

    @property
    def schemas(self) -> Schemas:
        return Schemas(
            cdm=self.cdm_schema,
            vocab=self.vocab_schema or self.cdm_schema,
            results=self.results_schema,
        )

    def display(self) -> dict[str, Any]:
        """The effective settings for humans: secrets masked, paths as strings."""
        data = self.model_dump(mode="json")
        data["database_url"] = safe_url(parse_url(self.database_url.get_secret_value()))
        data["vocab_schema"] = self.schemas.vocab
        return data


_PATH_KEYS = ("workspace", "cache_dir", "concept_map", "sequence_map")


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    for key in _PATH_KEYS:
        if isinstance(data.get(key), str):
            data[key] = str((base / data[key]).resolve())
    if isinstance(data.get("dicom_roots"), list):
        data["dicom_roots"] = [
            str((base / p).resolve()) if isinstance(p, str) else p for p in data["dicom_roots"]
        ]
    url = data.get("database_url")
    if isinstance(url, str) and url.startswith("duckdb:///") and not url.startswith("duckdb:////"):
        relative = url.removeprefix("duckdb:///")
        if relative and relative != ":memory:":
            data["database_url"] = "duckdb:///" + str((base / relative).resolve())
    return data


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file with errors that name the file and the problem."""
    if not path.exists():
        raise ConfigError(f"settings file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"settings file {path} is not a file")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None


def load_site_settings(path: Path | str, *, environ: dict[str, str] | None = None) -> SiteSettings:
    """Build the site settings from ``path`` and the environment, or raise ConfigError.

    Keys may sit at the top level of the file or under a ``[site]`` table; other tables
    (``[validation]``, ``[resolver]``...) stay at the top level beside it.
    """
    path = Path(path)
    data = read_toml(path)
    if isinstance(data.get("site"), dict):
        site = data.pop("site")
        clash = sorted(set(site) & set(data))
        if clash:
            raise ConfigError(
                f"{path}: key(s) {', '.join(clash)} given both in [site] and outside it"
            )
        data = {**site, **data}
    data = dict(data)
    data.setdefault("workspace", "workspace")
    data = _resolve_paths(data, path.resolve().parent)
    saved = None
    if environ is not None:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(environ)
    try:
        return SiteSettings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None
    finally:
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)


def format_validation_error(exc: ValidationError, path: Path) -> str:
    """One line per problem: the key, where it came from and what is wrong."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(file)"
        env_name = ENV_PREFIX + key.upper()
        origin = f"environment variable {env_name}" if env_name in os.environ else str(path)
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(SiteSettings.model_fields)
            problems.append(f"{origin}: unknown key {key!r} (allowed: {allowed})")
        elif error["type"] == "missing":
            problems.append(f"{origin}: required key {key!r} is missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{origin}: key {key!r}: {message}")
    return "; ".join(problems)
