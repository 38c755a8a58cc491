"""Modulated SIRENs: one shared base network, one small latent ``φ`` per signal.

Two ways for ``φ`` to change the shared base, both batched over signals (``latents`` of shape
``(B, d)`` give ``B`` different networks in one forward pass) and written as pure tensor code
(no in-place updates, no data-dependent Python control flow), so ``torch.func.vmap``,
``torch.func.grad`` and ``torch.func.functional_call`` work on them:

* :class:`ShiftSiren` (Functa, Dupont et al. 2022): every sine layer gets a per-signal shift,
  ``sin(ω·(W x + b + s_l))``, the shifts ``s = A φ + a`` linear in ``φ``.
* :class:`GatedSiren` (VC-INR, Schwarz et al. 2023): every hidden layer's weight is soft-gated
  entry by entry, ``sin(ω·((G_l ⊙ W_l) x + b_l))`` with ``G_l = σ(U_l V_lᵀ)``; the rank-``r``
  factors ``U_l, V_l`` come from ``φ`` through :class:`GateHypernet` (LayerNorm, linear layers,
  LeakyReLU, residual blocks).

Both models also hold what the meta-learner learns besides the weights — the latent
initialisation ``latent_init`` and the Meta-SGD per-dimension inner learning rates ``inner_lr``
— and the per-dimension entropy model of the latents (buffers ``latent_mean``, ``latent_scale``)
used by :mod:`hyperproj.modulation.coding`. Everything a receiver needs is in ``state_dict()``
plus :attr:`config`.

Examples:
    >>> net = GatedSiren(latent_dim=16, hidden_features=32, hidden_layers=2, rank=4)
    >>> coords = torch.rand(100, 2) * 2 - 1
    >>> net(coords, torch.randn(5, 16)).shape          # 5 signals, 100 points each, RGB
    torch.Size([5, 100, 3])
    >>> [g.shape for g in net.gates(torch.randn(5, 16))]
    [torch.Size([5, 32, 32]), torch.Size([5, 32, 32])]
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import HyperprojError
from ..inr.models import siren_init_
from ..model import HyperModel

__all__ = [
    "ModulatedSiren",
    "ShiftSiren",
    "GatedSiren",
    "GateHypernet",
    "ResidualBlock",
    "build_modulated",
    "modulated_of",
]


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HyperprojError(
            f"hyperproj.modulation.{owner}: {name} must be an int >= {minimum}, got {value!r}"
        )
    return value


def _check_pos(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise HyperprojError(
            f"hyperproj.modulation.{owner}: {name} must be a positive finite number, got {value!r}"
        )
    return float(value)


class ModulatedSiren(nn.Module):
    """Base class: a SIREN whose layers a per-signal latent modulates; see the subclasses.

    Layer convention as :class:`hyperproj.inr.Siren`: a first sine layer (``first_omega``),
    ``hidden_layers`` hidden sine layers (``hidden_omega``) and a linear last layer. Sine layers
    have SIREN's initialisation; two choices differ from :class:`~hyperproj.inr.Siren`, both
    measured on 32×32 patches (``benchmarks/modulations.py``, about +2 dB after the same short
    meta-training): ``first_omega`` defaults to 10 (a 32-pixel patch spans [−1, 1], where 30
    starts with needlessly high frequencies), and the last layer keeps ``nn.Linear``'s default
    U(±1/√h) instead of SIREN's U(±√(6/h)/ω), so the output moves on the images' own scale when
    a latent changes (with SIREN's head, a few inner steps cannot even reach a patch's mean
    colour). ``forward(coords, latents)`` accepts ``coords`` of shape ``(N, in)`` (shared
    by all signals) or ``(B, N, in)`` and ``latents`` of shape ``(B, d)`` (output
    ``(B, N, out)``) or ``(d,)`` (one signal, output ``(N, out)``).

    Besides the network, the module holds ``latent_init`` (the learned starting latent, a
    ``(d,)`` parameter), ``inner_lr`` (Meta-SGD's learned per-dimension inner learning rates,
    ``(d,)``, stored as the parameter ``log_inner_lr``) and the buffers ``latent_mean``/``latent_scale`` (per-dimension entropy model,
    fitted by :func:`hyperproj.modulation.fit_entropy_model`).

    Examples:
        >>> net = ShiftSiren(8, hidden_features=16, hidden_layers=1)
        >>> isinstance(net, ModulatedSiren), net.latent_dim, net.kind
        (True, 8, 'shift')
    """

    kind = "base"

    def __init__(
        self,
        latent_dim: int,
        hidden_features: int = 64,
        hidden_layers: int = 3,
        in_features: int = 2,
        out_features: int = 3,
        first_omega: float = 10.0,
        hidden_omega: float = 30.0,
        inner_lr: float = 1e-2,
    ):
        super().__init__()
        owner = type(self).__name__
        _check_int(owner, "latent_dim", latent_dim, 1)
        _check_int(owner, "hidden_features", hidden_features, 1)
        _check_int(owner, "hidden_layers", hidden_layers, 1)
        _check_int(owner, "in_features", in_features, 1)
        _check_int(owner, "out_features", out_features, 1)
        self.first_omega = _check_pos(owner, "first_omega", first_omega)
        self.hidden_omega = _check_pos(owner, "hidden_omega", hidden_omega)
        inner_lr = _check_pos(owner, "inner_lr", inner_lr)
        self.latent_dim = latent_dim
        self.in_features = in_features
        self.out_features = out_features
        self.hidden_features = hidden_features
        self.config: dict[str, Any] = {
            "latent_dim": latent_dim,
            "hidden_features": hidden_features,
            "hidden_layers": hidden_layers,
            "in_features": in_features,
            "out_features": out_features,
            "first_omega": self.first_omega,
            "hidden_omega": self.hidden_omega,
            "inner_lr": inner_lr,
        }
        self.first = nn.Linear(in_features, hidden_features)
        siren_init_(self.first, "first", self.first_omega)
        self.hidden = nn.ModuleList(nn.Linear(hidden_features, hidden_features) for _ in range(hidden_layers))
        for layer in self.hidden:
            siren_init_(layer, "hidden", self.hidden_omega)
        self.last = nn.Linear(hidden_features, out_features)  # nn.Linear's default init, see above
        self.latent_init = nn.Parameter(torch.zeros(latent_dim))
        self.log_inner_lr = nn.Parameter(torch.full((latent_dim,), math.log(inner_lr)))
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_scale", torch.ones(latent_dim))

    @property
    def inner_lr(self) -> torch.Tensor:
        """Meta-SGD's per-dimension inner learning rates ``α = exp(log_inner_lr)``, shape ``(d,)``.

        Stored as logarithms so they stay positive and Adam changes them by a factor per step
        (they span orders of magnitude across models).

        Examples:
            >>> round(ShiftSiren(3, hidden_features=4, hidden_layers=1, inner_lr=0.5).inner_lr[0].item(), 6)
            0.5
        """
        return self.log_inner_lr.exp()

    # -- input checks ---------------------------------------------------------------------------
    def _inputs(self, coords: torch.Tensor, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        owner = f"hyperproj.modulation.{type(self).__name__}"
        if not isinstance(coords, torch.Tensor) or not isinstance(latents, torch.Tensor):
            raise HyperprojError(
                f"{owner}: coords and latents must be tensors, got {type(coords).__name__} and "
                f"{type(latents).__name__}"
            )
        single = latents.dim() == 1
        if single:
            latents = latents.unsqueeze(0)
        if latents.dim() != 2 or latents.shape[-1] != self.latent_dim:
            raise HyperprojError(
                f"{owner}: latents must have shape (B, {self.latent_dim}) or ({self.latent_dim},), "
                f"got {tuple(latents.shape)}"
            )
        if coords.dim() not in (2, 3) or coords.shape[-1] != self.in_features:
            raise HyperprojError(
                f"{owner}: coords must have shape (N, {self.in_features}) or (B, N, "
                f"{self.in_features}), got {tuple(coords.shape)}"
            )
        if coords.dim() == 3 and coords.shape[0] != latents.shape[0]:
            raise HyperprojError(
                f"{owner}: coords (B, N, {self.in_features}) and latents (B, d) must agree on B, "
                f"got {coords.shape[0]} and {latents.shape[0]}"
            )
        return coords, latents, single

    def forward(self, coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, latent_dim={self.latent_dim}"


class ShiftSiren(ModulatedSiren):
    """SIREN with per-signal shift modulations (Functa): ``sin(ω·(W x + b + s_l))``.

    Every sine layer (the first and all hidden ones) is shifted; the last, linear layer is not.
    The shifts of all layers are one linear map of the latent, ``s = A φ + a`` (``A`` has
    ``nn.Linear``'s default init, ``a`` starts at zero; the latent starts at zero, so the initial
    network is a plain SIREN; a zero ``A`` would leave both ``A`` and ``φ`` without gradient). There are
    ``(hidden_layers + 1) * hidden_features`` shifts; a latent larger than that cannot add
    expressiveness (the map has rank at most the number of shifts).

    Examples:
        >>> net = ShiftSiren(16, hidden_features=32, hidden_layers=2)
        >>> net.num_shifts, net.shifts(torch.zeros(4, 16)).shape
        (96, torch.Size([4, 96]))
        >>> net(torch.zeros(10, 2), torch.zeros(16)).shape   # one signal
        torch.Size([10, 3])
    """

    kind = "shift"

    def __init__(self, latent_dim: int, hidden_features: int = 64, hidden_layers: int = 3, **kwargs: Any):
        super().__init__(latent_dim, hidden_features, hidden_layers, **kwargs)
        self.num_shifts = (hidden_layers + 1) * hidden_features
        self.to_shifts = nn.Linear(latent_dim, self.num_shifts)
        nn.init.zeros_(self.to_shifts.bias)

    def shifts(self, latents: torch.Tensor) -> torch.Tensor:
        """All layers' shifts ``(B, num_shifts)`` (first layer's, then each hidden layer's).

        Examples:
            >>> ShiftSiren(4, hidden_features=8, hidden_layers=1).shifts(torch.zeros(2, 4)).abs().sum().item()
            0.0
        """
        return self.to_shifts(latents)

    def forward(self, coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Outputs ``(B, N, out)`` for latents ``(B, d)``, or ``(N, out)`` for one latent ``(d,)``.

        Examples:
            >>> ShiftSiren(4, hidden_features=8, hidden_layers=1)(torch.zeros(3, 2), torch.zeros(2, 4)).shape
            torch.Size([2, 3, 3])
        """
        coords, latents, single = self._inputs(coords, latents)
        s = self.shifts(latents).unsqueeze(-2).split(self.hidden_features, dim=-1)  # each (B, 1, h)
        x = torch.sin(self.first_omega * (self.first(coords) + s[0]))
        for layer, shift in zip(self.hidden, s[1:]):
            x = torch.sin(self.hidden_omega * (layer(x) + shift))
        out = self.last(x)
        return out[0] if single else out


