"""Grouped latents (``reparametrize(..., groups="partition")``): one latent per partition.

For a partitioned model (one that offers ``partition_parameters()``, ``partition_ids`` and
``num_partitions_total``, like :class:`hyperproj.inr.LocalGlobal`) the latent is split into a
*shared* group ``z_g`` (size ``global_dim``), which generates every non-partition target (global
and merge weights) through an ordinary projection of the requested kind, and one group ``z_o``
(size ``partition_dim``) per held partition ``o``, which generates that partition's slice of
every per-partition target through its own dense matrix ``B_o``::

    latent = [z_g, z_{o_1}, z_{o_2}, ...]      (partitions in increasing original index)
    W_shared = B_g z_g                          (streams 1 + l, as an ungrouped projection)
    W_local[o] = B_o z_o                        (B_o: stream 2**40 + o, index column * R + row)

``B_o`` and the initial ``z0_o`` (stream 0, indices ``global_dim + o * partition_dim + j``) are
keyed by the partition's *original* index ``o`` and nothing else, so a cropped model — fewer
partitions, same original indices — regenerates exactly the same ``B_o`` for the partitions it
keeps, and its latent is the old latent with the removed groups cut out.

Variance matching is exact per group: a shared target's rows are scaled by
``sqrt(var) / ||z0_g||`` as usual; a local target's ``layer_scale`` is ``sqrt(var) / E||z0_o||``
and partition ``o``'s rows are further multiplied by ``E||z0_o|| / ||z0_o||`` (a number that
depends on ``o`` and the seed only).

Examples:
    >>> from hyperproj.inr import LocalGlobal
    >>> import hyperproj
    >>> net = LocalGlobal(2, 3, (4, 4), local_features=8, global_features=16, hidden_layers=1)
    >>> hyper = hyperproj.reparametrize(net, latent_dim=800, seed=0, groups="partition")
    >>> hyper.config()["groups"]
    {'kind': 'partition', 'global_dim': 224, 'partition_dim': 36}
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from . import rng
from ._errors import HyperprojError
from .projection import Projection, make_projection, resolve_kind

__all__ = ["GroupPlan", "GroupedProjection", "make_plan", "rebuild_with_partitions", "LOCAL_STREAM_BASE"]

#: ``B_o`` of partition ``o`` uses rng stream ``LOCAL_STREAM_BASE + o`` (far above the ungrouped
#: kinds' ``1 + layer`` and fastfood's ``2**32 + 4k``).
LOCAL_STREAM_BASE = 1 << 40

_GROUP_KINDS = ("partition",)
_SQRT3 = math.sqrt(3.0)


def _unit_uniform(seed: int, index: torch.Tensor) -> torch.Tensor:
    """``u`` in (0, 1) at arbitrary indices of the latent stream (what ``rng.uniform`` draws)."""
    return rng._uniform_from_bits(rng.hash_indices(seed, 0, index))


@dataclass(frozen=True)
class GroupPlan:
    """The layout of a grouped latent (see the module docstring). Plain data: pickles, copies.

    Examples:
        >>> plan = GroupPlan(global_dim=10, partition_dim=4, partition_ids=(0, 2), total_partitions=4,
        ...                  local=(True, False))
        >>> plan.latent_dim, plan.spec()["partition_dim"]
        (18, 4)
    """

    global_dim: int
    partition_dim: int
    partition_ids: tuple[int, ...]
    total_partitions: int
    local: tuple[bool, ...]

    @property
    def latent_dim(self) -> int:
        """Values in the latent: ``global_dim + partitions × partition_dim``."""
        return self.global_dim + len(self.partition_ids) * self.partition_dim

    def spec(self) -> dict[str, Any]:
        """The JSON form stored in configs (``groups=`` accepts it back)."""
        return {"kind": "partition", "global_dim": self.global_dim, "partition_dim": self.partition_dim}

    def with_ids(self, ids: Sequence[int]) -> GroupPlan:
        """The same layout for another set of held partitions."""
        return replace(self, partition_ids=tuple(int(i) for i in ids))

    # -------------------------------------------------------------------- initial latent
    def _bound(self, latent_scale: str) -> float:
        if latent_scale == "paper":  # the uncropped model's latent size: the same for every crop
            return 1.0 / (self.global_dim + self.total_partitions * self.partition_dim)
        return _SQRT3

    def _local_indices(self) -> torch.Tensor:
        ids = torch.tensor(self.partition_ids, dtype=torch.int64)
        j = torch.arange(self.partition_dim, dtype=torch.int64)
        return (self.global_dim + ids[:, None] * self.partition_dim + j[None, :]).reshape(-1)

    def initial_latent(self, seed: int, latent_scale: str) -> torch.Tensor:
        """``z0`` (float32): shared group first, then each held partition's group."""
        b = self._bound(latent_scale)
        idx = torch.cat([torch.arange(self.global_dim, dtype=torch.int64), self._local_indices()])
        return _unit_uniform(seed, idx) * (2 * b) - b

    def partition_corrections(self, seed: int) -> torch.Tensor:
        """``E||z0_o|| / ||z0_o||`` per held partition (float64; independent of the latent scale)."""
        if not self.partition_ids:
            return torch.zeros(0, dtype=torch.float64)
        v = _unit_uniform(seed, self._local_indices()).double() * 2 - 1
        norms = v.view(len(self.partition_ids), self.partition_dim).norm(dim=1)
        return math.sqrt(self.partition_dim / 3.0) / norms

    def scales(self, variances: Sequence[float], seed: int, latent_scale: str) -> list[float]:
        """Each target's ``layer_scale`` for target variances ``variances`` (see the module docstring)."""
        z0 = self.initial_latent(seed, latent_scale)
        g_norm = float(z0[: self.global_dim].double().norm()) if self.global_dim else 1.0
        expected = self._bound(latent_scale) * math.sqrt(self.partition_dim / 3.0)
        return [math.sqrt(v) / (expected if loc else g_norm) for v, loc in zip(variances, self.local)]

    def make_projection(
        self, kind: str, layer_sizes: Sequence[int], layer_scales: Sequence[float], seed: int,
        distribution: str = "uniform", dense_cap_bytes: int | None = None,
    ) -> GroupedProjection:
        """The grouped operator; ``kind`` (``"auto"`` allowed) is the shared group's projection."""
        shared = sum(s for s, loc in zip(layer_sizes, self.local) if not loc)
        if kind == "auto":
            from .projection import DEFAULT_DENSE_CAP_BYTES

            cap = DEFAULT_DENSE_CAP_BYTES if dense_cap_bytes is None else dense_cap_bytes
            kind = resolve_kind("auto", max(self.global_dim, 1), max(shared, 1), cap, distribution)
        return GroupedProjection(self, kind, layer_sizes, layer_scales, seed, distribution)


