"""The manifest: one row per cohort member, what the dataset cache and validation read.

Written as Parquet in the workspace (``manifest/cohort-<id>.parquet``) with a small JSON
sidecar holding its content hash, so readers that only need the hash (the dataset loader in
every Flower client process, :mod:`node.dataset`) read one JSON file and never import pandas
or pyarrow. Both files are replaced atomically (temporary file + rename): a crash leaves the
old manifest or the new one.

Privacy: the manifest stays on the site, but it still never holds the raw ``person_id``.
Subjects are keyed by an HMAC-SHA-256 of the person_id under a per-site secret salt stored in
the workspace (``secrets/subject-key.salt``, created on first use, mode 0600): stable across
runs, so caches and splits line up, and not reversible by anyone without the salt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.errors import ManifestError
from node.resolver.core import Resolution, Resolved, resolve_cohort
from node.resolver.pool import Progress
from node.resolver.sequences import SEQUENCES
from node.settings import SiteSettings

MANIFEST_SCHEMA = "omopfed-manifest/1"
SALT_FILE = Path("secrets") / "subject-key.salt"
MARKERS = ("mgmt", "idh", "codeletion_1p19q", "grade")
PREFIX = {"FLAIR": "flair", "T1": "t1", "T1ce": "t1ce", "T2": "t2"}
TRAIN, VALIDATION = "train", "validation"
_SERIES_FIELDS = (
    ("series_uid", "string"),
    ("path", "string"),
    ("n_slices", "int32"),
    ("spacing_slice_mm", "float64"),
    ("spacing_row_mm", "float64"),
    ("spacing_col_mm", "float64"),
    ("plane", "string"),
)
#: Column name -> Arrow type name, in manifest order.
COLUMNS: dict[str, str] = {
    "subject_key": "string",
    "included": "bool",
    "exclusion_reason": "string",
    "split": "string",
    **dict.fromkeys(MARKERS, "string"),
    "label_conflicts": "string",
    **{f"{PREFIX[s]}_{name}": kind for s in SEQUENCES for name, kind in _SERIES_FIELDS},
    "seg_present": "bool",
    "seg_path": "string",
}


@dataclass(frozen=True)
class ManifestFiles:
    """Where a cohort's manifest lives in the workspace."""

    parquet: Path
    sidecar: Path

    @classmethod
    def of(cls, workspace: Path, cohort_id: int) -> ManifestFiles:
        folder = workspace / "manifest"
        return cls(folder / f"cohort-{cohort_id}.parquet", folder / f"cohort-{cohort_id}.json")


def load_salt(workspace: Path) -> bytes:
    """The site's subject-key salt, created (32 random bytes, mode 0600) on first use."""
    path = workspace / SALT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        salt = bytes.fromhex(path.read_text("ascii").strip())
        if len(salt) < 16:
            raise ManifestError(f"subject-key salt {path} is too short") from None
        return salt
    salt = secrets.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(salt.hex() + "\n")
    return salt


def subject_key(person_id: int, salt: bytes) -> str:
    """Pseudonymous, stable subject key: HMAC-SHA-256(salt, person_id), 32 hex digits."""
    return hmac.new(salt, str(int(person_id)).encode("ascii"), hashlib.sha256).hexdigest()[:32]


def assign_splits(rows: list[dict[str, Any]], target: str, fraction: float) -> None:
    """Set ``split`` on included rows: per stratum of the target label, in subject-key order
    (an HMAC, so a random but reproducible order), the first round(fraction x n) go to
    validation. Deterministic: the same subjects and labels always give the same split."""
    strata: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        row["split"] = None
        if row["included"]:
            strata[row[target]].append(row)
    for members in strata.values():
        members.sort(key=lambda r: r["subject_key"])
        n_validation = math.floor(fraction * len(members) + 0.5)
        for i, row in enumerate(members):
            row["split"] = VALIDATION if i < n_validation else TRAIN


def _row(subject: Resolved, salt: bytes) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["subject_key"] = subject_key(subject.person_id, salt)
    row["included"] = subject.exclusion is None
    row["exclusion_reason"] = subject.exclusion
    row.update({m: subject.labels.get(m) for m in MARKERS})
    row["label_conflicts"] = ",".join(subject.conflicts)
    for sequence, info in subject.images.series.items():
        p = PREFIX[sequence]
        row[f"{p}_series_uid"], row[f"{p}_path"] = info.series_uid, info.location
        row[f"{p}_n_slices"], row[f"{p}_plane"] = info.n_slices, info.plane
        slice_mm, row_mm, col_mm = info.spacing
        row[f"{p}_spacing_slice_mm"], row[f"{p}_spacing_row_mm"] = slice_mm, row_mm
        row[f"{p}_spacing_col_mm"] = col_mm
    row["seg_present"] = subject.images.seg_path is not None
    row["seg_path"] = subject.images.seg_path
    return row


