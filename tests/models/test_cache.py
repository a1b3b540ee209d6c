"""The cache-entry format reader on hand-written entries (2D stacked, 3D per-subject items)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.cache import (
    HEADS,
    INDEX_FORMAT,
    CacheEntryError,
    check_model,
    load_entry,
    read_entry_index,
)
from models.names import Head


def _write_index(folder: Path, model: str, splits: dict[str, dict[str, object]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    index = {
        "format": INDEX_FORMAT,
        "model": model,
        "data_hash": "h" * 64,
        "heads": [str(h) for h in HEADS[model]],
        "splits": splits,
    }
    (folder / "index.json").write_text(json.dumps(index))


def _entry_2d(root: Path) -> Path:
    folder = root / "entries" / ("h" * 64)
    folder.mkdir(parents=True)
    splits: dict[str, dict[str, object]] = {}
    for name, n in (("train", 3), ("validation", 0)):
        np.save(folder / f"{name}_images.npy", np.full((n, 1, 8, 8), 0.5, dtype=np.float16))
        np.save(folder / f"{name}_labels.npy", np.arange(n, dtype=np.int64).reshape(n, 1) % 2)
        splits[name] = {"n": n, "labels": f"{name}_labels.npy", "images": f"{name}_images.npy"}
        splits[name]["subjects"] = [f"k{i}" for i in range(n)]
    _write_index(folder, "densenet2d", splits)
    return folder


def test_2d_entry_reads_both_splits_memory_mapped(tmp_path: Path) -> None:
    entry = load_entry(_entry_2d(tmp_path))
    assert (len(entry.train), len(entry.validation)) == (3, 0)
    assert isinstance(entry.train.images, np.memmap)
    sample = entry.train[1]
    assert sample["image"].dtype.is_floating_point and tuple(sample["image"].shape) == (1, 8, 8)
    assert int(sample[Head.MGMT]) == 1
    assert entry.subjects("train") == ["k0", "k1", "k2"] and entry.data_hash == "h" * 64


def test_3d_entry_resolves_items_against_the_cache_root(tmp_path: Path) -> None:
    folder = tmp_path / "entries" / ("h" * 64)
    items = tmp_path / "items" / "unet3d" / "ab"
    items.mkdir(parents=True)
    np.save(items / "a.image.npy", np.zeros((4, 3, 8, 8), dtype=np.float16))
    np.save(items / "a.seg.npy", np.ones((3, 8, 8), dtype=np.uint8))
    np.save(items / "b.image.npy", np.zeros((4, 5, 8, 8), dtype=np.float16))
    folder.mkdir(parents=True)
    np.save(folder / "train_labels.npy", np.array([[0, -1, 1, 2], [1, 0, -1, 0]]))
    np.save(folder / "validation_labels.npy", np.zeros((0, 4), dtype=np.int64))
    splits = {
        "train": {
            "n": 2,
            "labels": "train_labels.npy",
            "images": ["items/unet3d/ab/a.image.npy", "items/unet3d/ab/b.image.npy"],
            "masks": ["items/unet3d/ab/a.seg.npy", None],
        },
        "validation": {"n": 0, "labels": "validation_labels.npy", "images": [], "masks": []},
    }
    _write_index(folder, "unet3d", splits)
    entry = load_entry(folder, "unet3d")
    assert entry.train.has_seg is not None and entry.train.has_seg.tolist() == [True, False]
    assert tuple(entry.train[1]["image"].shape) == (4, 5, 8, 8)
    assert int(entry.train[0][Head.GRADE]) == 2 and int(entry.train[0][Head.CODELETION_1P19Q]) == -1
    assert int(entry.train[0][Head.SEG].sum()) == 3 * 8 * 8


def test_errors_name_the_entry(tmp_path: Path) -> None:
    with pytest.raises(CacheEntryError, match="unknown model"):
        check_model("resnet")
    with pytest.raises(CacheEntryError, match="is missing"):
        read_entry_index(tmp_path / "nowhere")
    folder = _entry_2d(tmp_path)
    with pytest.raises(CacheEntryError, match="not a unet3d dataset"):
        read_entry_index(folder, "unet3d")
    (folder / "train_images.npy").write_bytes(b"not numpy")
    with pytest.raises(CacheEntryError, match="unreadable"):
        load_entry(folder)
    assert CacheEntryError.code == "MODEL_CACHE"
