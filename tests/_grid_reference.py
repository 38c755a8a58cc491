"""The latent-grid decoder as it was before it was sped up (hyperproj 74d1a50): one level at a
time, the ARM and a full table of cumulative frequencies per wavefront step, the integer MLP.
Kept as the oracle that ``tests/test_latent_grid.py`` checks the library's decoder against."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from hyperproj import HyperprojError
from hyperproj.codec._arm_coding import start_decoder
from hyperproj.inr import _grid_int as gi

_PREC = gi.PREC
_LOWER = 1 << (_PREC + 7)


def reference_mlp(x: np.ndarray, layers: list) -> np.ndarray:
    """The int64 fixed-point MLP, layer by layer (:func:`hyperproj.inr._grid_int.linear`)."""
    for i, (w, q, b) in enumerate(layers):
        x = gi.linear(x, w, q, b)
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return x


def reference_arm_params(ctx: np.ndarray, layers: list) -> tuple[np.ndarray, np.ndarray]:
    out = reference_mlp(ctx << gi.ACT_BITS, layers)
    half_mu = 1 << (gi.ACT_BITS - gi.MU_BITS - 1)
    mu16 = (out[:, 0] + half_mu) >> (gi.ACT_BITS - gi.MU_BITS)
    j = np.clip((out[:, 1] + (1 << (gi.ACT_BITS - 4))) >> (gi.ACT_BITS - 3), gi.J_MIN, gi.J_MAX)
    return mu16, j


def reference_decode_level(data: bytes, h: int, w: int, alphabet: int, layers: list) -> np.ndarray:
    """``hyperproj.codec._arm_coding.decode_level`` of 74d1a50, verbatim but for the integer ARM."""
    q = np.zeros((h, w), dtype=np.int64)
    if alphabet == 0:
        if data:
            raise HyperprojError("decode: an all-zero latent level must have an empty stream")
        return q
    x, pos = start_decoder(data)
    n = len(data)
    mask = (1 << _PREC) - 1
    prec, lower = _PREC, _LOWER
    for rows, cols in gi.wavefront(h, w):
        mu16, j = reference_arm_params(gi.contexts(q, rows, cols), layers)
        table = gi.laplace_cdf(mu16, j, alphabet).tolist()
        syms = []
        for c in table:
            slot = x & mask
            s = bisect_right(c, slot) - 1
            lo = c[s]
            x = (c[s + 1] - lo) * (x >> prec) + slot - lo
            while x < lower:
                if pos >= n:
                    raise HyperprojError("decode: a latent stream ended early (the file is damaged)")
                x = (x << 8) | data[pos]
                pos += 1
            syms.append(s - alphabet)
        q[rows, cols] = syms
    if x != _LOWER or pos != n:
        raise HyperprojError("decode: a latent stream is corrupt (final coder state or length check failed)")
    return q


def reference_synthesize(latents: list[np.ndarray], layers: list) -> np.ndarray:
    """``hyperproj.inr._grid_int.synthesize`` with the int64 MLP."""
    x = np.asarray(latents[-1], np.int64)[None] << gi.ACT_BITS
    for lat in reversed(latents[:-1]):
        h, w = lat.shape
        x = np.concatenate([gi.up2(x)[:, :h, :w], (np.asarray(lat, np.int64) << gi.ACT_BITS)[None]], 0)
    h, w = x.shape[1:]
    y = reference_mlp(x.reshape(x.shape[0], -1).T.copy(), layers)
    pix = np.clip((y * 255 + (1 << (gi.ACT_BITS - 1))) >> gi.ACT_BITS, 0, 255)
    return pix.astype(np.uint8).reshape(h, w, -1)