class ResidualBlock(nn.Module):
    """Pre-activation residual block ``x + L2(act(L1(act(x))))`` with LeakyReLU.

    Examples:
        >>> blk = ResidualBlock(8)
        >>> blk(torch.zeros(3, 8)).shape
        torch.Size([3, 8])
    """

    def __init__(self, width: int, negative_slope: float = 0.01):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.negative_slope = float(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(F.leaky_relu(x, self.negative_slope))
        return x + self.fc2(F.leaky_relu(h, self.negative_slope))


class GateHypernet(nn.Module):
    """``φ ↦`` rank-``r`` gate factors: LayerNorm, linear, residual LeakyReLU blocks, linear.

    ``forward(latents (B, d)) -> (B, out_features)``; :class:`GatedSiren` splits the output into
    the factors ``U_l, V_l`` of each gated layer.

    Examples:
        >>> hyper = GateHypernet(16, width=32, blocks=2, out_features=100)
        >>> hyper(torch.randn(4, 16)).shape
        torch.Size([4, 100])
    """

    def __init__(self, latent_dim: int, width: int, blocks: int, out_features: int, negative_slope: float = 0.01):
        super().__init__()
        self.norm = nn.LayerNorm(latent_dim)
        self.inp = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, negative_slope) for _ in range(blocks))
        self.out = nn.Linear(width, out_features)
        self.negative_slope = float(negative_slope)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.inp(self.norm(latents))
        for block in self.blocks:
            h = block(h)
        return self.out(F.leaky_relu(h, self.negative_slope))


