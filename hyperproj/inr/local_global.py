"""Croppable Local-Global INRs (Ashkenazi & Treister, NeurIPS 2024): :class:`LocalGlobal`,
:func:`crop` and :func:`extend`.

The input domain (``bounds``, default ``[-1, 1]`` per coordinate) is split into a grid of
``partition_factors`` cells. Each cell (a *partition*) owns a small local SIREN; all local
sub-networks live in one weight tensor per layer, shape ``(partitions, fan_in, fan_out)``, run by
one batched matmul. A global SIREN sees the whole domain; at each level a merge layer shared by
all partitions computes ``sin(ω·(concat[local, global]·W + b))``; a final local linear layer
gives the output. Coordinates stay global.

Because a partition's output depends only on its own local weights and on the shared global and
merge weights, removing the partitions outside a box (:func:`crop`) leaves the outputs inside it
exactly unchanged, and the parameter count drops in proportion.

Partitions are identified by their *original index*: the row-major index of their cell in the
full grid. A cropped model keeps the original indices of the partitions it holds (``config
["partitions"]`` as ``[start, stop)`` runs), so :func:`hyperproj.reparametrize` with
``groups="partition"`` regenerates the same random matrices for them.

Examples:
    >>> net = LocalGlobal(2, 3, partition_factors=(4, 4), local_features=8, global_features=16)
    >>> x = torch.rand(100, 2) * 2 - 1
    >>> small = crop(net, ((-1, -1), (0, 0)))         # keep the lower-left quarter
    >>> small.num_partitions, net.num_partitions
    (4, 16)
    >>> inside = x[(x < 0).all(dim=1)]
    >>> torch.equal(small(inside), net(inside))
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .._errors import HyperprojError
from ..init_rules import InitContext, register_init_rule
from .models import SineLayer, _check_float, _check_int
from .registry import register_model

__all__ = ["LocalGlobal", "crop", "extend", "auto_partition_factors"]

ACTIVATIONS = ("siren", "incode")


@register_init_rule("local-siren")
def local_siren_rule(ctx: InitContext) -> float:
    """SIREN's variance for a batched local weight of shape ``(partitions, fan_in, fan_out)``.

    First layer U(±1/fan_in); others U(±sqrt(6/fan_in)/omega) (option ``omega``, default 30).

    Examples:
        >>> lin = torch.nn.Linear(1, 1)
        >>> ctx = InitContext(lin, "weight", "weight", torch.zeros(4, 10, 8), role="first")
        >>> round(local_siren_rule(ctx), 6)   # (1/10)**2 / 3
        0.003333
    """
    if len(ctx.shape) != 3:
        raise HyperprojError(
            f"hyperproj: init rule 'local-siren' expects a (partitions, fan_in, fan_out) weight, "
            f"got shape {tuple(ctx.shape)} for {ctx.full_name}"
        )
    fan_in = ctx.shape[1]
    omega = float(ctx.options.get("omega", 30.0))
    if ctx.role == "first":
        return 1.0 / (3.0 * fan_in**2)
    return 2.0 / (fan_in * omega**2)


def auto_partition_factors(shape: Sequence[int], partition_size: Sequence[int]) -> tuple[int, ...]:
    """Partition factors giving cells of about ``partition_size`` samples: ``ceil(shape / size)``.

    Examples:
        >>> auto_partition_factors((512, 768), (32, 32))
        (16, 24)
    """
    shape, size = list(shape), list(partition_size)
    if len(shape) != len(size) or not shape:
        raise HyperprojError(
            f"hyperproj.inr.auto_partition_factors: shape {shape} and partition_size {size} must be "
            "non-empty and of the same length"
        )
    for name, vals in (("shape", shape), ("partition_size", size)):
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
            raise HyperprojError(
                f"hyperproj.inr.auto_partition_factors: {name} must hold positive ints, got {vals}"
            )
    return tuple(math.ceil(n / s) for n, s in zip(shape, size))


def _runs(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as ``[start, stop)`` runs."""
    out: list[list[int]] = []
    for i in sorted(set(int(i) for i in ids)):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def _ids(runs: Any, total: int) -> list[int]:
    """Partition ids from ``[start, stop)`` runs (``None`` = all), validated."""
    if runs is None:
        return list(range(total))
    ok = isinstance(runs, (list, tuple)) and all(
        isinstance(r, (list, tuple)) and len(r) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in r) and 0 <= r[0] < r[1] <= total
        for r in runs
    )
    ids = [i for r in runs for i in range(r[0], r[1])] if ok else []
    if not ok or not ids or ids != sorted(set(ids)):
        raise HyperprojError(
            "hyperproj.inr.LocalGlobal: partitions must be None or sorted, disjoint [start, stop) runs "
            f"of partition indices in [0, {total}), got {runs!r}"
        )
    return ids


