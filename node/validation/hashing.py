"""Content hashes of the data a suite reads.

A frame's hash must not depend on the order the database happened to return rows in (neither
DuckDB nor PostgreSQL promise one without ORDER BY, and sorting a million rows in SQL costs more
than hashing them), so each row is hashed on its own (pandas' vectorised
``hash_pandas_object``), the row hashes are sorted and the sorted array is hashed with SHA-256
together with the column names and dtypes. Two frames with the same rows in any order hash the
same; changing one value, adding a row or renaming a column changes the hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd


def frame_sha256(frame: pd.DataFrame) -> str:
    """Order-independent SHA-256 of a DataFrame's columns, dtypes and rows."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode("utf-8"))
    if len(frame):
        rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
        digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()


def frames_sha256(frames: Mapping[str, pd.DataFrame]) -> str:
    """SHA-256 over several named frames (names sorted), e.g. the CDM tables a suite read."""
    digest = hashlib.sha256()
    for name in sorted(frames):
        digest.update(f"{name}\0{frame_sha256(frames[name])}\0".encode())
    return digest.hexdigest()
