"""Rendering: the signal a decoded model represents, drawn from the metadata its file carries.

Any decoded model of any family renders the same way: its ``hpz_signal`` (header ``x``) says
what the samples are (image H×W×C, audio samples, channels, rate and scale, a crop's window), and
the model is evaluated on those coordinates.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..inr.signals import AudioSignal, ImageSignal
from .format import error
from .signals import image_shape, window_coords

__all__ = ["render"]


def render(model: nn.Module, shape: tuple[int, int, int] | None = None, path: str | os.PathLike | None = None):
    """The signal a (decoded) model represents: a PIL image for images (H×W×C from the file, or
    ``shape``), an (N, C) tensor at the original scale for audio (written as wav if ``path``).
    With ``path`` an image is saved too (format from the suffix).

    Examples:
        >>> from hyperproj.inr import Siren, ImageSignal
        >>> from hyperproj.codec import decode, encode
        >>> hyper = hyperproj.reparametrize(Siren(2, 8, 1, 3), latent_dim=20, seed=0)
        >>> img = render(decode(encode(hyper, signal=ImageSignal(torch.rand(6, 5, 3)))))
        >>> img.size
        (5, 6)
    """
    meta = getattr(model, "hpz_signal", None)
    shape = shape or image_shape(meta)
    if shape is not None:
        sig = ImageSignal(torch.zeros(*shape))
        img = sig.to_image(sig.render(model, window_coords(model)))
        if path is not None:
            img.save(path)
        return img
    if isinstance(meta, dict) and isinstance(meta.get("a"), list) and len(meta["a"]) == 4:
        n, c, rate, scale = meta["a"]
        sig = AudioSignal(np.zeros((int(n), int(c)), np.float32), int(rate), float(scale))
        pred = sig.render(model, window_coords(model))
        if path is not None:
            sig.to_wav(pred, path)
        return pred * sig.scale
    raise error("render: the model carries no image/audio metadata; pass shape=(H, W, C)")
