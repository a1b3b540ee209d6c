"""Atomic checkpoints: dtypes kept, the JSON commits, corruption is caught, old rounds pruned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federation import checkpoint
from federation.checkpoint import CheckpointError


def _arrays(value: float) -> dict[str, np.ndarray]:
    return {
        "features.conv0.weight": np.full((2, 3), value, dtype=np.float32),
        "features.norm0.num_batches_tracked": np.array(7, dtype=np.int64),
        "a.first_in_file_order": np.zeros(1, dtype=np.float16),
    }


def _meta(round_: int) -> dict[str, object]:
    return {
        "run": "r1",
        "round": round_,
        "planned_rounds": 5,
        "model": "densenet2d",
        "run_config": {},
    }


def test_save_and_load_keep_names_order_and_dtypes(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _meta(1), _arrays(1.0))
    meta = checkpoint.latest(tmp_path)
    assert meta is not None and meta.round == 1 and meta.names == list(_arrays(1.0))
    loaded = checkpoint.load(tmp_path, meta)
    assert list(loaded) == list(_arrays(1.0))
    for name, array in _arrays(1.0).items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)


def test_latest_is_the_newest_committed_round_and_old_ones_are_pruned(tmp_path: Path) -> None:
    for round_ in (1, 2, 3, 10):
        checkpoint.save(tmp_path, _meta(round_), _arrays(float(round_)), keep=2)
    assert checkpoint.latest(tmp_path).round == 10  # numeric order, not text order
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "round-0003.json", "round-0003.npz", "round-0010.json", "round-0010.npz",
    ]  # fmt: skip


def test_an_uncommitted_round_is_ignored(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _meta(1), _arrays(1.0))
    # a crash after the data file was renamed into place but before its JSON was written
    (tmp_path / "round-0002.npz").write_bytes(b"partial")
    (tmp_path / ".round-0002.json-x.tmp").write_text("{")
    assert checkpoint.latest(tmp_path).round == 1


def test_a_corrupt_data_file_is_refused(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _meta(1), _arrays(1.0))
    (tmp_path / "round-0001.npz").write_bytes(b"not the checkpoint")
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoint.load(tmp_path, checkpoint.latest(tmp_path))


def test_no_checkpoint_and_bad_run_names(tmp_path: Path) -> None:
    assert checkpoint.latest(tmp_path / "none") is None
    with pytest.raises(CheckpointError, match="plain name"):
        checkpoint.run_folder(tmp_path, "../escape")
