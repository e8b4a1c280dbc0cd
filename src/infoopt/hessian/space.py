"""The flat parameter space: where each parameter tensor (a "block") lives in one long vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParameterSpace:
    """Blocks in ``named_parameters()`` order; block ``b`` occupies
    ``[offsets[b], offsets[b] + numels[b])`` of a flat vector of length ``dim``."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, model: nn.Module) -> ParameterSpace:
        """The space of ``model``'s trainable parameters (frozen ones have no Hessian here)."""
        named = [(name, p.shape) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        names, shapes = zip(*named, strict=True)
        return cls(tuple(names), tuple(shapes))

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(shape.numel() for shape in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        offsets, total = [], 0
        for numel in self.numels:
            offsets.append(total)
            total += numel
        return tuple(offsets)

    @property
    def dim(self) -> int:
        return sum(self.numels)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"no parameter block {name!r}; blocks: {', '.join(self.names)}"
            ) from None

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``(..., dim)`` -> one ``(..., *shape)`` view per block."""
        if flat.shape[-1] != self.dim:
            raise ValueError(
                f"expected vectors of length {self.dim}, got shape {tuple(flat.shape)}"
            )
        lead = flat.shape[:-1]
        return [
            part.view(*lead, *shape)
            for part, shape in zip(flat.split(self.numels, dim=-1), self.shapes, strict=True)
        ]

    def flatten(self, parts: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Inverse of :meth:`split`: per-block ``(..., *shape)`` tensors -> ``(..., dim)``."""
        lead = parts[0].shape[: parts[0].dim() - len(self.shapes[0])]
        return torch.cat([part.reshape(*lead, -1) for part in parts], dim=-1)
