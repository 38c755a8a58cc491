"""Integer arithmetic of the latent-grid model: what the encoder's final pass and the decoder share.

Every number that feeds the entropy coder or a decoded pixel is computed here with int64 numpy
operations (exact, so independent of threads, BLAS, CPU and torch settings) or, for the
discretised Laplace CDF, with IEEE-754 basic float64 operations applied one at a time (each
correctly rounded, no fused multiply-add, no libm: the same bits on every conforming machine).

* Networks hold integer weights and biases at a power-of-two step ``2**-q`` (one ``q`` per
  network); activations are fixed point with ``ACT_BITS`` fraction bits; a layer is
  ``(x @ w_int.T) >> q + (b_int << (ACT_BITS - q))`` then ReLU.
* Upsampling ×2 is a separable 4-tap Catmull-Rom filter with taps in 1/128 (exact in float32 and
  in integers): ``(Σ tap·x) >> 7`` per axis, edge samples replicated.
* The ARM maps a latent's 12 causal neighbours to ``mu`` (in 1/16) and a scale index ``j``
  (``b = 2**(j/8)``); :func:`laplace_cdf` turns them into integer cumulative frequencies summing
  to ``2**PREC`` over the level's alphabet ``[-A, A]``, each symbol at least 1.

Examples:
    >>> import numpy as np
    >>> up2(np.full((1, 2, 2), 128, dtype=np.int64)).tolist()
    [[[128, 128, 128, 128], [128, 128, 128, 128], [128, 128, 128, 128], [128, 128, 128, 128]]]
    >>> c = laplace_cdf(np.array([0]), np.array([0]), 2)
    >>> c[0, 0], c[0, -1], bool(np.all(np.diff(c[0]) >= 1))
    (np.int64(0), np.int64(65536), True)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ACT_BITS", "PREC", "CONTEXT", "UP_EVEN", "UP_ODD", "MU_BITS", "J_MIN", "J_MAX",
    "up2", "linear", "mlp", "contexts", "arm_params", "arm_function", "laplace_cdf", "symbol_intervals", "wavefront", "synthesize",
]

ACT_BITS = 12
"""Fraction bits of fixed-point activations (and the finest network step)."""
PREC = 16
"""The entropy coder's frequencies sum to ``2**PREC``."""
MU_BITS = 4
"""The ARM's location is used in steps of ``2**-MU_BITS``."""
J_MIN, J_MAX = -32, 48
"""The scale index range: ``b = 2**(j/8)`` from 1/16 to 64."""

CONTEXT = ((-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2),
           (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2),
           (0, -2), (0, -1))
"""(row, column) offsets of the causal neighbours the ARM sees (zeros outside the grid)."""

UP_EVEN = (-3, 29, 111, -9, 0)
"""×2 upsampling taps (in 1/128) over inputs ``i-2..i+2`` for output ``2i`` (Catmull-Rom at i - 1/4)."""
UP_ODD = (0, -9, 111, 29, -3)
"""The taps for output ``2i+1`` (at i + 1/4)."""

# 2**(-k/8), k = 0..7, as exact float64 literals (no pow(): its last bit is libm's choice)
_INV_ROOT8 = tuple(float.fromhex(h) for h in (
    "0x1.0000000000000p+0", "0x1.d5818dcfba487p-1", "0x1.ae89f995ad3adp-1", "0x1.8ace5422aa0dbp-1",
    "0x1.6a09e667f3bcdp-1", "0x1.4bfdad5362a27p-1", "0x1.306fe0a31b715p-1", "0x1.172b83c7d517bp-1",
))
_LN2 = 0.6931471805599453
_EXACT = 1 << 53


def _exp_neg(t: np.ndarray) -> np.ndarray:
    """``exp(-t)`` for ``t >= 0`` from IEEE basic operations only (the same bits everywhere)."""
    t = np.minimum(t, 700.0)
    k = np.floor(t / _LN2)
    r = t - k * _LN2
    acc = np.ones_like(r)
    for n in range(20, 0, -1):
        acc = 1.0 - (r / n) * acc
    return np.ldexp(acc, -k.astype(np.int64).clip(0, 2000).astype(np.int32))


