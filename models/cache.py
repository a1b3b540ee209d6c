"""Reading one dataset-cache entry into :class:`~models.data.ArrayDataset` s: the format only.

Why it lives in ``models``: design.md section 2 gives this package "reading the dataset cache
into tensors", so the aggregator's centralized baseline (``federation``, which may import
``models`` but never ``node``) reads pooled caches with exactly the code a site uses. What is
site business stays in ``node``: building entries (:mod:`node.cache`), finding the current
entry through its pointer and checking it against the site's manifest (:mod:`node.dataset`).

An entry is a folder written by :mod:`node.cache` (docs/explanation/dataset-cache.md)::

    <root>/entries/<data_hash>/index.json          what the entry holds (format INDEX_FORMAT)
    <root>/entries/<data_hash>/<split>_labels.npy  (N, heads) int64, -1 = missing
    <root>/entries/<data_hash>/<split>_images.npy  2D only: (N, 1, S, S) stacked
    <root>/items/<model>/<hh>/<hash>.image.npy     3D volumes (+ .seg.npy); the index lists
                                                   them relative to <root>

Arrays are memory-mapped read-only; nothing is loaded up front. Imports numpy and
:mod:`models.data` only, so the Flower client's per-message start-up stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data import ArrayDataset
from models.errors import ModelError
from models.names import MARKER_HEADS, Head
from omopfed.errors import EXIT_DATA

MODELS = ("densenet2d", "unet3d")
INDEX_FORMAT = "omopfed-dataset/1"
#: Label heads stored per model, in column order of the labels arrays.
HEADS: dict[str, tuple[Head, ...]] = {"densenet2d": (Head.MGMT,), "unet3d": MARKER_HEADS}
SPLITS = ("train", "validation")


class CacheEntryError(ModelError):
    """A cache entry is missing, unreadable or not the dataset asked for.

    The site layer (:mod:`node.dataset`) re-raises it as ``DATASET_CACHE`` with the command a
    steward should run; the aggregator sees this code.
    """

    code = "MODEL_CACHE"
    exit_code = EXIT_DATA


@dataclass(frozen=True)
class EntryData:
    """Both splits of one entry, its hash and its index (for subject keys, heads, counts)."""

    train: ArrayDataset
    validation: ArrayDataset
    data_hash: str
    index: dict[str, Any]

    def subjects(self, split: str) -> list[str]:
        """Pseudonymous subject keys of a split, in dataset order (never person ids)."""
        return [str(k) for k in self.index["splits"][split].get("subjects", [])]


def check_model(model: str) -> str:
    """``model`` if the cache knows it; otherwise an error listing the known ones."""
    if model not in MODELS:
        raise CacheEntryError(f"unknown model {model!r}", hint=f"use one of {', '.join(MODELS)}")
    return model


def read_entry_index(
    folder: Path, model: str | None = None, *, hint: str | None = None
) -> dict[str, Any]:
    """The entry's ``index.json``, checked to be this format (and ``model`` when given)."""
    path = folder / "index.json"
    try:
        index: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise CacheEntryError(f"cache entry {folder} is missing", hint=hint) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CacheEntryError(f"{path} is unreadable: {exc}", hint=hint) from None
    wanted = model or index.get("model")
    if index.get("format") != INDEX_FORMAT or index.get("model") != wanted or wanted not in MODELS:
        raise CacheEntryError(f"cache entry {folder} is not a {wanted} dataset", hint=hint)
    return index


def read_array(path: Path) -> np.ndarray:
    """Memory-mapped when it holds data (numpy cannot map a zero-length array).

    ``allow_pickle`` stays off: a cache file is data, never code.
    """
    try:
        try:
            mapped: np.ndarray = np.load(path, mmap_mode="r")
        except ValueError:
            return np.asarray(np.load(path))
    except (OSError, ValueError) as exc:
        raise CacheEntryError(f"cache file {path} is unreadable: {exc}") from None
    return mapped


def entry_root(folder: Path) -> Path:
    """The cache folder an entry's item paths are relative to (``<root>/entries/<hash>``)."""
    return folder.parent.parent


def read_split(
    folder: Path, index: dict[str, Any], name: str, *, root: Path | None = None
) -> ArrayDataset:
    """One split of an entry: 2D stacked slices, or 3D per-subject volumes with masks."""
    spec = index["splits"][name]
    labels = read_array(folder / spec["labels"])
    by_head: dict[Head | str, np.ndarray] = {
        Head(h): labels[:, i] for i, h in enumerate(index["heads"])
    }
    if index["model"] == "densenet2d":
        return ArrayDataset(read_array(folder / spec["images"]), by_head)
    base = entry_root(folder) if root is None else root
    images = [read_array(base / p) for p in spec["images"]]
    masks = [None if p is None else read_array(base / p) for p in spec["masks"]]
    return ArrayDataset(images, by_head, masks=masks)


def load_entry(
    folder: Path,
    model: str | None = None,
    *,
    index: dict[str, Any] | None = None,
    root: Path | None = None,
) -> EntryData:
    """Train and validation datasets of the entry in ``folder``.

    ``index`` skips re-reading ``index.json`` when the caller has just checked it; ``root``
    overrides where 3D item paths are resolved (default: two levels above the entry).
    """
    if index is None:
        index = read_entry_index(folder, model)
    train, validation = (read_split(folder, index, name, root=root) for name in SPLITS)
    return EntryData(train, validation, str(index["data_hash"]), index)
