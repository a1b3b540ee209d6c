"""The dataset cache: preprocessed model inputs on the site's disk, addressed by content.

Two levels, both named by hashes of what they were made from:

* an **item** per subject and model: the 2D middle coronal FLAIR slice or the 3D four-channel
  volume (+ SEG labels). Its hash covers the series UIDs, every file's name, size and mtime at
  the series location, the SEG file's, the preprocessing parameters and the code version, so a
  changed file, parameter or release recomputes exactly the subjects it touches (incremental
  rebuild) and nothing else;
* an **entry** per dataset: the items of the manifest's included subjects, split into train and
  validation, with their labels. Its hash (the ``data_hash`` the validation gate records) covers
  the manifest hash, the concept-map version and every item hash.

Items are computed in a process pool (reading and resampling DICOM is CPU-bound) and written
atomically (temporary file + rename); an entry is written into a temporary folder that is
renamed into place, so readers never see half an entry. A subject whose item cannot be made
(the imaging code rejects it) is dropped with its reason, remembered in the item store so a
warm rebuild does not read it again. Layout: :mod:`node.dataset`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from node.concept_map import ConceptMap, load_concept_map
from node.dataset import (
    HEADS,
    INDEX_FORMAT,
    SPLITS,
    check_fresh,
    check_model,
    entry_dir,
    pointer_path,
)
from node.errors import DatasetCacheError, StaleDatasetError
from node.imaging import (
    CHANNELS,
    SeriesRejected,
    build_3d_input,
    middle_coronal_slice,
    read_seg,
    read_series,
)
from node.manifest import PREFIX, read_manifest_rows
from node.resolver.pool import Progress, parallel_map
from node.settings import SiteSettings
from omopfed import __version__

log = logging.getLogger(__name__)

#: Bump when what an item holds changes for the same inputs (resampling, scaling, layout).
CACHE_FORMAT = 1
CODE_VERSION = f"{__version__}/cache-{CACHE_FORMAT}"
#: The 3D grade head has three classes (WHO II, III, IV; models.names.NUM_CLASSES).
GRADE_CLASSES = ("grade_2", "grade_3", "grade_4")
#: BraTS enhancing tumour is 4 in the SEG; the models' classes are 0-3 (models.names.SEG_VALUES).
_BRATS_TO_MODEL = np.array([0, 1, 2, 0, 3], dtype=np.uint8)


@dataclass(frozen=True)
class ItemTask:
    """One subject's item: inputs, hash and where its files go (picklable for the pool)."""

    model: str
    item_hash: str
    series: dict[str, tuple[str, str]]  # sequence -> (location, series UID)
    seg_path: str | None
    params: dict[str, Any]
    stem: Path  # item files are <stem>.image.npy, <stem>.seg.npy, <stem>.rejected.json

    def image(self) -> Path:
        return self.stem.with_name(self.stem.name + ".image.npy")

    def seg(self) -> Path:
        return self.stem.with_name(self.stem.name + ".seg.npy")

    def rejected(self) -> Path:
        return self.stem.with_name(self.stem.name + ".rejected.json")


@dataclass(frozen=True)
class BuildReport:
    """What ``omopfed dataset build`` did; counts are raw (the CLI suppresses them)."""

    model: str
    cohort_id: int
    data_hash: str
    entry: Path
    computed: int
    reused: int
    dropped: dict[str, int]
    num_train: int
    num_validation: int
    seconds: float
    new_entry: bool
    heads: list[str] = field(default_factory=list)


def _params(settings: SiteSettings) -> dict[str, Any]:
    return settings.dataset.model_dump(mode="json", exclude={"workers"})


def _fingerprint(location: str) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of every file at a series location (a folder or one file)."""
    path = Path(location)
    try:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        return [(p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in files]
    except OSError:
        return []  # gone or unreadable: computing the item will say why


def _hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _needed(model: str) -> tuple[str, ...]:
    return ("FLAIR",) if model == "densenet2d" else CHANNELS


def item_task(model: str, row: dict[str, Any], params: dict[str, Any], items: Path) -> ItemTask:
    """The item of one manifest row: its inputs' fingerprint decides its hash."""
    series = {
        s: (row[f"{PREFIX[s]}_path"] or "", row[f"{PREFIX[s]}_series_uid"] or "")
        for s in _needed(model)
    }
    seg = row["seg_path"] if model == "unet3d" else None
    inputs = {
        "model": model,
        "code": CODE_VERSION,
        "params": params,
        "series": {s: [uid, _fingerprint(loc)] for s, (loc, uid) in series.items()},
        "seg": [seg, _fingerprint(seg)] if seg else None,
    }
    digest = _hash(inputs)
    return ItemTask(model, digest, series, seg, params, items / model / digest[:2] / digest)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _compute(task: ItemTask) -> None:
    """Make the item's arrays (runs in a worker process)."""
    p = task.params
    volumes = {s: read_series(loc, series_uid=uid) for s, (loc, uid) in task.series.items()}
    if task.model == "densenet2d":
        image = middle_coronal_slice(
            volumes["FLAIR"],
            size=p["image_size"],
            scaling=p["scaling"],
            percentiles=tuple(p["percentiles"]),
            dtype=p["dtype"],
        )
        _save(task.image(), image[None])
        return
    labels = read_seg(task.seg_path) if task.seg_path else None
    built = build_3d_input(volumes, size=p["image_size"], labels=labels)
    if built.labels is not None:
        _save(task.seg(), _BRATS_TO_MODEL[np.minimum(built.labels, 4)])
    _save(task.image(), built.image.astype(p["dtype"]))


