"""Rate: from a bit budget to a model size, and what to do with a file over budget.

* :func:`budget_bytes` — the byte budget of a ``compress`` call (``bpp`` × samples / 8, or
  ``max_bytes``);
* :func:`size_bound` — an upper bound (raw bit packing) or an estimate (at a given number of bits
  per latent symbol) of a file's size, header and container included, without training anything;
* :func:`largest_n` — the largest latent size whose file fits (bisection on a monotone test);
* :func:`budgeted_bits` — the bits per latent symbol budgeted before training (the rANS gain
  measured on trained latents, a little kept back);
* :func:`over_budget` and :func:`smaller_latent` — the over-budget path: code the trained model
  more coarsely when the clock leaves too little time to train a smaller one, else shrink the
  latent to the size its measured bits per symbol allow.

Examples:
    >>> largest_n(lambda n: n * n <= 50, high=100)
    7
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .format import error, read_container, write_container
from .quant import Bits, width

__all__ = ["budget_bytes", "size_bound", "largest_n", "budgeted_bits", "over_budget", "smaller_latent"]

_RANS_OVERHEAD = 8  # model id + two float16 + final state (<= 5 bytes): a safe upper bound

# rans gain (bits/symbol below the bit width) that compress budgets for a trained latent. Measured on
# Kodak at 0.3 bpp (docs/codec.md): offset latents code at 7.2 bits (8-bit) and 6.3 bits (7-bit);
# unit-scale latents stay near uniform (7.75 bits at 8-bit). A little is kept back: an over-budget
# file costs a shrink-and-refit round.
_LATENT_SLACK_BITS = {"offset": {8: 0.7, 7: 0.6, 6: 0.5}, "unit": {8: 0.2}}

# With a time budget, a file over budget is re-planned with a smaller latent only when at least
# this share of the budget is left to fine-tune it (otherwise the clock leaves the warm start
# about half a second): coding the trained latent with one bit less costs about 0.5 dB (kodim23,
# 8 -> 7 bits), a least-squares warm start of a smaller random subspace without fine-tuning more.
_REPLAN_MIN_TIME_SHARE = 0.25


def budget_bytes(signal: Any, samples: int, bpp: Any, max_bytes: int | None) -> int:
    """``max_bytes``, else ``bpp × samples / 8`` (refused without samples or a positive ``bpp``)."""
    if max_bytes is not None:
        return int(max_bytes)
    if not samples:
        raise error(f"compress: pass max_bytes= for a {type(signal).__name__} (bpp needs pixels)")
    if not (isinstance(bpp, (int, float)) and bpp > 0 and math.isfinite(bpp)):
        raise error(f"compress: bpp must be a positive number, got {bpp!r}")
    return int(bpp * samples) // 8


def size_bound(header_like: dict[str, Any], n: int, bits: Bits, bias_bits: Bits, n_params: int,
               n_param_tensors: int, latent_bits_per_symbol: float | None) -> int:
    """Upper bound (``latent_bits_per_symbol=None``: raw packing) or estimate of the file size.

    ``header_like`` is the header with the widest values its fields can take (the latent size is
    filled in); the sections are placeholders of their bounded length.
    """
    header = dict(header_like)
    header["n"] = n
    ranges = (0 if bits == "float16" else 8) + (0 if bias_bits == "float16" else 8 * n_param_tensors)
    if latent_bits_per_symbol is None:
        z = 1 + math.ceil(n * width(bits) / 8)
    else:
        z = _RANS_OVERHEAD + math.ceil(n * latent_bits_per_symbol / 8)
    sections = {"r": ranges, "z": z}
    if n_params:
        sections["b"] = 1 + math.ceil(n_params * width(bias_bits) / 8)
    size = len(write_container(header, {k: bytes(v) for k, v in sections.items()}))
    return size + 4  # +4: deflate of the real table may differ by a byte or so


def largest_n(fits: Callable[[int], bool], high: int) -> int:
    """Largest n in [0, high] with fits(n) (fits is monotone decreasing in n)."""
    if high < 1 or not fits(1):
        return 0
    lo, hi = 1, high
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def budgeted_bits(bits: Bits, method: str, latent_scale: str) -> float:
    """Bits per latent symbol to budget before training (``rans`` codes a trained latent below its width).

    Examples:
        >>> budgeted_bits(8, "rans", "offset"), budgeted_bits(8, "raw", "offset")
        (7.3, 8.0)
    """
    slack = _LATENT_SLACK_BITS.get(latent_scale, {}).get(width(bits), 0.0) if method == "rans" else 0.0
    return width(bits) - slack


def smaller_latent(n: int, n_safe: int, data: bytes, budget: int, plan: Callable[[float], int]) -> int:
    """The latent size for the next attempt after ``data`` (latent ``n``) came out over ``budget``:
    what ``plan`` allows at the bits per symbol the latent really took, and at least the overshoot
    fewer symbols; never below ``n_safe`` (the size whose raw-packed file fits), so the loop ends."""
    if n <= n_safe:
        raise error(f"compress: internal error, the safe latent size {n} gave {len(data)} > {budget} bytes")
    sections = read_container(data)[1]
    bps = 8 * (len(sections["z"]) - _RANS_OVERHEAD) / n + 0.02
    new_n = plan(bps)
    over = len(data) - budget
    new_n = min(new_n, n - max(1, math.ceil(8 * over / max(bps, 1e-3))))
    return max(new_n, n_safe)


def over_budget(coder: Any, net: Any, data: bytes, job: Any) -> bytes | None:
    """The over-budget path of ``compress`` for a file ``data`` of the trained ``net``.

    With a time budget of which less than a quarter is left, the family codes the trained model
    more coarsely (``coder.coarser``; a warm start without time to fine-tune it is far worse) and
    that file is returned if it fits. Otherwise the family re-plans a smaller model
    (``coder.shrink``) and ``None`` is returned: train again.
    """
    left = job.left()
    if left is not None and left < _REPLAN_MIN_TIME_SHARE * job.time_budget:
        fitted = coder.coarser(net, job.budget)
        if fitted is not None:
            return fitted
    coder.shrink(net, data)
    return None