def up2(x: np.ndarray) -> np.ndarray:
    """``(C, h, w)`` int64 fixed point → ``(C, 2h, 2w)``: the separable ×2 filter, floor-shifted.

    Examples:
        >>> up2(np.array([[[0, 128]]])).tolist()
        [[[-9, 26, 102, 137], [-9, 26, 102, 137]]]
    """
    return _up2_axis(_up2_axis(x, 2), 1)


def _up2_axis(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.moveaxis(x, axis, -1)
    w = x.shape[-1]
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(2, 2)], mode="edge")
    out = np.empty(x.shape[:-1] + (2 * w,), dtype=np.int64)
    for taps, phase in ((UP_EVEN, 0), (UP_ODD, 1)):
        acc = np.zeros(x.shape, dtype=np.int64)
        for k, t in enumerate(taps):
            if t:
                acc += t * xp[..., k : k + w]
        out[..., phase::2] = acc >> 7
    return np.moveaxis(out, -1, axis)


def linear(x: np.ndarray, w: np.ndarray, q: int, b: np.ndarray) -> np.ndarray:
    """One fixed-point layer: ``(x @ w.T) >> q + (b << (ACT_BITS - q))``: ``w`` and ``b`` are
    integers at step ``2**-q`` (``q <= ACT_BITS``), ``x`` and the result at ``2**-ACT_BITS``.

    Examples:
        >>> linear(np.array([[1 << ACT_BITS]]), np.array([[64]]), 7, np.array([32])).tolist()  # 0.5·1 + 0.25
        [[3072]]
    """
    return ((x @ w.T) >> q) + (b << (ACT_BITS - q))


def mlp(x: np.ndarray, layers: list[tuple[np.ndarray, int, np.ndarray]]) -> np.ndarray:
    """Fixed-point layers ``(w, q, b)`` with ReLU between them (none after the last).

    Examples:
        >>> one = (np.array([[-1]]), 0, np.array([0]))
        >>> mlp(np.array([[5]]), [one, one]).tolist()  # relu(-5) = 0, then -0
        [[0]]
    """
    if x.size and x.dtype.kind in "iu" and _float_exact(_magnitude(x), layers):
        return _mlp_float(x, _float_layers(layers))
    for i, (w, q, b) in enumerate(layers):
        x = linear(x, w, q, b)
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return x


def _float_exact(bound: int, layers: list[tuple[np.ndarray, int, np.ndarray]]) -> bool:
    """Whether every value :func:`mlp` computes from an input of magnitude ``<= bound``, every
    partial sum of a product included, is an integer under ``2**53`` in magnitude: then float64
    arithmetic (BLAS, any summation order, FMA or not) gives exactly the int64 results."""
    if not layers:
        return False
    for w, q, b in layers:
        if not 0 <= q <= ACT_BITS or _magnitude(w) >= 1 << 32 or w.shape[-1] >= 1 << 16:
            return False
        bound *= int(np.abs(w).sum(1).max()) if w.size else 0  # bounds every partial sum of x @ w.T
        if bound >= _EXACT:
            return False
        bound = (bound >> q) + 1 + (_magnitude(b) << (ACT_BITS - q))
        if bound >= _EXACT:
            return False
    return True


def _magnitude(a: np.ndarray) -> int:
    """The largest ``|a|`` as a Python int (no int64 overflow at ``-2**63``)."""
    return max(int(a.max()), -int(a.min())) if a.size else 0


def _float_layers(layers: list[tuple[np.ndarray, int, np.ndarray]]) -> list[tuple[np.ndarray, float, np.ndarray]]:
    return [(w.T.astype(np.float64), 1.0 / (1 << q), (b << (ACT_BITS - q)).astype(np.float64)) for w, q, b in layers]


