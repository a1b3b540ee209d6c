"""Site policy on top of a suite: promoting warnings to blocking expectations.

Only promotion exists. A site that could demote a blocking check could wave data through that
the federation's contract rejects; one that promotes merely refuses more. Promotions change the
suite hash, so the aggregator sees which contract a site actually applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from fnmatch import fnmatchcase

from node.validation.model import Check


def promote(checks: Iterable[Check], patterns: Iterable[str]) -> list[Check]:
    """``checks`` with every check whose id matches one of ``patterns`` made blocking."""
    patterns = list(patterns)
    return [
        replace(c, blocking=True)
        if not c.blocking and any(fnmatchcase(c.id, p) for p in patterns)
        else c
        for c in checks
    ]