def manifest_rows(resolution: Resolution, salt: bytes) -> list[dict[str, Any]]:
    """The manifest's rows, sorted by subject key (not by person_id, which would leak order)."""
    rows = sorted((_row(s, salt) for s in resolution.subjects), key=lambda r: r["subject_key"])
    params = resolution.parameters
    assign_splits(rows, params["target_marker"], params["validation_fraction"])
    return rows


def content_hash(rows: Iterable[dict[str, Any]]) -> str:
    """SHA-256 of the rows as canonical JSON: independent of Parquet writer versions."""
    text = json.dumps(list(rows), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ManifestWritten:
    """What :func:`write_manifest` wrote."""

    files: ManifestFiles
    manifest_hash: str
    rows: list[dict[str, Any]]


def write_manifest(workspace: Path, resolution: Resolution) -> ManifestWritten:
    """Write the cohort's manifest (Parquet, then the JSON sidecar), each atomically."""
    import pyarrow as pa  # here, not at import: the Flower client imports this module's reader
    import pyarrow.parquet as pq

    rows = manifest_rows(resolution, load_salt(workspace))
    digest = content_hash(rows)
    schema = pa.schema(
        [pa.field(name, pa.type_for_alias(kind)) for name, kind in COLUMNS.items()],
        metadata={"omopfed.schema": MANIFEST_SCHEMA, "omopfed.manifest_hash": digest},
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    files = ManifestFiles.of(workspace, resolution.cohort_id)
    _atomic(files.parquet, lambda tmp: pq.write_table(table, tmp))
    sidecar = {
        "schema": MANIFEST_SCHEMA,
        "cohort_id": resolution.cohort_id,
        "manifest_hash": digest,
        "parquet": files.parquet.name,
        "parameters": resolution.parameters,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
    _atomic(files.sidecar, lambda tmp: tmp.write_text(text, "utf-8"))
    return ManifestWritten(files, digest, rows)


def resolve(
    settings: SiteSettings, cohort_id: int, progress: Progress | None = None
) -> ManifestWritten:
    """Resolve cohort ``cohort_id`` and write its manifest: what ``omopfed resolve`` runs."""
    return write_manifest(settings.workspace, resolve_cohort(settings, cohort_id, progress))


def read_sidecar(workspace: Path, cohort_id: int) -> dict[str, Any]:
    """The manifest's sidecar (hash and parameters); ManifestError if there is none."""
    files = ManifestFiles.of(workspace, cohort_id)
    try:
        data: dict[str, Any] = json.loads(files.sidecar.read_text("utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"no manifest for cohort {cohort_id} in {files.sidecar.parent}",
            hint=f"run `omopfed resolve --settings SITE.toml --cohort {cohort_id}`",
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest sidecar {files.sidecar} is unreadable: {exc}") from None
    return data


def read_manifest_rows(workspace: Path, cohort_id: int) -> tuple[list[dict[str, Any]], str]:
    """The manifest's rows and its hash, checked against the sidecar."""
    import pyarrow.parquet as pq

    sidecar = read_sidecar(workspace, cohort_id)
    files = ManifestFiles.of(workspace, cohort_id)
    try:
        rows: list[dict[str, Any]] = pq.read_table(files.parquet).to_pylist()
    except (OSError, ValueError) as exc:
        raise ManifestError(f"manifest {files.parquet} is unreadable: {exc}") from None
    digest = content_hash(rows)
    if digest != sidecar.get("manifest_hash"):
        raise ManifestError(
            f"manifest {files.parquet} does not match its sidecar (edited by hand?)",
            hint=f"run `omopfed resolve --cohort {cohort_id}` again",
        )
    return rows, digest


def read_manifest(workspace: Path, cohort_id: int) -> Any:
    """The manifest as a pandas DataFrame (for validation and analysis on the site)."""
    import pandas as pd

    read_manifest_rows(workspace, cohort_id)  # checks it against its sidecar
    path = ManifestFiles.of(workspace, cohort_id).parquet
    return pd.read_parquet(path, dtype_backend="numpy_nullable")


def summarize(rows: list[dict[str, Any]], min_cell_count: int) -> list[tuple[str, str]]:
    """(what, count) lines for humans; every count below ``min_cell_count`` shows as "<N"."""

    def shown(count: int) -> str:
        return f"<{min_cell_count}" if count < min_cell_count else str(count)

    included = [r for r in rows if r["included"]]
    lines = [("subjects", shown(len(rows))), ("included", shown(len(included)))]
    splits = Counter(r["split"] for r in included)
    lines += [(f"  {name}", shown(splits[name])) for name in (TRAIN, VALIDATION)]
    reasons = Counter(r["exclusion_reason"] for r in rows if not r["included"])
    lines += [(f"excluded: {reason}", shown(n)) for reason, n in sorted(reasons.items())]
    for marker in MARKERS:
        labelled = sum(r[marker] is not None for r in included)
        lines.append((f"included with {marker} label", shown(labelled)))
    lines.append(("included with SEG", shown(sum(bool(r["seg_present"]) for r in included))))
    return lines