def compute_item(task: ItemTask) -> str | None:
    """Compute and store one item; the rejection reason when the subject cannot be used."""
    try:
        _compute(task)
        return None
    except SeriesRejected as exc:
        reason = exc.reason.value
        log.info("item %s rejected: %s", task.item_hash[:12], exc)
    except PermissionError as exc:
        reason = "permission_denied"
        log.info("item %s: %s", task.item_hash[:12], exc)
    task.rejected().parent.mkdir(parents=True, exist_ok=True)
    task.rejected().write_text(json.dumps({"reason": reason}) + "\n", "utf-8")
    return reason


def _outcome(task: ItemTask) -> str | bool | None:
    """None: the item is stored; a reason: it was rejected; False: not computed yet."""
    if task.image().exists():
        return None
    if task.rejected().exists():
        return str(json.loads(task.rejected().read_text("utf-8"))["reason"])
    return False


def _label(marker: str, klass: str | None, concept_map: ConceptMap) -> int:
    """The integer class of a head, -1 when missing (or a grade the 3-class head lacks)."""
    if klass is None:
        return -1
    classes = GRADE_CLASSES if marker == "grade" else tuple(concept_map.marker(marker).classes)
    return classes.index(klass) if klass in classes else -1


@dataclass(frozen=True)
class _Member:
    """An included manifest row whose item is stored: what goes into the entry."""

    key: str
    labels: list[int]
    task: ItemTask


@dataclass(frozen=True)
class _Build:
    """Everything one entry is made from (its hash covers all but cache_dir)."""

    model: str
    cohort_id: int
    manifest_hash: str
    concept_map: ConceptMap
    params: dict[str, Any]
    cache_dir: Path
    members: dict[str, list[_Member]]
    dropped: Counter[str]


def _write_entry(build: _Build, index: dict[str, Any]) -> None:
    """Write the entry into a temporary folder, then rename it into place."""
    final = entry_dir(build.cache_dir, index["data_hash"])
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
    try:
        for name in SPLITS:
            chosen = build.members[name]
            spec = index["splits"][name]
            labels = np.array([m.labels for m in chosen], dtype=np.int64)
            np.save(tmp / spec["labels"], labels.reshape(len(chosen), len(index["heads"])))
            if index["model"] == "densenet2d":
                _stack(tmp / spec["images"], [m.task.image() for m in chosen], build.params)
        (tmp / "index.json").write_text(json.dumps(index, indent=1) + "\n", "utf-8")
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "index.json").exists():
            raise
        # another build wrote the same entry first: identical by construction


def _stack(path: Path, items: list[Path], params: dict[str, Any]) -> None:
    """One (N, 1, S, S) array from the 2D items, written without holding all of it in memory."""
    dtype, size = params["dtype"], params["image_size"]
    if not items:
        np.save(path, np.zeros((0, 1, size, size), dtype=dtype))
        return
    first = np.load(items[0], mmap_mode="r")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(len(items), *first.shape))
    for i, item in enumerate(items):
        out[i] = np.load(item, mmap_mode="r")
    out.flush()
    del out


def _relative(path: Path, cache_dir: Path) -> str:
    return str(path.relative_to(cache_dir))


def _split_spec(build: _Build, name: str) -> dict[str, Any]:
    chosen = build.members[name]
    spec: dict[str, Any] = {"n": len(chosen), "labels": f"{name}_labels.npy"}
    if build.model == "densenet2d":
        spec["images"] = f"{name}_images.npy"
    else:
        spec["images"] = [_relative(m.task.image(), build.cache_dir) for m in chosen]
        spec["masks"] = [
            _relative(m.task.seg(), build.cache_dir) if m.task.seg().exists() else None
            for m in chosen
        ]
    spec["subjects"] = [m.key for m in chosen]
    return spec


