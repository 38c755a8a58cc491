"""rANS coding of latent grids with per-symbol probabilities from the integer ARM.

Every latent of a level is coded under its own discretised Laplace, whose integer cumulative
frequencies come from :mod:`hyperproj.inr._grid_int` (integer ARM, IEEE-exact CDF), so the decoder
rebuilds exactly the table the encoder used. The decoder needs each latent's causal neighbours
before its own distribution: it walks the grid in wavefront steps (:func:`~hyperproj.inr._grid_int.wavefront`),
running the ARM once per step on all the latents of that step (of every level at once: the levels
are independent streams, :func:`decode_levels`) and looking each latent's table up by its
``(mu16, j)`` (a table is computed once per level); the encoder codes the symbols in
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

__all__ = ["encode_intervals", "start_decoder", "encode_level", "decode_level", "decode_levels", "level_bits",
           "shrink_to_prediction"]

_PREC = gi.PREC
_LOWER = 1 << (_PREC + 7)
_NFLUSH = 4
_BLOCK_ENTRIES = 1 << 13  # the most table entries computed at once for one missing table


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


def _wavefront_slots(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Every latent's index in the zero-padded flat grid ``(h + 2, w + 4)``, in decoding order
    (:func:`~hyperproj.inr._grid_int.wavefront`: steps ``t = col + 3·row``, rows ascending), and
    where each step starts in that order (``w + 3·(h - 1) + 1`` bounds)."""
    rows, cols = np.divmod(np.arange(h * w, dtype=np.int64), w)
    t = cols + 3 * rows
    order = np.lexsort((rows, t))
    slots = (rows[order] + 2) * (w + 4) + cols[order] + 2
    bounds = np.concatenate([[0], np.cumsum(np.bincount(t, minlength=w + 3 * (h - 1)))])
    return slots, bounds


