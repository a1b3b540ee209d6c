"""Training data from the site's dataset cache: what the Flower ClientApp and the trainers call.

The site-side layer over :mod:`models.cache`: settings -> ``cache_dir``, the pointer naming the
current entry of (model, cohort), the freshness check against the site's manifest, then the
entry format reader in ``models`` (which the aggregator's centralized baseline shares, since
``federation`` may not import ``node``). Errors come out as ``DATASET_CACHE`` /
``DATASET_STALE`` with the command the steward should run.

A fresh ``flwr-clientapp`` process starts for every message (design.md section 7), so this
module is the whole import cost of getting data: numpy, :mod:`models.data` and
:mod:`models.cache`; it reads only the cache (``np.load(..., mmap_mode="r")`` plus two small
JSON files). No pandas, pyarrow, pydicom or Great Expectations; building the cache is
:mod:`node.cache`'s job (``omopfed dataset build``).

Cache layout under ``settings.cache_dir`` (docs/explanation/dataset-cache.md)::

    current/<model>-cohort<id>.json    pointer: {"data_hash": ...}
    entries/<data_hash>/index.json     what the entry holds (format INDEX_FORMAT)
    entries/<data_hash>/*.npy          2D: stacked images and labels per split
    items/<model>/<hh>/<hash>.*.npy    per-subject arrays (3D entries point at these)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import cache as entry_format
from models.cache import HEADS, INDEX_FORMAT, MODELS, SPLITS, CacheEntryError
from models.data import ArrayDataset
from node.errors import DatasetCacheError, StaleDatasetError

if TYPE_CHECKING:  # the caller has built the settings; importing them here would cost time
    from node.settings import SiteSettings

__all__ = [
    "HEADS",
    "INDEX_FORMAT",
    "MODELS",
    "SPLITS",
    "TrainingData",
    "check_fresh",
    "check_model",
    "dataset_hash",
    "entry_dir",
    "load_training_data",
    "manifest_sidecar",
    "pointer_path",
    "read_index",
]


@dataclass(frozen=True)
class TrainingData:
    """Train and validation datasets of one site, and the hash the validation gate checks."""

    train: ArrayDataset
    validation: ArrayDataset
    data_hash: str
    num_train: int
    num_validation: int


@contextmanager
def _as_site_error() -> Iterator[None]:
    """The format reader's error as the site's ``DATASET_CACHE`` (same message and hint)."""
    try:
        yield
    except CacheEntryError as exc:
        raise DatasetCacheError(exc.message, hint=exc.hint) from None


def check_model(model: str) -> str:
    with _as_site_error():
        return entry_format.check_model(model)


def pointer_path(cache_dir: Path, model: str, cohort_id: int) -> Path:
    """The file naming the current entry of (model, cohort)."""
    return cache_dir / "current" / f"{check_model(model)}-cohort{cohort_id}.json"


def entry_dir(cache_dir: Path, data_hash: str) -> Path:
    return cache_dir / "entries" / data_hash


def manifest_sidecar(workspace: Path, cohort_id: int) -> Path:
    """The manifest's JSON sidecar (= node.manifest.ManifestFiles.of(...).sidecar)."""
    return workspace / "manifest" / f"cohort-{cohort_id}.json"


def read_index(cache_dir: Path, model: str, cohort_id: int) -> tuple[Path, dict[str, Any]]:
    """The current entry's folder and index for (model, cohort)."""
    hint = f"run `omopfed dataset build --settings SITE.toml --model {model} --cohort {cohort_id}`"
    path = pointer_path(cache_dir, model, cohort_id)
    try:
        pointer = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DatasetCacheError(
            f"no {model} dataset for cohort {cohort_id} in the cache {cache_dir}", hint=hint
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetCacheError(f"{path} is unreadable: {exc}", hint=hint) from None
    folder = entry_dir(cache_dir, str(pointer.get("data_hash", "")))
    with _as_site_error():
        return folder, entry_format.read_entry_index(folder, model, hint=hint)


def check_fresh(index: dict[str, Any], workspace: Path, cohort_id: int) -> None:
    """The entry was built from the current manifest (one small JSON read)."""
    try:
        current = json.loads(manifest_sidecar(workspace, cohort_id).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return  # no manifest here (a copied cache): the entry's own hash still identifies it
    if current.get("manifest_hash") != index.get("manifest_hash"):
        raise StaleDatasetError(
            f"the {index['model']} dataset was built from an older manifest of cohort {cohort_id}",
            hint=f"run `omopfed dataset build --model {index['model']} --cohort {cohort_id}`",
        )


def dataset_hash(settings: SiteSettings, model: str, *, cohort_id: int = 1) -> str:
    """The data hash of the current cache entry (what ``omopfed validate`` records)."""
    _, index = read_index(Path(settings.cache_dir or ""), model, cohort_id)
    return str(index["data_hash"])


def load_training_data(settings: SiteSettings, model: str, *, cohort_id: int = 1) -> TrainingData:
    """The site's train/validation data for ``model`` ("densenet2d" or "unet3d").

    densenet2d: images (N, 1, S, S), label head MGMT. unet3d: per-subject (4, D, S, S) volumes,
    the four marker heads (-1 where a subject has no label) and SEG masks where present.
    Raises DatasetCacheError when nothing is built, StaleDatasetError when the manifest changed.
    """
    cache_dir = Path(settings.cache_dir or "")
    folder, index = read_index(cache_dir, model, cohort_id)
    check_fresh(index, Path(settings.workspace), cohort_id)
    with _as_site_error():
        entry = entry_format.load_entry(folder, model, index=index, root=cache_dir)
    return TrainingData(
        train=entry.train,
        validation=entry.validation,
        data_hash=entry.data_hash,
        num_train=len(entry.train),
        num_validation=len(entry.validation),
    )
