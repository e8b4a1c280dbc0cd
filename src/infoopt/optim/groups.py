"""Parameter groups: one optimizer entry that trains parts of a model with different algorithms.

Muon is used this way: Muon for the hidden weight matrices, AdamW for the rest (embeddings,
classifier head, norms, biases). An entry's ``groups`` map a group's name to a rule and the
algorithm (with its hyper-parameters) that trains what the rule matches. A rule matches a
parameter by its name (``names``: globs, any of which matches, absent: every name; ``exclude``:
globs, none of which may match; ``*`` matches dots too) and its number of dimensions (``ndim``,
absent: any). A rule with none of the three is the catch-all: it takes every parameter that no
other rule matches. Every parameter lands in exactly one group: matched by no rule or by two is an
error, so the order of the rules means nothing.

Convolution kernels (4-D) are not flattened: ``torch.optim.Muon`` takes only matrices, so a Muon
rule says ``ndim: [2]`` and the kernels fall to the catch-all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch

RULE_KEYS = ("names", "exclude", "ndim")


class GroupError(ValueError):
    """Rules that do not put every parameter in exactly one group; ``group`` is the rule at
    fault (None: no rule matched)."""

    def __init__(self, group: str | None, message: str) -> None:
        super().__init__(message)
        self.group = group


def is_catch_all(rule: Mapping[str, Any]) -> bool:
    """Whether ``rule`` takes every parameter that no other rule matches."""
    return not any(rule.get(key) for key in RULE_KEYS)


def matches(rule: Mapping[str, Any], name: str, ndim: int) -> bool:
    """Whether the (non-catch-all) ``rule`` matches parameter ``name`` of ``ndim`` dimensions."""
    names, exclude, dims = rule.get("names"), rule.get("exclude") or (), rule.get("ndim")
    if names and not any(fnmatchcase(name, glob) for glob in names):
        return False
    if any(fnmatchcase(name, glob) for glob in exclude):
        return False
    return not dims or ndim in dims


def assign_groups(
    rules: Mapping[str, Mapping[str, Any]], parameters: Iterable[tuple[str, torch.Tensor]]
) -> dict[str, str]:
    """Parameter name -> the name of its group; a GroupError for a parameter in no group or
    in two, or for two catch-alls."""
    catch_alls = [group for group, rule in rules.items() if is_catch_all(rule)]
    if len(catch_alls) > 1:
        raise GroupError(
            catch_alls[1],
            f"groups {catch_alls[0]!r} and {catch_alls[1]!r} both match every parameter; give "
            "all but one of them names, exclude or ndim",
        )
    group_of = {}
    for name, parameter in parameters:
        found = [
            group
            for group, rule in rules.items()
            if not is_catch_all(rule) and matches(rule, name, parameter.ndim)
        ]
        if len(found) > 1:
            raise GroupError(
                found[1], f"parameter {name!r} matches groups {found[0]!r} and {found[1]!r}"
            )
        if not found and not catch_alls:
            raise GroupError(
                None,
                f"parameter {name!r} ({parameter.ndim}-D) matches no group; add a group "
                "without names, exclude and ndim to take the rest",
            )
        group_of[name] = found[0] if found else catch_alls[0]
    return group_of


class GroupedOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped as one.

    What the training loop and a learning-rate scheduler use of an optimizer works on the whole:
    ``param_groups`` (every member's groups, the same dicts, so a schedule reaches each),
    ``step``, ``zero_grad``, ``state_dict``/``load_state_dict`` (a member's state under its group
    name) and ``train``/``eval`` (passed to the members that have them, e.g. Schedule-Free).
    ``group_of`` maps each parameter's name to its group's.
    """

    def __init__(
        self, optimizers: Mapping[str, torch.optim.Optimizer], group_of: Mapping[str, str]
    ) -> None:
        # torch.optim.Optimizer.__init__ would copy the members' groups; the members own them.
        self.optimizers = dict(optimizers)
        self.group_of = dict(group_of)
        self.defaults: dict[str, Any] = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Read afresh: a member's load_state_dict replaces its group dicts.
        return [group for opt in self.optimizers.values() for group in opt.param_groups]

    @property
    def state(self) -> dict[torch.Tensor, Any]:  # type: ignore[override]
        return {p: s for opt in self.optimizers.values() for p, s in opt.state.items()}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise TypeError("a grouped optimizer's groups are fixed by its rules")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every member; ``closure`` is evaluated once, before them."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers.values():
            opt.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"groups": {name: opt.state_dict() for name, opt in self.optimizers.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["groups"]
        if set(saved) != set(self.optimizers):
            raise ValueError(
                f"the state holds groups {sorted(saved)}, the optimizer {sorted(self.optimizers)}"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(saved[name])

    def train(self) -> None:
        for opt in self.optimizers.values():
            if callable(getattr(opt, "train", None)):
                opt.train()

    def eval(self) -> None:
        for opt in self.optimizers.values():
            if callable(getattr(opt, "eval", None)):
                opt.eval()

    def __repr__(self) -> str:
        return f"GroupedOptimizer({', '.join(f'{k}={v!r}' for k, v in self.optimizers.items())})"
