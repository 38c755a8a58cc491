"""Projection operators ``R^n -> R^P``: the fixed random matrix ``B`` of ``W = B z``.

Every operator is rebuilt from ``(kind, latent_dim, layer sizes, layer scales, seed,
distribution)`` alone, and nothing random is ever saved. The rows of layer ``l`` are
``scale_l * R_l`` where ``R_l`` has zero-mean unit-variance i.i.d. entries from
:mod:`hyperproj.rng`, stream ``1 + l``, index ``column * rows_l + row`` (column-major). Column
``j`` of ``R`` therefore does not depend on the latent size: the operator for latent size ``m <
n`` is exactly the first ``m`` columns of the one for ``n`` (nested subspaces, so e.g. a
least-squares residual can only fall as ``n`` grows).

Kinds:

* ``"dense"`` — ``B`` materialised once in a non-persistent buffer (rebuilt on unpickling and
  on ``load_state_dict``); fastest while ``P × n`` floats fit in memory.
* ``"streamed"`` — ``B`` is never stored: a custom autograd Function regenerates it block by
  block in forward and in backward. Memory ``O(block × n)``, much slower per step.
* ``"fastfood"`` — structured ``S H G Π H D`` blocks (:mod:`hyperproj._fastfood`): O(P log n)
  time, O(P) memory; the default for anything but small ``B``.
* ``"orthogonal"`` — exactly orthonormal columns from Hadamard transforms
  (:mod:`hyperproj._orthogonal`): ``O(N log N)`` time, ``O(N)`` memory, well conditioned at any
  latent size.
* ``"auto"`` — resolved by :func:`resolve_kind`: orthogonal when the latent is at least 30 % of
  the weights, else dense below a memory cap, else fastfood.

New kinds register with :func:`register_projection`.

Examples:
    >>> proj = make_projection("dense", latent_dim=8, layer_sizes=[6, 4], layer_scales=[1.0, 0.5],
    ...                        seed=0)
    >>> proj(torch.ones(8)).shape
    torch.Size([10])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from . import rng
from ._errors import HyperprojError

__all__ = [
    "Projection",
    "DenseProjection",
    "StreamedProjection",
    "register_projection",
    "make_projection",
    "resolve_kind",
    "projection_kinds",
    "DEFAULT_DENSE_CAP_BYTES",
    "ORTHOGONAL_MIN_SHARE",
]

#: ``projection="auto"`` picks the orthogonal kind from this share of latent values per projected
#: weight up (the share from which ``latent_scale="auto"`` is the offset latent; see resolve_kind).
ORTHOGONAL_MIN_SHARE = 0.5

#: Largest dense ``B`` (in bytes of float32) that ``projection="auto"`` materialises.
DEFAULT_DENSE_CAP_BYTES = 4 * 2**20

# Rows generated per block: bounds the int64 temporaries of the generator to ~64 MB.
_BLOCK_ELEMENTS = 1 << 22
_CPU_BLOCK_ELEMENTS = 1 << 20

_REGISTRY: dict[str, type[Projection]] = {}


def register_projection(name: str) -> Callable[[type[Projection]], type[Projection]]:
    """Class decorator registering a :class:`Projection` subclass under ``name``.

    Examples:
        >>> @register_projection("my-dense")
        ... class MyDense(DenseProjection):
        ...     pass
        >>> "my-dense" in projection_kinds()
        True
    """

    def deco(cls: type[Projection]) -> type[Projection]:
        _REGISTRY[name] = cls
        cls.kind = name
        return cls

    return deco


def projection_kinds() -> list[str]:
    """Names accepted by ``projection=`` (besides ``"auto"``).

    Examples:
        >>> {"dense", "streamed"} <= set(projection_kinds())
        True
    """
    return sorted(_REGISTRY)


class Projection(nn.Module):
    """Base class: a fixed linear map from the latent (``n``) to all projected weights (``P``).

    Subclasses implement :meth:`forward` for ``z`` of shape ``(..., n)`` returning ``(..., P)``
    and :meth:`rows` returning dense rows of the operator. Layer ``l`` owns the contiguous
    output slice ``offsets[l]:offsets[l+1]``, whose rows are scaled by ``layer_scales[l]``.
    """

    kind = "base"

    def __init__(
        self,
        latent_dim: int,
        layer_sizes: Sequence[int],
        layer_scales: Sequence[float],
        seed: int,
        distribution: str = "uniform",
    ) -> None:
        super().__init__()
        if len(layer_sizes) != len(layer_scales):
            raise HyperprojError(
                f"hyperproj.projection: {len(layer_sizes)} layer sizes but "
                f"{len(layer_scales)} layer scales"
            )
        if distribution not in rng.DISTRIBUTIONS:
            raise HyperprojError(
                f"hyperproj.projection: distribution must be one of {sorted(rng.DISTRIBUTIONS)}, "
                f"got {distribution!r}"
            )
        self.latent_dim = int(latent_dim)
        self.layer_sizes = [int(s) for s in layer_sizes]
        self.layer_scales = [float(s) for s in layer_scales]
        self.seed = int(seed)
        self.distribution = distribution
        self.offsets = [0]
        for s in self.layer_sizes:
            self.offsets.append(self.offsets[-1] + s)

    @property
    def num_outputs(self) -> int:
        """``P``: the number of generated weights."""
        return self.offsets[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Dense rows ``B[start:stop]`` (scaled), shape ``(stop - start, n)``, float32."""
        raise NotImplementedError  # pragma: no cover - abstract

    def state_bytes(self) -> int:
        """Bytes held in memory by the operator (buffers), for reports."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def fingerprint(self, count: int = 4) -> list[float]:
        """A few generated weights for ``z = 1`` (float32 values as Python floats).

        Stored in exports: a receiver with a different generator, kind or layer layout gets
        different numbers and refuses the file instead of decoding garbage.
        """
        probe = torch.ones(self.latent_dim, dtype=torch.float64)
        picks = [round(i * (self.num_outputs - 1) / max(count - 1, 1)) for i in range(count)]
        out = []
        for p in picks:
            row = self.rows(p, p + 1).to(torch.float64)
            out.append(float((row @ probe).to(torch.float32)))
        return out

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, latent_dim={self.latent_dim}, outputs={self.num_outputs}, "
            f"seed={self.seed}, distribution={self.distribution}"
        )


def _layer_of_row(offsets: Sequence[int], row: int) -> int:
    lo, hi = 0, len(offsets) - 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= row:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _generate_rows(proj: Projection, start: int, stop: int, device=None) -> torch.Tensor:
    """Scaled rows ``start:stop`` of the dense-family operator, float32, generated in blocks."""
    n = proj.latent_dim
    out = torch.empty(stop - start, n, dtype=torch.float32, device=device)
    # On CPU, cache-sized blocks: the int64 index and hash temporaries then stay in L2/L3
    # (generation of the 9x40 SIREN's B at n = P: 3.9 s with 16M-value blocks).
    cpu = out.device.type == "cpu"
    rows_per_block = max(1, (_CPU_BLOCK_ELEMENTS if cpu else _BLOCK_ELEMENTS) // max(n, 1))
    row = start
    while row < stop:
        layer = _layer_of_row(proj.offsets, row)
        local = row - proj.offsets[layer]
        end = min(stop, proj.offsets[layer + 1], row + rows_per_block)
        layer_rows = proj.layer_sizes[layer]
        r = torch.arange(local, local + end - row, dtype=torch.int64, device=device)
        c = torch.arange(n, dtype=torch.int64, device=device)
        index = r[:, None] + c[None, :] * layer_rows  # column-major: see the module docstring
        vals = rng.distribution_values(proj.seed, 1 + layer, index, proj.distribution)
        torch.mul(vals, proj.layer_scales[layer], out=out[row - start : end - start])
        row = end
    return out


@register_projection("dense")
class DenseProjection(Projection):
    """``B`` held as a ``(P, n)`` non-persistent buffer; ``forward`` is one matrix product.

    Examples:
        >>> p = DenseProjection(4, [3], [1.0], seed=1)
        >>> torch.allclose(p(torch.eye(4)).T, p.rows(0, 3))
        True
    """

    def __init__(self, latent_dim, layer_sizes, layer_scales, seed, distribution="uniform"):
        super().__init__(latent_dim, layer_sizes, layer_scales, seed, distribution)
        self.register_buffer("matrix", _generate_rows(self, 0, self.num_outputs), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.matrix.T

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.matrix[start:stop].to(torch.float32)

    def __getstate__(self):
        # Pickle/deepcopy without the matrix; it is regenerated from the seed.
        state = self.__dict__.copy()
        bufs = dict(state["_buffers"])
        m = bufs.pop("matrix")
        state["_buffers"] = bufs
        state["_matrix_meta"] = (m.dtype, str(m.device))
        return state

    def __setstate__(self, state):
        dtype, device = state.pop("_matrix_meta")
        self.__dict__.update(state)
        mat = _generate_rows(self, 0, self.num_outputs, device=device).to(dtype)
        self._buffers["matrix"] = mat
        self._non_persistent_buffers_set.add("matrix")


class _StreamedMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z2d: torch.Tensor, proj: StreamedProjection) -> torch.Tensor:
        ctx.proj = proj
        out = z2d.new_empty(z2d.shape[0], proj.num_outputs)
        for start, stop in proj._blocks():
            block = _generate_rows(proj, start, stop, device=z2d.device).to(z2d.dtype)
            out[:, start:stop] = z2d @ block.T
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        proj = ctx.proj
        gz = grad.new_zeros(grad.shape[0], proj.latent_dim)
        for start, stop in proj._blocks():
            block = _generate_rows(proj, start, stop, device=grad.device).to(grad.dtype)
            gz += grad[:, start:stop] @ block
        return gz, None


@register_projection("streamed")
class StreamedProjection(Projection):
    """``B`` regenerated block by block in forward and backward; never stored.

    Memory is ``O(block_rows × n)``; each step pays the generator twice (forward, backward).

    Examples:
        >>> s = StreamedProjection(5, [4, 3], [1.0, 2.0], seed=3)
        >>> d = DenseProjection(5, [4, 3], [1.0, 2.0], seed=3)
        >>> z = torch.randn(5)
        >>> torch.allclose(s(z), d(z), atol=1e-6)
        True
    """

    def __init__(
        self, latent_dim, layer_sizes, layer_scales, seed, distribution="uniform",
        block_rows: int | None = None,
    ):
        super().__init__(latent_dim, layer_sizes, layer_scales, seed, distribution)
        self.block_rows = block_rows or max(1, _BLOCK_ELEMENTS // max(self.latent_dim, 1))

    def _blocks(self):
        for start in range(0, self.num_outputs, self.block_rows):
            yield start, min(self.num_outputs, start + self.block_rows)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = _StreamedMatmul.apply(z.reshape(-1, self.latent_dim), self)
        return out.reshape(*lead, self.num_outputs)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return _generate_rows(self, start, stop)


def projection_adjoint(proj: Projection, g: torch.Tensor) -> torch.Tensor:
    """``Bᵀ g`` for ``g`` of shape ``(..., P)``: the projection's own ``adjoint`` where it has one, else
    the vector-Jacobian product of the (linear) operator at ``z = 0``. Not differentiated through.

    Examples:
        >>> p = make_projection("dense", 3, [4], [1.0], seed=0)
        >>> g = torch.randn(4)
        >>> torch.allclose(projection_adjoint(p, g), p.rows(0, 4).T @ g, atol=1e-6)
        True
    """
    own = getattr(proj, "adjoint", None)
    if callable(own):
        with torch.no_grad():
            return own(g)
    v = torch.zeros(*g.shape[:-1], proj.latent_dim, dtype=g.dtype, device=g.device, requires_grad=True)
    with torch.enable_grad():
        (out,) = torch.autograd.grad(proj(v), v, grad_outputs=g)
    return out


def resolve_kind(kind: str, latent_dim: int, num_outputs: int,
                 dense_cap_bytes: int = DEFAULT_DENSE_CAP_BYTES, distribution: str = "uniform") -> str:
    """The concrete kind for ``kind``: ``"auto"`` → orthogonal when the latent is at least
    :data:`ORTHOGONAL_MIN_SHARE` of the weights, else dense while ``B`` is small, else fastfood.

    Orthogonal first (``hyperproj._orthogonal``): when ``n`` is a large share of ``P`` an i.i.d.
    ``B`` is badly conditioned (at ``n = P`` its smallest singular values approach 0), and the
    offset latent that ``reparametrize`` picks there moves the weights by ``B Bᵀ`` times Adam's
    step. Measured with every other default (1 thread, fixed steps): the two-line wrap of
    ``Siren(2, 64, 3, 3)`` on a 128 px astronaut crop at 100 % of the weights 29.83 dB (fastfood)
    → 32.30 (orthogonal; the plain network 31.64), at 50 % 26.81 → 28.02; the codec on the demo
    image (256 px, 1,500 steps) +0.55 dB at 1 bpp and +1.41 dB at 2 bpp (docs/projections.md).
    Below that share (the unit latent, plain Adam) dense and fastfood measured alike, so the rule
    there is unchanged. Only with the default ``distribution``: the orthogonal kind has none.

    Below it (measured by ``benchmarks/projection_speed.py``): a dense ``B`` makes every training
    step read ``4·P·n`` bytes twice, which already costs 1.5× a plain SIREN 9×40 step at batch
    16,384 and 5.5× at batch 1,024 when ``B`` is 200 MB, while fastfood costs ~1 ms and < 1 MB.
    So ``"auto"`` keeps dense only up to ``dense_cap_bytes`` (default 4 MiB: in two crossover runs
    on SIREN 9×40 dense ties fastfood within noise from 2 to 6 MiB and loses at 7.9 MiB, 1.46× and
    1.48× slower at batch 1,024), and uses fastfood beyond. Streamed is never chosen
    automatically (it regenerates ``B`` every step: 50–1,500× slower); choose it explicitly for
    exact dense-equivalent numbers without the memory.

    Examples:
        >>> resolve_kind("auto", latent_dim=100, num_outputs=1000)
        'dense'
        >>> resolve_kind("auto", latent_dim=3000, num_outputs=13000)
        'fastfood'
        >>> resolve_kind("auto", latent_dim=6500, num_outputs=13000)
        'orthogonal'
    """
    if kind != "auto":
        if kind not in _REGISTRY:
            raise HyperprojError(
                f"hyperproj: projection must be 'auto' or one of {projection_kinds()}, "
                f"got {kind!r}"
            )
        return kind
    if latent_dim >= ORTHOGONAL_MIN_SHARE * num_outputs and distribution == "uniform" and "orthogonal" in _REGISTRY:
        return "orthogonal"
    if 4 * latent_dim * num_outputs <= dense_cap_bytes:
        return "dense"
    if "fastfood" in _REGISTRY:
        return "fastfood"
    warnings.warn(  # only if the fastfood module failed to register
        "hyperproj: B is too large for a dense projection and fastfood is unavailable; "
        "using projection='streamed' (slow)",
        stacklevel=3,
    )
    return "streamed"


def make_projection(
    kind: str,
    latent_dim: int,
    layer_sizes: Sequence[int],
    layer_scales: Sequence[float],
    seed: int,
    distribution: str = "uniform",
    **options,
) -> Projection:
    """Build a registered projection by name.

    Examples:
        >>> make_projection("streamed", 3, [2], [1.0], seed=0).kind
        'streamed'
    """
    if kind not in _REGISTRY:
        raise HyperprojError(
            f"hyperproj: projection must be one of {projection_kinds()}, got {kind!r}"
        )
    return _REGISTRY[kind](latent_dim, layer_sizes, layer_scales, seed, distribution, **options)

