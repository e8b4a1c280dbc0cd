"""One text per meaning: the canonical JSON form of specs, parameters and store keys.

Two configurations that say the same thing (keys in another order, ``1.0`` written as ``1``,
a tuple where a list was) must give the same Snakemake ``params`` and the same store key, or
a finished run would be planned again. :func:`canonical_json` is that form:

>>> canonical_json({"b": 1.0, "a": (0.9, 0.99)})
'{"a":[0.9,0.99],"b":1}'
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

# Floats beyond this are not all integers exactly, so they are kept as floats.
_EXACT_INTEGERS = 2.0**53


def normalize(value: Any) -> Any:
    """``value`` with tuples as lists, integral floats as ints and ``-0.0`` as 0.

    A ValueError names a value that has no JSON form (NaN, infinities, other objects).
    """
    if isinstance(value, Mapping):
        keys = list(value)
        if not all(isinstance(key, str) for key in keys):
            raise ValueError(f"mapping keys must be strings, got {keys!r}")
        return {key: normalize(value[key]) for key in keys}
    if isinstance(value, list | tuple):
        return [normalize(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no canonical form")
        if value.is_integer() and abs(value) < _EXACT_INTEGERS:
            return int(value)
        return value
    raise ValueError(f"{value!r} (a {type(value).__name__}) has no canonical JSON form")


def canonical_json(value: Any) -> str:
    """The canonical text of ``value``: sorted keys, no spaces, normalised numbers."""
    return json.dumps(normalize(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(value: Any) -> str:
    """SHA-256 (hex) of the canonical text of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
