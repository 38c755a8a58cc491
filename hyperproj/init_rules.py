"""Initialisation rules: the variance each projected weight should start with.

A rule maps an :class:`InitContext` (module, parameter, role among the targets, options) to a
target variance. ``reparametrize`` then scales each layer's rows of ``B`` so that ``B z0`` has
exactly that variance given the actual initial latent ``z0``.

Rules register by decorator, like opacus' grad samplers::

    @hyperproj.register_init_rule("half-torch")
    def half_torch(ctx):
        return 0.5 * hyperproj.init_rules.get_rule("torch")(ctx)

Built in: ``siren`` (and ``siren-doh``, the D'OH paper's hidden-layer variant), ``he`` /
``kaiming``, ``xavier`` / ``glorot``, ``torch`` (PyTorch's default for the layer type) and
``match`` (the variance the wrapped weight has now — exact for any module).

A module may declare its own rule with an attribute ``hyperproj_init = {"rule": name, "role":
..., **options}``; ``init="auto"`` uses it and falls back to ``torch``.

Examples:
    >>> lin = torch.nn.Linear(10, 5)
    >>> ctx = InitContext(lin, "weight", "weight", lin.weight, role="hidden")
    >>> round(get_rule("torch")(ctx), 6)  # U(±1/sqrt(fan_in)) has variance 1/(3 fan_in)
    0.033333
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._errors import HyperprojError
from .targets import name_matches

__all__ = [
    "InitContext",
    "register_init_rule",
    "get_rule",
    "init_rule_names",
    "resolve_variances",
    "fans",
]

ROLES = ("first", "hidden", "last")


@dataclass
class InitContext:
    """What a rule sees: the owning module, the parameter and its role among the targets."""

    module: nn.Module
    param_name: str
    full_name: str
    param: torch.Tensor
    role: str = "hidden"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> torch.Size:
        return self.param.shape


InitRule = Callable[[InitContext], float]
_RULES: dict[str, InitRule] = {}


def register_init_rule(name: str, *aliases: str) -> Callable[[InitRule], InitRule]:
    """Decorator registering ``fn(ctx) -> variance`` under ``name`` (and ``aliases``).

    Examples:
        >>> @register_init_rule("tiny")
        ... def tiny(ctx):
        ...     return 1e-4
        >>> "tiny" in init_rule_names()
        True
    """

    def deco(fn: InitRule) -> InitRule:
        for key in (name, *aliases):
            _RULES[key] = fn
        return fn

    return deco


def init_rule_names() -> list[str]:
    """All registered rule names (plus ``"auto"``, which is resolved per module).

    Examples:
        >>> {"siren", "he", "xavier", "torch", "match"} <= set(init_rule_names())
        True
    """
    return sorted(set(_RULES) | {"auto"})


def get_rule(name: str) -> InitRule:
    """The rule registered under ``name``; unknown names raise with the list of known ones.

    Examples:
        >>> get_rule("glorot") is get_rule("xavier")
        True
    """
    try:
        return _RULES[name]
    except (KeyError, TypeError):
        raise HyperprojError(
            f"hyperproj: unknown init rule {name!r}; known rules: {init_rule_names()}"
        ) from None


def fans(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) with PyTorch's convention: dim 1 × receptive field, dim 0 × receptive.

    Examples:
        >>> fans((16, 3, 3, 3))
        (27, 144)
    """
    if len(shape) < 2:
        raise HyperprojError(f"hyperproj: fan-based init rules need >= 2 dims, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(ctx: InitContext, mode: str) -> int:
    fan_in, fan_out = fans(ctx.shape)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise HyperprojError(
        f"hyperproj: init option mode for {ctx.full_name} must be 'fan_in' or 'fan_out', got {mode!r}"
    )


@register_init_rule("siren")
def siren_rule(ctx: InitContext) -> float:
    """SIREN (Sitzmann et al.): first layer U(±1/fan_in); others U(±sqrt(6/fan_in)/omega).

    Options: ``omega`` (default 30) and ``gain`` (default 1), which multiplies the bound (a layer
    initialised at twice SIREN's bound declares ``gain=2``).
    """
    omega = float(ctx.options.get("omega", 30.0))
    gain = float(ctx.options.get("gain", 1.0))
    fan_in, _ = fans(ctx.shape)
    if ctx.role == "first":
        return gain**2 / (3.0 * fan_in**2)
    return gain**2 * 2.0 / (fan_in * omega**2)


@register_init_rule("siren-doh", "siren_doh")
def siren_doh_rule(ctx: InitContext) -> float:
    """D'OH paper variant: first layer as SIREN; others U(±1/(omega·sqrt(fan_in)))."""
    omega = float(ctx.options.get("omega", 30.0))
    fan_in, _ = fans(ctx.shape)
    if ctx.role == "first":
        return 1.0 / (3.0 * fan_in**2)
    return 1.0 / (3.0 * omega**2 * fan_in)


@register_init_rule("he", "kaiming")
def he_rule(ctx: InitContext) -> float:
    """He/Kaiming: gain²/fan (uniform and normal variants have the same variance).

    Options: ``mode`` ("fan_in"/"fan_out"), ``nonlinearity`` (default "relu"), ``a``.
    """
    mode = ctx.options.get("mode", "fan_in")
    nonlinearity = ctx.options.get("nonlinearity", "relu")
    try:
        gain = nn.init.calculate_gain(nonlinearity, ctx.options.get("a", 0.0))
    except ValueError as err:
        raise HyperprojError(f"hyperproj: he init for {ctx.full_name}: {err}") from None
    return gain**2 / _fan(ctx, mode)


@register_init_rule("xavier", "glorot")
def xavier_rule(ctx: InitContext) -> float:
    """Xavier/Glorot: gain² · 2 / (fan_in + fan_out). Option ``gain`` (default 1)."""
    gain = float(ctx.options.get("gain", 1.0))
    fan_in, fan_out = fans(ctx.shape)
    return gain**2 * 2.0 / (fan_in + fan_out)


_MHA_XAVIER = {"in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"}


@register_init_rule("torch")
def torch_rule(ctx: InitContext) -> float:
    """PyTorch's default initialisation variance for the owning layer type."""
    mod, name = ctx.module, ctx.param_name
    if isinstance(mod, nn.Embedding):
        return 1.0
    if isinstance(mod, nn.MultiheadAttention) and name in _MHA_XAVIER:
        return xavier_rule(InitContext(mod, name, ctx.full_name, ctx.param, ctx.role))
    if isinstance(mod, nn.Bilinear):
        return 1.0 / (3.0 * ctx.shape[1])
    if isinstance(mod, nn.RNNBase):
        return 1.0 / (3.0 * mod.hidden_size)
    # Linear, Conv*, ConvTranspose* and anything else weight-like: kaiming_uniform(a=sqrt(5)),
    # i.e. U(±1/sqrt(fan_in)).
    fan_in, _ = fans(ctx.shape)
    return 1.0 / (3.0 * fan_in)


@register_init_rule("match")
def match_rule(ctx: InitContext) -> float:
    """The variance the wrapped weight has right now (exact for any module)."""
    var = float(ctx.param.detach().double().var(unbiased=False)) if ctx.param.numel() > 1 else 0.0
    if not var > 0.0:
        raise HyperprojError(
            f"hyperproj: init rule 'match' cannot handle {ctx.full_name}: its current values have "
            "zero variance; choose another rule for it (e.g. init={'" + ctx.full_name + "': 'torch'})"
        )
    return var


RuleSpec = str | InitRule | tuple[str, Mapping[str, Any]] | Mapping[str, Any]


def _call_rule(spec: RuleSpec, ctx: InitContext) -> tuple[float, str]:
    """Evaluate a rule spec; returns (variance, description for the config)."""
    if callable(spec) and not isinstance(spec, (str, Mapping)):
        label = getattr(spec, "__name__", "callable")
        fn = spec
    else:
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, tuple) and len(spec) == 2:
            name, options = spec[0], dict(spec[1])
        elif isinstance(spec, Mapping):
            options = dict(spec)
            name = options.pop("rule", None)
        else:
            raise HyperprojError(
                f"hyperproj: init rule for {ctx.full_name} must be a name, (name, options), a "
                f"dict with 'rule', or a callable; got {spec!r}"
            )
        if "role" in options:
            role = options.pop("role")
            if role not in ROLES:
                raise HyperprojError(
                    f"hyperproj: init role for {ctx.full_name} must be one of {ROLES}, got {role!r}"
                )
            ctx.role = role
        ctx.options = {**ctx.options, **options}
        fn = get_rule(name)
        label = name
    try:
        var = fn(ctx)
    except HyperprojError as err:
        if ctx.full_name in str(err):
            raise
        raise HyperprojError(
            f"hyperproj: init rule {label!r} cannot handle {ctx.full_name} "
            f"({type(ctx.module).__name__}, shape {tuple(ctx.shape)}): {err}"
        ) from None
    except Exception as err:  # a rule that cannot handle this layer
        raise HyperprojError(
            f"hyperproj: init rule {label!r} cannot handle {ctx.full_name} "
            f"({type(ctx.module).__name__}, shape {tuple(ctx.shape)}): {err}"
        ) from err
    try:
        var = float(var)
    except (TypeError, ValueError):
        raise HyperprojError(
            f"hyperproj: init rule {label!r} returned {var!r} for {ctx.full_name}; expected a float"
        ) from None
    if not (math.isfinite(var) and var > 0.0):
        raise HyperprojError(
            f"hyperproj: init rule {label!r} returned variance {var} for {ctx.full_name}; "
            "expected a finite positive number"
        )
    return var, label


