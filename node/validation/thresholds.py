"""Thresholds of the data contracts: the ``[validation]`` table of the site settings.

Every number a suite compares against lives here, with a documented default, so a site can
tighten the contract without touching code. The thresholds are part of each suite's hash
(:mod:`node.validation.suites`): a result obtained under looser thresholds does not open the
training gate once the site has tightened them. ``blocking`` promotes warnings to blocking
expectations by id pattern; nothing demotes a blocking expectation (the contract can only be
made stricter at a site).

What the data is *for* is not repeated here: the target marker (``resolver.target_marker``) and
the sequences the model reads (``resolver.required_sequences``: FLAIR for the 2D DenseNet, all
four for the 3D U-Net) come from the resolver settings, so validation checks the same contract
the manifest was built for.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ValidationSettings(BaseModel):
    """Thresholds of the CDM, manifest and image suites. See docs/how-to/validate-data.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # CDM conformance ----------------------------------------------------------------------
    max_unmapped_concept_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of rows whose main concept id is 0 (DQD "
        "standardConceptRecordCompleteness; DQD's default is 5 %).",
    )
    min_marker_value_completeness: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Smallest share of marker measurement rows (MGMT, IDH, ...) that carry a "
        "value (DQD measureValueCompleteness).",
    )
    max_outside_observation_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Largest share of events dated outside every observation period of the person.",
    )
    earliest_plausible_date: date = Field(
        date(1950, 1, 1),
        description="Event dates before this are implausible (DQD plausibleValueLow for dates).",
    )
    earliest_year_of_birth: int = Field(
        1850, description="Births before this year are implausible (DQD plausibleValueLow)."
    )
    max_days_after_death: int = Field(
        60,
        ge=0,
        description="Events may follow the death date by at most this many days (DQD "
        "plausibleDuringLife tolerance for late-recorded results).",
    )
    # Manifest and labels ------------------------------------------------------------------
    min_cohort_size: int = Field(
        20, ge=1, description="Fewest usable (not excluded) subjects a site may train on."
    )
    min_train_per_class: int = Field(
        5, ge=0, description="Fewest training subjects per class of each target marker."
    )
    min_validation_per_class: int = Field(
        1, ge=0, description="Fewest validation subjects per class of each target marker."
    )
    max_missing_fraction: dict[str, float] = Field(
        default_factory=lambda: {
            "mgmt": 0.25,
            "idh": 0.5,
            "codeletion_1p19q": 1.0,
            "grade": 0.5,
        },
        description="Per marker: the largest share of cohort members without a label.",
    )
    min_minority_fraction: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="Class balance: the rarest class of a labelled marker holds at least this "
        "share of the labelled subjects.",
    )
    # Images -------------------------------------------------------------------------------
    min_slices: int = Field(8, ge=1, description="Fewest slices per series.")
    max_slices: int = Field(1000, ge=1, description="Most slices per series.")
    min_spacing_mm: float = Field(0.2, gt=0, description="Smallest voxel spacing, mm.")
    max_spacing_mm: float = Field(10.0, gt=0, description="Largest voxel spacing, mm.")
    min_matrix: int = Field(32, ge=1, description="Smallest in-plane matrix (rows, columns).")
    max_matrix: int = Field(1024, ge=1, description="Largest in-plane matrix (rows, columns).")
    # Policy -------------------------------------------------------------------------------
    blocking: list[str] = Field(
        default_factory=list,
        description="Expectation ids (fnmatch patterns, e.g. 'cdm.*.plausible_*') promoted "
        "from warning to blocking.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> ValidationSettings:
        for low, high in (
            ("min_slices", "max_slices"),
            ("min_spacing_mm", "max_spacing_mm"),
            ("min_matrix", "max_matrix"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} is larger than {high}")
        bad = {k: v for k, v in self.max_missing_fraction.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"max_missing_fraction values must lie in [0, 1]: {bad}")
        return self
