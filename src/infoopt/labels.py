"""Numbers as parts of paths: the form of each kind of number, and the check that the numbers
of one list keep distinct names.

A path holds a number at limited precision, so two numbers of a configuration can name the same
file; :func:`clashing_labels` finds them, and the configuration check names the key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable


def progress_label(progress: float) -> str:
    """A checkpoint's fraction of training, two decimals: 0.25 -> '0.25'."""
    return f"{progress:.2f}"


def number_label(value: float) -> str:
    """A hyper-parameter, 6 significant digits: 3e-05, 0.0003, 0.1, 128."""
    return f"{value:.6g}"


def wildcard_label(value: float) -> str:
    """:func:`number_label` without dot or plus, for a name that is one wildcard of a path:
    0.1 -> '0p1', 5e-4 -> '0p0005', 1e-05 -> '1e-05', 128 -> '128'."""
    return number_label(value).replace(".", "p").replace("+", "")


def clashing_labels(values: Iterable[float], label: Callable[[float], str]) -> list[str]:
    """The labels that two or more of ``values`` share, sorted ([] when all are distinct)."""
    counts = Counter(label(value) for value in values)
    return sorted(name for name, count in counts.items() if count > 1)
