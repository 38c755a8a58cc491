"""``projection="fastfood"``: a structured random projection in ``O(P log n)`` time, ``O(P)`` memory.

The operator stacks ``K = ⌈P / d⌉`` square blocks (Le et al. 2013, "Fastfood"; used for
weight-space projections by Li et al. 2018, "Measuring the intrinsic dimension of objective
landscapes")::

    V_k = S_k H G_k Π_k H D_k            (d × d),   d = next power of two >= n

* ``z`` (length ``n``) is zero-padded to ``d``; the ``K`` blocks' outputs are concatenated and
  truncated to ``P``; layer ``l``'s slice ``offsets[l]:offsets[l+1]`` is multiplied by
  ``layer_scales[l]``.
* ``H`` is the (unnormalised, ±1) Sylvester–Walsh–Hadamard matrix, applied as a Kronecker
  product of small Hadamard matrices (``H_d = H_a ⊗ H_b ⊗ H_c``, factors of at most 32): a few
  small dense matmuls, several times faster on CPU than a ``log2 d``-stage butterfly.
* ``D_k`` is diagonal Rademacher (±1), ``Π_k`` a uniformly random permutation, ``G_k`` diagonal
  with zero-mean unit-variance entries drawn from ``distribution`` (``"normal"`` is Le et al.'s
  Gaussian; ``"uniform"`` and ``"rademacher"`` are accepted too — with ``"rademacher"`` every block
  is exactly ``√d`` times an orthogonal matrix).
* ``S_k = I / ‖g_k‖`` (a constant per block, derived from ``G_k``; it uses no randomness of its
  own). ``H D_k`` and ``Π_k`` preserve norms up to ``√d``, so every row of ``V_k`` has squared norm
  exactly ``d``: a row looks like ``d`` entries of mean square 1, the same normalisation as the
  dense kind's i.i.d. unit-variance rows. Hence each output entry has variance ``≈ ‖z‖²`` (over
  the random ``D``, ``Π``, ``G``) before the layer scale, and over a whole block the mean square
  of ``V_k z`` is ``‖z‖²`` up to the spread of ``G``. The library's variance matching
  (``scale_l = std_target / ‖z0‖``) therefore works unchanged.

Randomness comes only from :mod:`hyperproj.rng`, so the operator is bit-identical on every device
and independent of batching or chunking. Streams (documented, never colliding with the dense
kind's streams ``1 + layer``, which stay far below ``2**32``)::

    D_k: stream 2**32 + 4k      index j in [0, d)   rademacher
    Π_k: stream 2**32 + 4k + 1  index j in [0, d)   64 hashed bits, stably argsorted
    G_k: stream 2**32 + 4k + 2  index j in [0, d)   ``distribution``

Memory: four length-``K·d`` vectors (signs, ``G``, permutation and its inverse as int64) plus
one length-``P`` output scale — about 0.45 MB for a 13k-weight SIREN at ``n = 13k``.

Examples:
    >>> from hyperproj._fastfood import FastfoodProjection
    >>> proj = FastfoodProjection(100, [3000, 40], [1.0, 0.5], seed=0)
    >>> z = torch.randn(100)
    >>> proj(z).shape
    torch.Size([3040])
    >>> g = torch.randn(3040)
    >>> torch.allclose((proj(z) * g).sum(), (z * proj.adjoint(g)).sum(), rtol=1e-4)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import rng
from ._errors import HyperprojError
from .projection import Projection, register_projection

__all__ = ["FastfoodProjection", "OperatorProjection", "STREAM_BASE", "hadamard_transform"]

#: First ``rng`` stream used by fastfood; block ``k`` uses streams ``STREAM_BASE + 4k + {0,1,2}``.
STREAM_BASE = 2**32

# Largest Kronecker factor of the Hadamard transform: 32 measured best on CPU (2 threads):
# d = 2^14 as 32×32×16 took 0.09 ms against 0.12 ms for 128×128 and 0.7 ms for a butterfly;
# d = 2^17 (9 blocks) as 32×16×16×16 took 2.4 ms against 9 ms (512×256) and 20 ms (butterfly).
_MAX_FACTOR_LOG2 = 5

# Elements per chunk when building dense rows in :meth:`FastfoodProjection.rows`.
_ROWS_CHUNK_ELEMENTS = 1 << 22


def _sylvester(log2: int) -> torch.Tensor:
    """The ``2**log2`` Sylvester–Hadamard matrix (entries ±1), float32."""
    h = torch.ones(1, 1)
    for _ in range(log2):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def _factor_log2s(log2d: int) -> list[int]:
    """Split ``log2 d`` into the fewest parts of at most ``_MAX_FACTOR_LOG2``, as even as possible."""
    if log2d == 0:
        return []
    parts = -(-log2d // _MAX_FACTOR_LOG2)
    base, extra = divmod(log2d, parts)
    return [base + 1 if i < extra else base for i in range(parts)]


def _apply_hadamard(x: torch.Tensor, mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """``x @ H_d`` along the last axis, ``H_d = mats[0] ⊗ mats[1] ⊗ ...`` (all symmetric)."""
    if not mats:
        return x
    shape = x.shape
    d = shape[-1]
    m = x
    pre = 1
    last = len(mats) - 1
    for i, h in enumerate(mats):
        f = h.shape[0]
        if h.dtype != x.dtype:
            h = h.to(x.dtype)
        if i == last:  # suffix 1: one plain matmul on (rows·d/f, f)
            m = m.reshape(-1, f) @ h
        else:  # (rows·pre, f, suf): the factor acts on the middle axis
            m = torch.matmul(h, m.reshape(-1, f, d // (pre * f)))
        pre *= f
    return m.reshape(shape)


def hadamard_transform(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh–Hadamard transform along the last axis (length a power of two).

    ``hadamard_transform(hadamard_transform(x)) == d * x``. Uses the same Kronecker-factored
    matmuls as :class:`FastfoodProjection`; differentiable, works on any leading batch shape.

    Examples:
        >>> hadamard_transform(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        tensor([1., 1., 1., 1.])
        >>> x = torch.randn(3, 64)
        >>> torch.allclose(hadamard_transform(hadamard_transform(x)), 64 * x, atol=1e-4)
        True
    """
    d = x.shape[-1]
    log2d = d.bit_length() - 1
    if d < 1 or (1 << log2d) != d:
        raise HyperprojError(
            f"hyperproj.hadamard_transform: last dimension must be a power of two, got {d}"
        )
    mats = [_sylvester(k).to(device=x.device) for k in _factor_log2s(log2d)]
    return _apply_hadamard(x, mats)


