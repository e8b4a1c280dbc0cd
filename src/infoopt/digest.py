"""Content digests: SHA-256 of what a value holds, not of how a file happens to encode it.

``torch.save`` writes different bytes for equal tensors (storage sharing, offsets), so a key
made from file bytes would change when a result is recomputed identically. A content digest
hashes each tensor's dtype, shape and raw bytes, and every other value by its canonical JSON
text, walking dictionaries in sorted key order:

>>> import torch
>>> value_digest({"w": torch.zeros(2)}) == value_digest({"w": torch.zeros(2).clone()})
True
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from infoopt.canonical import canonical_json

_CHUNK = 1 << 20


def _update(h: Any, value: Any) -> None:
    if isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value):
            h.update(canonical_json(key).encode())
            _update(h, value[key])
        h.update(b"}")
    elif isinstance(value, list | tuple):
        h.update(b"[")
        for item in value:
            _update(h, item)
        h.update(b"]")
    elif isinstance(value, torch.Tensor):
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"tensor:{value.dtype}:{list(value.shape)}:".encode())
        h.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(value, np.ndarray | np.generic):
        value = np.asarray(value)
        h.update(f"array:{value.dtype.str}:{list(value.shape)}:".encode())
        h.update(memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8)))
    elif isinstance(value, float) and not math.isfinite(value):
        h.update(repr(value).encode())
    else:
        h.update(canonical_json(value).encode())


def value_digest(value: Any) -> str:
    """SHA-256 (hex) of a nest of dicts, lists, tensors, arrays and JSON values."""
    h = hashlib.sha256()
    _update(h, value)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