class _Grid:
    """One latent grid walked in decoding order: zero-padded ``(h + 2, w + 4)``, flat."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.pad = np.zeros((h + 2) * (w + 4), dtype=np.int64)
        self.slots, self.bounds = _wavefront_slots(h, w)
        self.offsets = np.array([di * (w + 4) + dj for di, dj in gi.CONTEXT], dtype=np.int64)
        self.steps = len(self.bounds) - 1

    def contexts(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        at = self.slots[self.bounds[t] : self.bounds[t + 1]]
        return at, self.pad[at[:, None] + self.offsets]

    def unpadded(self) -> np.ndarray:
        return self.pad.reshape(self.h + 2, self.w + 4)[2:, 2 : 2 + self.w].copy()


class _Shrinking(_Grid):
    """One float grid ``y`` turned into integers in decoding order, each moved towards the ARM's
    location from its already-chosen neighbours by ``s`` (then rounded, within ``±alphabet``)."""

    def __init__(self, y: np.ndarray, s: float, alphabet: int):
        super().__init__(*y.shape)
        self.s, self.alphabet = s, alphabet
        self.y = np.zeros_like(self.pad, dtype=np.float64)
        self.y.reshape(self.h + 2, self.w + 4)[2:, 2 : 2 + self.w] = y

    def visit(self, at: np.ndarray, mu16: np.ndarray, j: np.ndarray) -> None:
        y, mu = self.y[at], mu16 / float(1 << gi.MU_BITS)
        r = y - mu
        q = np.where(np.abs(r) <= self.s, np.round(mu), np.round(y - np.sign(r) * self.s))
        self.pad[at] = np.clip(q, -self.alphabet, self.alphabet).astype(np.int64)


def shrink_to_prediction(latents: list[np.ndarray], s: float, layers: list) -> list[np.ndarray]:
    """Float latent grids as integers, each latent moved by ``s`` towards the location ``mu`` the
    integer ARM ``layers`` predicts for it from its causal neighbours as already chosen (in
    decoding order), then rounded: ``round(mu)`` where ``|y − mu| <= s``, else ``round(y ∓ s)``.
    ``s = 0`` is plain rounding; a larger ``s`` codes every symbol closer to its distribution's
    peak, so fewer bits (shrinking towards zero instead moved latents *off* the ARM's locations:
    a 256-px astronaut file grew 27 % at a shrink of 0.5). Values stay within each grid's rounded
    alphabet ``max |round(y)|``.

    Examples:
        >>> arm = [(np.zeros((2, 12), np.int64), 8, np.array([256, 0]))]  # mu = 1 everywhere
        >>> y = [np.array([[3.2, -0.4, 1.6]])]
        >>> [g.tolist() for g in shrink_to_prediction(y, 0.0, arm)], shrink_to_prediction(y, 1.0, arm)[0].tolist()
        ([[[3, 0, 2]]], [[2, 1, 1]])
    """
    if not (isinstance(s, (int, float)) and np.isfinite(s) and s >= 0):
        raise HyperprojError(f"shrink_to_prediction: s must be a finite number >= 0, got {s!r}")
    alphabets = [int(np.abs(np.round(y)).max()) if y.size else 0 for y in latents]
    grids = [_Shrinking(np.asarray(y, np.float64), float(s), a) if a else np.zeros(np.shape(y), np.int64)
             for y, a in zip(latents, alphabets)]
    _walk([g for g in grids if isinstance(g, _Shrinking)], layers, max(alphabets, default=0))
    return [g.unpadded() if isinstance(g, _Shrinking) else g for g in grids]


class _Level(_Grid):
    """One latent stream being decoded: its padded grid, rANS state and CDF tables by ``(mu16, j)``."""

    def __init__(self, data: bytes, h: int, w: int, alphabet: int, tables: dict):
        super().__init__(h, w)
        self.data, self.alphabet, self.tables = data, alphabet, tables
        self.x, self.pos = start_decoder(data)

    def visit(self, at: np.ndarray, mu16: np.ndarray, j: np.ndarray) -> None:
        """rANS-decode the latents at padded slots ``at`` under ``(mu16, j)`` (one step)."""
        keys = ((mu16 << 7) + (j - gi.J_MIN)).tolist()
        tables = self.tables
        missing = set(keys).difference(tables)
        if missing:
            self._add_tables(np.array(sorted(missing), dtype=np.int64))
        x, pos, data = self.x, self.pos, self.data
        n, mask, prec, lower = len(data), (1 << _PREC) - 1, _PREC, _LOWER
        syms = []
        for k in keys:
            c = tables[k]
            slot = x & mask
            s = bisect_right(c, slot) - 1
            lo = c[s]
            x = (c[s + 1] - lo) * (x >> prec) + slot - lo
            while x < lower:
                if pos >= n:
                    raise HyperprojError("decode: a latent stream ended early (the file is damaged)")
                x = (x << 8) | data[pos]
                pos += 1
            syms.append(s)
        self.x, self.pos = x, pos
        self.pad[at] = np.array(syms, dtype=np.int64) - self.alphabet

    def _add_tables(self, keys: np.ndarray) -> None:
        """Compute the tables of ``keys`` (``mu16 << 7 | j - J_MIN``) with the rest of their blocks
        (8 scales by up to 16 locations, at most ``_BLOCK_ENTRIES`` integers): a table depends on
        ``(mu16, j, alphabet)`` alone, and neighbours come cheaper in one call than one call each."""
        span = max(1, min(16, _BLOCK_ENTRIES // (8 * (2 * self.alphabet + 2))))
        blocks = np.unique(np.stack([(keys >> 7) // span, (keys & 127) >> 3], 1), axis=0)
        mu = (blocks[:, :1] * span + np.arange(span))[:, :, None]
        jj = ((blocks[:, 1:] << 3) + np.arange(8))[:, None, :]
        mu, jj = np.broadcast_arrays(mu, jj)
        ok = jj <= gi.J_MAX - gi.J_MIN
        mu, jj = mu[ok], jj[ok]
        table = gi.laplace_cdf(mu, jj + gi.J_MIN, self.alphabet).tolist()
        self.tables.update(zip(((mu << 7) + jj).tolist(), table))

    def grid(self) -> np.ndarray:
        if self.x != _LOWER or self.pos != len(self.data):
            raise HyperprojError("decode: a latent stream is corrupt (final coder state or length check failed)")
        return self.unpadded()


def decode_levels(streams: list[bytes], shapes: list[tuple[int, int]], alphabets: list[int],
                  layers: list) -> list[np.ndarray]:
    """The int64 grids of several streams from :func:`encode_level` under one ARM ``layers``, one
    grid per ``(h, w)`` of ``shapes`` (damage raises :class:`~hyperproj.HyperprojError`).

    The levels are decoded in lockstep: step ``t`` of every level's wavefront order goes through
    one ARM call; each table of cumulative frequencies is computed once per distinct
    ``(mu16, j)`` of a level. The grids are the ones :func:`decode_level` gives level by level.

    Examples:
        >>> arm = [(np.zeros((2, 12), np.int64), 8, np.array([0, -256]))]
        >>> qs = [np.eye(3, dtype=np.int64), np.zeros((2, 2), np.int64), np.array([[2, -1]])]
        >>> data = [encode_level(q, a, arm) for q, a in zip(qs, [1, 0, 2])]
        >>> [g.tolist() for g in decode_levels(data, [(3, 3), (2, 2), (1, 2)], [1, 0, 2], arm)]
        [[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0], [0, 0]], [[2, -1]]]
    """
    out: list[np.ndarray | _Level] = []
    tables: dict[int, dict] = {}
    for data, (h, w), a in zip(streams, shapes, alphabets):
        if a == 0:
            if data:
                raise HyperprojError("decode: an all-zero latent level must have an empty stream")
            out.append(np.zeros((h, w), dtype=np.int64))
        else:
            out.append(_Level(data, h, w, a, tables.setdefault(a, {})))
    _walk([lv for lv in out if isinstance(lv, _Level)], layers, max(alphabets, default=0))
    return [lv.grid() if isinstance(lv, _Level) else lv for lv in out]


def _walk(active: list, layers: list, alphabet: int) -> None:
    """Step ``t`` of every level's wavefront order at once: one ARM call on the contexts of all
    of them, then each level's ``visit(at, mu16, j)`` fills its latents of that step."""
    arm = gi.arm_function(layers, alphabet)
    for t in range(max((lv.steps for lv in active), default=0)):
        todo = [(lv, *lv.contexts(t)) for lv in active if t < lv.steps]
        todo = [d for d in todo if len(d[1])]
        if not todo:
            continue
        ctx = todo[0][2] if len(todo) == 1 else np.concatenate([d[2] for d in todo])
        mu16, j = arm(ctx)
        first = 0
        for lv, at, _ in todo:
            lv.visit(at, mu16[first : first + len(at)], j[first : first + len(at)])
            first += len(at)


def decode_level(data: bytes, h: int, w: int, alphabet: int, layers: list) -> np.ndarray:
    """The ``(h, w)`` int64 grid of a stream from :func:`encode_level` (damage raises
    :class:`~hyperproj.HyperprojError`); :func:`decode_levels` for one level.

    Examples:
        >>> arm = [(np.zeros((2, 12), np.int64), 8, np.array([0, -256]))]
        >>> decode_level(encode_level(np.eye(3, dtype=np.int64), 1, arm), 3, 3, 1, arm).tolist()
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
    return decode_levels([data], [(h, w)], [alphabet], layers)[0]
