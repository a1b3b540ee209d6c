"""An analytic head phantom in patient coordinates, and the labels it carries.

Each subject is a smooth function of position (LPS millimetres, origin at the head's centre):
a head ellipsoid with a skull shell, a ventricle, and a tumour of nested spheres (BraTS regions:
edema, enhancing rim, necrotic core). Every series of every site *samples the same function* on
its own grid (plane, spacing, matrix), so a reader that honours the DICOM geometry recovers the
same anatomy from any acquisition plane; :func:`middle_coronal_slice` gives the analytic answer
for the middle coronal plane (y = 0) that tests compare against.

Labels show in the appearance through latent scores with Gaussian noise; ``difficulty`` (0..1)
shrinks the class separation (0: nearly perfect, 1: chance):
MGMT methylation lowers the FLAIR edema signal (visible on the middle coronal FLAIR slice),
IDH wildtype brightens enhancement on T1CE, a higher grade grows the necrotic core,
1p/19q codeletion adds T2 texture in the tumour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from node.synth.profiles import FOV_MM

EDGE_MM = 1.5  # width of the soft edges: keeps sampling at any spacing free of aliasing
SEPARATION_AT_EASIEST = 3.3  # class separation (in noise SDs) at difficulty 0

# sequence -> (skull, brain, ventricle, edema, enhancing, necrosis); edema on FLAIR and
# enhancing on T1CE are per subject (they carry labels) and replaced below.
_INTENSITY = {
    "FLAIR": (250.0, 380.0, 80.0, 0.0, 520.0, 300.0),
    "T1": (650.0, 450.0, 150.0, 330.0, 380.0, 220.0),
    "T1CE": (650.0, 460.0, 150.0, 340.0, 0.0, 200.0),
    "T2": (300.0, 420.0, 950.0, 760.0, 600.0, 880.0),
}


@dataclass(frozen=True)
class Phantom:
    """The geometry and label-bearing intensities of one subject's head."""

    head_axes: tuple[float, float, float]
    centre: tuple[float, float, float]
    edema_radius: float
    core_radius: float
    necrosis_radius: float
    flair_edema: float
    t1ce_enhancing: float
    t2_texture: float
    texture_phase: float


def make_phantom(rng: np.random.Generator, labels: dict[str, str], difficulty: float) -> Phantom:
    """A random head whose tumour appearance depends on the true ``labels``."""
    delta = SEPARATION_AT_EASIEST * (1.0 - float(np.clip(difficulty, 0.0, 1.0)))

    def latent(positive: float) -> float:
        return delta * (positive - 0.5) + float(rng.normal())

    methylated = float(labels.get("mgmt") == "methylated")
    mutant = float(labels.get("idh") == "mutant")
    codeleted = float(labels.get("codeletion_1p19q") == "codeleted")
    grade = int(labels.get("grade", "grade_2").removeprefix("grade_"))
    core = float(rng.uniform(9.0, 18.0))
    side = 1.0 if rng.random() < 0.5 else -1.0
    necrosis_fraction = np.clip(0.15 + 0.12 * latent((grade - 1) / 3.0) * 1.5, 0.0, 0.6)
    return Phantom(
        head_axes=(
            float(rng.uniform(66, 74)),
            float(rng.uniform(86, 94)),
            float(rng.uniform(76, 84)),
        ),
        centre=(
            side * float(rng.uniform(18, 32)),
            float(rng.uniform(-6, 6)),
            float(rng.uniform(0, 25)),
        ),
        edema_radius=core * float(rng.uniform(1.5, 2.1)),
        core_radius=core,
        necrosis_radius=core * float(necrosis_fraction),
        flair_edema=620.0 - 70.0 * latent(methylated),
        t1ce_enhancing=600.0 - 120.0 * latent(mutant),
        t2_texture=float(max(0.0, 80.0 + 60.0 * latent(codeleted))),
        texture_phase=float(rng.uniform(0, 2 * np.pi)),
    )


