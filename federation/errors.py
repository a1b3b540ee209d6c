"""Errors of the aggregator side."""

from __future__ import annotations

from omopfed.errors import EXIT_FEDERATION, OmopfedError


class FederationError(OmopfedError):
    """Something the aggregator cannot do with what the sites sent or the coordinator asked."""

    code = "FEDERATION"
    exit_code = EXIT_FEDERATION


class AggregationError(FederationError):
    """Site updates that cannot be averaged: no updates, mismatched shapes or dtypes, bad weights."""

    code = "AGGREGATION"
