"""Errors of the site's data path: resolving a cohort, the manifest and the dataset cache.

Each class has a stable ``code`` and an exit status (:mod:`omopfed.errors`). Messages are for the
steward's terminal and may name local files; node replies carry only the code. Per-subject
problems are *not* errors: they become exclusion reasons in the manifest and the run goes on.
These are the problems that make a whole run meaningless (a missing DICOM root would silently
exclude every subject), so they stop it with a message that says what to fix.

This module imports nothing but :mod:`omopfed.errors`: the Flower client loads it.
"""

from __future__ import annotations

from omopfed.errors import EXIT_CONFIG, EXIT_DATA, OmopfedError


class NodeDataError(OmopfedError):
    """Base of the site data-path errors."""

    code = "NODE_DATA"
    exit_code = EXIT_DATA


class CohortNotFoundError(NodeDataError):
    """The cohort id has no definition and no rows in the results schema."""

    code = "COHORT_NOT_FOUND"


class EmptyCohortError(NodeDataError):
    """The cohort exists but holds nobody: there is nothing to resolve."""

    code = "COHORT_EMPTY"


class DicomRootError(NodeDataError):
    """A configured DICOM root is missing, not a folder or cannot be listed (permission)."""

    code = "DICOM_ROOT"
    exit_code = EXIT_CONFIG


class LabelConflictError(NodeDataError):
    """Conflicting marker results under ``conflict_policy = "fail"``."""

    code = "LABEL_CONFLICT"


class ManifestError(NodeDataError):
    """The manifest is missing or unreadable (run ``omopfed resolve``)."""

    code = "MANIFEST"


class DatasetCacheError(NodeDataError):
    """The dataset cache has no entry for the request, or the entry is damaged."""

    code = "DATASET_CACHE"


class StaleDatasetError(DatasetCacheError):
    """The cache entry was built from an older manifest than the current one."""

    code = "DATASET_STALE"
