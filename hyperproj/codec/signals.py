"""The signal side of the codec: what ``compress`` accepts as a signal and what a file records of it.

A file's header field ``x`` holds the signal metadata a receiver needs to draw the signal again:
``{"i": [H, W, C]}`` for an image, ``{"a": [samples, channels, rate, scale]}`` for audio,
``{"o": resolution}`` for occupancy, plus ``"w"`` (the sample window) in a cropped file.

Examples:
    >>> from hyperproj.inr import ImageSignal
    >>> sig = as_signal(torch.rand(4, 6, 3).numpy())
    >>> signal_meta(sig), samples(sig)
    ({'i': [4, 6, 3]}, 24)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..inr.signals import AudioSignal, ImageSignal, OccupancySignal, Signal, grid_coords
from .format import error

__all__ = ["as_signal", "samples", "signal_meta", "image_shape", "window_coords"]


def as_signal(signal: Any) -> Signal:
    """``signal`` as a :mod:`hyperproj.inr` signal: a signal as is, an image path or array as an image."""
    if isinstance(signal, Signal):
        return signal
    if isinstance(signal, (str, os.PathLike)):
        return ImageSignal.from_file(signal)
    if isinstance(signal, (np.ndarray, torch.Tensor)):
        return ImageSignal.from_array(np.asarray(signal))
    raise error(f"signal must be a hyperproj.inr Signal, an image path or an array, got {type(signal).__name__}")


def samples(signal: Any) -> int:
    """Pixels of an image, samples of an audio clip, 0 otherwise (what bits per pixel count)."""
    if isinstance(signal, ImageSignal):
        return signal.num_pixels
    if isinstance(signal, AudioSignal):
        return signal.num_samples
    return 0


def signal_meta(signal: Any) -> dict[str, Any] | None:
    """The header field ``x`` for a signal (a dict passes as is, ``None`` gives ``None``)."""
    if signal is None:
        return None
    if isinstance(signal, Mapping):
        return dict(signal)
    if isinstance(signal, ImageSignal):
        return {"i": list(signal.shape)}
    if isinstance(signal, AudioSignal):
        return {"a": [signal.num_samples, signal.values.shape[1], signal.sample_rate, signal.scale]}
    if isinstance(signal, OccupancySignal):
        return {"o": signal.grid_resolution}
    raise error(f"signal must be an ImageSignal, AudioSignal, OccupancySignal, a dict or None, got {type(signal).__name__}")


def image_shape(meta: Any) -> tuple[int, int, int] | None:
    """``(H, W, C)`` of the image a file's signal metadata describes, else ``None``.

    Examples:
        >>> image_shape({"i": [2, 3, 1]}), image_shape({"a": [10, 1, 8000, 1.0]})
        ((2, 3, 1), None)
    """
    if isinstance(meta, dict) and isinstance(meta.get("i"), list) and len(meta["i"]) == 3:
        return tuple(int(v) for v in meta["i"])  # type: ignore[return-value]
    return None


def window_coords(model: Any) -> torch.Tensor | None:
    """The coordinates of a cropped file's sample window (``None`` when the file is not a crop).

    Examples:
        >>> class M: hpz_signal = {"i": [1, 2, 1], "w": [1, 0, 2, 3]}
        >>> window_coords(M()).tolist()
        [[0.5, -1.0], [0.5, 0.0]]
    """
    meta = getattr(model, "hpz_signal", None)
    if not isinstance(meta, dict) or "w" not in meta:
        return None
    w = meta["w"]
    if isinstance(meta.get("i"), list) and len(w) == 4:
        h, wd = int(meta["i"][0]), int(meta["i"][1])
        top, left, full_h, full_w = (int(v) for v in w)
        grid = grid_coords((full_h, full_w)).view(full_h, full_w, 2)
        return grid[top : top + h, left : left + wd].reshape(-1, 2)
    if isinstance(meta.get("a"), list) and len(w) == 2:
        start, full_n = int(w[0]), int(w[1])
        return torch.linspace(-1.0, 1.0, full_n)[start : start + int(meta["a"][0]), None]
    return None
