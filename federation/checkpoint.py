"""Atomic checkpoints of the global model, one per round, and finding the one to resume from.

Flower 1.42 has no checkpoint or resume of its own, and a SuperLink crash marks the run failed even
with ``--database``. So after every round the global arrays go to ``round-NNNN.npz`` beside a
``round-NNNN.json`` that names the run, the round, the array names in order and the SHA-256 of
the ``.npz``. Both are written to a temporary file and renamed into place, the ``.npz`` first:
the JSON is the commit marker, so a crash at any moment leaves either the previous checkpoint or
the new one, never a torn file that a resume would trust. Dtypes are kept exactly (``.npz`` stores
them), including BatchNorm's int64 counters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import FederationError

_NAME = re.compile(r"^round-(\d{4,})\.json$")
_RUN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CheckpointError(FederationError):
    """No usable checkpoint where one was expected, or one that fails its checksum."""

    code = "CHECKPOINT"


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint is: the run and round it ends, and how to check and read it."""

    run: str
    round: int
    planned_rounds: int
    model: str
    names: list[str]
    sha256: str
    run_config: dict[str, Any]
    saved_at: str


def run_folder(root: Path, run: str) -> Path:
    """The folder of a run's checkpoints; the run name must be a plain file name."""
    if not _RUN.match(run):
        raise CheckpointError(f"run name {run!r} is not a plain name (letters, digits, . _ -)")
    return root / run


def save(
    folder: Path,
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    keep: int = 2,
) -> Path:
    """Write the round's checkpoint atomically and prune all but the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"round-{int(meta['round']):04d}"
    data = folder / f"{stem}.npz"
    _atomic_write(data, lambda handle: np.savez(handle, **dict(arrays)))  # type: ignore[arg-type]
    full = CheckpointMeta(
        **{**meta, "names": list(arrays), "sha256": _sha256(data)},
        saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    marker = folder / f"{stem}.json"
    text = json.dumps(asdict(full), indent=2, sort_keys=True, default=str).encode()
    _atomic_write(marker, lambda handle: handle.write(text))
    _prune(folder, keep)
    return marker


def latest(folder: Path) -> CheckpointMeta | None:
    """The newest committed checkpoint of a run folder, or None."""
    markers = _markers(folder) if folder.is_dir() else []
    return read_meta(markers[-1]) if markers else None


def read_meta(path: Path) -> CheckpointMeta:
    try:
        return CheckpointMeta(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path.name} is unreadable: {exc}") from None


def load(folder: Path, meta: CheckpointMeta) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint, in their saved order, after checking the SHA-256."""
    data = folder / f"round-{meta.round:04d}.npz"
    if not data.exists():
        raise CheckpointError(f"{data.name} is missing beside its JSON")
    if _sha256(data) != meta.sha256:
        raise CheckpointError(f"{data.name} does not match its recorded SHA-256")
    with np.load(data, allow_pickle=False) as npz:
        return {name: npz[name] for name in meta.names}


def _atomic_write(path: Path, write: Any) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _markers(folder: Path) -> list[Path]:
    """The committed checkpoints' JSON files, oldest round first."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [path for _, path in sorted(found)]


def _prune(folder: Path, keep: int) -> None:
    markers = _markers(folder)
    for marker in markers[:-keep] if keep > 0 else []:
        marker.unlink(missing_ok=True)  # the marker first: never a JSON without its data
        marker.with_suffix(".npz").unlink(missing_ok=True)
