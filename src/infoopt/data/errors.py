"""The error type of the data layer."""

from __future__ import annotations


class DataError(RuntimeError):
    """A dataset archive or array file cannot be fetched, verified, read or converted."""