def _auto_spec(module: nn.Module) -> RuleSpec:
    declared = getattr(module, "hyperproj_init", None)
    return dict(declared) if declared is not None else "torch"


def resolve_variances(
    model: nn.Module, names: list[str], init: RuleSpec | Mapping[str, RuleSpec] = "auto"
) -> list[tuple[float, str]]:
    """Target variance and rule label for each parameter in ``names`` (in order).

    Roles default to position among the targets: the first target is ``"first"``, the last is
    ``"last"`` and the rest ``"hidden"``; a module's declared ``hyperproj_init`` role wins.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
        >>> [round(v, 5) for v, _ in resolve_variances(net, ["0.weight", "1.weight"], "xavier")]
        [0.16667, 0.2]
    """
    k = len(names)
    out = []
    for i, full in enumerate(names):
        prefix, _, leaf = full.rpartition(".")
        module = model.get_submodule(prefix) if prefix else model
        role = "first" if i == 0 else ("last" if i == k - 1 else "hidden")
        ctx = InitContext(module, leaf, full, model.get_parameter(full), role)
        if isinstance(init, Mapping) and "rule" not in init:
            spec: RuleSpec = "auto"
            for pattern, rule in init.items():
                if name_matches(pattern, full):
                    spec = rule
                    break
        else:
            spec = init
        if spec == "auto":
            spec = _auto_spec(module)
        out.append(_call_rule(spec, ctx))
    if isinstance(init, Mapping) and "rule" not in init:
        for pattern in init:
            if not any(name_matches(pattern, n) for n in names):
                raise HyperprojError(
                    f"hyperproj: init pattern {pattern!r} matches no projected parameter; "
                    f"projected: {names}"
                )
    return out
