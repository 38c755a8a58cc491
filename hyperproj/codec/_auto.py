"""``family="auto"``: which model family codes a signal, from the measurements
(:func:`auto_family`) and from the arguments of the call (:func:`auto_coder`)."""

from __future__ import annotations

import inspect
from typing import Any

from .._errors import HyperprojError
from .families import DEFAULT_FAMILY, family_names
from .families import get_family as _get_family
from .format import error
from .job import Job

__all__ = ["AUTO_GRID_MIN_BPP", "AUTO_GRID_MAX_BPP", "AUTO_GRID_MIN_PIXELS", "auto_family", "auto_coder", "is_grid", "declared"]

AUTO_GRID_MIN_BPP = 0.3
"""``family="auto"`` codes an image with the latent-grid family from this rate up (bits per pixel
of the whole file). Measured on Kodak (768×512, 120 s, one thread; ``docs/latent_grid.md``,
"Which family"): at 0.3, 0.5 and 0.8 bpp the grid family is at or above the D'OH family on each of
kodim01/05/13/23 (+0.02 to +2.8 dB); at 0.2 bpp on two of them only (its rate control
undershoots), at 0.1 bpp it fails on two (kodim05 14.3 dB, kodim23 22.8 dB at 0.064 bpp, against
19.3 and 28.1 dB for D'OH)."""

AUTO_GRID_MAX_BPP = 2.0
"""... and up to this rate. From 1 bpp the grid family trains its full-resolution level
(:data:`~hyperproj.codec.families.grid.FINEST_MIN_BPP`); measured against the D'OH family (one
thread, 2026-12-07; ``docs/latent_grid.md``, "High rates: the finest level"): the README demo
(astronaut, 256 px, 1,500 steps) 30.25 / 34.27 dB at 0.98 / 1.99 bpp against 28.00 / 31.69 at
0.99 / 1.94; kodim01 at 120 s 28.64 / 32.95 dB at 0.92 / 1.97 bpp against 24.19 / 24.69; kodim23
at 120 s 32.78 / 33.10 at 0.76 / 0.95 bpp (its file stops short) against 33.60-33.88 / 32.91-33.76.
Above 2 bpp the grid's file stops growing (astronaut at a 4 bpp target, 300 steps: 1.91 bpp)."""

AUTO_GRID_MIN_PIXELS = 1 << 16
"""... for images of at least this many pixels (256×256, the smallest size measured)."""


def auto_family(signal: Any, bpp: float | None = None) -> str:
    """The family ``"auto"`` resolves to for ``signal`` coded at ``bpp`` bits per pixel:
    ``"grid"`` for an image of at least :data:`AUTO_GRID_MIN_PIXELS` pixels at
    :data:`AUTO_GRID_MIN_BPP` ≤ ``bpp`` ≤ :data:`AUTO_GRID_MAX_BPP`; the default family
    (``"doh"``) for every other image or signal, and when the rate is unknown (``bpp=None``).

    Examples:
        >>> import numpy as np
        >>> kodak = np.zeros((512, 768, 3), np.uint8)
        >>> auto_family(kodak, 0.3), auto_family(kodak, 0.1), auto_family(kodak, 2.0), auto_family(kodak, 4.0)
        ('grid', 'doh', 'grid', 'doh')
        >>> auto_family(np.zeros((128, 128, 3), np.uint8), 0.5)
        'doh'
    """
    from ..inr.signals import ImageSignal
    from .signals import as_signal

    try:
        sig = as_signal(signal)
    except HyperprojError:
        return DEFAULT_FAMILY
    if not isinstance(sig, ImageSignal) or bpp is None:
        return DEFAULT_FAMILY
    h, w, _ = sig.shape
    grid = h * w >= AUTO_GRID_MIN_PIXELS and AUTO_GRID_MIN_BPP <= bpp <= AUTO_GRID_MAX_BPP
    return "grid" if grid else DEFAULT_FAMILY


def auto_coder(job: Job, model: Any, latent_dim: Any, projection: Any, bpp: float, option_keys: set[str],
               settings: set[str], make: Any) -> Any:
    """``family="auto"``'s coder. The family: a model's own (a ``LatentGrid``: grid; another
    module, a ``latent_dim`` or a ``projection`` kind: the default family, D'OH); else the one
    family that declares every option given; else :func:`auto_family` for the signal and rate.
    Only when the call carries options or D'OH ``settings`` does a family that refuses them give
    way to the other (both refusing: one error naming both reasons); a refusal about the budget
    or the signal is the caller's to see, never a reason to switch family."""
    if is_grid(model):
        first = "grid"
    elif model is not None or latent_dim is not None or projection != "auto":  # D'OH's own arguments
        first = DEFAULT_FAMILY
    else:
        declaring = [n for n in family_names() if option_keys and option_keys <= declared(_get_family(n))]
        first = declaring[0] if len(declaring) == 1 else auto_family(job.signal, bpp)
    if not (option_keys or settings):
        return make(first)
    reasons = []
    for name in [first, *(n for n in (DEFAULT_FAMILY, "grid") if n != first)]:
        try:
            return make(name)
        except HyperprojError as e:
            reasons.append(f"{name}: " + str(e).removeprefix("hyperproj.codec: ").removeprefix("compress: "))
    raise error("compress: family='auto' found no family that takes these arguments — " + "; ".join(reasons))


def is_grid(model: Any) -> bool:
    from ..inr.latent_grid import LatentGrid

    return isinstance(model, LatentGrid)


def declared(cls: type) -> set[str]:
    """The keyword options a family's constructor names explicitly."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}
