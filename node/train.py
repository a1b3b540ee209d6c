"""Local and centralized training runs on the sites' dataset caches, each into a run folder.

Why these runs exist: the study compares federated training with two baselines, one site alone
(``local``) and every site's data pooled in one place (``centralized``). conventions.md asks that
the three differ only in the driver, so both baselines here use the one
:class:`~models.trainer.Trainer`, the data of the same cache entries the Flower client reads
(:func:`node.dataset.load_training_data`) and the same training gate (:mod:`node.gate`): no run
starts unless every site's *current* data hash has a passing ``omopfed validate`` record.

Pooling (centralized): each site keeps its own split. The training set is the concatenation of
every site's ``train`` split, the validation set that of every site's ``validation`` split, in
the order the sites were given; nothing from a validation split is ever trained on.

A run folder is built in a temporary folder next to its final place and renamed when complete,
so a crash never leaves a half-written run that looks finished::

    config.json            the resolved request and Trainer settings
    data.json              per site: data hash, split sizes, when it was validated
    code.json              package version and ``git describe`` of the source (when a checkout)
    metrics.json           one record per epoch (train loss, validation metrics), final metrics
    checkpoint.pt          the final ``state_dict``
    predictions.csv        validation probabilities per head (pseudonymous subject keys only)
    roc.png, learning_curve.png
    gradcam/*.png          optional overlays for the first N validation samples
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.cache import MODELS
from models.names import Head
from node.dataset import TrainingData, load_training_data, read_index
from node.gate import ValidationGateError, ValidationRecord, require_validated
from omopfed import __version__
from omopfed.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

    from models.config import TrainerConfig
    from models.evaluation import Predictions
    from node.settings import SiteSettings

log = logging.getLogger(__name__)

MODES = ("local", "centralized")
#: Seed-paper epochs (design.md section 6): DenseNet 10 (centralized), U-Net 60.
DEFAULT_EPOCHS = {"densenet2d": 10, "unet3d": 60}
#: Channel of FLAIR in the 3D inputs (node.imaging.CHANNELS = T1, T1ce, T2, FLAIR).
FLAIR_CHANNEL = 3
EpochCallback = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class RunRequest:
    """What ``omopfed train`` asks for; ``epochs=None`` means the recipe's default."""

    model: str
    mode: str
    sites: tuple[SiteSettings, ...]
    epochs: int | None = None
    seed: int = 0
    out: Path | None = None
    cohort_id: int = 1
    gradcam: int = 0
    device: str | None = None
    num_threads: int | None = None

    @property
    def num_epochs(self) -> int:
        return DEFAULT_EPOCHS[self.model] if self.epochs is None else self.epochs

    def runs_dir(self) -> Path:
        """``--out``, else ``runs/`` in the first site's workspace."""
        return self.out if self.out is not None else Path(self.sites[0].workspace) / "runs"


@dataclass(frozen=True)
class SiteData:
    """One site's validated data and the few index facts a run records."""

    name: str
    data: TrainingData
    record: ValidationRecord
    validation_keys: list[str]
    params: dict[str, Any]


@dataclass(frozen=True)
class Pooled:
    """The training and validation sets of a run and the sites they came from, in order."""

    train: Dataset[Any]
    validation: Dataset[Any]
    sites: list[SiteData]

    @property
    def num_train(self) -> int:
        return sum(s.data.num_train for s in self.sites)

    @property
    def num_validation(self) -> int:
        return sum(s.data.num_validation for s in self.sites)


@dataclass(frozen=True)
class RunResult:
    """Where the run folder is and what it measured."""

    folder: Path
    history: list[dict[str, float]]
    metrics: dict[str, float]
    num_train: int
    num_validation: int
    per_site: dict[str, dict[str, float]] = field(default_factory=dict)