def _index(build: _Build) -> dict[str, Any]:
    """The entry's index; ``data_hash`` is the hash of its content-defining part."""
    content = {
        "format": INDEX_FORMAT,
        "model": build.model,
        "code": CODE_VERSION,
        "params": build.params,
        "concept_map_version": build.concept_map.version,
        "manifest_hash": build.manifest_hash,
        "subjects": {
            name: [[m.key, m.task.item_hash, m.labels] for m in chosen]
            for name, chosen in build.members.items()
        },
    }
    return {
        **{k: v for k, v in content.items() if k != "subjects"},
        "data_hash": _hash(content),
        "cohort_id": build.cohort_id,
        "heads": [str(h) for h in HEADS[build.model]],
        "splits": {name: _split_spec(build, name) for name in SPLITS},
        "dropped": dict(sorted(build.dropped.items())),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _write_pointer(cache_dir: Path, model: str, cohort_id: int, data_hash: str) -> None:
    path = pointer_path(cache_dir, model, cohort_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump({"data_hash": data_hash}, out)
    os.replace(tmp, path)


def _collect(build: _Build, rows: list[dict[str, Any]], tasks: list[ItemTask]) -> None:
    """Sort computed items into the splits; rejected ones into ``dropped``."""
    heads = [str(h) for h in HEADS[build.model]]
    for row, task in zip(rows, tasks, strict=True):
        outcome = _outcome(task)
        if outcome is False:
            raise DatasetCacheError(f"item {task.stem} was not written")
        if outcome is not None:
            build.dropped[str(outcome)] += 1
            continue
        labels = [_label(h, row[h], build.concept_map) for h in heads]
        build.members[row["split"]].append(_Member(row["subject_key"], labels, task))


def build_dataset(
    settings: SiteSettings, model: str, *, cohort_id: int = 1, progress: Progress | None = None
) -> BuildReport:
    """Build (or reuse) the cache entry of ``model`` for the cohort's current manifest."""
    started = time.perf_counter()
    check_model(model)
    cache_dir = Path(settings.cache_dir or "")
    rows, manifest_hash = read_manifest_rows(Path(settings.workspace), cohort_id)
    rows = [row for row in rows if row["included"]]
    build = _Build(
        model=model,
        cohort_id=cohort_id,
        manifest_hash=manifest_hash,
        concept_map=load_concept_map(settings.concept_map),
        params=_params(settings),
        cache_dir=cache_dir,
        members={name: [] for name in SPLITS},
        dropped=Counter(),
    )
    tasks = [item_task(model, row, build.params, cache_dir / "items") for row in rows]
    todo = [task for task in tasks if _outcome(task) is False]
    parallel_map(compute_item, todo, settings.dataset.workers, progress)
    _collect(build, rows, tasks)
    index = _index(build)
    folder = entry_dir(cache_dir, index["data_hash"])
    new_entry = not (folder / "index.json").exists()
    if new_entry:
        _write_entry(build, index)
    _write_pointer(cache_dir, model, cohort_id, index["data_hash"])
    return BuildReport(
        model=model,
        cohort_id=cohort_id,
        data_hash=index["data_hash"],
        entry=folder,
        computed=len(todo),
        reused=len(tasks) - len(todo),
        dropped=dict(build.dropped),
        num_train=len(build.members["train"]),
        num_validation=len(build.members["validation"]),
        seconds=time.perf_counter() - started,
        new_entry=new_entry,
        heads=index["heads"],
    )


def cache_info(settings: SiteSettings) -> list[dict[str, Any]]:
    """One record per (model, cohort) with a current entry; raw counts (the CLI suppresses)."""
    cache_dir = Path(settings.cache_dir or "")
    records = []
    for pointer in sorted((cache_dir / "current").glob("*-cohort*.json")):
        data_hash = json.loads(pointer.read_text("utf-8")).get("data_hash", "")
        folder = entry_dir(cache_dir, data_hash)
        try:
            index = json.loads((folder / "index.json").read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            records.append({"pointer": pointer.stem, "data_hash": data_hash, "state": "missing"})
            continue
        fresh = _is_fresh(index, Path(settings.workspace))
        records.append(
            {
                "model": index["model"],
                "cohort_id": index["cohort_id"],
                "data_hash": data_hash,
                "num_train": index["splits"]["train"]["n"],
                "num_validation": index["splits"]["validation"]["n"],
                "dropped": index["dropped"],
                "built_at": index["built_at"],
                "state": "current" if fresh else "stale (manifest changed)",
                "entry_bytes": sum(p.stat().st_size for p in folder.iterdir()),
            }
        )
    return records


def _is_fresh(index: dict[str, Any], workspace: Path) -> bool:
    try:
        check_fresh(index, workspace, int(index["cohort_id"]))
    except StaleDatasetError:
        return False
    return True


def cache_usage(settings: SiteSettings) -> tuple[int, int]:
    """(files, bytes) of the whole cache folder."""
    files = [p for p in Path(settings.cache_dir or "").rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)
