"""``HyperModel``: a module whose targeted weights are ``B z`` for one shared trainable latent.

The HyperModel owns the single ``latent`` Parameter, the wrapped module with its targeted weights
removed (its biases and other parameters stay its own, trainable), and a projection operator
rebuilt from the seed. ``forward`` generates all weights with one projection call and runs the
wrapped module through :func:`torch.func.functional_call` (see DESIGN.md for why this beats
``torch.nn.utils.parametrize``).

Examples:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    >>> hyper = reparametrize(net, latent_dim=20, seed=7)
    >>> hyper(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    >>> hyper.num_trainable  # 20 latent values + the two biases (16 + 1)
    37
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from . import rng
from ._errors import HyperprojError
from .init_rules import RuleSpec, resolve_variances
from .projection import DEFAULT_DENSE_CAP_BYTES, make_projection, projection_adjoint, resolve_kind
from .targets import Pattern, select_targets

__all__ = ["HyperModel", "reparametrize", "FORMAT_VERSION", "LATENT_SCALES"]

#: Version of the configuration dict stored by ``get_extra_state`` and in exports.
FORMAT_VERSION = 1

#: Latent parameterisations: ``"paper"`` draws z0 ~ U(±1/n) as in the D'OH paper; ``"unit"``
#: draws z0 ~ U(±√3) (unit variance) and folds the scale into ``B``. Same function class; with
#: ``"unit"`` one learning rate works for every latent size (see docs/concepts.md).
#: ``"offset"`` (intrinsic-dimension style, Li et al. 2018): ``W_l = W0_l + (1/√n) R_l z`` with
#: ``W0 = B z0`` the unit parameterisation's initial weights (regenerated from the seed, never
#: stored) and ``z`` starting at 0: every layer then moves like plain Adam moves it, which
#: learns several dB faster per step (docs/concepts.md).
LATENT_SCALES = ("unit", "paper", "offset")

#: ``latent_scale="auto"`` (the default) picks ``"offset"`` when the latent has at least this share
#: of the projected weights, else ``"unit"``: below it the frozen random ``W0`` is more than the
#: latent can cancel (measured, docs/concepts.md: kodim01 at 256 px with a 6 % latent, 8.1 dB
#: offset vs 19.7 dB unit), above it offset learns several dB faster per step.
OFFSET_MIN_SHARE = 0.3


def resolve_latent_scale(latent_scale: str, latent_dim: int, projected: int, grouped: bool = False) -> str:
    """The concrete parameterisation for ``latent_scale`` (``"auto"`` resolved; see
    :data:`OFFSET_MIN_SHARE`). Partitioned latents (``groups=``) resolve ``"auto"`` to ``"unit"``.

    Examples:
        >>> resolve_latent_scale("auto", 3000, 10000), resolve_latent_scale("auto", 1000, 10000)
        ('offset', 'unit')
    """
    if latent_scale == "auto":
        return "offset" if not grouped and latent_dim >= OFFSET_MIN_SHARE * projected else "unit"
    if latent_scale not in LATENT_SCALES:
        raise HyperprojError(
            f"hyperproj.reparametrize: latent_scale must be 'auto' or one of {LATENT_SCALES}, "
            f"got {latent_scale!r}"
        )
    return latent_scale

_LATENT_STREAM = 0

#: Learning-rate multiplier of a unit-scale latent relative to the other parameters. Measured
#: (docs/concepts.md): Adam on a unit latent learns best at lr ~3e-2 for every latent size,
#: while SIREN biases and plain weights want ~1e-3; 30 pairs with fit's default lr 1e-3.
DEFAULT_LATENT_LR_SCALE = 30.0


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        rng_text = f"[{low}, {high})" if high is not None else f">= {low}"
        raise HyperprojError(
            f"hyperproj.reparametrize: {name} must be an int {rng_text}, "
            f"got {type(value).__name__} {value!r}"
        )
    if value < low or (high is not None and value >= high):
        rng_text = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise HyperprojError(f"hyperproj.reparametrize: {name} must be an int {rng_text}, got {value}")
    return value


def initial_latent(latent_dim: int, seed: int, latent_scale: str) -> torch.Tensor:
    """The initial latent ``z0`` (float32), regenerated from the seed on both ends of a file.

    Examples:
        >>> z = initial_latent(1000, seed=0, latent_scale="paper")
        >>> bool(z.abs().max() < 1 / 1000)
        True
    """
    if latent_scale == "paper":
        bound = 1.0 / latent_dim
    elif latent_scale in ("unit", "offset"):  # offset: the z0 that generates W0
        bound = math.sqrt(3.0)
    else:
        raise HyperprojError(
            f"hyperproj.reparametrize: latent_scale must be one of {LATENT_SCALES}, "
            f"got {latent_scale!r}"
        )
    return rng.uniform(seed, _LATENT_STREAM, 0, latent_dim, low=-bound, high=bound)


class _GeneratedWeights(torch.autograd.Function):
    """``z ↦ (W_1, ..., W_L)``, every generated weight in its shape, as **one** autograd node.

    The generic path builds a projection node, a split node and one view node per layer; their
    Python bookkeeping costs ~0.2 ms per training step on a 10-layer SIREN, a fifth of fastfood's
    whole overhead at batch 1,024 (``benchmarks/projection_speed.py``). Used for projections with
    an exact ``adjoint`` (fastfood): the backward concatenates the layer gradients and applies
    the adjoint once. That backward is made of differentiable calls (``torch.cat``, the gain, the
    projection's own ``adjoint`` node), so double backward stays exact; ``jvp`` applies the
    projection to the tangent, and ``vmap`` is generated.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(z, hyper):
        return hyper._split_flat(hyper._flat_weights(z))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.hyper = inputs[1]

    @staticmethod
    def backward(ctx, *grads):
        hyper = ctx.hyper
        lead = grads[0].shape[: grads[0].dim() - len(hyper._shapes[0])]
        flat = torch.cat([g.reshape(*lead, -1) for g in grads], dim=-1)
        if hyper._gain_vector is not None:
            flat = flat * hyper._gain_vector
        return hyper.projection.adjoint(flat), None

    @staticmethod
    def jvp(ctx, tangent, _hyper):
        hyper = ctx.hyper
        flat = hyper.projection(tangent)
        if hyper._gain_vector is not None:
            flat = flat * hyper._gain_vector
        return hyper._split_flat(flat)


class HyperModel(nn.Module):
    """A wrapped module whose targeted weights are generated as ``B z`` from one latent.

    Build it with :func:`reparametrize`. Attributes: ``latent`` (the Parameter), ``base`` (the
    wrapped module without its targeted weights), ``projection`` (the operator ``B``),
    ``target_names``, ``seed``.

    ``state_dict()`` holds the latent, the untargeted parameters and the config (``_extra_state``).
    ``load_state_dict`` restores a model built by the same ``reparametrize`` call exactly; a state
    dict saved from a model with another ``latent_dim``, ``seed``, ``projection``,
    ``latent_scale``, ``distribution`` or ``groups`` is refused with one :class:`HyperprojError`
    that lists every differing field and the matching call. (:meth:`load_config` adopts the
    stored seed, projection, distribution and latent scale instead.)

    Examples:
        >>> hyper = reparametrize(torch.nn.Linear(8, 4), latent_dim=10, seed=1)
        >>> sorted(name for name, _ in hyper.named_parameters())
        ['base.bias', 'latent']
        >>> same = reparametrize(torch.nn.Linear(8, 4), latent_dim=10, seed=1)
        >>> same.load_state_dict(hyper.state_dict())
        <All keys matched successfully>
        >>> other = reparametrize(torch.nn.Linear(8, 4), latent_dim=12, seed=2)
        >>> try:
        ...     other.load_state_dict(hyper.state_dict())
        ... except hyperproj.HyperprojError as err:
        ...     print(err)
        hyperproj.HyperModel.load_state_dict: the state dict comes from a HyperModel built with other settings (latent_dim: stored 10, this model 12; seed: stored 1, this model 2). Build the model with the stored settings before loading: hyperproj.reparametrize(base, latent_dim=10, seed=1, projection='dense', latent_scale='offset')
    """

    def __init__(
        self,
        base: nn.Module,
        latent_dim: int,
        seed: int = 0,
        *,
        targets: Pattern | Iterable[Pattern] | None = None,
        exclude: Pattern | Iterable[Pattern] | None = None,
        init: RuleSpec | Mapping[str, RuleSpec] = "auto",
        projection: str = "auto",
        distribution: str = "uniform",
        latent_scale: str = "auto",
        latent_lr_scale: float | None = None,
        dense_cap_bytes: int = DEFAULT_DENSE_CAP_BYTES,
        copy_base: bool = True,
        groups: str | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Module):
            raise HyperprojError(
                f"hyperproj.reparametrize: model must be an nn.Module, got {type(base).__name__}"
            )
        if isinstance(base, HyperModel):
            raise HyperprojError("hyperproj.reparametrize: model is already a HyperModel")
        latent_dim = _check_int(latent_dim, "latent_dim", 1)
        seed = _check_int(seed, "seed", 0, 1 << 63)
        resolve_latent_scale(latent_scale, 1, 1)  # validates the name before any work
        base = copy.deepcopy(base) if copy_base else base

        names = select_targets(base, targets, exclude)
        rules = resolve_variances(base, names, init)
        params = [base.get_parameter(n) for n in names]
        shapes = [tuple(p.shape) for p in params]
        sizes = [p.numel() for p in params]
        total = sum(sizes)
        latent_scale = resolve_latent_scale(latent_scale, latent_dim, total, groups is not None)
        if latent_dim > total:
            warnings.warn(
                f"hyperproj.reparametrize: latent_dim={latent_dim} exceeds the {total} projected "
                "weights: the latent has more values than the weights it generates",
                stacklevel=3,
            )

        self._groups = None  # groups="partition": one latent per partition (see _groups.py)
        if groups is not None:
            from ._groups import make_plan

            self._groups = make_plan(base, names, shapes, groups, latent_dim, latent_scale)
            latent_dim = self._groups.latent_dim
            z0 = self._groups.initial_latent(seed, latent_scale)
            scales = self._groups.scales([var for var, _ in rules], seed, latent_scale)
        else:
            z0 = initial_latent(latent_dim, seed, latent_scale)
            z_norm = float(z0.double().norm())
            scales = [math.sqrt(var) / z_norm for var, _ in rules]

        # Aliases: tied parameters appear under several names; each alias gets the same tensor.
        aliases: dict[str, list[str]] = {n: [] for n in names}
        by_id = {id(p): n for n, p in zip(names, params)}
        for full, p in base.named_parameters(remove_duplicate=False):
            if id(p) in by_id:
                aliases[by_id[id(p)]].append(full)
        for full in (a for group in aliases.values() for a in group):
            prefix, _, leaf = full.rpartition(".")
            owner = base.get_submodule(prefix) if prefix else base
            del owner._parameters[leaf]

        self.base = base
        self.seed = seed
        self.latent_scale = latent_scale
        if latent_lr_scale is None:
            latent_lr_scale = DEFAULT_LATENT_LR_SCALE if latent_scale == "unit" else 1.0
        self._z0 = z0
        self.latent_lr_scale = float(latent_lr_scale)
        self.target_names = list(names)
        self._aliases = aliases
        self._alias_names = [a for group in aliases.values() for a in group]
        self._shapes = shapes
        self._rules = [label for _, label in rules]
        start = torch.zeros_like(z0) if latent_scale == "offset" else z0
        self.latent = nn.Parameter(start.to(device=params[0].device, dtype=params[0].dtype))
        if self._groups is not None:
            self.projection = self._groups.make_projection(projection, sizes, scales, seed, distribution, dense_cap_bytes)
        else:
            kind = resolve_kind(projection, latent_dim, total, dense_cap_bytes, distribution)
            self.projection = make_projection(kind, latent_dim, sizes, scales, seed, distribution)
        self.projection.to(device=params[0].device, dtype=params[0].dtype)
        self._fingerprint: list[float] | None = None
        self._weight_grad_capture = False
        self._weight_grad_owner = None  # weakref to the WeightSpaceAdam that switched capture on
        self.weight_grad: torch.Tensor | None = None
        self._rebuild_offset()

    def _rebuild_offset(self) -> None:
        """For ``latent_scale="offset"``: ``W0 = B z0`` and each layer's update gain ``1/(√n s_l)``."""
        if self.latent_scale != "offset":
            self.register_buffer("offset_weights", None, persistent=False)
            self.register_buffer("_gain_vector", None, persistent=False)
            self._gains = None
            return
        with torch.no_grad():
            z0 = self._z0.to(device=self.latent.device, dtype=self.latent.dtype)
            w0 = self.projection(z0).detach()
        self.register_buffer("offset_weights", w0, persistent=False)
        n = self.latent_dim
        self._gains = [1.0 / (math.sqrt(n) * s) for s in self.projection.layer_scales]
        sizes = torch.tensor([b - a for a, b in zip(self.projection.offsets, self.projection.offsets[1:])])
        gain_vec = torch.repeat_interleave(torch.tensor(self._gains, dtype=torch.float64), sizes)
        self.register_buffer("_gain_vector", gain_vec.to(w0.dtype), persistent=False)

    # ------------------------------------------------------------------ generation and forward
    @property
    def latent_dim(self) -> int:
        return self.projection.latent_dim

    @property
    def num_projected(self) -> int:
        """``P``: how many weights the latent generates."""
        return self.projection.num_outputs

    @property
    def num_trainable(self) -> int:
        """Trainable values: the latent plus every untargeted trainable parameter."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def compression_ratio(self) -> float:
        """Parameters of the plain model divided by trainable values of the HyperModel."""
        return (self.num_projected + self.num_trainable - self.latent_dim) / self.num_trainable

    def generate_weights(self, latent: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The generated weights ``{name: B_l z}`` (every alias of a tied weight included).

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> hyper.generate_weights()["weight"].shape
            torch.Size([2, 3])
        """
        z = self.latent if latent is None else latent
        if (latent is None and not self._weight_grad_capture and torch.is_grad_enabled()
                and callable(getattr(self.projection, "adjoint", None))
                and not torch.compiler.is_compiling()):
            return self._alias_dict(_GeneratedWeights.apply(z, self))
        if latent is None and self._weight_grad_capture and torch.is_grad_enabled():
            # weight-space optimizers (hyperproj.WeightSpaceAdam): the generated weights are a leaf
            # whose gradient is collected here; nothing flows back through the projection
            with torch.no_grad():
                flat = self._flat_weights(z)
            flat.requires_grad_(True)
            flat.register_hook(self._collect_weight_grad)
        else:
            flat = self._flat_weights(z)
        return self._alias_dict(self._split_flat(flat))

    def _split_flat(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The flat ``(..., P)`` weights as one tensor per target, in its shape (views)."""
        offsets = self.projection.offsets
        # one split (its backward is one concatenation, not a zero-filled copy per layer)
        parts = flat.split([b - a for a, b in zip(offsets, offsets[1:])], dim=-1)
        lead = flat.shape[:-1]
        return tuple(w.reshape(*lead, *shape) for w, shape in zip(parts, self._shapes))

    def _alias_dict(self, parts: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for name, w in zip(self.target_names, parts):
            for alias in self._aliases[name]:
                out[alias] = w
        return out

    def _flat_weights(self, z: torch.Tensor) -> torch.Tensor:
        flat = self.projection(z)
        if self.offset_weights is not None:  # W0 + gain_l · B_l z for all layers in one op
            flat = torch.addcmul(self.offset_weights, flat, self._gain_vector)
        return flat

    def _collect_weight_grad(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        self.weight_grad = g.clone() if self.weight_grad is None else self.weight_grad.add_(g)

    def capture_weight_grads(self, enabled: bool = True) -> None:
        """Collect ``dL/dW`` (all generated weights, flattened) in :attr:`weight_grad` instead of
        back-propagating into the latent; for optimizers that work in weight space
        (:class:`hyperproj.WeightSpaceAdam` switches it on). ``latent.grad`` stays ``None`` then.

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> hyper.capture_weight_grads()
            >>> hyper(torch.ones(3)).sum().backward()
            >>> hyper.weight_grad.shape, hyper.latent.grad
            (torch.Size([6]), None)
        """
        self._weight_grad_capture = bool(enabled)
        self.weight_grad = None

    def latent_vjp(self, grad_weights: torch.Tensor) -> torch.Tensor:
        """``Jᵀ g``: the latent gradient that a flattened weight gradient ``g`` (shape ``(P,)``, or
        ``(..., P)`` for several at once; layers in :attr:`target_names` order) back-propagates to,
        without autograd's graph.

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> hyper.latent_vjp(torch.ones(6)).shape
            torch.Size([4])
        """
        g = grad_weights
        if self._gain_vector is not None:
            g = g * self._gain_vector
        return projection_adjoint(self.projection, g)

    def latent_jvp(self, latent_direction: torch.Tensor) -> torch.Tensor:
        """``J v``: how the flattened generated weights (shape ``(P,)``, layers in
        :attr:`target_names` order) move per unit step of the latent along ``v`` — the adjoint of
        :meth:`latent_vjp`; without autograd's graph.

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> v, g = torch.randn(4), torch.randn(6)
            >>> bool(torch.isclose(hyper.latent_jvp(v) @ g, v @ hyper.latent_vjp(g), rtol=1e-4))
            True
        """
        with torch.no_grad():
            flat = self.projection(latent_direction)
        if self._gain_vector is not None:
            flat = flat * self._gain_vector
        return flat

    def forward(self, *args, **kwargs):
        return self.call_with_weights(self.generate_weights(), *args, **kwargs)

    def call_with_weights(self, weights: Mapping[str, torch.Tensor], *args, **kwargs):
        """Run the wrapped module with already generated ``weights`` (from :meth:`generate_weights`).

        For loops that run the base several times with the same weights (e.g. a meta-learning
        inner loop) and so generate them once. Semantics of :func:`torch.func.functional_call`
        (composes with ``vmap``/``grad``; under ``torch.compile`` it is that call); eagerly the
        generated tensors are set on their modules directly and removed afterwards, which saves
        ~0.4 ms per call on a 10-layer SIREN (``benchmarks/projection_speed.py``), a fifth of
        fastfood's overhead at batch 1,024.

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> w = hyper.generate_weights()
            >>> torch.equal(hyper.call_with_weights(w, torch.ones(3)), hyper(torch.ones(3)))
            True
        """
        if torch.compiler.is_compiling():
            return torch.func.functional_call(self.base, dict(weights), args, kwargs)
        slots = []
        try:
            for name in self._alias_names:
                owner, leaf = self._owner_of(name)
                setattr(owner, leaf, weights[name])  # Module.__setattr__, as functional_call does
                slots.append((owner, leaf))
            return self.base(*args, **kwargs)
        finally:
            for owner, leaf in slots:
                delattr(owner, leaf)

    def _owner_of(self, name: str) -> tuple[nn.Module, str]:
        """The submodule holding parameter ``name`` and the leaf name, walked anew on every call
        (submodules may be replaced after wrapping) through ``_modules`` directly: ~10x cheaper
        than ``get_submodule``, which is used for the error when the path no longer exists."""
        *path, leaf = name.split(".")
        owner = self.base
        try:
            for part in path:
                owner = owner._modules[part]
        except KeyError:
            owner = self.base.get_submodule(".".join(path))
        if owner is None:
            raise HyperprojError(f"hyperproj.HyperModel: submodule {'.'.join(path)!r} of the wrapped module is None")
        return owner, leaf

    def call_with_latent(self, latent: torch.Tensor, *args, **kwargs):
        """Run the wrapped module with weights generated from another ``latent``.

        Composes with :func:`torch.func.vmap` to run several signals through one template.

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> zs = torch.randn(5, 4)
            >>> torch.func.vmap(lambda z: hyper.call_with_latent(z, torch.ones(3)))(zs).shape
            torch.Size([5, 2])
        """
        return self.call_with_weights(self.generate_weights(latent), *args, **kwargs)

    def optimizer_param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Parameter groups for an optimizer: the latent at ``lr * latent_lr_scale``, the rest at ``lr``.

        Used by :func:`hyperproj.fit`; handy for hand-written loops too.

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> opt = torch.optim.Adam(hyper.optimizer_param_groups(1e-3))
        """
        others = [p for n, p in self.named_parameters() if n != "latent" and p.requires_grad]
        groups = [{"params": [self.latent], "lr": lr * self.latent_lr_scale}]
        if others:
            groups.append({"params": others, "lr": lr})
        return groups

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def materialize(self) -> nn.Module:
        """A plain copy of the wrapped module with dense weights ``B z`` (like PEFT's merge).

        Examples:
            >>> hyper = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
            >>> plain = hyper.materialize()
            >>> torch.allclose(plain(torch.ones(3)), hyper(torch.ones(3)))
            True
        """
        plain = copy.deepcopy(self.base)
        weights = self.generate_weights()
        shared: dict[str, nn.Parameter] = {}
        for name in self.target_names:
            shared[name] = nn.Parameter(weights[name].detach().clone())
            for alias in self._aliases[name]:
                prefix, _, leaf = alias.rpartition(".")
                owner = plain.get_submodule(prefix) if prefix else plain
                owner.register_parameter(leaf, shared[name])
        return plain

    def fingerprint(self) -> list[float]:
        """A few generated values of ``B`` (for ``z = 1``), stored in exports and checked on load."""
        if self._fingerprint is None:
            self._fingerprint = self.projection.fingerprint()
        return list(self._fingerprint)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild ``B`` (JSON-able): kinds, seed, versions, layer scales.

        Examples:
            >>> cfg = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=5).config()
            >>> cfg["seed"], cfg["latent_dim"], cfg["targets"][0]["name"]
            (5, 4, 'weight')
        """
        cfg = {
            "format_version": FORMAT_VERSION,
            "generator_version": rng.GENERATOR_VERSION,
            "latent_dim": self.latent_dim,
            "seed": self.seed,
            "projection": self.projection.kind,
            "distribution": self.projection.distribution,
            "latent_scale": self.latent_scale,
            "targets": [
                {"name": n, "shape": list(s), "scale": sc, "rule": r}
                for n, s, sc, r in zip(
                    self.target_names, self._shapes, self.projection.layer_scales, self._rules
                )
            ],
            "fingerprint": self.fingerprint(),
        }
        if self._groups is not None:
            cfg["groups"] = self._groups.spec()
        return cfg

    def get_extra_state(self) -> dict[str, Any]:
        return self.config()

    def set_extra_state(self, state: Any) -> None:
        self.load_config(state, adopt=False)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Check the stored config before torch compares the latent's shape or copies anything:
        # the user sees which settings differ (not a size mismatch) and the model stays untouched.
        key = prefix + "_extra_state"
        if key in state_dict:
            self._check_config(self._parse_config(state_dict[key]), adopt=False)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    #: Settings a state dict must share with the model it is loaded into (``load_state_dict``);
    #: :meth:`load_config` adopts those after ``latent_dim`` and ``groups``.
    _SETTINGS = ("latent_dim", "groups", "seed", "projection", "distribution", "latent_scale")
    _ADOPTABLE = ("seed", "projection", "distribution", "latent_scale")

    def _settings(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "groups": None if self._groups is None else self._groups.spec(),
            "seed": self.seed,
            "projection": self.projection.kind,
            "distribution": self.projection.distribution,
            "latent_scale": self.latent_scale,
        }

    def _parse_config(self, cfg: Any) -> dict[str, Any]:
        """Validate a stored config (versions, targets, fields) without changing anything."""
        where = "hyperproj HyperModel config"
        if not isinstance(cfg, Mapping):
            raise HyperprojError(f"{where}: expected a dict, got {type(cfg).__name__}")
        try:
            version = cfg["format_version"]
            if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
                raise HyperprojError(
                    f"{where}: format_version {version!r} is not supported (this hyperproj reads "
                    f"1..{FORMAT_VERSION}); upgrade hyperproj"
                )
            if cfg["generator_version"] != rng.GENERATOR_VERSION:
                raise HyperprojError(
                    f"{where}: generator_version {cfg['generator_version']!r} differs from this "
                    f"hyperproj's {rng.GENERATOR_VERSION}: B cannot be regenerated identically"
                )
            theirs = [(t["name"], tuple(t["shape"])) for t in cfg["targets"]]
            ours = list(zip(self.target_names, self._shapes))
            if theirs != ours:
                raise HyperprojError(
                    f"{where}: targets differ: stored {theirs}, this model has {ours}"
                )
            parsed = {name: cfg[name] for name in self._SETTINGS if name != "groups"}
            parsed["groups"] = cfg.get("groups")
            parsed["scales"] = [float(t["scale"]) for t in cfg["targets"]]
            parsed["fingerprint"] = cfg.get("fingerprint")
        except KeyError as err:
            raise HyperprojError(f"{where}: missing field {err.args[0]!r}") from None
        except TypeError as err:
            raise HyperprojError(f"{where}: malformed field: {err}") from None
        parsed["seed"] = _check_int(parsed["seed"], "seed", 0, 1 << 63)
        return parsed

    def _check_config(self, parsed: Mapping[str, Any], adopt: bool) -> None:
        """One error listing every setting of ``parsed`` that differs and may not be adopted."""
        mine = self._settings()
        fixed = [n for n in self._SETTINGS if not (adopt and n in self._ADOPTABLE)]
        differ = [n for n in fixed if parsed[n] != mine[n]]
        if not differ:
            return
        listing = "; ".join(f"{n}: stored {parsed[n]!r}, this model {mine[n]!r}" for n in differ)
        call = [f"latent_dim={parsed['latent_dim']}", f"seed={parsed['seed']}",
                f"projection={parsed['projection']!r}", f"latent_scale={parsed['latent_scale']!r}"]
        if parsed["distribution"] != "uniform" or "distribution" in differ:
            call.append(f"distribution={parsed['distribution']!r}")
        if parsed["groups"] is not None or "groups" in differ:
            call.append(f"groups={parsed['groups']!r}")
        if adopt:
            where, what = "hyperproj.HyperModel.load_config", "the config"
        else:
            where, what = "hyperproj.HyperModel.load_state_dict", "the state dict"
        raise HyperprojError(
            f"{where}: {what} comes from a HyperModel built with other settings ({listing}). "
            f"Build the model with the stored settings before loading: "
            f"hyperproj.reparametrize(base, {', '.join(call)})"
        )

    def load_config(self, cfg: Mapping[str, Any], *, adopt: bool = True) -> None:
        """Load a stored configuration (as :meth:`config` returns it) and verify ``B``'s fingerprint.

        The targets' names and shapes, ``latent_dim`` and ``groups`` must equal this model's.
        With ``adopt=True`` (the default, used by the file decoders) the stored ``seed``,
        ``projection``, ``distribution`` and ``latent_scale`` are adopted and ``B`` is rebuilt
        from them. With ``adopt=False`` — what ``load_state_dict`` uses — any difference in those
        settings is refused with one :class:`HyperprojError` that lists every differing field and
        the ``reparametrize`` call that builds a matching model. Per-layer scales (set by the
        init rule) are adopted in both modes.

        Examples:
            >>> a = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=5)
            >>> b = reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=6)
            >>> try:
            ...     b.load_config(a.config(), adopt=False)  # as load_state_dict does
            ... except hyperproj.HyperprojError as err:
            ...     print("seed: stored 5, this model 6" in str(err))
            True
            >>> b.load_config(a.config())  # adopts seed 5: B and z0 are rebuilt from it
            >>> b.seed, b.fingerprint() == a.fingerprint()
            (5, True)
        """
        parsed = self._parse_config(cfg)
        self._check_config(parsed, adopt)
        kind, seed, dist = parsed["projection"], parsed["seed"], parsed["distribution"]
        latent_scale, scales, stored_fp = parsed["latent_scale"], parsed["scales"], parsed["fingerprint"]
        p = self.projection
        if (kind, seed, dist, scales) != (p.kind, p.seed, p.distribution, p.layer_scales):
            if self._groups is not None:
                new = self._groups.make_projection(kind, p.layer_sizes, scales, seed, dist)
            else:
                new = make_projection(kind, self.latent_dim, p.layer_sizes, scales, seed, dist)
            self.projection = new.to(device=self.latent.device, dtype=self.latent.dtype)
            self._fingerprint = None
        if seed != self.seed or latent_scale != self.latent_scale:
            self._z0 = (
                initial_latent(self.latent_dim, seed, latent_scale) if self._groups is None
                else self._groups.initial_latent(seed, latent_scale)
            )
        self.seed = seed
        self.latent_scale = latent_scale
        self._rebuild_offset()
        if stored_fp is not None:
            mine = self.fingerprint()
            if [float(v) for v in stored_fp] != mine:
                raise HyperprojError(
                    f"hyperproj HyperModel config: fingerprint of B {list(stored_fp)} does not "
                    f"match the regenerated {mine}: the file was written by a different generator "
                    "or projection"
                )

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        base = repr(self.base).replace("\n", "\n  ")
        layers = ", ".join(self.target_names[:6]) + (
            f", ... ({len(self.target_names)} layers)" if len(self.target_names) > 6 else ""
        )
        return (
            f"HyperModel(latent_dim={self.latent_dim}, seed={self.seed}, "
            f"projection={self.projection.kind}, latent_scale={self.latent_scale},\n"
            f"  targets: {layers}\n"
            f"  {self.num_projected:,} projected weights from {self.latent_dim:,} latent values; "
            f"trainable {self.num_trainable:,} (compression ×{self.compression_ratio:.2f})\n"
            f"  base: {base}\n)"
        )


def reparametrize(model: nn.Module, latent_dim: int, seed: int = 0, **options: Any) -> HyperModel:
    """Wrap ``model`` so that every targeted weight is ``B_l z`` for one shared latent ``z``.

    Args:
        model: any ``nn.Module``. It is deep-copied (pass ``copy_base=False`` to adopt it).
        latent_dim: ``n``, the size of the trainable latent.
        seed: integer in ``[0, 2**63)``; ``B`` and ``z0`` are regenerated from it.
        **options: ``targets`` / ``exclude`` (parameter-name patterns — exact, dotted suffix or
            regex — or module types), ``init`` (rule name, ``{pattern: rule}``, callable, or
            ``"auto"``), ``projection`` (``"auto"``, ``"dense"``, ``"streamed"``, ...),
            ``distribution`` of ``B``'s entries, ``latent_scale`` (``"auto"``, the default:
            ``"offset"`` — ``W = W0 + R z/√n`` with ``z`` from 0, which trains like the plain
            network — when ``latent_dim`` is at least 30 % of the projected weights, else
            ``"unit"``; ``"paper"`` is the D'OH paper's ``z0 ~ U(±1/n)``), ``latent_lr_scale``
            (the latent's learning-rate multiplier in
            :meth:`HyperModel.optimizer_param_groups`; default 30 for a unit latent, 1 for the
            others), ``dense_cap_bytes``, ``groups`` (``"partition"`` for a partitioned model
            such as :class:`hyperproj.inr.LocalGlobal`: one latent per partition plus one for the
            shared weights, so the model can be cropped; see :mod:`hyperproj._groups`).

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
        >>> hyper = reparametrize(net, latent_dim=50, seed=7, init="he")
        >>> hyper(torch.randn(4, 2)).shape
        torch.Size([4, 3])
    """
    return HyperModel(model, latent_dim, seed, **options)