def check_request(request: RunRequest) -> None:
    """Refuse requests that cannot mean what they say, before any data is read."""
    if request.model not in MODELS:
        raise ConfigError(f"unknown model {request.model!r}: use {' or '.join(MODELS)}")
    if request.mode not in MODES:
        raise ConfigError(f"unknown mode {request.mode!r}: use {' or '.join(MODES)}")
    if request.mode == "local" and len(request.sites) != 1:
        raise ConfigError(
            f"a local run trains on one site's data; got {len(request.sites)} --settings",
            hint="use --mode centralized to pool several sites",
        )
    if not request.sites:
        raise ConfigError("no site given", hint="pass --settings SITE.toml")
    names = [s.site_name for s in request.sites]
    if len(set(names)) != len(names):
        raise ConfigError(f"a site is given twice: {', '.join(names)}")
    if request.num_epochs < 1 or request.gradcam < 0:
        raise ConfigError("--epochs must be at least 1 and --gradcam at least 0")


def load_site(settings: SiteSettings, model: str, cohort_id: int) -> SiteData:
    """The site's current data, refused (ValidationGateError) unless validated as it is now."""
    data = load_training_data(settings, model, cohort_id=cohort_id)
    try:
        record = require_validated(Path(settings.workspace), data.data_hash)
    except ValidationGateError as exc:
        raise ValidationGateError(
            f"site {settings.site_name}: {exc.message}", hint=exc.hint
        ) from None
    _, index = read_index(Path(settings.cache_dir or ""), model, cohort_id)
    if index["data_hash"] != data.data_hash:  # rebuilt between the two reads
        raise ValidationGateError(f"site {settings.site_name}: the dataset changed while loading")
    keys = [str(k) for k in index["splits"]["validation"].get("subjects", [])]
    return SiteData(settings.site_name, data, record, keys, dict(index.get("params", {})))


def pool(sites: Sequence[SiteData], model: str) -> Pooled:
    """Concatenate the sites' train splits and, separately, their validation splits."""
    from torch.utils.data import ConcatDataset

    if model == "densenet2d":  # slices of different sizes cannot share a batch
        sizes = {s.params.get("image_size") for s in sites}
        if len(sizes) > 1:
            raise ConfigError(
                f"the sites' 2D images differ in size ({sorted(map(str, sizes))})",
                hint="build every site's cache with the same [dataset] image_size",
            )
    if len(sites) == 1:
        return Pooled(sites[0].data.train, sites[0].data.validation, list(sites))
    train: Dataset[Any] = ConcatDataset([s.data.train for s in sites])
    validation: Dataset[Any] = ConcatDataset([s.data.validation for s in sites])
    return Pooled(train, validation, list(sites))


def trainer_config(request: RunRequest) -> TrainerConfig:
    """The seed recipe of the model with this run's seed, device and threads."""
    from models.config import TrainerConfig

    overrides: dict[str, object] = {
        "seed": request.seed,
        "deterministic": True,
        "device": request.device or request.sites[0].device,
        "num_threads": request.num_threads,
    }
    if request.model == "densenet2d":
        return TrainerConfig.for_densenet(**overrides)
    return TrainerConfig.for_unet(**overrides)


def code_version() -> dict[str, str | None]:
    """The package version and, in a git checkout, ``git describe`` of the source."""
    described = None
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        described = (done.stdout.strip() or None) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": __version__, "git": described}


def train(request: RunRequest, *, on_epoch_end: EpochCallback | None = None) -> RunResult:
    """Check the request, load and gate every site's data, train, write the run folder."""
    from models.config import seed_everything
    from models.networks import build_model
    from models.trainer import Trainer

    check_request(request)
    sites = [load_site(s, request.model, request.cohort_id) for s in request.sites]
    pooled = pool(sites, request.model)
    config = trainer_config(request)
    seed_everything(request.seed, deterministic=True)  # before the model: initial weights too
    model = build_model(request.model)
    trainer = Trainer(model, pooled.train, pooled.validation, config=config)
    log.info("training %s (%s) on %d subjects", request.model, request.mode, pooled.num_train)
    history = trainer.fit(request.num_epochs, on_epoch_end=on_epoch_end)
    metrics, predictions = trainer.evaluate("validation")
    per_site = _per_site_metrics(predictions, pooled)
    folder = _write_run(request, config, pooled, history, metrics, per_site, predictions, model)
    return RunResult(
        folder, history, metrics, pooled.num_train, pooled.num_validation, per_site=per_site
    )


