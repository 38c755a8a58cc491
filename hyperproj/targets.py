"""Which parameters of a module become projected weights.

Matching follows PEFT's ``check_target_module_exists``, with loud errors: a name pattern matches a
parameter name when it is equal to it, is a dotted suffix of it (``"weight"`` matches
``"net.0.weight"``), or ``re.fullmatch``-es it; a module type matches the floating parameters
with two or more dimensions that modules of that type own directly.

Examples:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> select_targets(net)
    ['0.weight', '2.weight']
    >>> select_targets(net, exclude=["2.weight"])
    ['0.weight']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ._errors import HyperprojError

__all__ = ["select_targets", "name_matches"]

Pattern = str | type


def name_matches(pattern: str, name: str) -> bool:
    """True when ``pattern`` selects the parameter ``name`` (exact, dotted suffix, or regex).

    Examples:
        >>> name_matches("weight", "layers.0.weight"), name_matches(r"layers\\.\\d+\\.weight", "layers.3.weight")
        (True, True)
        >>> name_matches("eight", "layers.0.weight")
        False
    """
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _owner_types(model: nn.Module) -> dict[str, nn.Module]:
    owners = {}
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = mod
    return owners


def _matches(pattern: Pattern, name: str, param: torch.Tensor, owner: nn.Module) -> bool:
    if isinstance(pattern, str):
        return name_matches(pattern, name)
    if isinstance(pattern, type) and issubclass(pattern, nn.Module):
        return isinstance(owner, pattern) and param.is_floating_point() and param.dim() >= 2
    raise HyperprojError(
        "hyperproj.reparametrize: targets/exclude entries must be parameter-name patterns (str) "
        f"or nn.Module subclasses, got {pattern!r}"
    )


def _as_list(value: Pattern | Iterable[Pattern] | None, what: str) -> list[Pattern] | None:
    if value is None:
        return None
    if isinstance(value, (str, type)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise HyperprojError(
            f"hyperproj.reparametrize: {what} must be a str, a module type or a list of them, "
            f"got {type(value).__name__}"
        ) from None


def _describe(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def select_targets(
    model: nn.Module,
    targets: Pattern | Iterable[Pattern] | None = None,
    exclude: Pattern | Iterable[Pattern] | None = None,
) -> list[str]:
    """Full names of the parameters to project, in ``named_parameters`` order.

    Default: every floating-point parameter with two or more dimensions. A model may narrow the
    default by a ``hyperproj_targets`` attribute (a tuple of submodule names): then only
    parameters under those submodules are candidates. Every pattern in ``targets`` and
    ``exclude`` must match at least one parameter, else :class:`HyperprojError` lists the
    candidates.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 1))
        >>> select_targets(net, targets=[torch.nn.Linear])
        ['0.weight', '1.weight']
    """
    params = dict(model.named_parameters())
    owners = _owner_types(model)
    target_list = _as_list(targets, "targets")
    exclude_list = _as_list(exclude, "exclude") or []

    def hits_of(pattern: Pattern, what: str) -> list[str]:
        hits = [n for n, p in params.items() if _matches(pattern, n, p, owners[n])]
        if not hits:
            raise HyperprojError(
                f"hyperproj.reparametrize: {what} {pattern!r} matches no parameter of "
                f"{type(model).__name__}; candidates: {_describe(list(params))}"
            )
        return hits

    if target_list is None:
        prefixes = getattr(model, "hyperproj_targets", None)
        chosen = [
            n for n, p in params.items()
            if p.is_floating_point() and p.dim() >= 2
            and (prefixes is None or any(n == q or n.startswith(q + ".") for q in prefixes))
        ]
        if not chosen:
            raise HyperprojError(
                f"hyperproj.reparametrize: {type(model).__name__} has nothing to target: no "
                "floating-point parameter with 2 or more dimensions"
                + (f" under {tuple(prefixes)}" if prefixes is not None else "")
                + f". Parameters: {_describe(list(params)) or 'none'}. Pass targets=[...] to "
                "choose parameters by name."
            )
    else:
        if not target_list:
            raise HyperprojError("hyperproj.reparametrize: targets is an empty list")
        chosen_set = set()
        for pattern in target_list:
            chosen_set.update(hits_of(pattern, "target"))
        chosen = [n for n in params if n in chosen_set]

    for pattern in exclude_list:
        hits = hits_of(pattern, "exclude pattern")
        chosen = [n for n in chosen if n not in hits]

    if not chosen:
        raise HyperprojError(
            "hyperproj.reparametrize: targets minus exclude leaves nothing to project"
        )
    bad = [f"{n} ({params[n].dtype})" for n in chosen if not params[n].is_floating_point()]
    if bad:
        raise HyperprojError(
            "hyperproj.reparametrize: only floating-point parameters can be projected; "
            f"non-floating targets: {', '.join(bad)}"
        )
    return chosen
