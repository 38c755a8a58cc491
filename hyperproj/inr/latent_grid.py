"""``LatentGrid``: a Cool-chic / C3 style image model — a pyramid of latent grids, ×2 upsampling,
a tiny synthesis network and an autoregressive entropy model (ARM) of the latents.

* **Latents.** ``levels`` grids, one channel each, from full resolution down by halves
  (``ceil``); they start at zero and are what the file mostly stores.
* **Upsampling.** From the coarsest grid up: ×2 with a fixed separable 4-tap Catmull-Rom filter
  (taps in 1/128, exact in integers), cropped, the next level concatenated as a new channel — so
  every level reaches full resolution as one channel of a ``levels``-channel tensor.
* **Synthesis.** Per pixel (1×1 convolutions): ``levels → hidden… → channels``, ReLU between.
* **ARM.** For every latent, an MLP over its 12 causal neighbours (:data:`_grid_int.CONTEXT`)
  predicts ``mu`` and ``log2 b`` of a Laplace distribution; the rate is ``-log2`` of the
  probability of the quantized latent's bin. One ARM is shared by all levels.
* **Training** (:func:`fit_grid`): loss = MSE + λ · bits per pixel; uniform noise on the latents
  first, straight-through rounding at the end; Adam with cosine decay over the steps or the clock;
  λ follows a bit target when one is given (multiplicative dual update on the rate of the rounded
  latents).

The decoder never runs this float model: :meth:`LatentGrid.decode_pixels` (fixed-point networks,
integer latents, see :mod:`hyperproj.inr._grid_int`) is what a file shows on any machine.

Examples:
    >>> import torch
    >>> from hyperproj.inr import ImageSignal
    >>> sig = ImageSignal(torch.rand(16, 12, 3))
    >>> net = LatentGrid(16, 12, levels=3)
    >>> hist = fit_grid(net, sig, steps=5, lam=1e-3)
    >>> tuple(net.image().shape), len(hist["loss"])
    ((16, 12, 3), 5)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._errors import HyperprojError
from . import _grid_int as gi
from .registry import register_model

__all__ = ["LatentGrid", "fit_grid", "level_sizes"]


def level_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Grid sizes from full resolution down by halves (``ceil``).

    Examples:
        >>> level_sizes(5, 8, 3)
        [(5, 8), (3, 4), (2, 2)]
    """
    out = [(height, width)]
    for _ in range(levels - 1):
        h, w = out[-1]
        out.append(((h + 1) // 2, (w + 1) // 2))
    return out


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise HyperprojError(f"hyperproj.inr.LatentGrid: {name} must be an int in [{low}, {high}], got {value!r}")
    return int(value)


def _up2_filter(dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor([gi.UP_EVEN, gi.UP_ODD], dtype=dtype) / 128.0


def _edge_index(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(-2, n + 2, device=device).clamp(0, n - 1)


def up2(x: torch.Tensor) -> torch.Tensor:
    """``(C, h, w)`` → ``(C, 2h, 2w)`` with the fixed ×2 filter (the float twin of
    :func:`hyperproj.inr._grid_int.up2`).

    Examples:
        >>> up2(torch.ones(1, 2, 3)).shape
        torch.Size([1, 4, 6])
    """
    c, h, w = x.shape
    k = _up2_filter(x.dtype)
    # width: pad 2 each side, two phases of a 5-tap filter, interleave
    xp = x[None].index_select(3, _edge_index(w, x.device))  # (1, C, h, w+4), edges replicated
    y = F.conv2d(xp, k.view(2, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)  # (1, 2C, h, w)
    y = y.view(c, 2, h, w).permute(0, 2, 3, 1).reshape(c, h, 2 * w)
    yp = y[None].index_select(2, _edge_index(h, y.device))
    z = F.conv2d(yp, k.view(2, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)  # (1, 2C, h, 2w)
    return z.view(c, 2, h, 2 * w).permute(0, 2, 1, 3).reshape(c, 2 * h, 2 * w)


def _laplace_bits(q: torch.Tensor, mu: torch.Tensor, log2b: torch.Tensor) -> torch.Tensor:
    """``-log2 P(q)`` of the Laplace (mu, 2**log2b) mass on ``[q - 1/2, q + 1/2]``."""
    b = torch.exp2(log2b)
    d = q - mu

    def cdf(x: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.5 * torch.sign(x) * (-torch.expm1(-x.abs() / b))

    p = cdf(d + 0.5) - cdf(d - 0.5)
    return -torch.log2(p.clamp_min(2.0**-16))


@register_model("latent-grid")
class LatentGrid(nn.Module):
    """The latent-grid image model (see the module docstring).

    Args:
        height: image height in pixels.
        width: image width in pixels.
        channels: output channels (3 for RGB).
        levels: latent grids (full resolution down to ``1/2**(levels-1)``).
        hidden: synthesis hidden widths (1×1 convolutions).
        arm_hidden: width of the ARM's two hidden layers.

    ``forward(coords)`` renders the pixels at :func:`~hyperproj.inr.grid_coords`-style
    coordinates (for :meth:`ImageSignal.evaluate <hyperproj.inr.ImageSignal.evaluate>` and
    :func:`hyperproj.codec.render`): the integer decoder's pixels once :meth:`set_decoded` was
    called (a decoded file), else the float model with rounded latents.

    Examples:
        >>> net = LatentGrid(8, 8, levels=2, hidden=(8,), arm_hidden=4)
        >>> [tuple(p.shape) for p in net.latents]
        [(8, 8), (4, 4)]
        >>> net.image().shape
        torch.Size([8, 8, 3])
    """

    def __init__(self, height: int, width: int, channels: int = 3, levels: int = 7,
                 hidden: Sequence[int] = (24, 24), arm_hidden: int = 16):
        super().__init__()
        height = _check_int("height", height, 1, 1 << 15)
        width = _check_int("width", width, 1, 1 << 15)
        channels = _check_int("channels", channels, 1, 4)
        levels = _check_int("levels", levels, 1, 12)
        arm_hidden = _check_int("arm_hidden", arm_hidden, 1, 256)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise HyperprojError(f"hyperproj.inr.LatentGrid: hidden must be a list of ints, got {hidden!r}")
        hidden = [_check_int("hidden width", h, 1, 512) for h in hidden]
        self.config = {"height": height, "width": width, "channels": channels, "levels": levels,
                       "hidden": list(hidden), "arm_hidden": arm_hidden}
        self.sizes = level_sizes(height, width, levels)
        self.latents = nn.ParameterList([nn.Parameter(torch.zeros(h, w)) for h, w in self.sizes])
        widths = [levels, *hidden, channels]
        self.synthesis = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        with torch.no_grad():
            self.synthesis[-1].bias.fill_(0.5)
        k = len(gi.CONTEXT)
        self.arm = nn.ModuleList([nn.Linear(k, arm_hidden), nn.Linear(arm_hidden, arm_hidden), nn.Linear(arm_hidden, 2)])
        with torch.no_grad():  # start every latent at a narrow Laplace around 0
            self.arm[-1].weight.mul_(0.1)
            self.arm[-1].bias.copy_(torch.tensor([0.0, -1.0]))
        self._decoded: torch.Tensor | None = None

    # ------------------------------------------------------------------ float model
    def quantized_latents(self, mode: str = "round", start: int = 0) -> list[torch.Tensor]:
        """The latents (from level ``start``) as training sees them: ``"noise"`` (+U(−½, ½)),
        ``"ste"`` (rounded forward, identity backward), ``"round"`` (rounded, no gradient), ``"none"``.

        Examples:
            >>> [tuple(y.shape) for y in LatentGrid(4, 4, levels=2).quantized_latents("noise", start=1)]
            [(2, 2)]
        """
        out = []
        for y in list(self.latents)[start:]:
            if mode == "noise":
                out.append(y + torch.rand_like(y) - 0.5)
            elif mode == "ste":
                out.append(y + (torch.round(y) - y).detach())
            elif mode == "round":
                out.append(torch.round(y).detach())
            elif mode == "none":
                out.append(y)
            else:
                raise HyperprojError(f"LatentGrid: mode must be 'noise', 'ste', 'round' or 'none', got {mode!r}")
        return out

    def upsample(self, latents: Sequence[torch.Tensor]) -> torch.Tensor:
        """The latents as ``levels`` channels at full resolution: ``(H·W, levels)``, coarsest first.

        Examples:
            >>> net = LatentGrid(4, 6, levels=3)
            >>> net.upsample(net.quantized_latents()).shape
            torch.Size([24, 3])
        """
        x = latents[-1][None]
        for lat in reversed(latents[:-1]):
            h, w = lat.shape
            x = torch.cat([up2(x)[:, :h, :w], lat[None]], 0)
        return x.reshape(x.shape[0], -1).T

    def synthesize(self, feats: torch.Tensor) -> torch.Tensor:
        """Synthesis on ``(N, levels)`` features → ``(N, channels)``.

        Examples:
            >>> LatentGrid(4, 4, levels=2).synthesize(torch.zeros(5, 2)).shape
            torch.Size([5, 3])
        """
        for i, layer in enumerate(self.synthesis):
            feats = layer(feats)
            if i < len(self.synthesis) - 1:
                feats = F.relu(feats)
        return feats

    def revive_dead_units(self, feats: torch.Tensor, margin: float = 1e-2) -> int:
        """Re-arm the synthesis's dead ReLU units on the features ``feats`` ``(N, levels)`` (the
        pixels a training step sees); returns how many were re-armed.

        A hidden unit that is not positive on any pixel passes no gradient, so nothing brings it
        back (latents that start at zero make every pixel alike, which kills about half the units at
        the first step; a large step can kill more later). Its bias is moved so that it is
        ``margin`` above zero at the median pixel, and its outgoing weights are zeroed: the output
        is unchanged (the unit gave nothing) and the next steps train the unit again.

        Examples:
            >>> net = LatentGrid(4, 4, levels=2, hidden=(3,))
            >>> with torch.no_grad():
            ...     _ = net.synthesis[0].bias.fill_(-1.0)  # every unit dead on zero features
            >>> before = net.synthesize(torch.zeros(16, 2))
            >>> net.revive_dead_units(torch.zeros(16, 2)), bool(torch.equal(net.synthesize(torch.zeros(16, 2)), before))
            (3, True)
        """
        if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
            raise HyperprojError(f"LatentGrid.revive_dead_units: margin must be a finite number > 0, got {margin!r}")
        revived = 0
        with torch.no_grad():
            x = feats.detach()
            for layer, nxt in zip(self.synthesis[:-1], self.synthesis[1:]):
                pre = layer(x)
                dead = (~(pre > 0).any(0)).nonzero()[:, 0]
                if len(dead):
                    layer.bias[dead] += margin - pre[:, dead].median(0).values
                    nxt.weight[:, dead] = 0.0
                    revived += len(dead)
                    pre = layer(x)
                x = F.relu(pre)
        return revived

    def image(self, mode: str = "round") -> torch.Tensor:
        """The float model's image ``(H, W, C)`` with latents quantized by ``mode``.

        Examples:
            >>> LatentGrid(4, 4, levels=2, channels=1).image("none").shape
            torch.Size([4, 4, 1])
        """
        h, w = self.sizes[0]
        return self.synthesize(self.upsample(self.quantized_latents(mode))).reshape(h, w, -1)

    def arm_out(self, latents: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q, mu, log2b)`` for every latent (levels concatenated, raster order).

        Examples:
            >>> net = LatentGrid(4, 4, levels=2)
            >>> [t.shape[0] for t in net.arm_out(net.quantized_latents())]
            [20, 20, 20]
        """
        ctx, qs = [], []
        for y in latents:
            h, w = y.shape
            pad = F.pad(y, (2, 2, 2, 0))
            ctx.append(torch.stack([pad[2 + di : 2 + di + h, 2 + dj : 2 + dj + w].reshape(-1) for di, dj in gi.CONTEXT], 1))
            qs.append(y.reshape(-1))
        x = torch.cat(ctx)
        for i, layer in enumerate(self.arm):
            x = layer(x)
            if i < len(self.arm) - 1:
                x = F.relu(x)
        mu = x[:, 0]
        log2b = x[:, 1].clamp(gi.J_MIN / 8, gi.J_MAX / 8)
        return torch.cat(qs), mu, log2b

    def rate_bits(self, latents: Sequence[torch.Tensor]) -> torch.Tensor:
        """The ARM's estimate of the latents' bits (a differentiable scalar).

        Examples:
            >>> net = LatentGrid(4, 4, levels=2)
            >>> float(net.rate_bits(net.quantized_latents())) < 20  # zeros under a narrow Laplace
            True
        """
        q, mu, log2b = self.arm_out(latents)
        return _laplace_bits(q, mu, log2b).sum()

    # ------------------------------------------------------------------ integer model
    def integer_latents(self) -> list[np.ndarray]:
        """The rounded latents as int64 grids, finest first.

        Examples:
            >>> [q.shape for q in LatentGrid(3, 3, levels=2).integer_latents()]
            [(3, 3), (2, 2)]
        """
        return [torch.round(y.detach()).to(torch.int64).numpy() for y in self.latents]

    def integer_layers(self, which: str, q: int) -> list[tuple[np.ndarray, int, np.ndarray]]:
        """``which`` (``"synthesis"`` or ``"arm"``) as fixed-point layers ``(w_int, q, b_int)`` at
        step ``2**-q``.

        Examples:
            >>> [w.shape for w, q, b in LatentGrid(4, 4, levels=2, hidden=(5,)).integer_layers("synthesis", 8)]
            [(5, 2), (3, 5)]
        """
        q = _check_int("q", q, 0, gi.ACT_BITS)
        net = self._net(which)
        return [(torch.round(m.weight.detach().double() * 2**q).to(torch.int64).numpy(), q,
                 torch.round(m.bias.detach().double() * 2**q).to(torch.int64).numpy()) for m in net]

    def load_integer(self, latents: Sequence[np.ndarray], synthesis: list, arm: list) -> None:
        """Set the float parameters to the integer model's values (what a decoded file holds).

        Examples:
            >>> net = LatentGrid(2, 2, levels=1, hidden=(2,), arm_hidden=2)
            >>> net.load_integer([np.ones((2, 2), np.int64)], net.integer_layers("synthesis", 8),
            ...                  net.integer_layers("arm", 8))
            >>> net.latents[0].sum().item()
            4.0
        """
        with torch.no_grad():
            for p, q in zip(self.latents, latents):
                p.copy_(torch.as_tensor(np.asarray(q), dtype=torch.float32))
            for which, layers in (("synthesis", synthesis), ("arm", arm)):
                for m, (w, q, b) in zip(self._net(which), layers):
                    m.weight.copy_(torch.as_tensor(w, dtype=torch.float64) / 2**q)
                    m.bias.copy_(torch.as_tensor(b, dtype=torch.float64) / 2**q)

    def _net(self, which: str) -> nn.ModuleList:
        if which not in ("synthesis", "arm"):
            raise HyperprojError(f"LatentGrid: which must be 'synthesis' or 'arm', got {which!r}")
        return self.synthesis if which == "synthesis" else self.arm

    def decode_pixels(self, q_synthesis: int, latents: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """The integer decoder's ``(H, W, C)`` uint8 image: rounded latents (or ``latents``) and the
        synthesis at step ``2**-q_synthesis`` — bit-identical on every machine.

        Examples:
            >>> LatentGrid(4, 6, levels=2, hidden=(4,)).decode_pixels(8).shape
            (4, 6, 3)
        """
        lat = self.integer_latents() if latents is None else list(latents)
        return gi.synthesize(lat, self.integer_layers("synthesis", q_synthesis))

    # ------------------------------------------------------------------ decoded / rendering
    def set_decoded(self, pixels: np.ndarray | torch.Tensor | None) -> None:
        """Pin the integer decoder's ``(H, W, C)`` uint8 pixels as what ``forward`` renders.

        Examples:
            >>> net = LatentGrid(1, 2, levels=1)
            >>> net.set_decoded(np.full((1, 2, 3), 255, np.uint8))
            >>> net(torch.tensor([[0.0, -1.0]])).tolist()
            [[1.0, 1.0, 1.0]]
        """
        self._decoded = None if pixels is None else torch.as_tensor(np.asarray(pixels)).float().div(255.0)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Pixels at ``(N, 2)`` image coordinates (row, column as in :func:`~hyperproj.inr.grid_coords`)."""
        h, w = self.sizes[0]
        img = self._decoded if self._decoded is not None else self.image("round").detach()
        step = 2.0 / (max(h, w) - 1) if max(h, w) > 1 else 1.0
        r = torch.round(coords[:, 0].double() / step + (h - 1) / 2).long().clamp(0, h - 1)
        c = torch.round(coords[:, 1].double() / step + (w - 1) / 2).long().clamp(0, w - 1)
        return img[r, c]


def fit_grid(model: LatentGrid, signal: Any, *, lam: float = 1e-3, steps: int = 1000,
             time_budget: float | None = None, lr: float = 1e-2, noise_share: float = 0.8,
             target_bits: float | None = None, fixed_bits: float = 0.0, controller_every: int = 10,
             controller_gain: float = 0.25, coarse_share: float = 0.0, freeze_finest: bool = False,
             min_lr_share: float = 0.02, latent_lr_scale: float = 1.0, revive_every: int = 10,
             progress: bool = False) -> dict[str, Any]:
    """Rate–distortion training of ``model`` on an image ``signal``.

    Loss = MSE + ``lam`` · (latent bits / pixels). The first ``noise_share`` of the run adds uniform
    noise to the latents, the rest rounds them straight-through; Adam at ``lr`` with a cosine decay
    to ``min_lr_share`` · ``lr`` over ``steps`` or, with ``time_budget`` (seconds), over the clock;
    the latents' rate is ``latent_lr_scale`` times that (Adam moves a latent by about its rate per
    step, so a short run needs a large one to reach latents of several quantization steps).
    With ``target_bits`` (the file's bits minus the ``fixed_bits`` the networks and header take),
    every ``controller_every`` steps (after the first 5 %) λ is multiplied by
    ``(R/target) ** controller_gain`` (the log clamped to ±0.5), where R is the rate of the rounded
    latents. With ``coarse_share`` > 0 the first part of the run trains at the second level's
    resolution with the finest level held at zero (steps 4× cheaper; λ follows the target there
    too, so the coarse levels never hold more than the budget: measured on a textured crop of
    kodim01, a λ held still there let them grow to 1.6× the budget and the full-resolution phase
    lost 10 dB cutting them back). ``freeze_finest`` keeps the full-resolution level at zero all
    along (it is then neither trained nor stored). Every ``revive_every`` steps (0: never) the
    synthesis's dead ReLU units are re-armed (:meth:`LatentGrid.revive_dead_units`, the output
    unchanged).
    Returns the history (``loss``, ``psnr``, ``bits``, ``lam``, ``steps``, ``final_lam``,
    ``revived``: units re-armed).

    Examples:
        >>> import torch
        >>> from hyperproj.inr import ImageSignal
        >>> net = LatentGrid(8, 8, levels=2, hidden=(8,), arm_hidden=4)
        >>> h = fit_grid(net, ImageSignal(torch.rand(8, 8, 3)), steps=3)
        >>> sorted(h)
        ['bits', 'final_lam', 'lam', 'loss', 'psnr', 'revived', 'steps']
    """
    if not isinstance(model, LatentGrid):
        raise HyperprojError(f"fit_grid: model must be a LatentGrid, got {type(model).__name__}")
    target = signal.image if hasattr(signal, "image") else torch.as_tensor(signal)
    if tuple(target.shape[:2]) != tuple(model.sizes[0]) or target.shape[2] != model.config["channels"]:
        raise HyperprojError(f"fit_grid: image shape {tuple(target.shape)} does not match the model's "
                             f"{(*model.sizes[0], model.config['channels'])}")
    if not (isinstance(lam, (int, float)) and lam >= 0 and math.isfinite(lam)):
        raise HyperprojError(f"fit_grid: lam must be a finite number >= 0, got {lam!r}")
    if isinstance(revive_every, bool) or not isinstance(revive_every, int) or revive_every < 0:
        raise HyperprojError(f"fit_grid: revive_every must be an int >= 0, got {revive_every!r}")
    pixels = target.shape[0] * target.shape[1]
    coarse = coarse_share > 0 and len(model.sizes) > 1
    if coarse:  # the target at the second level's size (2x2 means, edges replicated)
        (hh, ww), (h0, w0) = model.sizes[1], model.sizes[0]
        t = target.permute(2, 0, 1)[None]
        t = t[:, :, torch.arange(2 * hh).clamp(max=h0 - 1)][:, :, :, torch.arange(2 * ww).clamp(max=w0 - 1)]
        target_half = F.avg_pool2d(t, 2)[0].permute(1, 2, 0).contiguous()

    def make_opt() -> torch.optim.Optimizer:
        nets = [p for n, p in model.named_parameters() if not n.startswith("latents")]
        return torch.optim.Adam([{"params": list(model.latents), "scale": latent_lr_scale},
                                 {"params": nets, "scale": 1.0}], lr=lr)

    opt = make_opt()
    hist: dict[str, Any] = {"loss": [], "psnr": [], "bits": [], "lam": [], "steps": 0, "revived": 0}
    t0 = time.perf_counter()
    step = 0
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    while True:
        frac = (time.perf_counter() - t0) / time_budget if time_budget is not None else step / max(steps, 1)
        if frac >= 1.0 or (time_budget is None and step >= steps):
            break
        mode = "noise" if frac < noise_share else "ste"
        for g in opt.param_groups:
            g["lr"] = g["scale"] * lr * (min_lr_share + (1 - min_lr_share) * 0.5 * (1 + math.cos(math.pi * frac)))
        opt.zero_grad(set_to_none=True)
        in_coarse = coarse and frac < coarse_share
        if in_coarse:  # half resolution, the finest level held at zero: 4x cheaper steps
            lat = model.quantized_latents(mode, start=1)
            feats = model.upsample(lat)
            feats, goal = torch.cat([feats, feats.new_zeros(feats.shape[0], 1)], 1), target_half
        elif freeze_finest:  # full resolution, the finest level still held at zero
            lat = model.quantized_latents(mode, start=1)
            feats, goal = model.upsample([torch.zeros_like(model.latents[0]), *lat]), target
        else:
            lat = model.quantized_latents(mode)
            feats, goal = model.upsample(lat), target
        if revive_every and step % revive_every == 0:
            hist["revived"] += model.revive_dead_units(feats)
        mse = F.mse_loss(model.synthesize(feats).reshape(goal.shape), goal)
        bits = model.rate_bits(lat)
        loss = mse + lam * bits / pixels
        if not torch.isfinite(loss):  # diverged: back to the last good state, half the rate
            model.load_state_dict(snapshot)
            lr *= 0.5
            opt = make_opt()
            hist["recoveries"] = hist.get("recoveries", 0) + 1
            if hist["recoveries"] > 5:
                break
            continue
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
        hist["loss"].append(float(loss.detach()))
        hist["psnr"].append(-10 * math.log10(max(float(mse.detach()), 1e-12)))
        hist["bits"].append(float(bits.detach()))
        hist["lam"].append(float(lam))
        settling = coarse and not freeze_finest and coarse_share <= frac < coarse_share + 0.05  # ARM meets level 0
        if target_bits is not None and step % controller_every == 0 and frac > 0.05 and not settling:
            with torch.no_grad():  # the rate the loss sees (levels 1 and up while level 0 is held)
                start = 1 if in_coarse or freeze_finest else 0
                rb = float(model.rate_bits(model.quantized_latents("round", start=start)))
            ratio = (rb + fixed_bits) / max(target_bits + fixed_bits, 1.0)
            # a slow proportional step on log λ: Adam needs ~100 steps to answer a change of λ
            lam = float(lam * math.exp(controller_gain * max(-0.5, min(0.5, math.log(max(ratio, 1e-9))))))
            lam = min(max(lam, 1e-6), 1.0)
        if progress and step % 50 == 0:
            print(f"step {step} psnr {hist['psnr'][-1]:.2f} bits {hist['bits'][-1]:.0f} lam {lam:.2e}", flush=True)
    hist["steps"] = step
    hist["final_lam"] = lam
    return hist