def _random_permutation(seed: int, stream: int, d: int) -> torch.Tensor:
    """A uniform random permutation of ``range(d)`` from hashed keys (stable argsort, int64)."""
    keys = rng.hash_indices(seed, stream, torch.arange(d, dtype=torch.int64))
    return torch.argsort(keys, stable=True)


class _LinearNode(torch.autograd.Function):
    """``V x`` (``transpose=False``) or ``Vᵀ x`` as one autograd node. ``V`` is linear, so nothing
    is saved: the backward is the other direction and the forward-mode derivative is the same
    direction applied to the tangent. Both go through the public methods again, so they are
    differentiable and higher derivatives stay exact. One node instead of a dozen (pad, gathers,
    scalings, six small matmuls), and the backward gathers with the inverse permutation instead
    of scattering; measured step time is within noise of the plain autograd graph
    (docs/projections.md)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, proj, transpose):
        return proj._adjoint_op(x) if transpose else proj._forward_op(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.proj, ctx.transpose = inputs[1], inputs[2]

    @staticmethod
    def backward(ctx, grad):
        return (ctx.proj(grad) if ctx.transpose else ctx.proj.adjoint(grad)), None, None

    @staticmethod
    def jvp(ctx, tangent, *_):
        return ctx.proj.adjoint(tangent) if ctx.transpose else ctx.proj(tangent)


class OperatorProjection(Projection):
    """A projection given by two hand-written linear maps, ``_forward_op`` (``B z``) and
    ``_adjoint_op`` (``Bᵀ g``), exposed as one autograd node each (:class:`_LinearNode`).

    Subclasses (fastfood, orthogonal) implement the two maps and :meth:`rows`; this class checks
    shapes (naming the kind) and routes calls: under ``torch.compile`` or without grad the maps
    run directly, else through the node, whose backward is the other map.
    """

    def __init__(self, latent_dim: int, layer_sizes: Sequence[int], layer_scales: Sequence[float], seed: int,
                 distribution: str = "uniform") -> None:
        super().__init__(latent_dim, layer_sizes, layer_scales, seed, distribution)
        if self.latent_dim < 1:
            raise HyperprojError(f"hyperproj.projection({self.kind}): latent_dim must be >= 1, got {latent_dim}")
        if any(s < 0 for s in self.layer_sizes):
            raise HyperprojError(f"hyperproj.projection({self.kind}): layer sizes must be >= 0, got {self.layer_sizes}")
        rng._check_seed(self.seed)

    def _check_rows(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.num_outputs:
            raise HyperprojError(
                f"hyperproj.projection({self.kind}): rows need 0 <= start <= stop <= {self.num_outputs}, "
                f"got start={start}, stop={stop}"
            )

    def _check_last(self, t: torch.Tensor, size: int, what: str) -> None:
        if t.dim() < 1 or t.shape[-1] != size:
            raise HyperprojError(
                f"hyperproj.projection({self.kind}): {what} must have shape (..., {size}), "
                f"got {tuple(t.shape)}"
            )

    # -- the operator ----------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``B z`` for ``z`` of shape ``(..., n)``: returns ``(..., P)``.

        Examples:
            >>> p = FastfoodProjection(5, [8], [1.0], seed=0)
            >>> p(torch.ones(2, 3, 5)).shape
            torch.Size([2, 3, 8])
        """
        self._check_last(z, self.latent_dim, "z")
        if torch.compiler.is_compiling() or not torch.is_grad_enabled():
            return self._forward_op(z)
        return _LinearNode.apply(z, self, False)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """``Bᵀ g`` for ``g`` of shape ``(..., P)``: returns ``(..., n)``.

        Exact transpose of :meth:`forward` (``⟨B z, g⟩ = ⟨z, Bᵀ g⟩`` up to rounding); for
        iterative least-squares solvers. Differentiable.

        Examples:
            >>> p = FastfoodProjection(6, [20], [1.0], seed=2)
            >>> z, g = torch.randn(6), torch.randn(20)
            >>> torch.allclose(p(z) @ g, z @ p.adjoint(g), rtol=1e-4, atol=1e-5)
            True
        """
        self._check_last(g, self.num_outputs, "g")
        if torch.compiler.is_compiling() or not torch.is_grad_enabled():
            return self._adjoint_op(g)
        return _LinearNode.apply(g, self, True)

    # The two operators read their buffers from ``_buffers`` and skip no-op dtype casts: each
    # runs ~12 small ops per call, and at a 1,024-point batch Python's share of them is
    # measurable (benchmarks/projection_speed.py).
    def _buffer_as(self, name: str, dt: torch.dtype) -> torch.Tensor:
        t = self._buffers[name]
        return t if t.dtype == dt else t.to(dt)

    def _forward_op(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _adjoint_op(self, g: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@register_projection("fastfood")
class FastfoodProjection(OperatorProjection):
    """Stacked Fastfood blocks ``V_k = S_k H G_k Π_k H D_k``; see the module docstring.

    ``forward(z)`` takes ``z`` of shape ``(..., n)`` (any leading batch dims, ``torch.func.vmap``
    works) and returns ``(..., P)``; gradients are exact: one autograd node whose backward is
    :meth:`adjoint` (the exact transpose) and whose forward-mode derivative is ``V`` itself, so
    ``grad``, ``jvp``, ``hessian`` and ``vmap`` all work. Buffers are
    non-persistent (never in a ``state_dict``: everything is rebuilt from the seed) and small, so
    pickle, ``deepcopy``, ``.to(dtype/device)`` and ``torch.compile(fullgraph=True)`` work as for
    any module.

    Args:
        latent_dim: ``n``, the latent size (``>= 1``).
        layer_sizes: output slice size of each layer.
        layer_scales: per-layer scale of those rows.
        seed: integer seed in ``[0, 2**63)``.
        distribution: the distribution of the diagonal ``G`` (``"uniform"``, ``"normal"`` or
            ``"rademacher"``; all zero-mean, unit-variance). Output variance is ``≈ ‖z‖²·scale²``
            for every choice, thanks to ``S = 1/‖g‖``.

    Examples:
        >>> p = FastfoodProjection(10, [30, 7], [1.0, 2.0], seed=4)
        >>> torch.allclose(p(torch.eye(10)).T, p.rows(0, 37), atol=1e-5)
        True
    """

    def __init__(
        self,
        latent_dim: int,
        layer_sizes: Sequence[int],
        layer_scales: Sequence[float],
        seed: int,
        distribution: str = "uniform",
    ) -> None:
        super().__init__(latent_dim, layer_sizes, layer_scales, seed, distribution)
        n = self.latent_dim
        self.log2d = (n - 1).bit_length()
        self.dim = 1 << self.log2d
        d = self.dim
        self.num_blocks = max(1, -(-self.num_outputs // d))
        k_blocks = self.num_blocks

        signs, perms, inv_perms, gdiag, inv_gnorm = [], [], [], [], []
        for k in range(k_blocks):
            stream = STREAM_BASE + 4 * k
            signs.append(rng.rademacher(self.seed, stream, 0, d))
            perm = _random_permutation(self.seed, stream + 1, d)
            inv = torch.empty_like(perm)
            inv[perm] = torch.arange(d, dtype=torch.int64)
            perms.append(perm + k * d)
            inv_perms.append(inv + k * d)
            g = rng.distribution_values(
                self.seed, stream + 2, torch.arange(d, dtype=torch.int64), distribution
            )
            gdiag.append(g)
            inv_gnorm.append(1.0 / torch.linalg.vector_norm(g.double()).clamp_min(1e-30))

        # Output scale: S_k (1/‖g_k‖) times the layer scale, for the P kept outputs.
        block_scale = torch.stack(inv_gnorm).repeat_interleave(d)[: self.num_outputs]
        layer_scale = torch.repeat_interleave(
            torch.tensor(self.layer_scales, dtype=torch.float64),
            torch.tensor(self.layer_sizes, dtype=torch.int64),
        )
        out_scale = (block_scale * layer_scale).to(torch.float32)

        self.register_buffer("signs", torch.stack(signs), persistent=False)  # (K, d)
        self.register_buffer("gdiag", torch.stack(gdiag), persistent=False)  # (K, d)
        self.register_buffer("perm", torch.cat(perms), persistent=False)  # (K·d,) global
        self.register_buffer("inv_perm", torch.cat(inv_perms), persistent=False)
        self.register_buffer("out_scale", out_scale, persistent=False)  # (P,)
        self._factor_names = []
        for i, f in enumerate(_factor_log2s(self.log2d)):
            name = f"hadamard_{i}"
            self.register_buffer(name, _sylvester(f), persistent=False)
            self._factor_names.append(name)

    # -- helpers ---------------------------------------------------------------------------
    def _hadamards(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in self._factor_names]

    def _forward_op(self, z: torch.Tensor) -> torch.Tensor:
        n, d, k = self.latent_dim, self.dim, self.num_blocks
        lead = z.shape[:-1]
        mats = [self._buffers[name] for name in self._factor_names]
        dt = z.dtype
        x = F.pad(z, (0, d - n)) if d > n else z
        x = x.unsqueeze(-2) * self._buffer_as("signs", dt)  # (..., K, d)
        x = _apply_hadamard(x, mats)
        x = x.reshape(*lead, k * d).index_select(-1, self._buffers["perm"])
        x = x.reshape(*lead, k, d) * self._buffer_as("gdiag", dt)
        x = _apply_hadamard(x, mats)
        x = x.reshape(*lead, k * d)[..., : self.num_outputs]
        return x * self._buffer_as("out_scale", dt)

    def _adjoint_op(self, g: torch.Tensor) -> torch.Tensor:
        n, d, k = self.latent_dim, self.dim, self.num_blocks
        lead = g.shape[:-1]
        mats = [self._buffers[name] for name in self._factor_names]
        dt = g.dtype
        y = g * self._buffer_as("out_scale", dt)
        if k * d > self.num_outputs:
            y = F.pad(y, (0, k * d - self.num_outputs))
        y = _apply_hadamard(y.reshape(*lead, k, d), mats) * self._buffer_as("gdiag", dt)
        y = y.reshape(*lead, k * d).index_select(-1, self._buffers["inv_perm"])
        y = _apply_hadamard(y.reshape(*lead, k, d), mats) * self._buffer_as("signs", dt)
        return y.sum(-2)[..., :n]

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Dense scaled rows ``V[start:stop]``, shape ``(stop - start, n)``, float32.

        Built by applying each touched block's transpose to unit vectors, in chunks; costs
        ``O((stop - start) · d log d)``.

        Examples:
            >>> p = FastfoodProjection(4, [5, 3], [1.0, 3.0], seed=9)
            >>> p.rows(5, 8).shape
            torch.Size([3, 4])
        """
        self._check_rows(start, stop)
        n, d = self.latent_dim, self.dim
        mats = self._hadamards()
        dt = self.gdiag.dtype
        out = torch.empty(stop - start, n, dtype=torch.float32, device=self.gdiag.device)
        chunk = max(1, _ROWS_CHUNK_ELEMENTS // d)
        row = start
        while row < stop:
            k = row // d
            end = min(stop, (k + 1) * d, row + chunk)
            m = end - row
            local = torch.arange(row - k * d, end - k * d, device=out.device)
            y = torch.zeros(m, d, dtype=dt, device=out.device)
            y[torch.arange(m, device=out.device), local] = self.out_scale[row:end].to(dt)
            y = _apply_hadamard(y, mats) * self.gdiag[k]
            y = y.index_select(-1, self.inv_perm[k * d : (k + 1) * d] - k * d)
            y = _apply_hadamard(y, mats) * self.signs[k]
            out[row - start : end - start] = y[:, :n].to(torch.float32)
            row = end
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", d={self.dim}, blocks={self.num_blocks}"
