"""Generation profiles (how big) and site styles (how sites differ).

A profile fixes image sizes and dirt rates; a site style is what makes one hospital look unlike
another: acquisition plane, matrix, slice count, intensity scale, rescale slope/intercept,
noise, series-description spelling and label prevalence. Styles depend only on the site's
index, so the same ``--sites N`` always gives the same federation shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from node.settings import ResolverSettings
from node.synth.errors import SynthError
from node.validation.thresholds import ValidationSettings

SEQUENCES = ("FLAIR", "T1", "T1CE", "T2")
FOV_MM = 230.0  # every series covers the same 230 mm cube, centred on the head


def split_floor(min_train: int, min_validation: int, validation_fraction: float) -> int:
    """Fewest subjects of one class whose stratified split still leaves ``min_train`` of them in
    training and ``min_validation`` in validation. The split rounds as
    :func:`node.manifest.assign_splits` does: round(fraction x n) half up go to validation."""
    n = 0
    while True:
        n_validation = math.floor(validation_fraction * n + 0.5)
        if n - n_validation >= min_train and n_validation >= min_validation:
            return n
        n += 1


def _default_gate_floor() -> int:
    """The per-class floor of the default gate: 6 (5 train + 1 validation at fraction 0.2)."""
    t = ValidationSettings()
    return split_floor(
        t.min_train_per_class,
        t.min_validation_per_class,
        ResolverSettings().validation_fraction,
    )


#: Usable members per MGMT class that a site needs to pass the default validation gate.
GATE_FLOOR = _default_gate_floor()
#: The tiny profile's floor: what `omopfed demo --profile tiny` asks of it (one training subject
#: per class with half of each class validating); the default gate's 6 would push site_a's
#: 18 % methylation to 50 % of its 12 usable members, and tiny fails the default gate anyway.
TINY_FLOOR = split_floor(1, 0, 0.5)


@dataclass(frozen=True)
class Profile:
    """Volume sizes and dirt rates. Counts derived from rates are exact (see subjects.py)."""

    name: str
    matrices: tuple[int, ...]  # in-plane size per site (cycled)
    slices: tuple[int, ...]  # slice count per site (cycled)
    patients: int  # default patients per site
    seg_fraction: float = 0.5
    difficulty: float = 0.5
    # exclusion kinds -> share of a site's persons (each at least 1 when the site is big enough)
    exclusions: dict[str, float] = field(
        default_factory=lambda: {
            "minor": 0.06,
            "meningioma": 0.05,
            "no_mgmt": 0.05,
            "mgmt_late": 0.03,
            "mri_early": 0.03,
            "outside_observation": 0.03,
            "index_first": 0.03,
        }
    )
    missing_sequence_rate: float = 0.08
    recurrence_rate: float = 0.1
    mgmt_null_rate: float = 0.04
    mgmt_numeric_rate: float = 0.1
    mgmt_source_only_rate: float = 0.06
    # members the resolver keeps with an MGMT label, per class, at the least (see subjects.py)
    mgmt_floor: int = GATE_FLOOR


PROFILES = {
    "tiny": Profile(
        "tiny", matrices=(32, 40, 48), slices=(17, 21, 19), patients=24, mgmt_floor=TINY_FLOOR
    ),
    "demo": Profile("demo", matrices=(112, 96, 128), slices=(29, 35, 25), patients=50),
    "default": Profile("default", matrices=(128, 112, 144), slices=(37, 45, 33), patients=100),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise SynthError(
            f"unknown profile {name!r}", hint=f"choose one of {', '.join(PROFILES)}"
        ) from None


# Row and column direction cosines (LPS patient coordinates) of each acquisition plane.
PLANES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}

_NAMING = (
    {"FLAIR": "AX FLAIR", "T1": "AX T1", "T1CE": "AX T1 POST GD", "T2": "AX T2 FSE"},
    {
        "FLAIR": "t2_tirm_sag_dark-fluid",
        "T1": "t1_se_sag",
        "T1CE": "t1_se_sag_KM",
        "T2": "t2_tse_sag",
    },
    {"FLAIR": "COR FLAIR", "T1": "COR T1 SE", "T1CE": "COR T1+C", "T2": "COR T2"},
)
_PLANE_ORDER = ("axial", "sagittal", "coronal")
# (scale, rescale slope, rescale intercept, noise sd in phantom units)
_SCALES = ((1.0, 1.0, 0.0, 18.0), (2.5, 2.0, -50.0, 30.0), (0.6, 0.5, 0.0, 12.0))


@dataclass(frozen=True)
class SiteStyle:
    """How one synthetic hospital acquires, names and labels its data."""

    name: str
    index: int
    plane: str
    matrix: int
    slices: int
    scale: float
    rescale_slope: float
    rescale_intercept: float
    noise_sd: float
    series_descriptions: dict[str, str]
    mgmt_prevalence: float
    idh_missing_rate: float
    codeletion_missing_rate: float
    grade_missing_rate: float
    seg_fraction: float


def site_name(index: int) -> str:
    """site_a, site_b, ... site_z, site_27...: valid as schema prefixes."""
    return f"site_{chr(ord('a') + index)}" if index < 26 else f"site_{index + 1}"


def mgmt_prevalences(sites: int) -> list[float]:
    """Methylation prevalence per site spread over 18 %..66 % (public glioma datasets)."""
    if sites == 1:
        return [0.45]
    values = [0.18 + (0.66 - 0.18) * i / (sites - 1) for i in range(sites)]
    # interleave so site_a is not always the lowest: a, c, b ordering for three sites
    order = sorted(range(sites), key=lambda i: (i % 2, i))
    return [values[order.index(i)] for i in range(sites)]


def site_styles(sites: int, profile: Profile, seg_fraction: float | None = None) -> list[SiteStyle]:
    """The styles of ``sites`` sites: the third one records no 1p/19q at all."""
    if sites < 1:
        raise SynthError("--sites must be at least 1")
    prevalence = mgmt_prevalences(sites)
    seg = profile.seg_fraction if seg_fraction is None else seg_fraction
    styles = []
    for i in range(sites):
        scale, slope, intercept, noise = _SCALES[i % 3]
        styles.append(
            SiteStyle(
                name=site_name(i),
                index=i,
                plane=_PLANE_ORDER[i % 3],
                matrix=profile.matrices[i % len(profile.matrices)],
                slices=profile.slices[i % len(profile.slices)],
                scale=scale,
                rescale_slope=slope,
                rescale_intercept=intercept,
                noise_sd=noise,
                series_descriptions=_NAMING[i % 3],
                mgmt_prevalence=prevalence[i],
                idh_missing_rate=0.05 * (1 + i % 2),
                codeletion_missing_rate=1.0 if i % 3 == 2 else 0.1,
                grade_missing_rate=0.05,
                seg_fraction=seg if i % 3 != 2 else seg / 2,
            )
        )
    return styles