def _inside(signed_distance: np.ndarray) -> np.ndarray:
    """1 well inside (negative distance), 0 well outside, smooth across EDGE_MM."""
    return 1.0 / (1.0 + np.exp(np.clip(signed_distance / EDGE_MM, -50, 50)))


def _regions(phantom: Phantom, points: np.ndarray) -> dict[str, np.ndarray]:
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    a, b, c = phantom.head_axes
    head_r = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    head = _inside((head_r - 1.0) * a)
    brain = _inside((head_r - 1.0) * a + 7.0)
    vent_r = np.sqrt((x / 10.0) ** 2 + ((y - 5.0) / 22.0) ** 2 + ((z - 10.0) / 12.0) ** 2)
    tumour_r = np.linalg.norm(points - np.asarray(phantom.centre), axis=-1)
    return {
        "skull": head - brain,
        "brain": brain,
        "ventricle": _inside((vent_r - 1.0) * 10.0) * brain,
        "edema": _inside(tumour_r - phantom.edema_radius) * brain,
        "core": _inside(tumour_r - phantom.core_radius) * brain,
        "necrosis": _inside(tumour_r - phantom.necrosis_radius) * brain,
    }


def phantom_values(phantom: Phantom, sequence: str, points: np.ndarray) -> np.ndarray:
    """Noise-free intensity of ``sequence`` at ``points`` (shape (..., 3), LPS mm)."""
    skull, brain, vent, edema, enh, necro = _INTENSITY[sequence]
    if sequence == "FLAIR":
        edema = phantom.flair_edema
    if sequence == "T1CE":
        enh = phantom.t1ce_enhancing
    r = _regions(phantom, points)
    tissue = r["skull"] * skull + (r["brain"] - r["ventricle"]) * brain + r["ventricle"] * vent
    tumour = (
        (r["edema"] - r["core"]) * edema + (r["core"] - r["necrosis"]) * enh + r["necrosis"] * necro
    )
    if sequence in ("T2", "FLAIR"):
        wave = np.sin(points @ np.array([0.9, 0.7, 1.1]) + phantom.texture_phase)
        tumour = tumour + phantom.t2_texture * wave * r["core"]
    return tissue * (1.0 - r["edema"]) + tumour


def brats_labels(phantom: Phantom, points: np.ndarray) -> np.ndarray:
    """BraTS label map at ``points``: 0 background, 1 necrotic core, 2 edema, 3 enhancing."""
    r = _regions(phantom, points)
    labels = np.zeros(points.shape[:-1], dtype=np.uint8)
    labels[r["edema"] > 0.5] = 2
    labels[r["core"] > 0.5] = 3
    labels[r["necrosis"] > 0.5] = 1
    return labels


def coronal_points(size: int = 128, fov_mm: float = FOV_MM, y_mm: float = 0.0) -> np.ndarray:
    """Pixel centres of a coronal plane: rows superior to inferior, columns right to left.

    That is DICOM's coronal display orientation (row direction +x, column direction -z).
    """
    spacing = fov_mm / size
    offsets = (np.arange(size) - (size - 1) / 2.0) * spacing
    zz, xx = np.meshgrid(-offsets, offsets, indexing="ij")
    return np.stack([xx, np.full_like(xx, y_mm), zz], axis=-1)


def middle_coronal_slice(
    phantom: Phantom, sequence: str = "FLAIR", size: int = 128, fov_mm: float = FOV_MM
) -> np.ndarray:
    """The analytic, noise-free middle coronal slice (plane y = 0) as ``size`` x ``size``.

    Rows run superior to inferior and columns from the patient's right to left; the slice
    spans ``fov_mm`` (the field of view every synthetic series covers). Intensities are in
    phantom units, before a site's scale, noise and rescale slope/intercept.
    """
    return phantom_values(phantom, sequence, coronal_points(size, fov_mm))