class GatedSiren(ModulatedSiren):
    """SIREN with low-rank soft gating (VC-INR): ``sin(ω·((G_l ⊙ W_l) x + b_l))``, ``G_l = σ(U_l V_lᵀ)``.

    Gated layers: the ``hidden_layers`` hidden ``h × h`` layers. Not gated: the first layer
    (``h × in_features``, its rows are the frequencies every signal is built from: a shared
    frequency basis, and with two input columns a rank-``r`` gate would be no restriction at all)
    and the last, linear RGB layer (a per-signal colour mix adds little). Per signal, each gated
    layer costs ``2 h r`` hypernetwork outputs for ``h²`` gate entries.

    Because ``σ(0) = 1/2``, the hidden weights start at twice SIREN's bound, so the gated weights
    ``G ⊙ W`` start with about SIREN's scale. The hypernetwork's output bias starts as an
    N(0, rank^(-1/2)) draw so that ``U_l V_lᵀ`` is of order one (small factors would start at the
    saddle ``U = V = 0``, where gradients vanish). The latent starts as an N(0, 1) draw (the
    hypernetwork's LayerNorm needs a non-constant vector); all of it is meta-learned.

    Examples:
        >>> net = GatedSiren(32, hidden_features=16, hidden_layers=2, rank=3)
        >>> U, V = net.factors(torch.randn(4, 32))[0]
        >>> U.shape, V.shape
        (torch.Size([4, 16, 3]), torch.Size([4, 16, 3]))
        >>> int(torch.linalg.matrix_rank(U[0] @ V[0].T))
        3
    """

    kind = "gated"

    def __init__(
        self,
        latent_dim: int,
        hidden_features: int = 64,
        hidden_layers: int = 3,
        rank: int = 8,
        hyper_width: int = 128,
        hyper_blocks: int = 2,
        **kwargs: Any,
    ):
        super().__init__(latent_dim, hidden_features, hidden_layers, **kwargs)
        _check_int("GatedSiren", "rank", rank, 1)
        _check_int("GatedSiren", "hyper_width", hyper_width, 1)
        _check_int("GatedSiren", "hyper_blocks", hyper_blocks, 0)
        if rank > hidden_features:
            raise HyperprojError(
                f"hyperproj.modulation.GatedSiren: rank must be <= hidden_features ({hidden_features}), got {rank}"
            )
        self.config.update(rank=rank, hyper_width=hyper_width, hyper_blocks=hyper_blocks)
        self.rank = rank
        self.num_gated = hidden_layers
        per_layer = 2 * hidden_features * rank
        self.hypernet = GateHypernet(latent_dim, hyper_width, hyper_blocks, per_layer * hidden_layers)
        with torch.no_grad():
            for layer in self.hidden:
                layer.weight.mul_(2.0)
                layer.hyperproj_init = {**layer.hyperproj_init, "gain": 2.0}  # for reparametrize
            # U, V entries of size ~rank^(-1/4), so U Vᵀ is O(1): with tiny factors the gates sit
            # at the saddle U = V = 0, where the gradient of U Vᵀ in either factor vanishes.
            self.hypernet.out.bias.normal_(0.0, rank**-0.25)
            self.latent_init.normal_()

    def factors(self, latents: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per gated layer, ``(U_l, V_l)``, each ``(B, h, rank)`` (or ``(h, rank)`` for ``(d,)``).

        Examples:
            >>> net = GatedSiren(8, hidden_features=6, hidden_layers=1, rank=2)
            >>> [u.shape for u, _ in net.factors(torch.randn(8))]
            [torch.Size([6, 2])]
        """
        raw = self.hypernet(latents)
        h, r = self.hidden_features, self.rank
        out = []
        for chunk in raw.split(2 * h * r, dim=-1):
            u, v = chunk.split(h * r, dim=-1)
            out.append((u.unflatten(-1, (h, r)), v.unflatten(-1, (h, r))))
        return out

    def gates(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Per gated layer, ``G_l = σ(U_l V_lᵀ)`` of shape ``(B, h, h)`` (entries in (0, 1)).

        Examples:
            >>> g = GatedSiren(8, hidden_features=6, hidden_layers=1, rank=2).gates(torch.randn(3, 8))[0]
            >>> g.shape, bool(((g > 0) & (g < 1)).all())
            (torch.Size([3, 6, 6]), True)
        """
        return [torch.sigmoid(u @ v.transpose(-1, -2)) for u, v in self.factors(latents)]

    def forward(self, coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Outputs ``(B, N, out)`` for latents ``(B, d)``, or ``(N, out)`` for one latent ``(d,)``.

        Examples:
            >>> net = GatedSiren(8, hidden_features=6, hidden_layers=1, rank=2)
            >>> net(torch.zeros(5, 2), torch.randn(2, 8)).shape
            torch.Size([2, 5, 3])
        """
        coords, latents, _single = self._inputs(coords, latents)
        gates = self.gates(latents)  # each (B, h, h)
        x = torch.sin(self.first_omega * self.first(coords))  # (N, h) or (B, N, h)
        if x.dim() == 2:
            x = x.expand(latents.shape[0], *x.shape)
        for layer, gate in zip(self.hidden, gates):
            weight = gate * layer.weight  # (B, h, h)
            x = torch.sin(self.hidden_omega * (x @ weight.transpose(-1, -2) + layer.bias))
        out = self.last(x)
        return out[0] if _single else out


_KINDS = {"shift": ShiftSiren, "gated": GatedSiren}


def build_modulated(kind: str, config: dict[str, Any]) -> ModulatedSiren:
    """Build a model from its ``kind`` (``"shift"`` or ``"gated"``) and its :attr:`config` dict.

    Examples:
        >>> net = GatedSiren(8, hidden_features=6, hidden_layers=1, rank=2)
        >>> build_modulated(net.kind, net.config).config == net.config
        True
    """
    if kind not in _KINDS:
        raise HyperprojError(
            f"hyperproj.modulation.build_modulated: kind must be one of {sorted(_KINDS)}, got {kind!r}"
        )
    if not isinstance(config, dict):
        raise HyperprojError(
            f"hyperproj.modulation.build_modulated: config must be a dict, got {type(config).__name__}"
        )
    try:
        return _KINDS[kind](**config)
    except TypeError as err:
        raise HyperprojError(f"hyperproj.modulation.build_modulated: bad config for {kind!r}: {err}") from None


def modulated_of(model: Any, where: str = "modulated_of") -> ModulatedSiren:
    """The :class:`ModulatedSiren` of ``model``: the model itself, or the one a D'OH base wraps.

    Every function of :mod:`hyperproj.modulation` accepts either a plain modulated SIREN or one
    whose shared base was reparametrized with D'OH, ``hyperproj.reparametrize(net, n, seed)``
    (then every weight matrix of the base — SIREN layers and modulation network — is ``B_l z``
    and the base file holds only ``z``, the biases and the small per-dimension vectors). The
    attributes that describe the modulation (``latent_dim``, ``latent_init``, ``inner_lr``, the
    entropy model) are read from the returned module; the forward pass goes through ``model``.

    Examples:
        >>> import hyperproj
        >>> net = ShiftSiren(8, hidden_features=16, hidden_layers=1)
        >>> modulated_of(net) is net
        True
        >>> doh = hyperproj.reparametrize(net, latent_dim=100, seed=0)
        >>> modulated_of(doh).latent_dim, doh.latent_dim   # modulation latent, D'OH latent
        (8, 100)
    """
    if isinstance(model, ModulatedSiren):
        return model
    if isinstance(model, HyperModel) and isinstance(model.base, ModulatedSiren):
        if model._groups is not None:
            raise HyperprojError(
                f"hyperproj.modulation.{where}: a D'OH base with groups= is not supported; "
                "reparametrize the modulated SIREN without groups"
            )
        return model.base
    inner = f" wrapping {type(model.base).__name__}" if isinstance(model, HyperModel) else ""
    raise HyperprojError(
        f"hyperproj.modulation.{where}: model must be a ShiftSiren or GatedSiren, or a "
        f"hyperproj.reparametrize'd one (a D'OH base), got {type(model).__name__}{inner}"
    )