def _per_site_metrics(predictions: Predictions, pooled: Pooled) -> dict[str, dict[str, float]]:
    """Classification metrics of each site's validation subjects (pooled order is by site)."""
    from models.evaluation import Predictions

    out: dict[str, dict[str, float]] = {}
    start = 0
    for site in pooled.sites:
        stop = start + site.data.num_validation
        part = Predictions(
            labels={h: v[start:stop] for h, v in predictions.labels.items()},
            probabilities={h: v[start:stop] for h, v in predictions.probabilities.items()},
        )
        out[site.name] = part.metrics()
        start = stop
    return out


# -- the run folder -------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: strict JSON, and 'undefined' reads as such."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(json_safe(data), indent=2) + "\n", "utf-8")


def _config_record(request: RunRequest, config: TrainerConfig) -> dict[str, Any]:
    return {
        "model": request.model,
        "mode": request.mode,
        "epochs": request.num_epochs,
        "seed": request.seed,
        "cohort_id": request.cohort_id,
        "sites": [s.site_name for s in request.sites],
        "pooling": "train = every site's train split; validation = every site's validation split",
        "gradcam": request.gradcam,
        "trainer": asdict(config),
    }


def _data_record(pooled: Pooled) -> dict[str, Any]:
    return {
        "num_train": pooled.num_train,
        "num_validation": pooled.num_validation,
        "sites": [
            {
                "site": s.name,
                "data_hash": s.data.data_hash,
                "num_train": s.data.num_train,
                "num_validation": s.data.num_validation,
                "validated_at": s.record.validated_at,
                "suite_hashes": s.record.suite_hashes,
                "params": s.params,
            }
            for s in pooled.sites
        ],
    }


def _write_predictions(path: Path, predictions: Predictions, pooled: Pooled) -> None:
    """One row per (validation subject, head): true label (-1 missing) and probabilities.

    Floats are written with ``repr``, which round-trips exactly, so two runs compare bit for bit.
    """
    rows = [(s.name, key) for s in pooled.sites for key in s.validation_keys]
    width = max((p.shape[1] for p in predictions.probabilities.values()), default=0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["site", "subject_key", "head", "label", *map("p{}".format, range(width))])
        for head, probs in predictions.probabilities.items():
            labels = predictions.labels[head]
            for i, (site, key) in enumerate(rows):
                values = [repr(float(p)) for p in probs[i]]
                padding = [""] * (width - len(values))  # binary heads beside 3-class grade
                writer.writerow([site, key, head, int(labels[i]), *values, *padding])


def _write_run(
    request: RunRequest,
    config: TrainerConfig,
    pooled: Pooled,
    history: list[dict[str, float]],
    metrics: dict[str, float],
    per_site: dict[str, dict[str, float]],
    predictions: Predictions,
    model: nn.Module,
) -> Path:
    """Fill a temporary folder, then rename it to ``<model>-<mode>-seed<S>-<UTC time>``."""
    import torch

    parent = request.runs_dir()
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=".tmp-run-"))
    try:
        _write_json(tmp / "config.json", _config_record(request, config))
        _write_json(tmp / "data.json", _data_record(pooled))
        _write_json(tmp / "code.json", code_version())
        final = {"validation": metrics, "validation_per_site": per_site}
        _write_json(tmp / "metrics.json", {"epochs": history, "final": final})
        torch.save(model.state_dict(), tmp / "checkpoint.pt")
        _write_predictions(tmp / "predictions.csv", predictions, pooled)
        plot_roc(predictions, tmp / "roc.png")
        plot_learning_curve(history, tmp / "learning_curve.png")
        if request.gradcam:
            write_gradcam(model, pooled.validation, request.model, request.gradcam, tmp / "gradcam")
        return _rename_into_place(tmp, parent, request)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_into_place(tmp: Path, parent: Path, request: RunRequest) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{request.model}-{request.mode}-seed{request.seed}-{stamp}"
    for attempt in range(1000):
        final = parent / (stem if attempt == 0 else f"{stem}-{attempt}")
        try:
            os.rename(tmp, final)  # fails if final exists and is not empty
            return final
        except OSError:
            if not final.exists():
                raise
    raise ConfigError(f"cannot name a run folder under {parent}")


