"""Classic image codecs through Pillow at a matched rate, for side-by-side tables and plots.

Examples:
    >>> import skimage.data
    >>> from hyperproj.inr import ImageSignal
    >>> sig = ImageSignal.from_array(skimage.data.astronaut()).resize(64)
    >>> row = classic_at_rate(sig, "JPEG", target_bpp=2.0)
    >>> row["bpp"] <= 2.0 and row["psnr"] > 20
    True
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import torch

from .._errors import HyperprojError

__all__ = ["classic_at_rate", "coin", "coin_width", "CLASSIC_FORMATS"]

CLASSIC_FORMATS = ("JPEG", "WEBP", "JPEG2000")


def classic_at_rate(signal: Any, fmt: str, target_bpp: float) -> dict[str, Any] | None:
    """Encode ``signal`` (an ImageSignal) with Pillow's ``fmt`` at the largest setting whose file
    is not above ``target_bpp``; returns bpp, bytes, PSNR, SSIM, seconds (``None`` if no setting
    fits). JPEG/WebP search quality 1–100; JPEG2000 searches compression ratios near ``24/bpp``.

    Examples:
        >>> classic_at_rate(None, "GIF", 1.0)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        hyperproj._errors.HyperprojError: ...
    """
    if fmt not in CLASSIC_FORMATS:
        raise HyperprojError(f"hyperproj.baselines: fmt must be one of {CLASSIC_FORMATS}, got {fmt!r}")
    from PIL import Image

    from ..inr.metrics import psnr, ssim

    img = signal.to_image(signal.values)
    t = time.perf_counter()

    def encode(q):
        buf = io.BytesIO()
        if fmt == "JPEG2000":
            # irreversible=True: the lossy 9/7 wavelet (Pillow's default is the lossless 5/3)
            img.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[q], irreversible=True)
        else:
            img.save(buf, fmt, quality=q)
        return buf.getvalue()

    if fmt == "JPEG2000":  # Pillow's rates are compression ratios against 24-bit RGB
        candidates = sorted(24 / target_bpp * f for f in (1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 2.0, 3.0))
    else:
        candidates = list(range(1, 101))
    best = None
    for q in candidates:
        data = encode(q)
        bpp = 8 * len(data) / signal.num_pixels
        if bpp <= target_bpp and (best is None or bpp > best[1]):
            best = (q, bpp, data)
    if best is None:
        return None
    q, bpp, data = best
    dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
    dec = torch.from_numpy(dec).reshape(signal.image.shape)
    return dict(method=fmt, config=f"q={q:.3g}", bpp=bpp, bytes=len(data), psnr=psnr(dec, signal.image),
                ssim=ssim(dec, signal.image), seconds=time.perf_counter() - t)


def coin_width(budget_bits: float, hidden_layers: int = 9, in_features: int = 2, out_features: int = 3) -> int:
    """Widest SIREN with ``hidden_layers`` hidden layers whose float16 parameters fit ``budget_bits``
    (COIN's accounting: every weight and bias at 16 bits, nothing else counted); 0 if none fits.

    Examples:
        >>> coin_width(0.3 * 768 * 512)  # a Kodak image at 0.3 bpp
        27
    """
    from ..inr.models import Siren

    width = 0
    while sum(p.numel() for p in Siren(in_features, width + 1, hidden_layers, out_features).parameters()) * 16 <= budget_bits:
        width += 1
    return width


def coin(signal: Any, bpp: float, *, steps: int | None = None, time_budget: float | None = None,
         hidden_layers: int = 9, seed: int = 0, progress: bool = False,
         fit_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """COIN (Dupont et al. 2021) trained the way :func:`hyperproj.compress` trains: the widest plain
    SIREN with ``hidden_layers`` hidden layers whose float16 weights fit ``bpp``, fitted with
    :func:`hyperproj.inr.fit`'s recipe (its default learning rate, warm-up, divergence guard) and
    the codec's minibatches (8,192 rows drawn by error for images over 16,384 pixels) with cosine
    decay, for ``steps`` steps or ``time_budget`` seconds (everything included), then rounded to
    float16. The rate is COIN's: parameters × 16 bits. ``fit_options`` go to ``fit`` (e.g. a
    ``callback``).

    Returns ``bpp``, ``psnr``, ``ssim``, ``seconds``, ``steps``, ``parameters``, ``width``.

    Examples:
        >>> import skimage.data
        >>> from hyperproj.inr import ImageSignal
        >>> sig = ImageSignal.from_array(skimage.data.astronaut()).resize(32)
        >>> row = coin(sig, bpp=8.0, steps=60, hidden_layers=2)
        >>> row["bpp"] <= 8.0 and row["psnr"] > 10
        True
    """
    from ..inr.fit import ErrorSampling, fit
    from ..inr.models import Siren

    if (steps is None) == (time_budget is None):
        raise HyperprojError("hyperproj.baselines.coin: pass exactly one of steps= and time_budget=")
    t0 = time.perf_counter()
    c = signal.shape[2]
    width = coin_width(bpp * signal.num_pixels, hidden_layers, 2, c)
    if width < 1:
        raise HyperprojError(f"hyperproj.baselines.coin: {bpp} bpp cannot hold even a width-1 SIREN")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = Siren(2, width, hidden_layers, c)
    finally:
        torch.random.set_rng_state(gen_state)
    params = sum(p.numel() for p in net.parameters())
    kwargs: dict[str, Any] = {"scheduler": "cosine", "progress": progress, **(fit_options or {})}
    if signal.num_pixels > 16384:
        kwargs.update(batch_size=8192, sampling=ErrorSampling())
    if time_budget is not None:
        # one evaluation before training, one after, one for the result (as compress reserves)
        tic = time.perf_counter()
        signal.evaluate(net)
        kwargs["time_budget"] = max(time_budget - 4 * (time.perf_counter() - tic) - (tic - t0) - 0.5, 0.5)
    hist = fit(net, signal, steps if steps is not None else 10**7, **kwargs)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())
    m = signal.evaluate(net)
    return {"bpp": params * 16 / signal.num_pixels, "psnr": m["psnr"], "ssim": m["ssim"],
            "seconds": time.perf_counter() - t0, "steps": hist.step[-1] if hist.step else 0,
            "parameters": params, "width": width}
