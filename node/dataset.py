"""Training data from the dataset cache: what the Flower ClientApp and the trainers call.

A fresh ``flwr-clientapp`` process starts for every message (design.md section 7), so this
module is the whole import cost of getting data: it imports numpy and :mod:`models.data` and
reads only the cache (``np.load(..., mmap_mode="r")`` plus two small JSON files). No pandas,
pyarrow, pydicom or Great Expectations; building the cache is :mod:`node.cache`'s job
(``omopfed dataset build``).

Cache layout under ``settings.cache_dir`` (docs/explanation/dataset-cache.md)::

    current/<model>-cohort<id>.json    pointer: {"data_hash": ...}
    entries/<data_hash>/index.json     what the entry holds (format INDEX_FORMAT)
    entries/<data_hash>/*.npy          2D: stacked images and labels per split
    items/<model>/<hh>/<hash>.*.npy    per-subject arrays (3D entries point at these)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.data import ArrayDataset
from models.names import MARKER_HEADS, Head
from node.errors import DatasetCacheError, StaleDatasetError

if TYPE_CHECKING:  # the caller has built the settings; importing them here would cost time
    from node.settings import SiteSettings

MODELS = ("densenet2d", "unet3d")
INDEX_FORMAT = "omopfed-dataset/1"
#: Label heads stored per model, in column order of the labels arrays.
HEADS: dict[str, tuple[Head, ...]] = {"densenet2d": (Head.MGMT,), "unet3d": MARKER_HEADS}
SPLITS = ("train", "validation")


@dataclass(frozen=True)
class TrainingData:
    """Train and validation datasets of one site, and the hash the validation gate checks."""

    train: ArrayDataset
    validation: ArrayDataset
    data_hash: str
    num_train: int
    num_validation: int


def check_model(model: str) -> str:
    if model not in MODELS:
        raise DatasetCacheError(f"unknown model {model!r}", hint=f"use one of {', '.join(MODELS)}")
    return model


def pointer_path(cache_dir: Path, model: str, cohort_id: int) -> Path:
    """The file naming the current entry of (model, cohort)."""
    return cache_dir / "current" / f"{check_model(model)}-cohort{cohort_id}.json"


def entry_dir(cache_dir: Path, data_hash: str) -> Path:
    return cache_dir / "entries" / data_hash


def manifest_sidecar(workspace: Path, cohort_id: int) -> Path:
    """The manifest's JSON sidecar (= node.manifest.ManifestFiles.of(...).sidecar)."""
    return workspace / "manifest" / f"cohort-{cohort_id}.json"


def _read_json(path: Path, missing: str, hint: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DatasetCacheError(missing, hint=hint) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetCacheError(f"{path} is unreadable: {exc}", hint=hint) from None
    return data


def read_index(cache_dir: Path, model: str, cohort_id: int) -> tuple[Path, dict[str, Any]]:
    """The current entry's folder and index for (model, cohort)."""
    hint = f"run `omopfed dataset build --settings SITE.toml --model {model} --cohort {cohort_id}`"
    pointer = _read_json(
        pointer_path(cache_dir, model, cohort_id),
        f"no {model} dataset for cohort {cohort_id} in the cache {cache_dir}",
        hint,
    )
    folder = entry_dir(cache_dir, str(pointer.get("data_hash", "")))
    index = _read_json(folder / "index.json", f"cache entry {folder} is missing", hint)
    if index.get("format") != INDEX_FORMAT or index.get("model") != model:
        raise DatasetCacheError(f"cache entry {folder} is not a {model} dataset", hint=hint)
    return folder, index


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


def _array(path: Path) -> np.ndarray:
    """Memory-mapped when it holds data (numpy cannot map a zero-length array)."""
    try:
        try:
            mapped: np.ndarray = np.load(path, mmap_mode="r")
        except ValueError:
            return np.load(path)
    except OSError as exc:
        raise DatasetCacheError(f"cache file {path} is unreadable: {exc}") from None
    return mapped


def _split(cache_dir: Path, folder: Path, index: dict[str, Any], name: str) -> ArrayDataset:
    spec = index["splits"][name]
    labels = _array(folder / spec["labels"])
    by_head: dict[Head | str, np.ndarray] = {
        Head(h): labels[:, i] for i, h in enumerate(index["heads"])
    }
    if index["model"] == "densenet2d":
        return ArrayDataset(_array(folder / spec["images"]), by_head)
    images = [_array(cache_dir / p) for p in spec["images"]]
    masks = [None if p is None else _array(cache_dir / p) for p in spec["masks"]]
    return ArrayDataset(images, by_head, masks=masks)


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
    train, validation = (_split(cache_dir, folder, index, name) for name in SPLITS)
    return TrainingData(
        train=train,
        validation=validation,
        data_hash=str(index["data_hash"]),
        num_train=len(train),
        num_validation=len(validation),
    )
