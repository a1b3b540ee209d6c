"""Offline-by-default environment for every process the project starts.

Hospital nodes have no internet. Flower sends telemetry and checks for updates, Great
Expectations sends usage analytics, Ray probes usage stats: all are switched off here, in one
place. :func:`apply` is called by every entry point (the CLI, the Flower apps, the test suite)
and :func:`child_env` builds the environment for subprocesses (SuperLink, SuperNode...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

OFFLINE_ENV: Mapping[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
}


def apply() -> None:
    """Force the offline variables into this process's environment (inherited by children)."""
    os.environ.update(OFFLINE_ENV)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess: the current one, the offline variables, then ``extra``."""
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    if extra:
        env.update(extra)
    return env