class _LocalLinear(nn.Module):
    """``partitions`` independent linear maps: ``weight`` (K, fan_in, fan_out), ``bias`` flat (K·fan_out,).

    The bias is kept flat so that ``hyperproj.reparametrize`` (which targets parameters with two or
    more dimensions) leaves it a trainable bias by default.
    """

    def __init__(self, partitions: int, fan_in: int, fan_out: int, role: str, omega: float):
        super().__init__()
        self.fan_in, self.fan_out = fan_in, fan_out
        self.weight = nn.Parameter(torch.empty(partitions, fan_in, fan_out))
        self.bias = nn.Parameter(torch.empty(partitions * fan_out))
        bound = 1.0 / fan_in if role == "first" else math.sqrt(6.0 / fan_in) / omega
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        self.hyperproj_init = {"rule": "local-siren", "role": role, "omega": float(omega)}

    def forward(self, x: torch.Tensor, slots: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        w, b = self.weight, self.bias.view(-1, 1, self.fan_out)
        if mask is not None:  # gradient only for the trainable partitions; values unchanged
            w = w.detach() + (w - w.detach()) * mask.view(-1, 1, 1)
            b = b.detach() + (b - b.detach()) * mask.view(-1, 1, 1)
        if slots is not None:
            w, b = w.index_select(0, slots), b.index_select(0, slots)
        return torch.baddbmm(b, x, w)

    def extra_repr(self) -> str:
        return f"partitions={self.weight.shape[0] if 'weight' in self._parameters else '?'}, fan_in={self.fan_in}, fan_out={self.fan_out}"


@register_model("local-global")
class LocalGlobal(nn.Module):
    """Local-Global SIREN: one local SIREN per partition, a global SIREN, shared merge layers.

    Args:
        in_features: coordinate dimensions (2 for images, 1 for audio, 3 for video).
        out_features: output channels.
        partition_factors: cells per coordinate, e.g. ``(16, 16)`` for images, ``(32,)`` for
            audio, ``(5, 8, 8)`` for video; or ``"auto"`` with ``partition_size`` and
            ``signal_shape`` (``ceil(signal_shape / partition_size)`` cells).
        local_features: hidden width of each local sub-network (the paper: 14 for images).
        global_features: hidden width of the global SIREN (the paper: 84 for images); ``0``
            gives SIREN-per-partition (no global network, no merge layers).
        hidden_layers: hidden layers after the first, as in :class:`Siren` (the paper: 3).
        first_omega: SIREN frequency of the first layers (local and global).
        hidden_omega: SIREN frequency of the other layers.
        bounds: ``(lower_corner, upper_corner)`` of the partitioned domain (default ``[-1, 1]``
            per coordinate); points outside fall into the nearest cell.
        partitions: the partitions this model holds, as ``[start, stop)`` runs of original
            (row-major) indices; ``None`` = all. Set by :func:`crop` and :func:`extend`.
        activation: ``"siren"`` (``sin(ω·z)``) or ``"incode"`` (INCODE's ``a·sin(b·ω·z + c) + d``
            with learnable ``a = exp(a')``, ``b = exp(b')``, ``c``, ``d`` for the local, global
            and merge layers; no harmonizer network — they are trained directly).
        partition_size: samples per cell for ``partition_factors="auto"``.
        signal_shape: the signal's samples per coordinate for ``partition_factors="auto"``.

    The parameter layout: ``local.i.weight`` (partitions, fan_in, fan_out), ``local.i.bias``
    (partitions · fan_out,) for the ``hidden_layers + 2`` local layers; ``global_net``
    (:class:`SineLayer` s) and ``merge`` (:class:`SineLayer` s) shared by all partitions.

    Examples:
        >>> net = LocalGlobal(2, 3)                        # the paper's image model
        >>> net.num_partitions, sum(p.numel() for p in net.parameters())
        (256, 210768)
        >>> net(torch.zeros(5, 2)).shape
        torch.Size([5, 3])
        >>> audio = LocalGlobal(1, 1, partition_factors=(32,), local_features=16, global_features=32)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        partition_factors: Sequence[int] | str = (16, 16),
        local_features: int = 14,
        global_features: int = 84,
        hidden_layers: int = 3,
        first_omega: float = 30.0,
        hidden_omega: float = 30.0,
        bounds: Sequence[Sequence[float]] | None = None,
        partitions: Sequence[Sequence[int]] | None = None,
        activation: str = "siren",
        partition_size: Sequence[int] | None = None,
        signal_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        who = "LocalGlobal"
        _check_int(who, "in_features", in_features, 1)
        _check_int(who, "out_features", out_features, 1)
        _check_int(who, "local_features", local_features, 1)
        _check_int(who, "global_features", global_features, 0)
        _check_int(who, "hidden_layers", hidden_layers, 0)
        first_omega = _check_float(who, "first_omega", first_omega)
        hidden_omega = _check_float(who, "hidden_omega", hidden_omega)
        if partition_factors == "auto":
            if partition_size is None or signal_shape is None:
                raise HyperprojError(
                    "hyperproj.inr.LocalGlobal: partition_factors='auto' needs partition_size and "
                    "signal_shape (e.g. partition_size=(32, 32), signal_shape=(512, 512))"
                )
            partition_factors = auto_partition_factors(signal_shape, partition_size)
        factors = list(partition_factors) if isinstance(partition_factors, (list, tuple)) else None
        if (
            factors is None or len(factors) != in_features
            or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in factors)
        ):
            raise HyperprojError(
                f"hyperproj.inr.LocalGlobal: partition_factors must be {in_features} positive ints "
                f"(one per input coordinate) or 'auto', got {partition_factors!r}"
            )
        if activation not in ACTIVATIONS:
            raise HyperprojError(
                f"hyperproj.inr.LocalGlobal: activation must be one of {ACTIVATIONS}, got {activation!r}"
            )
        if bounds is None:
            lo, hi = [-1.0] * in_features, [1.0] * in_features
        else:
            try:
                lo, hi = [float(v) for v in bounds[0]], [float(v) for v in bounds[1]]
                bad = len(bounds) != 2 or len(lo) != in_features or len(hi) != in_features
            except (TypeError, ValueError, IndexError):
                bad = True
            if bad or not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(lo, hi)):
                raise HyperprojError(
                    f"hyperproj.inr.LocalGlobal: bounds must be (lower_corner, upper_corner) with "
                    f"{in_features} finite numbers each and lower < upper, got {bounds!r}"
                )
        total = math.prod(factors)
        ids = _ids(partitions if partitions is None else [list(r) for r in partitions], total)
        self.config: dict[str, Any] = {
            "in_features": in_features,
            "out_features": out_features,
            "partition_factors": factors,
            "local_features": local_features,
            "global_features": global_features,
            "hidden_layers": hidden_layers,
            "first_omega": first_omega,
            "hidden_omega": hidden_omega,
            "bounds": None if bounds is None else [lo, hi],
            "partitions": None if len(ids) == total else _runs(ids),
            "activation": activation,
        }
        self.in_features, self.out_features = in_features, out_features
        self.partition_ids = ids
        self.num_partitions_total = total
        k, w, g = len(ids), local_features, global_features
        widths = [in_features] + [w] * (hidden_layers + 1) + [out_features]
        roles = ["first"] + ["hidden"] * hidden_layers + ["last"]
        self.local = nn.ModuleList(
            _LocalLinear(k, widths[i], widths[i + 1], roles[i], first_omega if i == 0 else hidden_omega)
            for i in range(len(roles))
        )
        self.omegas = [first_omega] + [hidden_omega] * hidden_layers
        if g:
            self.global_net = nn.ModuleList(
                [SineLayer(in_features, g, first_omega, "first")]
                + [SineLayer(g, g, hidden_omega, "hidden") for _ in range(hidden_layers)]
            )
            self.merge = nn.ModuleList(SineLayer(w + g, w, hidden_omega, "hidden") for _ in range(hidden_layers + 1))
        else:
            self.global_net, self.merge = None, None
        if activation == "incode":  # raw (a', b', c, d) for local, global, merge; flat: stays a bias
            self.coefficients = nn.Parameter(torch.zeros(12))
        else:
            self.coefficients = None
        factors_t = torch.tensor(factors, dtype=torch.int64)
        strides = [math.prod(factors[i + 1 :]) for i in range(in_features)]
        slot_of = torch.full((total,), -1, dtype=torch.int64)
        slot_of[torch.tensor(ids, dtype=torch.int64)] = torch.arange(k)
        self.register_buffer("_lower", torch.tensor(lo, dtype=torch.float64), persistent=False)
        self.register_buffer("_cells_per_unit", factors_t.double() / (torch.tensor(hi, dtype=torch.float64) - self._lower), persistent=False)
        self.register_buffer("_factors", factors_t, persistent=False)
        self.register_buffer("_strides", torch.tensor(strides, dtype=torch.int64), persistent=False)
        self.register_buffer("_slot_of", slot_of, persistent=False)
        self.register_buffer("_trainable", None, persistent=False)
        self.freeze_shared = False

    # ---------------------------------------------------------------------------- partitions
    @property
    def num_partitions(self) -> int:
        """Partitions this model holds (after cropping: fewer than the grid's)."""
        return len(self.partition_ids)

    def partition_parameters(self) -> dict[str, int]:
        """Every per-partition parameter's name and its size per partition (leading axis).

        The protocol :func:`hyperproj.reparametrize` with ``groups="partition"`` and the codec's
        crop rely on. Names are listed even where a wrapper removed the tensor.

        Examples:
            >>> LocalGlobal(1, 1, (4,), local_features=3, global_features=0, hidden_layers=0).partition_parameters()
            {'local.0.weight': 3, 'local.0.bias': 3, 'local.1.weight': 3, 'local.1.bias': 1}
        """
        out = {}
        for i, layer in enumerate(self.local):
            out[f"local.{i}.weight"] = layer.fan_in * layer.fan_out
            out[f"local.{i}.bias"] = layer.fan_out
        return out

    def cell_of(self, coords: torch.Tensor) -> torch.Tensor:
        """Original (row-major) partition index of each point ``(N, in_features)``; outside points clamp.

        Examples:
            >>> LocalGlobal(2, 1, (2, 2), 4, 4).cell_of(torch.tensor([[-0.5, -0.5], [-0.5, 0.5], [0.9, 0.9]])).tolist()
            [0, 1, 3]
        """
        cell = ((coords.double() - self._lower) * self._cells_per_unit).floor().long()
        cell = torch.minimum(cell.clamp_min(0), self._factors - 1)
        return (cell * self._strides).sum(-1)

    def cell_box(self, ids: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper corners ``(len(ids), in_features)`` of the cells ``ids`` (default: held ones).

        Examples:
            >>> lo, hi = LocalGlobal(2, 1, (2, 2), 4, 4).cell_box([3])
            >>> lo.tolist(), hi.tolist()
            ([[0.0, 0.0]], [[1.0, 1.0]])
        """
        ids_t = torch.tensor(self.partition_ids if ids is None else list(ids), dtype=torch.int64)
        cell = (ids_t[:, None] // self._strides.cpu()) % self._factors.cpu()
        size = 1.0 / self._cells_per_unit.cpu()
        lo = self._lower.cpu() + cell.double() * size
        return lo, lo + size

    def cells_in_box(self, box: Any, where: str = "hyperproj.inr.crop") -> list[int]:
        """Original indices of every grid cell overlapping ``box = (lower_corner, upper_corner)``.

        Examples:
            >>> LocalGlobal(2, 1, (4, 4), 4, 4).cells_in_box(((-1, -1), (0, -0.5)))
            [0, 4]
        """
        d = self.in_features
        try:
            lo_b = [float(v) for v in box[0]]
            hi_b = [float(v) for v in box[1]]
            ok = len(box) == 2 and len(lo_b) == d and len(hi_b) == d
        except (TypeError, ValueError, IndexError):
            ok = False
        if not ok or not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(lo_b, hi_b)):
            raise HyperprojError(
                f"{where}: box must be (lower_corner, upper_corner) with {d} finite coordinates each "
                f"and lower < upper in every coordinate, got {box!r}"
            )
        lo, hi = self.cell_box(range(self.num_partitions_total))
        size = 1.0 / self._cells_per_unit.cpu()
        overlap = torch.minimum(hi, torch.tensor(hi_b, dtype=torch.float64)) - torch.maximum(
            lo, torch.tensor(lo_b, dtype=torch.float64)
        )
        inside = (overlap > 1e-9 * size).all(dim=1)
        return inside.nonzero().flatten().tolist()

    # ---------------------------------------------------------------------------- forward
    def _coefficient_sets(self) -> list[torch.Tensor | None]:
        if self.coefficients is None:
            return [None, None, None]
        raw = self.coefficients.view(3, 4)
        act = torch.cat([raw[:, :2].exp(), raw[:, 2:]], dim=1)
        return list(act.unbind(0))

    @staticmethod
    def _sine(z: torch.Tensor, omega: float, abcd: torch.Tensor | None) -> torch.Tensor:
        if abcd is None:
            return torch.sin(omega * z)
        return abcd[0] * torch.sin((abcd[1] * omega) * z + abcd[2]) + abcd[3]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        lead = coords.shape[:-1]
        x = coords.reshape(-1, coords.shape[-1])
        if x.shape[-1] != self.in_features:
            raise HyperprojError(
                f"hyperproj.inr.LocalGlobal: coords must have {self.in_features} coordinates in the "
                f"last dimension, got shape {tuple(coords.shape)}"
            )
        n, k = x.shape[0], self.num_partitions
        slot = self._slot_of[self.cell_of(x)]
        if n and bool((slot < 0).any()):
            raise HyperprojError(
                "hyperproj.inr.LocalGlobal: some coordinates fall in partitions this model does not "
                "hold (removed by crop); evaluate it only inside its kept region"
            )
        # group the points by partition: (active partitions, most points per partition, features)
        order = torch.argsort(slot, stable=True)
        counts = torch.bincount(slot, minlength=k)
        present = counts > 0
        active = present.nonzero().flatten()
        rank = torch.cumsum(present.long(), 0) - 1
        s_sorted = slot[order]
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(n, device=x.device) - starts[s_sorted]
        row = rank[s_sorted]
        width = int(counts.max()) if n else 0
        xb = x.new_zeros(len(active), width, self.in_features)
        xb[row, pos] = x[order]
        slots = None if len(active) == k else active
        mask = self._trainable
        c_local, c_global, c_merge = self._coefficient_sets()
        h, g = xb, xb
        for i, omega in enumerate(self.omegas):
            h = self._sine(self.local[i](h, slots, mask), omega, c_local)
            if self.global_net is not None:
                g_layer, m_layer = self.global_net[i], self.merge[i]
                g = self._sine(self._shared_linear(g_layer.linear, g), omega, c_global)
                h = self._sine(self._shared_linear(m_layer.linear, torch.cat([h, g], dim=-1)), m_layer.omega, c_merge)
        out = self.local[-1](h, slots, mask)
        y = out.new_empty(n, self.out_features)
        y[order] = out[row, pos]
        return y.reshape(*lead, self.out_features)

    def _shared_linear(self, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        w, b = linear.weight, linear.bias
        if self.freeze_shared:
            w, b = w.detach(), b.detach()
        return nn.functional.linear(x, w, b)

    # ---------------------------------------------------------------------------- editing
    def _with_partitions(self, ids: list[int]) -> LocalGlobal:
        """A copy holding the partitions ``ids`` (sorted original indices): held ones keep their
        values, new ones are freshly initialised; a tensor a wrapper removed stays removed."""
        cfg = dict(self.config)
        cfg["partitions"] = _runs(ids)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sum(ids) + len(ids))
            new = LocalGlobal(**cfg)
        new.to(device=self._lower.device)
        old_slot = {pid: s for s, pid in enumerate(self.partition_ids)}
        src = torch.tensor([old_slot.get(pid, -1) for pid in ids], dtype=torch.int64)
        have = src >= 0
        with torch.no_grad():
            for name, _ in self.partition_parameters().items():
                prefix, _, leaf = name.rpartition(".")
                old_mod, new_mod = self.get_submodule(prefix), new.get_submodule(prefix)
                if leaf not in old_mod._parameters:
                    del new_mod._parameters[leaf]
                    continue
                old = old_mod._parameters[leaf]
                fresh = new_mod._parameters[leaf]
                per = fresh.detach().view(len(ids), -1).to(old.dtype).clone()
                per[have] = old.detach().view(self.num_partitions, -1)[src[have].to(old.device)].to(per.device)
                param = nn.Parameter(per.reshape(fresh.shape), requires_grad=old.requires_grad)
                new_mod._parameters[leaf] = param
            shared = {n: p for n, p in self.named_parameters() if not n.startswith("local.")}
            for n, p in list(new.named_parameters()):
                if n.startswith("local."):
                    continue
                if n in shared:
                    p.copy_(shared[n])
                    p.requires_grad_(shared[n].requires_grad)
                else:  # a shared tensor a wrapper removed stays removed
                    prefix, _, leaf = n.rpartition(".")
                    del new.get_submodule(prefix)._parameters[leaf]
        new.to(dtype=next((p.dtype for p in self.parameters()), torch.float32))
        new.freeze_shared = self.freeze_shared
        return new

    def unfreeze(self) -> None:
        """Make every partition and the shared (global, merge) weights trainable again (after :func:`extend`)."""
        self._trainable = None
        self.freeze_shared = False
        for p in self.parameters():
            p.requires_grad_(True)

    @property
    def trainable_partitions(self) -> list[int] | None:
        """Original indices of the partitions :func:`extend` left trainable (``None``: all)."""
        if self._trainable is None:
            return None
        return [pid for pid, t in zip(self.partition_ids, self._trainable.tolist()) if t]


def _local_global_of(model: nn.Module, where: str) -> LocalGlobal:
    base = getattr(model, "base", model)
    if not isinstance(base, LocalGlobal):
        raise HyperprojError(
            f"{where}: model must be a hyperproj.inr.LocalGlobal or a HyperModel wrapping one, "
            f"got {type(model).__name__}" + (f" wrapping {type(base).__name__}" if base is not model else "")
        )
    return base


def crop(model: nn.Module, box: Any) -> nn.Module:
    """A copy of ``model`` holding only the partitions that overlap ``box``; the rest are removed.

    ``box = (lower_corner, upper_corner)`` in the model's coordinates; e.g. ``((-1, -1), (0, 0))``
    keeps the lower-left quarter of a ``[-1, 1]²`` domain. The kept region is the union of the
    cells overlapping the box (it covers the box; equal to it when the box lies on cell
    boundaries). Outputs at points in the kept region are exactly (bit for bit) those of
    ``model``; the parameter count drops in proportion to the removed partitions.

    Works on a :class:`LocalGlobal` and on a ``HyperModel`` wrapping one with
    ``groups="partition"`` (its per-partition latents are dropped; the kept partitions' random
    matrices are regenerated from their original indices, so they are the same).

    Examples:
        >>> net = LocalGlobal(1, 1, (8,), local_features=4, global_features=8)
        >>> crop(net, ((0.0,), (1.0,))).num_partitions
        4
        >>> crop(net, ((0.0,), (-1.0,)))
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: hyperproj.inr.crop: box must be (lower_corner, upper_corner) ...
    """
    lg = _local_global_of(model, "hyperproj.inr.crop")
    held = set(lg.partition_ids)
    kept = [i for i in lg.cells_in_box(box) if i in held]
    if not kept:
        raise HyperprojError(
            f"hyperproj.inr.crop: box {box!r} overlaps none of the model's {lg.num_partitions} partitions"
        )
    if lg is not model:
        from .._groups import rebuild_with_partitions

        return rebuild_with_partitions(model, kept, where="hyperproj.inr.crop")
    return lg._with_partitions(kept)


def extend(model: nn.Module, box: Any) -> nn.Module:
    """A copy of ``model`` with fresh local sub-networks for the grid cells in ``box`` it lacks.

    Only the new partitions train afterwards: the held partitions' gradients are masked to zero
    and the shared (global, merge) weights are detached, so :func:`hyperproj.fit` (Adam without
    weight decay) leaves them, and the outputs in the old region, exactly unchanged. Call
    ``unfreeze()`` on the :class:`LocalGlobal` to train everything again.

    Typical use: encode part of a signal (``LocalGlobal(..., partitions=...)`` or a crop), then
    extend it to a larger region of the same grid and fit only the new part.

    Examples:
        >>> net = crop(LocalGlobal(1, 1, (8,), local_features=4, global_features=8), ((-1.0,), (0.0,)))
        >>> big = extend(net, ((-1.0,), (1.0,)))
        >>> big.num_partitions, big.trainable_partitions
        (8, [4, 5, 6, 7])
    """
    lg = _local_global_of(model, "hyperproj.inr.extend")
    held = set(lg.partition_ids)
    new_ids = [i for i in lg.cells_in_box(box, "hyperproj.inr.extend") if i not in held]
    if not new_ids:
        raise HyperprojError(
            f"hyperproj.inr.extend: box {box!r} adds no partition: every grid cell it overlaps is "
            "already held (a LocalGlobal grid is fixed by partition_factors and bounds)"
        )
    ids = sorted(held | set(new_ids))
    if lg is not model:
        from .._groups import rebuild_with_partitions

        out = rebuild_with_partitions(model, ids, where="hyperproj.inr.extend")
        base = out.base
    else:
        out = base = lg._with_partitions(ids)
    new_set = set(new_ids)
    base._trainable = torch.tensor([float(i in new_set) for i in ids], device=base._lower.device)
    base.freeze_shared = True
    if base.coefficients is not None:
        base.coefficients.requires_grad_(False)
    for name, p in base.named_parameters():
        if not name.startswith("local."):
            p.requires_grad_(False)
    return out