# -- plots ----------------------------------------------------------------------------------


def plot_roc(predictions: Predictions, path: Path) -> Path:
    """One ROC panel per head on the labelled validation subjects (one-vs-rest for grade)."""
    from matplotlib.figure import Figure  # Agg canvas, no display and no global backend
    from sklearn.metrics import roc_curve

    heads = list(predictions.probabilities)
    fig = Figure(figsize=(4 * max(len(heads), 1), 4), dpi=100)
    for i, head in enumerate(heads):
        ax = fig.add_subplot(1, len(heads), i + 1)
        labels = predictions.labels[head]
        keep = labels >= 0
        y, probs = labels[keep], predictions.probabilities[head][keep]
        classes = [1] if probs.shape[1] == 2 else list(range(probs.shape[1]))
        for k in classes:
            if 0 < int((y == k).sum()) < len(y):
                fpr, tpr, _ = roc_curve(y == k, probs[:, k])
                ax.plot(fpr, tpr, label=f"class {k}" if len(classes) > 1 else "ROC")
        if not ax.lines:  # a single class among the labelled subjects: no curve exists
            ax.text(0.5, 0.5, "undefined:\none class only", ha="center", va="center")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.set(title=f"{head} (n={len(y)})", xlabel="false positive rate")
        ax.set_ylabel("true positive rate")
        if ax.lines[:-1]:
            ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path, bbox_inches="tight")
    return path


def plot_learning_curve(history: list[dict[str, float]], path: Path) -> Path:
    """Train and validation loss per epoch; validation AUC per head and Dice per region."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    loss_ax, score_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key, label in (("train_loss", "train"), ("validation_loss", "validation")):
        loss_ax.plot(epochs, [r.get(key, np.nan) for r in history], marker="o", label=label)
    loss_ax.set(title="loss", xlabel="epoch")
    loss_ax.legend()
    keys = sorted(
        k
        for k in (history[0] if history else {})
        if k.startswith("validation_") and (k.endswith("_auc") or k.endswith("_dice"))
    )
    for key in keys:
        score_ax.plot(epochs, [r.get(key, np.nan) for r in history], marker=".", label=key[11:])
    score_ax.set(title="validation", xlabel="epoch", ylim=(0, 1.02))
    if keys:
        score_ax.legend(fontsize="small")
    fig.savefig(path, bbox_inches="tight")
    return path


def write_gradcam(
    model: nn.Module, validation: Dataset[Any], kind: str, count: int, folder: Path
) -> list[Path]:
    """Overlays for the first ``count`` validation samples (MGMT head; 3D: middle FLAIR slice)."""
    from models.gradcam import grad_cam_2d, grad_cam_3d, write_overlay_png

    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    written = []
    for i in range(min(count, len(validation))):  # type: ignore[arg-type]
        image = validation[i]["image"].numpy()
        if kind == "densenet2d":
            heat, shown = grad_cam_2d(model, image, head=Head.MGMT), image[0]
        else:
            middle = image.shape[1] // 2
            heat = grad_cam_3d(model, image, head=Head.MGMT)[middle]
            shown = image[FLAIR_CHANNEL, middle]
        path = folder / f"validation_{i:03d}_mgmt.png"
        written.append(write_overlay_png(shown, heat, path, title=f"validation sample {i}"))
    return written