def make_plan(
    base: nn.Module, names: Sequence[str], shapes: Sequence[tuple[int, ...]], groups: Any,
    latent_dim: int, latent_scale: str,
) -> GroupPlan:
    """Validate ``groups`` for ``base`` and split ``latent_dim`` between the groups.

    ``groups="partition"``: the shared group gets ``round(latent_dim × shared weights / all
    weights)`` values (at least 1 when there are shared targets), each partition an equal share of
    the rest. ``groups={"kind": "partition", "global_dim": g, "partition_dim": m}`` (what configs
    and files store) fixes the split; then ``latent_dim`` must be ``g + partitions × m``.

    Examples:
        >>> from hyperproj.inr import LocalGlobal
        >>> net = LocalGlobal(1, 1, (4,), local_features=4, global_features=0, hidden_layers=0)
        >>> make_plan(net, ["local.0.weight", "local.1.weight"], [(4, 1, 4), (4, 4, 1)], "partition", 40, "unit").partition_dim
        10
    """
    where = "hyperproj.reparametrize"
    if isinstance(groups, str):
        if groups not in _GROUP_KINDS:
            raise HyperprojError(f"{where}: groups must be None, one of {_GROUP_KINDS} or a dict from a config, got {groups!r}")
        fixed = None
    elif isinstance(groups, Mapping):
        try:
            kind, g, m = groups["kind"], groups["global_dim"], groups["partition_dim"]
        except KeyError as err:
            raise HyperprojError(f"{where}: groups dict lacks the key {err.args[0]!r}; expected kind, global_dim, partition_dim") from None
        ok = kind in _GROUP_KINDS and all(isinstance(v, int) and not isinstance(v, bool) for v in (g, m)) and g >= 0 and m >= 1
        if not ok:
            raise HyperprojError(f"{where}: groups must be {{'kind': 'partition', 'global_dim': int >= 0, 'partition_dim': int >= 1}}, got {dict(groups)!r}")
        fixed = (g, m)
    else:
        raise HyperprojError(f"{where}: groups must be None, 'partition' or a dict from a config, got {type(groups).__name__} {groups!r}")
    if latent_scale not in ("unit", "paper"):
        raise HyperprojError(
            f"{where}: groups='partition' supports latent_scale 'unit' or 'paper', got {latent_scale!r}"
        )
    per = getattr(base, "partition_parameters", None)
    if not callable(per) or not hasattr(base, "partition_ids"):
        raise HyperprojError(
            f"{where}: groups='partition' needs a partitioned model (hyperproj.inr.LocalGlobal, or one "
            f"offering partition_parameters() and partition_ids); got {type(base).__name__}"
        )
    per_sizes = per()
    ids = tuple(int(i) for i in base.partition_ids)
    k = len(ids)
    local = tuple(n in per_sizes for n in names)
    for n, shape, loc in zip(names, shapes, local):
        if loc and (not shape or shape[0] != k or math.prod(shape[1:]) != per_sizes[n]):
            raise HyperprojError(f"{where}: per-partition target {n} has shape {tuple(shape)}; expected ({k}, ...) with {per_sizes[n]} values per partition")
    if not any(local):
        raise HyperprojError(f"{where}: groups='partition' but no projected target is per-partition; targets: {list(names)}")
    sizes = [math.prod(s) for s in shapes]
    p_local = sum(s for s, loc in zip(sizes, local) if loc)
    p_shared = sum(sizes) - p_local
    if fixed is None:
        if p_shared:
            if latent_dim < k + 1:
                raise HyperprojError(f"{where}: latent_dim={latent_dim} is too small for groups='partition': need at least one value per partition ({k}) plus one shared")
            m = max(1, min(round(latent_dim * p_local / (p_local + p_shared) / k), (latent_dim - 1) // k))
            g = latent_dim - k * m
        else:
            if latent_dim < k:
                raise HyperprojError(f"{where}: latent_dim={latent_dim} is too small for groups='partition': need at least one value per partition ({k})")
            m, g = latent_dim // k, 0
    else:
        g, m = fixed
        if latent_dim != g + k * m:
            raise HyperprojError(f"{where}: latent_dim={latent_dim} does not match groups {dict(groups)!r}: expected {g} + {k} x {m} = {g + k * m}")
        if bool(g) != bool(p_shared):
            raise HyperprojError(f"{where}: groups global_dim={g} but the model has {p_shared} shared projected weights")
    return GroupPlan(g, m, ids, int(getattr(base, "num_partitions_total", max(ids) + 1)), local)


class GroupedProjection(Projection):
    """Block operator of a grouped latent: an ordinary projection for the shared group and a
    dense ``(partitions, R, partition_dim)`` tensor for the per-partition rows, applied with one
    batched product. ``kind`` is the shared group's kind.

    Examples:
        >>> plan = GroupPlan(3, 2, (1, 3), 4, (False, True))
        >>> proj = plan.make_projection("dense", [5, 2 * 6], [1.0, 1.0], seed=0)
        >>> proj(torch.zeros(7)).shape, proj.kind
        (torch.Size([17]), 'dense')
    """

    def __init__(self, plan: GroupPlan, kind: str, layer_sizes, layer_scales, seed, distribution="uniform"):
        super().__init__(plan.latent_dim, layer_sizes, layer_scales, seed, distribution)
        self.kind = kind
        self.plan = plan
        k = len(plan.partition_ids)
        shared_sizes = [s for s, loc in zip(self.layer_sizes, plan.local) if not loc]
        shared_scales = [s for s, loc in zip(self.layer_scales, plan.local) if not loc]
        self.shared = (
            make_projection(kind, plan.global_dim, shared_sizes, shared_scales, seed, distribution)
            if shared_sizes else None
        )
        # per target: ("s", start in the shared output) or ("l", first row in B_o, rows per partition)
        self._layout: list[tuple[str, int, int]] = []
        s_off = r_off = 0
        for size, loc in zip(self.layer_sizes, plan.local):
            if loc:
                if k == 0 or size % k:
                    raise HyperprojError(f"hyperproj: per-partition target of {size} weights does not split into {k} partitions")
                self._layout.append(("l", r_off, size // k))
                r_off += size // k
            else:
                self._layout.append(("s", s_off, size))
                s_off += size
        self.rows_per_partition = r_off
        self.register_buffer("local_matrix", self._generate(), persistent=False)

    def _generate(self, device=None) -> torch.Tensor:
        plan, r, m = self.plan, self.rows_per_partition, self.plan.partition_dim
        row_scale = torch.empty(r, dtype=torch.float32)
        for (what, start, rows), scale in zip(self._layout, self.layer_scales):
            if what == "l":
                row_scale[start : start + rows] = scale
        corr = plan.partition_corrections(self.seed)
        out = torch.empty(len(plan.partition_ids), r, m, dtype=torch.float32)
        idx = torch.arange(r, dtype=torch.int64)[:, None] + torch.arange(m, dtype=torch.int64)[None, :] * r
        for s, pid in enumerate(plan.partition_ids):
            vals = rng.distribution_values(self.seed, LOCAL_STREAM_BASE + pid, idx, self.distribution)
            out[s] = vals * row_scale[:, None] * float(corr[s])
        return out.to(device) if device is not None else out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        lead = z.shape[:-1]
        k = len(plan.partition_ids)
        y_shared = self.shared(z[..., : plan.global_dim]) if self.shared is not None else None
        zl = z[..., plan.global_dim :].reshape(*lead, k, plan.partition_dim)
        # (k, R, m) x (..., k, m) -> (..., k, R): one batched product over the partitions
        y_local = torch.matmul(self.local_matrix, zl.unsqueeze(-1)).squeeze(-1)
        parts = []
        for what, start, rows in self._layout:
            if what == "s":
                parts.append(y_shared[..., start : start + rows])
            else:
                parts.append(y_local[..., start : start + rows].reshape(*lead, k * rows))
        return torch.cat(parts, dim=-1)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        plan = self.plan
        out = torch.zeros(stop - start, self.latent_dim, dtype=torch.float32)
        for t, (what, first, rows) in enumerate(self._layout):
            a, b = max(start, self.offsets[t]), min(stop, self.offsets[t + 1])
            if a >= b:
                continue
            local = torch.arange(a, b) - self.offsets[t]
            if what == "s":
                out[a - start : b - start, : plan.global_dim] = self.shared.rows(first + int(local[0]), first + int(local[-1]) + 1)
            else:
                slot, within = local // rows, local % rows
                vals = self.local_matrix[slot, first + within].float().cpu()  # (b - a, m)
                cols = plan.global_dim + slot[:, None] * plan.partition_dim + torch.arange(plan.partition_dim)[None, :]
                out[torch.arange(a - start, b - start)[:, None], cols] = vals
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        bufs = dict(state["_buffers"])
        m = bufs.pop("local_matrix")
        state["_buffers"] = bufs
        state["_matrix_meta"] = (m.dtype, str(m.device))
        return state

    def __setstate__(self, state):
        dtype, device = state.pop("_matrix_meta")
        self.__dict__.update(state)
        self._buffers["local_matrix"] = self._generate(device=device).to(dtype)
        self._non_persistent_buffers_set.add("local_matrix")

    def extra_repr(self) -> str:
        p = self.plan
        return (
            f"kind={self.kind}, groups: shared {p.global_dim} + {len(p.partition_ids)} partitions x "
            f"{p.partition_dim}, outputs={self.num_outputs}, seed={self.seed}"
        )


def rebuild_with_partitions(hyper: nn.Module, ids: Sequence[int], where: str) -> nn.Module:
    """A grouped HyperModel over the partitions ``ids`` (original indices, sorted): held ones keep
    their latent groups and biases, new ones start from their seeded ``z0_o`` and fresh biases.

    Examples:
        >>> import hyperproj
        >>> from hyperproj.inr import LocalGlobal
        >>> h = hyperproj.reparametrize(LocalGlobal(1, 1, (4,), 4, 4), 60, seed=1, groups="partition")
        >>> rebuild_with_partitions(h, [0, 3], "example").latent.numel() < h.latent.numel()
        True
    """
    plan: GroupPlan | None = getattr(hyper, "_groups", None)
    if plan is None:
        raise HyperprojError(
            f"{where}: this HyperModel's latent is not grouped by partition; build it with "
            "hyperproj.reparametrize(model, latent_dim, seed, groups='partition')"
        )
    ids = sorted(int(i) for i in ids)
    new_base = hyper.base._with_partitions(ids)
    new_plan = plan.with_ids(ids)
    memo = {id(hyper.projection): hyper.projection, id(hyper.base): new_base}
    new = copy.deepcopy(hyper, memo=memo)
    for attr in ("hpz_signal", "hpz_header"):  # signal metadata of the uncropped model
        new.__dict__.pop(attr, None)
    k_new = len(ids)
    new._shapes = [
        (k_new, *shape[1:]) if loc else shape for shape, loc in zip(hyper._shapes, plan.local)
    ]
    new._groups = new_plan
    old = hyper.projection
    proj = new_plan.make_projection(
        old.kind, [math.prod(s) for s in new._shapes], old.layer_scales, old.seed, old.distribution
    )
    z = hyper.latent.detach()
    proj.to(device=z.device, dtype=z.dtype)
    new.projection = proj
    z0 = new_plan.initial_latent(hyper.seed, hyper.latent_scale).to(device=z.device, dtype=z.dtype)
    g, m = plan.global_dim, plan.partition_dim
    old_groups = z[g:].view(len(plan.partition_ids), m)
    new_groups = z0[g:].view(k_new, m).clone()
    old_slot = {pid: s for s, pid in enumerate(plan.partition_ids)}
    for s, pid in enumerate(ids):
        if pid in old_slot:
            new_groups[s] = old_groups[old_slot[pid]]
    with torch.no_grad():
        new.latent = nn.Parameter(torch.cat([z[:g], new_groups.reshape(-1)]), requires_grad=hyper.latent.requires_grad)
    new._z0 = new_plan.initial_latent(hyper.seed, hyper.latent_scale)
    new._fingerprint = None
    new._rebuild_offset()
    return new
