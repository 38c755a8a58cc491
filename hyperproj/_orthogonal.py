"""``projection="orthogonal"``: a random operator with exactly orthonormal columns, ``O(N log N)``.

The operator is ``√N`` times the first ``P`` rows and ``n`` columns of one random ``N × N``
orthogonal matrix, ``N = max(P, n)``, built from three rounds of signs, Hadamard transforms and a
permutation::

    T_r = H_tail E_r H_head                          (orthogonal mixing, see below)
    Q   = Π_3 T_3 D_3 · Π_2 T_2 D_2 · Π_1 T_1 D_1      (N × N, orthogonal)
    B   = diag(layer scales) · √N · Q[:P, :n]

* ``H_head`` / ``H_tail`` apply the normalised Walsh–Hadamard transform of size ``M`` (the largest
  power of two ``<= N``, so ``M >= N/2``) to the first / last ``M`` coordinates and leave the
  others alone; together they touch every coordinate, and each is orthogonal, so ``T_r`` is too —
  for any ``N``, with no padding or truncation (which is what keeps fastfood's blocks from being
  orthogonal). ``D_r``, ``E_r`` are Rademacher signs (``E_r`` keeps the two overlapping
  transforms from undoing each other), ``Π_r`` uniform random permutations. The Hadamard
  transforms are fastfood's Kronecker-factored matmuls.
* With ``n ≤ P`` the columns of ``√N Q[:, :n]`` are orthonormal up to ``√N``: ``BᵀB`` is ``N·I``
  (before the layer scales) — every latent direction moves the weights alike, and at ``n = P``
  the map is invertible by its transpose. An i.i.d. ``B`` (the ``dense`` kind, ``fastfood``) has
  ``BᵀB`` spread over a Marchenko–Pastur law instead: at ``n = P`` its smallest singular values
  approach 0, so gradient steps along those directions barely move the weights, which is why a
  D'OH model at 100 % of the weights trained 0.7–2.4 dB behind the plain network it wraps
  (``benchmarks/two_line_wrap.py``, docs/projections.md). With ``n > P`` the rows are orthonormal.
* Entries look Gaussian (kurtosis 2.98–3.00 at ``N`` = 500 … 1,031) and every weight has variance
  ``‖z‖²`` before the layer scale (each row of ``√N Q`` has squared norm ``N``, and
  ``‖√N Q[:, :n] z‖² = N ‖z‖²`` exactly) — the contract of every kind, so the variance matching of
  the init rules is unchanged.
* Nested: ``Q`` depends on ``N`` and the seed only, so for ``m < n ≤ P`` the operator of latent
  size ``m`` is the first ``m`` columns of the one for ``n``.

Randomness only from :mod:`hyperproj.rng`, streams ``ORTHO_STREAM_BASE + 4r + {0: D_r, 1: Π_r,
2: E_r}`` (never colliding with the dense kinds' ``1 + layer`` or fastfood's ``2**32 + 4k + ...``).
Memory: six sign vectors and six permutations of length ``N`` (about 1 MB at 13k weights).
Time: 2–3.5× fastfood's (``benchmarks/projection_speed.py``), a few ms per step at 19k weights.

Examples:
    >>> from hyperproj._orthogonal import OrthogonalProjection
    >>> proj = OrthogonalProjection(300, [300], [1.0], seed=0)
    >>> B = proj.rows(0, 300)
    >>> bool(torch.allclose(B.T @ B / 300, torch.eye(300), atol=1e-4))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import rng
from ._errors import HyperprojError
from ._fastfood import (
    OperatorProjection,
    _apply_hadamard,
    _factor_log2s,
    _random_permutation,
    _sylvester,
)
from .projection import register_projection

__all__ = ["OrthogonalProjection", "ORTHO_STREAM_BASE"]

#: First ``rng`` stream of the orthogonal kind; round ``r`` uses ``ORTHO_STREAM_BASE + 4r + {0, 1, 2}``.
ORTHO_STREAM_BASE = 2**33

#: Rounds of ``Π T D``. One round's entries are ``±1/√M`` (far from Gaussian); later rounds make
#: them sums of many signed terms. Three, as structured orthogonal random features use.
ROUNDS = 3

# Elements per chunk when building dense rows in :meth:`OrthogonalProjection.rows`.
_ROWS_CHUNK_ELEMENTS = 1 << 22


@register_projection("orthogonal")
class OrthogonalProjection(OperatorProjection):
    """``B = diag(scales) · √N · Q[:P, :n]`` with ``Q`` a random orthogonal ``N × N`` matrix; see the
    module docstring.

    ``forward(z)`` takes ``(..., n)`` and returns ``(..., P)``; ``adjoint`` is the exact
    transpose. One autograd node whose backward is the adjoint (as for fastfood), so ``grad``,
    ``jvp``, ``vmap`` and ``torch.compile`` work. Buffers are non-persistent (rebuilt from the seed).

    Args:
        latent_dim: ``n`` (``>= 1``).
        layer_sizes: output slice size of each layer.
        layer_scales: per-layer scale of those rows.
        seed: integer seed in ``[0, 2**63)``.
        distribution: only the default ``"uniform"`` (kept for the common signature): the entries
            come from the construction, so another name is refused rather than ignored.

    Examples:
        >>> p = OrthogonalProjection(10, [30, 7], [1.0, 2.0], seed=4)
        >>> torch.allclose(p(torch.eye(10)).T, p.rows(0, 37), atol=1e-5)
        True
        >>> unit, z = OrthogonalProjection(10, [30, 7], [1.0, 1.0], seed=4), torch.randn(10)
        >>> round(float(unit(z).pow(2).mean() / z.pow(2).sum()), 4)  # exactly ‖z‖² per weight
        1.0
    """

    #: ``BᵀB`` (or ``BBᵀ``) is a multiple of the identity per layer scale: solvers may rely on it
    #: (distill picks conjugate gradients at every latent size).
    orthonormal = True

    def __init__(self, latent_dim: int, layer_sizes: Sequence[int], layer_scales: Sequence[float], seed: int,
                 distribution: str = "uniform") -> None:
        super().__init__(latent_dim, layer_sizes, layer_scales, seed, distribution)
        if distribution != "uniform":
            raise HyperprojError(
                f"hyperproj.projection(orthogonal): distribution must be 'uniform' (the default), got "
                f"{distribution!r}: this kind's entries come from its construction, not from a distribution"
            )
        self.dim = max(self.num_outputs, self.latent_dim, 1)
        N = self.dim
        self.block = 1 << (N.bit_length() - 1)  # M: the largest power of two <= N (>= N/2)
        signs, mid_signs, perms, inv_perms = [], [], [], []
        for r in range(ROUNDS):
            stream = ORTHO_STREAM_BASE + 4 * r
            signs.append(rng.rademacher(self.seed, stream, 0, N))
            mid_signs.append(rng.rademacher(self.seed, stream + 2, 0, N))
            perm = _random_permutation(self.seed, stream + 1, N)
            inv = torch.empty_like(perm)
            inv[perm] = torch.arange(N, dtype=torch.int64)
            perms.append(perm)
            inv_perms.append(inv)
        layer_scale = torch.repeat_interleave(
            torch.tensor(self.layer_scales, dtype=torch.float64), torch.tensor(self.layer_sizes, dtype=torch.int64)
        )
        self.register_buffer("signs", torch.stack(signs), persistent=False)  # (ROUNDS, N)
        self.register_buffer("mid_signs", torch.stack(mid_signs), persistent=False)
        self.register_buffer("perm", torch.stack(perms), persistent=False)
        self.register_buffer("inv_perm", torch.stack(inv_perms), persistent=False)
        self.register_buffer("out_scale", (layer_scale * math.sqrt(N)).to(torch.float32), persistent=False)
        self._factor_names = []
        for i, f in enumerate(_factor_log2s(self.block.bit_length() - 1)):
            self._factor_names.append(f"hadamard_{i}")
            self.register_buffer(f"hadamard_{i}", _sylvester(f), persistent=False)

    def _mix(self, x: torch.Tensor, r: int, transpose: bool) -> torch.Tensor:
        """One round's orthogonal mixing ``T = H_tail E H_head`` (``transpose``: ``Tᵀ``): ``H`` the
        normalised Hadamard transform of the first / last ``M`` coordinates, ``E`` signs between."""
        N, M = self.dim, self.block
        mats = [self._buffers[name] for name in self._factor_names]
        had = lambda t: _apply_hadamard(t, mats) * (M ** -0.5)  # noqa: E731
        if M == N:
            return had(x)
        head = lambda t: torch.cat([had(t[..., :M]), t[..., M:]], dim=-1)  # noqa: E731
        tail = lambda t: torch.cat([t[..., : N - M], had(t[..., N - M :])], dim=-1)  # noqa: E731
        mid = self._buffer_as("mid_signs", x.dtype)[r]
        return head(tail(x) * mid) if transpose else tail(head(x) * mid)

    def _forward_op(self, z: torch.Tensor) -> torch.Tensor:
        dt = z.dtype
        x = F.pad(z, (0, self.dim - self.latent_dim)) if self.dim > self.latent_dim else z
        signs, perm = self._buffer_as("signs", dt), self._buffers["perm"]
        for r in range(ROUNDS):
            x = self._mix(x * signs[r], r, transpose=False).index_select(-1, perm[r])
        return x[..., : self.num_outputs] * self._buffer_as("out_scale", dt)

    def _adjoint_op(self, g: torch.Tensor) -> torch.Tensor:
        dt = g.dtype
        y = g * self._buffer_as("out_scale", dt)
        if self.dim > self.num_outputs:
            y = F.pad(y, (0, self.dim - self.num_outputs))
        signs, inv = self._buffer_as("signs", dt), self._buffers["inv_perm"]
        for r in reversed(range(ROUNDS)):
            y = self._mix(y.index_select(-1, inv[r]), r, transpose=True) * signs[r]
        return y[..., : self.latent_dim]

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Dense scaled rows ``B[start:stop]``, shape ``(stop - start, n)``, float32 (the adjoint of
        unit vectors, in chunks: ``O((stop − start) · N log N)``).

        Examples:
            >>> p = OrthogonalProjection(4, [5, 3], [1.0, 3.0], seed=9)
            >>> p.rows(5, 8).shape
            torch.Size([3, 4])
        """
        self._check_rows(start, stop)
        device = self.signs.device
        out = torch.empty(stop - start, self.latent_dim, dtype=torch.float32, device=device)
        chunk = max(1, _ROWS_CHUNK_ELEMENTS // self.dim)
        for row in range(start, stop, chunk):
            end = min(stop, row + chunk)
            unit = torch.zeros(end - row, self.num_outputs, dtype=torch.float32, device=device)
            unit[torch.arange(end - row, device=device), torch.arange(row, end, device=device)] = 1.0
            with torch.no_grad():
                out[row - start : end - start] = self._adjoint_op(unit)
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", N={self.dim}, block={self.block}, rounds={ROUNDS}"
