"""Derived seeds: every random choice gets its own stream, named by what it is for.

``derive_seed(run_seed, "order", epoch)`` is a pure function of its parts, so a
resumed run regenerates exactly the random numbers an uninterrupted run uses.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends on every part (ints, strings, ...) and on nothing else."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(device: torch.device | str, *parts: object) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``parts``."""
    # Imported here: the notebooks derive seeds with this module and need no torch (~1 s).
    import torch

    return torch.Generator(device=device).manual_seed(derive_seed(*parts))
