"""Model registry: store an architecture as JSON (a name and constructor arguments), never pickle.

Every model class of :mod:`hyperproj.inr` registers itself with :func:`register_model` and records
its constructor arguments in ``self.config``; :func:`model_spec` reads them back and
:func:`build_model` rebuilds a fresh (randomly initialised) model from the spec. Your own model
class can join by doing the same.

Examples:
    >>> from hyperproj.inr import Siren, model_spec, build_model
    >>> spec = model_spec(Siren(2, 16, 1, 3))
    >>> spec["name"], spec["config"]["hidden_features"]
    ('siren', 16)
    >>> type(build_model(spec)).__name__
    'Siren'
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from .._errors import HyperprojError

__all__ = ["register_model", "model_spec", "build_model", "model_names"]

_MODELS: dict[str, type[nn.Module]] = {}
M = TypeVar("M", bound=type[nn.Module])


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator registering a model class under ``name`` for :func:`build_model`.

    The class must accept its ``config`` dict as keyword arguments and keep it in
    ``self.config`` (JSON-able values only).

    Examples:
        >>> import torch
        >>> @register_model("tiny-linear")
        ... class TinyLinear(torch.nn.Linear):
        ...     def __init__(self, n: int = 2):
        ...         super().__init__(n, n)
        ...         self.config = {"n": n}
        >>> build_model({"name": "tiny-linear", "config": {"n": 3}}).weight.shape
        torch.Size([3, 3])
    """
    if not isinstance(name, str) or not name:
        raise HyperprojError(f"hyperproj.inr.register_model: name must be a non-empty string, got {name!r}")

    def deco(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise HyperprojError(
                f"hyperproj.inr.register_model({name!r}): expected an nn.Module subclass, got {cls!r}"
            )
        old = _MODELS.get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise HyperprojError(
                f"hyperproj.inr.register_model: name {name!r} is already taken by {old.__qualname__}"
            )
        _MODELS[name] = cls
        cls.hyperproj_model_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def model_names() -> list[str]:
    """Names of all registered models.

    Examples:
        >>> {"siren", "mlp", "incode", "fourier-features"} <= set(model_names())
        True
    """
    return sorted(_MODELS)


def _unwrap(model: nn.Module) -> nn.Module:
    """The registered model inside ``model`` (the model itself, or a wrapper's base module)."""
    if getattr(type(model), "hyperproj_model_name", None) in _MODELS:
        return model
    for attr in ("base", "base_model", "module"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and inner is not model:
            return _unwrap(inner)
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "config": {...}}`` describing ``model``'s architecture; JSON-able.

    A wrapper holding the registered model as ``.base`` / ``.base_model`` / ``.module`` (e.g. a
    ``HyperModel``) is unwrapped to that model.

    Examples:
        >>> import json
        >>> from hyperproj.inr import MLP
        >>> json.dumps(model_spec(MLP(2, 8, 1, 1, activation="gelu")))[:40]
        '{"name": "mlp", "config": {"in_features"'
    """
    inner = _unwrap(model)
    name = getattr(type(inner), "hyperproj_model_name", None)
    if name not in _MODELS:
        raise HyperprojError(
            f"hyperproj.inr.model_spec: {type(model).__name__} is not a registered model; "
            f"decorate its class with @hyperproj.inr.register_model(name). Known: {model_names()}"
        )
    config = getattr(inner, "config", None)
    if not isinstance(config, Mapping):
        raise HyperprojError(
            f"hyperproj.inr.model_spec: {type(inner).__name__} must keep its constructor arguments "
            f"in a dict attribute 'config'; found {type(config).__name__}"
        )
    spec = {"name": name, "config": dict(config)}
    try:
        # Round trip through JSON so tuples become lists exactly as a reader will see them.
        return json.loads(json.dumps(spec))
    except (TypeError, ValueError) as err:
        raise HyperprojError(
            f"hyperproj.inr.model_spec: config of {name!r} is not JSON-able: {err}"
        ) from None


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """A fresh model from a spec made by :func:`model_spec` (weights are newly initialised).

    Examples:
        >>> from hyperproj.inr import Siren
        >>> build_model({"name": "siren", "config": {"in_features": 2, "hidden_features": 8,
        ...              "hidden_layers": 1, "out_features": 1}}).config["first_omega"]
        30.0
    """
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise HyperprojError(
            f"hyperproj.inr.build_model: spec must be a dict with 'name' and 'config', got {spec!r}"
        )
    name = spec["name"]
    config = spec.get("config", {})
    if name not in _MODELS:
        close = difflib.get_close_matches(str(name), model_names(), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise HyperprojError(
            f"hyperproj.inr.build_model: unknown model name {name!r}; known models: {model_names()}.{hint}"
        )
    if not isinstance(config, Mapping):
        raise HyperprojError(
            f"hyperproj.inr.build_model: spec['config'] for {name!r} must be a dict, got {type(config).__name__}"
        )
    cls = _MODELS[name]
    try:
        inspect.signature(cls).bind(**config)
    except TypeError as err:
        raise HyperprojError(
            f"hyperproj.inr.build_model: config for {name!r} does not fit {cls.__name__}: {err}"
        ) from None
    return cls(**config)