def _mlp_float(x: np.ndarray, layers: list[tuple[np.ndarray, float, np.ndarray]]) -> np.ndarray:
    """:func:`mlp` in float64 (where :func:`_float_exact` holds: ``floor(s·2**-q)`` is ``s >> q``)."""
    y = x.astype(np.float64)
    for i, (wt, scale, b) in enumerate(layers):
        y = y @ wt
        y *= scale
        np.floor(y, out=y)
        y += b
        if i < len(layers) - 1:
            np.maximum(y, 0.0, out=y)
    return y.astype(np.int64)


def contexts(grid: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
    """The causal neighbours (:data:`CONTEXT`) of every latent of an int ``(h, w)`` grid, or of
    the positions ``rows, cols``: ``(n, 12)`` int64, zero outside the grid.

    Examples:
        >>> contexts(np.array([[1, 2], [3, 4]]))[3].tolist()  # (1, 1): above-left, above, left
        [0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3]
    """
    h, w = grid.shape
    pad = np.zeros((h + 2, w + 4), dtype=np.int64)
    pad[2:, 2 : 2 + w] = grid
    if rows is None:
        return np.stack([pad[2 + di : 2 + di + h, 2 + dj : 2 + dj + w].reshape(-1) for di, dj in CONTEXT], 1)
    return np.stack([pad[rows + 2 + di, cols + 2 + dj] for di, dj in CONTEXT], 1)


def arm_params(ctx: np.ndarray, layers: list[tuple[np.ndarray, int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(mu16, j)`` of each context row: location in ``2**-MU_BITS`` steps, scale index (clamped).

    Examples:
        >>> zero = [(np.zeros((2, 12), np.int64), 8, np.array([16, -8]))]  # mu = 1/16, log2 b = -1/32
        >>> [v.tolist() for v in arm_params(np.zeros((1, 12), np.int64), zero)]
        [[1], [0]]
    """
    return _arm_out(mlp(ctx << ACT_BITS, layers))


def _arm_out(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half_mu = 1 << (ACT_BITS - MU_BITS - 1)
    mu16 = (out[:, 0] + half_mu) >> (ACT_BITS - MU_BITS)
    j = np.minimum(np.maximum((out[:, 1] + (1 << (ACT_BITS - 4))) >> (ACT_BITS - 3), J_MIN), J_MAX)
    return mu16, j


def arm_function(layers: list[tuple[np.ndarray, int, np.ndarray]], alphabet: int):
    """:func:`arm_params` for contexts of magnitude ``<= alphabet``, with the weights prepared once
    (float64 where that is exact, see :func:`mlp`): what a decoder calls once per wavefront step.

    Examples:
        >>> zero = [(np.zeros((2, 12), np.int64), 8, np.array([16, -8]))]
        >>> [v.tolist() for v in arm_function(zero, 3)(np.ones((1, 12), np.int64))]
        [[1], [0]]
    """
    if not _float_exact(int(alphabet) << ACT_BITS, layers):
        return lambda ctx: arm_params(ctx, layers)
    prepared = _float_layers(layers)
    prepared[0] = (prepared[0][0] * float(1 << ACT_BITS), *prepared[0][1:])  # ctx << ACT_BITS, exact

    def run(ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _arm_out(_mlp_float(ctx, prepared))

    return run


def _inv_scale(j: np.ndarray) -> np.ndarray:
    """``2**(-j/8)`` exactly as tabulated (ldexp of a literal: exact)."""
    k = np.asarray(j, dtype=np.int64)
    frac = np.mod(k, 8)
    table = np.array(_INV_ROOT8)
    return np.ldexp(table[frac], (-(k - frac) // 8).astype(np.int32))


def laplace_cdf(mu16: np.ndarray, j: np.ndarray, alphabet: int, points: np.ndarray | None = None) -> np.ndarray:
    """Integer cumulative frequencies of the discretised Laplace over symbols ``[-A, A]``
    (``alphabet`` = A): ``(n, 2A+2)`` with ``C[:, 0] = 0``, ``C[:, -1] = 2**PREC`` and every
    symbol's frequency ``>= 1``. ``points`` (n, k) of symbol values evaluates ``C`` only there.

    ``C(s) = floor(G(s - 1/2) · (2**PREC - (2A+1))) + (s + A)`` with ``G`` the Laplace CDF at
    location ``mu16/16`` and scale ``2**(j/8)``, from basic IEEE operations only.
    """
    a = int(alphabet)
    n = len(mu16)
    total = 1 << PREC
    spare = float(total - (2 * a + 1))
    s = np.arange(-a, a + 2, dtype=np.int64)[None, :] if points is None else np.asarray(points, np.int64)
    mu = np.asarray(mu16, np.int64).astype(np.float64)[:, None] / float(1 << MU_BITS)
    inv_b = _inv_scale(j)[:, None]
    d = (s.astype(np.float64) - 0.5) - mu
    e = _exp_neg(np.abs(d) * inv_b) * 0.5
    g = np.where(d < 0, e, 1.0 - e)
    c = np.floor(g * spare).astype(np.int64) + (s + a)
    c = np.where(s <= -a, 0, np.where(s >= a + 1, total, c))
    return np.broadcast_to(c, (n, c.shape[1])) if c.shape[0] != n else c


def symbol_intervals(q: np.ndarray, mu16: np.ndarray, j: np.ndarray, alphabet: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, freq)`` of each symbol ``q`` under its own distribution (what rANS codes).

    Examples:
        >>> start, freq = symbol_intervals(np.array([0]), np.array([0]), np.array([0]), 3)
        >>> int(freq[0]) > 0.35 * 2**PREC  # Laplace(0, 1) puts 39 % on [-1/2, 1/2]
        True
    """
    pts = np.stack([q, q + 1], 1)
    c = laplace_cdf(mu16, j, alphabet, pts)
    return c[:, 0], c[:, 1] - c[:, 0]


def wavefront(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decoding order of an ``(h, w)`` grid: steps ``t = col + 3·row``; every latent's causal
    neighbours (:data:`CONTEXT`) come in an earlier step. Each step is ``(rows, cols)``, rows
    ascending.

    Examples:
        >>> [(r.tolist(), c.tolist()) for r, c in wavefront(2, 2)][:3]
        [([0], [0]), ([0], [1]), ([], [])]
    """
    out = []
    rows_all = np.arange(h)
    for t in range(w + 3 * (h - 1)):
        cols = t - 3 * rows_all
        ok = (cols >= 0) & (cols < w)
        out.append((rows_all[ok], cols[ok]))
    return out


def synthesize(latents: list[np.ndarray], layers: list[tuple[np.ndarray, int, np.ndarray]]) -> np.ndarray:
    """The decoded image ``(H, W, C)`` uint8 from integer latent grids (finest first) and the
    fixed-point synthesis: upsample from the coarsest level, concatenate, per-pixel MLP, round.

    Examples:
        >>> one = (np.array([[0, 0]]), 0, np.array([1]))  # output 1.0 everywhere
        >>> synthesize([np.zeros((2, 2), np.int64), np.zeros((1, 1), np.int64)], [one])[..., 0].tolist()
        [[255, 255], [255, 255]]
    """
    x = np.asarray(latents[-1], np.int64)[None] << ACT_BITS
    for lat in reversed(latents[:-1]):
        h, w = lat.shape
        x = np.concatenate([up2(x)[:, :h, :w], (np.asarray(lat, np.int64) << ACT_BITS)[None]], 0)
    h, w = x.shape[1:]
    y = mlp(x.reshape(x.shape[0], -1).T.copy(), layers)
    pix = np.clip((y * 255 + (1 << (ACT_BITS - 1))) >> ACT_BITS, 0, 255)
    return pix.astype(np.uint8).reshape(h, w, -1)
