"""rANS coding of latent grids with per-symbol probabilities from the integer ARM.

Every latent of a level is coded under its own discretised Laplace, whose integer cumulative
frequencies come from :mod:`hyperproj.inr._grid_int` (integer ARM, IEEE-exact CDF), so the decoder
rebuilds exactly the table the encoder used. The decoder needs each latent's causal neighbours
before its own distribution: it walks the grid in wavefront steps (:func:`~hyperproj.inr._grid_int.wavefront`),
running the ARM once per step on all the latents of that step; the encoder codes the symbols in
the reverse of that order (rANS is last-in first-out). State: 32 bits, bytes out, frequencies sum
to ``2**PREC``; the stream starts with the 4-byte final state and a decoder refuses a stream whose
final state or length disagree.

Examples:
    >>> import numpy as np
    >>> from hyperproj.inr import _grid_int as gi
    >>> q = np.array([[0, 1, 0], [-1, 0, 2]])
    >>> arm = [(np.zeros((4, 12), np.int64), 8, np.zeros(4, np.int64)),
    ...        (np.zeros((4, 4), np.int64), 8, np.zeros(4, np.int64)),
    ...        (np.zeros((2, 4), np.int64), 8, np.zeros(2, np.int64))]
    >>> data = encode_level(q, 2, arm)
    >>> decode_level(data, 2, 3, 2, arm).tolist()
    [[0, 1, 0], [-1, 0, 2]]
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from .._errors import HyperprojError
from ..inr import _grid_int as gi

__all__ = ["encode_intervals", "start_decoder", "encode_level", "decode_level", "level_bits"]

_PREC = gi.PREC
_LOWER = 1 << (_PREC + 7)
_NFLUSH = 4


def encode_intervals(starts: np.ndarray, freqs: np.ndarray) -> bytes:
    """rANS-code symbols given by their ``(start, freq)`` intervals (in coding order).

    Examples:
        >>> data = encode_intervals(np.array([0, 1 << 15]), np.array([1 << 15, 1 << 15]))
        >>> len(data), start_decoder(data)[1]
        (4, 4)
    """
    fs = np.asarray(freqs, dtype=np.int64).tolist()
    cs = np.asarray(starts, dtype=np.int64).tolist()
    x = _LOWER
    out = bytearray()
    unit = (_LOWER >> _PREC) << 8
    prec = _PREC
    for i in range(len(fs) - 1, -1, -1):
        f = fs[i]
        if f <= 0:
            raise HyperprojError("encode_intervals: every frequency must be >= 1")
        xmax = unit * f
        while x >= xmax:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // f) << prec) + (x % f) + cs[i]
    out.reverse()
    return x.to_bytes(_NFLUSH, "big") + bytes(out)


def start_decoder(data: bytes) -> tuple[int, int]:
    """The initial decoder state and read position of a stream from :func:`encode_intervals`.

    Examples:
        >>> start_decoder(b"\\x00\\x80\\x00\\x00")
        (8388608, 4)
    """
    if len(data) < _NFLUSH:
        raise HyperprojError(f"decode: a latent stream holds at least {_NFLUSH} bytes, found {len(data)}")
    return int.from_bytes(data[:_NFLUSH], "big"), _NFLUSH


def _order(h: int, w: int) -> np.ndarray:
    return np.concatenate([rows * w + cols for rows, cols in gi.wavefront(h, w)])


def level_bits(q: np.ndarray, alphabet: int, layers: list) -> float:
    """The ideal bits of an integer grid ``q`` under the integer ARM ``layers`` (Σ −log2 freq/2^PREC).

    Examples:
        >>> arm = [(np.zeros((2, 12), np.int64), 8, np.array([0, -256]))]  # mu 0, b = 1/2
        >>> round(level_bits(np.zeros((4, 4), np.int64), 3, arm), 1)  # 16 x -log2(1 - e^-1)
        10.6
    """
    if alphabet == 0:
        return 0.0
    mu16, j = gi.arm_params(gi.contexts(q), layers)
    _, freq = gi.symbol_intervals(q.reshape(-1).astype(np.int64), mu16, j, alphabet)
    return float(np.sum(_PREC - np.log2(freq)))


def encode_level(q: np.ndarray, alphabet: int, layers: list) -> bytes:
    """The stream of one latent grid ``q`` (int, ``|q| <= alphabet``); empty when ``alphabet`` is 0.

    Examples:
        >>> arm = [(np.zeros((2, 12), np.int64), 8, np.array([0, -256]))]
        >>> len(encode_level(np.zeros((4, 4), np.int64), 3, arm)), encode_level(np.zeros((2, 2)), 0, arm)
        (5, b'')
    """
    q = np.asarray(q, dtype=np.int64)
    if alphabet == 0:
        if np.any(q):
            raise HyperprojError("encode_level: alphabet 0 needs an all-zero grid")
        return b""
    if np.abs(q).max() > alphabet:
        raise HyperprojError(f"encode_level: a latent exceeds the alphabet bound {alphabet}")
    h, w = q.shape
    mu16, j = gi.arm_params(gi.contexts(q), layers)
    start, freq = gi.symbol_intervals(q.reshape(-1), mu16, j, alphabet)
    order = _order(h, w)
    return encode_intervals(start[order], freq[order])


def decode_level(data: bytes, h: int, w: int, alphabet: int, layers: list) -> np.ndarray:
    """The ``(h, w)`` int64 grid of a stream from :func:`encode_level` (damage raises
    :class:`~hyperproj.HyperprojError`).

    Examples:
        >>> arm = [(np.zeros((2, 12), np.int64), 8, np.array([0, -256]))]
        >>> decode_level(encode_level(np.eye(3, dtype=np.int64), 1, arm), 3, 3, 1, arm).tolist()
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
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
        mu16, j = gi.arm_params(gi.contexts(q, rows, cols), layers)
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
