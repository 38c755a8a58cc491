"""The latent-grid family (``"grid"``): Cool-chic / C3 style image coding with
:class:`~hyperproj.inr.LatentGrid` — latent pyramid, tiny synthesis, autoregressive entropy model.

* **Model for a signal and a budget.** A :class:`~hyperproj.inr.LatentGrid` the image's size
  (7 levels, synthesis ``levels → 16 → 16 → C``, ARM ``12 → 12 → 12 → 2`` from 8 kB up, smaller
  below; ``levels``,
  ``hidden``, ``arm_hidden`` options override).
* **Training.** :func:`~hyperproj.inr.fit_grid` under the clock (or ``steps``): MSE + λ·rate,
  noise then straight-through rounding, λ steered towards the bit budget (99 % of it, less the
  networks' and header's estimated bits).
* **Parts stored.** Each latent level as one rANS stream under the integer ARM's per-latent
  probabilities (:mod:`hyperproj.codec._arm_coding`); the synthesis and the ARM as integers at a
  power-of-two step chosen per file (the step that minimises MSE + λ·bits for the synthesis, the
  latent + ARM bits for the ARM), entropy coded with :func:`hyperproj.codec.entropy.encode`.
* **Bit-exact decoding.** Integer latents, integer ARM, IEEE-exact CDF, integer synthesis and
  upsampling (:mod:`hyperproj.inr._grid_int`): the same pixels on every machine and thread count.
* **Over budget.** Training again for a while with λ raised (time permitting), else a dead zone
  on the latents (those under a threshold in magnitude become 0), the smallest that fits.

Header fields: ``c`` (``[levels, hidden widths, ARM width]``), ``v`` (grid format version, 1), ``A`` (each level's largest
|latent|, 0 = all zero and no stream), ``qs``/``qa`` (network steps ``2**-q``), ``ns``/``na``
(network alphabets), ``x`` (signal metadata: ``{"i": [H, W, C]}``). Sections: ``s`` (synthesis), ``a`` (ARM),
``l0``… (latent levels, finest first).

Examples:
    >>> from hyperproj.inr import LatentGrid
    >>> net = LatentGrid(8, 8, levels=2, hidden=(8,), arm_hidden=4)
    >>> blob = encode_grid(net, 8, 8)
    >>> decoded = decode_grid(*read_container(blob))
    >>> decoded.decoded_pixels.shape
    (8, 8, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._errors import HyperprojError
from ...inr import _grid_int as gi
from ...inr.latent_grid import LatentGrid, fit_grid
from ...inr.signals import ImageSignal
from .. import _arm_coding as ac
from ..entropy import decode as decode_symbols
from ..entropy import encode as encode_symbols
from ..format import error, read_container
from .registry import Family, register_family, write_file

__all__ = ["Grid", "encode_grid", "decode_grid", "GRID_VERSION"]

GRID_VERSION = 1
"""The grid family's own layout version (header ``v``)."""

_MAX_PIXELS = 1 << 26
_MAX_ALPHABET = 1 << 12
_HEADER_GUESS_BYTES = 160
_NET_BITS_GUESS = 7.0


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v < 0, -2 * v - 1, 2 * v)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return np.where(z % 2 == 1, -(z + 1) // 2, z // 2)


def _net_code(layers: list) -> tuple[bytes, int] | None:
    """The integers of fixed-point layers coded with the library's rANS (``None``: too wide)."""
    ints = np.concatenate([np.concatenate([w.reshape(-1), b.reshape(-1)]) for w, _, b in layers])
    z = _zigzag(ints)
    alphabet = int(z.max()) + 1 if z.size else 1
    if alphabet > 1 << 16:
        return None
    return encode_symbols(z, alphabet, "rans"), alphabet


def _net_decode(data: bytes, shapes: list[tuple[int, int]], q: int, alphabet: int) -> list:
    count = sum(o * i + o for o, i in shapes)
    z = decode_symbols(data, count, alphabet, "rans")
    ints = _unzigzag(z.astype(np.int64))
    out, pos = [], 0
    for o, i in shapes:
        w = ints[pos : pos + o * i].reshape(o, i)
        pos += o * i
        b = ints[pos : pos + o]
        pos += o
        out.append((w, q, b))
    return out


def _shapes(net: nn.ModuleList) -> list[tuple[int, int]]:
    return [(m.out_features, m.in_features) for m in net]


def encode_grid(net: LatentGrid, q_synthesis: int, q_arm: int, latents: list[np.ndarray] | None = None) -> bytes:
    """The ``.hpz`` bytes of ``net`` with its networks at steps ``2**-q_synthesis``, ``2**-q_arm``
    (``latents``: integer grids to store instead of the rounded latents).

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> encode_grid(LatentGrid(4, 4, levels=2, hidden=(4,), arm_hidden=4), 8, 8)[:3]
        b'HPZ'
    """
    header, sections = _store(net, q_synthesis, q_arm, latents)
    return write_file("grid", header, sections, 2)


def _store(net: LatentGrid, q_syn: int, q_arm: int, latents: list[np.ndarray] | None):
    lat = net.integer_latents() if latents is None else latents
    alphabets = [int(np.abs(q).max()) if q.size else 0 for q in lat]
    if max(alphabets) > _MAX_ALPHABET:
        raise error(f"grid: a latent reached {max(alphabets)}, past the coder's bound {_MAX_ALPHABET}")
    syn = net.integer_layers("synthesis", q_syn)
    arm = net.integer_layers("arm", q_arm)
    sc, ar = _net_code(syn), _net_code(arm)
    if sc is None or ar is None:
        raise error("grid: a network weight is too large for its step; use a coarser step (smaller q)")
    cfg = net.config
    header = {"c": [cfg["levels"], cfg["hidden"], cfg["arm_hidden"]], "v": GRID_VERSION, "A": alphabets,
              "qs": q_syn, "qa": q_arm, "ns": sc[1], "na": ar[1],
              "x": {"i": [cfg["height"], cfg["width"], cfg["channels"]]}}
    sections = {"s": sc[0], "a": ar[0]}
    for k, (q, a) in enumerate(zip(lat, alphabets)):
        if a:
            sections[f"l{k}"] = ac.encode_level(q, a, arm)
    return header, sections


def _int_field(h: Mapping[str, Any], key: str, low: int, high: int, what: str) -> int:
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise error(f"grid file header field {key!r} ({what}) must be an int in [{low}, {high}], found {v!r}")
    return v


def _parse(header: Mapping[str, Any], sections: Mapping[str, bytes]) -> dict[str, Any]:
    """The grid header checked field by field (every problem raises HyperprojError)."""
    if header.get("v") != GRID_VERSION:
        raise error(f"grid file layout version {header.get('v')!r} is not the one this hyperproj reads ({GRID_VERSION})")
    meta, c = header.get("x"), header.get("c")
    if not (isinstance(meta, dict) and isinstance(meta.get("i"), list) and len(meta["i"]) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in meta["i"])):
        raise error(f"grid file header field 'x' (image size) must hold 'i': [H, W, C], found {meta!r}")
    if not (isinstance(c, list) and len(c) == 3 and isinstance(c[1], list) and len(c[1]) <= 8):
        raise error(f"grid file header field 'c' (model config) must be [levels, [hidden...], arm_hidden], found {c!r}")
    cfg = {"height": meta["i"][0], "width": meta["i"][1], "channels": meta["i"][2], "levels": c[0],
           "hidden": c[1], "arm_hidden": c[2]}
    if not (1 <= cfg["height"] and 1 <= cfg["width"] and cfg["height"] * cfg["width"] <= _MAX_PIXELS):
        raise error(f"grid file header declares {cfg['height']}x{cfg['width']} pixels (at most {_MAX_PIXELS})")
    try:
        LatentGrid(**{**cfg, "height": 1, "width": 1, "levels": 1})
    except HyperprojError as err:
        raise error(f"grid file header field 'c' (model config) is malformed: {err}") from None
    if isinstance(cfg["levels"], bool) or not isinstance(cfg["levels"], int) or not 1 <= cfg["levels"] <= 12:
        raise error(f"grid file header field 'c' (model config) has a bad level count {cfg['levels']!r}")
    levels = cfg["levels"]
    a = header.get("A")
    if not isinstance(a, list) or len(a) != levels or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MAX_ALPHABET for v in a):
        raise error(f"grid file header field 'A' must list {levels} ints in [0, {_MAX_ALPHABET}], found {a!r}")
    out = {"config": cfg, "A": a,
           "qs": _int_field(header, "qs", 0, gi.ACT_BITS, "synthesis step"),
           "qa": _int_field(header, "qa", 0, gi.ACT_BITS, "ARM step"),
           "ns": _int_field(header, "ns", 1, 1 << 16, "synthesis alphabet"),
           "na": _int_field(header, "na", 1, 1 << 16, "ARM alphabet")}
    expected = {"s", "a"} | {f"l{k}" for k, v in enumerate(a) if v}
    if set(sections) != expected:
        raise error(f"grid file sections {sorted(sections)} are not the expected {sorted(expected)}")
    return out


def decode_grid(header: Mapping[str, Any], sections: Mapping[str, bytes]) -> LatentGrid:
    """The decoded :class:`~hyperproj.inr.LatentGrid` of a grid file's header and sections: its
    ``decoded_pixels`` (uint8 ``(H, W, C)``) come from integer arithmetic only, and every check
    runs before the first pixel is computed.

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> header, sections = read_container(encode_grid(LatentGrid(4, 4, levels=2, hidden=(4,)), 8, 8))
        >>> decode_grid(header, sections).decoded_pixels.dtype
        dtype('uint8')
    """
    h = _parse(header, sections)
    cfg = h["config"]
    net = LatentGrid(**cfg)
    syn = _net_decode(sections["s"], _shapes(net.synthesis), h["qs"], h["ns"])
    arm = _net_decode(sections["a"], _shapes(net.arm), h["qa"], h["na"])
    lat = [ac.decode_level(sections.get(f"l{k}", b""), hh, ww, a, arm)
           for k, ((hh, ww), a) in enumerate(zip(net.sizes, h["A"]))]
    pixels = gi.synthesize(lat, syn)
    net.load_integer(lat, syn, arm)
    net.set_decoded(pixels)
    net.decoded_pixels = pixels
    net.eval()
    return net


def describe_grid(header: Mapping[str, Any], sections: Mapping[str, bytes], data: bytes) -> dict[str, Any]:
    """``info``'s report of a grid file: bytes per part (latents by level, networks, header).

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> blob = encode_grid(LatentGrid(8, 8, levels=2, hidden=(4,), arm_hidden=4), 8, 8)
        >>> rep = describe_grid(*read_container(blob), blob)
        >>> rep["latent_bytes_by_level"], rep["bytes"] == rep["header_bytes"] + rep["network_bytes"]
        ([0, 0], True)
    """
    h = _parse(header, sections)
    cfg = h["config"]
    sec = {k: len(v) for k, v in sections.items()}
    levels = [sec.get(f"l{k}", 0) for k in range(cfg["levels"])]
    out = {
        "bytes": len(data), "family": "grid",
        "header_bytes": len(data) - sum(sec.values()),
        "latent_bytes": sum(levels), "latent_bytes_by_level": levels,
        "synthesis_bytes": sec["s"], "arm_bytes": sec["a"],
        "network_bytes": sec["s"] + sec["a"],
        "section_bytes": sec,
        "header": {"config": cfg, "alphabets": h["A"], "synthesis_step": f"2^-{h['qs']}",
                   "arm_step": f"2^-{h['qa']}", "signal": header.get("x")},
    }
    out["bpp"] = 8 * len(data) / (cfg["height"] * cfg["width"])
    return out


def _sizes_for(budget: int) -> tuple[list[int], int]:
    """Synthesis widths and ARM width for a byte budget: the networks take about 1/8 of it."""
    if budget >= 8000:  # [16, 16] / 12 over [24, 24] / 16: twice the steps in a CPU budget (kodim23)
        return [16, 16], 12
    if budget >= 3000:
        return [16], 12
    if budget >= 1200:
        return [12], 8
    return [8], 4


@register_family("grid")
class Grid(Family):
    """The latent-grid family (see the module docstring). Options: ``levels``, ``hidden``,
    ``arm_hidden`` (the model), ``lam`` (initial λ), ``lr`` (Adam, default 1e-2),
    ``latent_lr_scale`` (the latents' rate over the networks', default 10), ``coarse_share`` (the
    share of the clock at half resolution first, default 0.6), ``finest`` (train and store the
    full-resolution level; default off: in 170-300 s CPU runs at 0.3 bpp it stayed almost empty
    and its rate spike at the switch to full resolution upset the λ control)."""

    def __init__(self, job: Any, model: nn.Module | None = None, *, projection: str = "auto",
                 latent_dim: int | None = None, levels: int = 7, hidden: Any = None, arm_hidden: int | None = None,
                 lam: float | None = None, lr: float | None = None, latent_lr_scale: float = 10.0, coarse_share: float = 0.6,
                 finest: bool = False, **options: Any):
        super().__init__(job, model, **options)
        if options:
            raise error(f"compress: the 'grid' family takes no options {sorted(options)} "
                        "(it knows levels, hidden, arm_hidden, lam)")
        if not isinstance(job.signal, ImageSignal):
            raise error(f"compress: the 'grid' family codes images, got {type(job.signal).__name__}")
        if model is not None and not isinstance(model, LatentGrid):
            raise error(f"compress: the 'grid' family's model must be a LatentGrid, got {type(model).__name__}")
        h, w, c = job.signal.shape
        levels = max(1, min(int(levels), int(math.floor(math.log2(max(h, w)))) + 1))
        if hidden is None or arm_hidden is None:  # networks sized to the budget (about 1/8 of it)
            small = _sizes_for(job.budget)
            hidden = small[0] if hidden is None else hidden
            arm_hidden = small[1] if arm_hidden is None else arm_hidden
        self.config = dict(model.config) if model is not None else {
            "height": h, "width": w, "channels": c, "levels": levels, "hidden": list(hidden), "arm_hidden": arm_hidden}
        LatentGrid(**{**self.config, "height": 1, "width": 1, "levels": 1})  # checks the options early
        self.lam = float(lam) if lam is not None else 2e-3 * (0.3 / max(float(8 * job.budget / job.samples), 0.02))
        self.lr = float(lr if lr is not None else (job.lr if job.lr is not None else 1e-2))
        self.latent_lr_scale = float(latent_lr_scale)
        self.coarse_share = float(coarse_share)
        self.freeze_finest = not finest and levels > 1
        self.q: tuple[int, int] | None = None
        self.fine_share = 0.0  # > 0: a re-training after an over-budget file
        self.dead_zone = 0.5
        self.retries = 0

    # ------------------------------------------------------------------ compress
    def build(self, previous: nn.Module | None = None) -> LatentGrid:
        return previous if previous is not None else (self.model or LatentGrid(**self.config))

    def _reserve(self) -> float:
        """Seconds kept for choosing steps, encoding, decoding and evaluating (measured, 1 thread)."""
        return 3.0 + 5.0e-5 * self.job.samples

    def train(self, net: LatentGrid) -> None:
        job = self.job
        params = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("latents"))
        fixed = 8 * _HEADER_GUESS_BYTES + _NET_BITS_GUESS * params
        target = 0.99 * 8 * job.budget - fixed  # a small overshoot is trimmed by the dead zone
        left = job.left()
        if self.fine_share < 0:
            return
        if self.fine_share:
            budget = None if left is None else min(max(0.0, left - self._reserve()), 0.25 * job.time_budget)
            steps = max(1, int(job.steps * self.fine_share))
            if budget is not None and budget < 1.0:
                return
            fit_grid(net, job.signal, lam=self.lam, steps=steps, time_budget=budget, lr=self.lr / 10,
                     noise_share=0.0, target_bits=max(target, 1.0), fixed_bits=fixed,
                     latent_lr_scale=self.latent_lr_scale, freeze_finest=self.freeze_finest)
        else:
            budget = None if left is None else left - self._reserve()
            if budget is not None and budget < 1.0:
                raise error(f"compress: a time budget of {job.time_budget} s leaves no time to train the grid model")
            hist = fit_grid(net, job.signal, lam=self.lam, steps=job.steps, time_budget=budget, lr=self.lr,
                            target_bits=max(target, 1.0), fixed_bits=fixed, latent_lr_scale=self.latent_lr_scale,
                            coarse_share=self.coarse_share, freeze_finest=self.freeze_finest)
            self.lam = hist["final_lam"]
            job.training.steps += hist["steps"]
        self.q = None

    def _choose_steps(self, net: LatentGrid) -> tuple[int, int]:
        """The network steps for this file: synthesis by MSE + λ·bits, ARM by latent + ARM bits."""
        if self.q is not None:
            return self.q
        lat = net.integer_latents()
        alph = [int(np.abs(q).max()) for q in lat]
        target = np.round(self.job.signal.image.numpy() * 255.0)
        pixels = self.job.samples
        best_s = None
        for qs in range(5, 12):
            code = _net_code(net.integer_layers("synthesis", qs))
            if code is None:
                continue
            pix = gi.synthesize(lat, net.integer_layers("synthesis", qs))
            mse = float(np.mean((pix.astype(np.float64) - target) ** 2)) / 255.0**2
            cost = mse + self.lam * 8 * len(code[0]) / pixels
            if best_s is None or cost < best_s[0]:
                best_s = (cost, qs)
        best_a = None
        for qa in range(4, 12):
            layers = net.integer_layers("arm", qa)
            code = _net_code(layers)
            if code is None:
                continue
            bits = 8 * len(code[0]) + sum(ac.level_bits(q, a, layers) for q, a in zip(lat, alph))
            if best_a is None or bits < best_a[0]:
                best_a = (bits, qa)
        if best_s is None or best_a is None:
            raise error("grid: no network step codes the trained weights")
        self.q = (best_s[1], best_a[1])
        return self.q

    def store(self, net: LatentGrid) -> tuple[dict[str, Any], dict[str, bytes], int]:
        qs, qa = self._choose_steps(net)
        header, sections = _store(net, qs, qa, None)
        return header, sections, 2

    def attempt(self, net: LatentGrid, data: bytes) -> dict[str, Any]:
        return {"bytes": len(data), "lam": self.lam, "steps": self.q}

    def coarser(self, net: LatentGrid, budget: int) -> bytes | None:
        """A dead zone on the trained latents: the smallest threshold ``t`` (latents under ``t`` in
        magnitude become 0) whose file fits, by bisection on real encodes (``None``: not even all
        zeros fit)."""
        qs, qa = self._choose_steps(net)
        ys = [y.detach().numpy().astype(np.float64) for y in net.latents]

        def latents(t: float) -> list[np.ndarray]:
            return [np.where(np.abs(y) >= t, np.round(y), 0).astype(np.int64) for y in ys]

        top = max(float(np.abs(y).max()) for y in ys) + 1.0
        data = encode_grid(net, qs, qa, latents=latents(top))
        if len(data) > budget:
            return None
        lo, hi, best = 0.5, top, (top, data)
        if top > 2.0:  # most files fit with a dead zone under 2: search there first, finely
            data = encode_grid(net, qs, qa, latents=latents(2.0))
            if len(data) <= budget:
                hi, best = 2.0, (2.0, data)
            else:
                lo = 2.0
        for _ in range(7):
            mid = 0.5 * (lo + hi)
            data = encode_grid(net, qs, qa, latents=latents(mid))
            if len(data) <= budget:
                hi, best = mid, (mid, data)
            else:
                lo = mid
        self.dead_zone = best[0]
        with torch.no_grad():
            for p, q in zip(net.latents, latents(best[0])):
                p.copy_(torch.as_tensor(q, dtype=torch.float32))
        self.job.attempts.append({**self.attempt(net, best[1]), "dead_zone": round(best[0], 4)})
        return best[1]

    def shrink(self, net: LatentGrid, data: bytes) -> None:
        """Raise λ by how far the file is over and fine-tune with rounding for a while; after two
        such tries, or without the time for one, zero latent levels (:meth:`coarser`)."""
        self.retries += 1
        left = self.job.left()
        if self.retries > 2 or (left is not None and left < self._reserve() + 2.0):
            if self.coarser(net, self.job.budget) is None:
                raise error(f"compress: the 'grid' file stays over the budget of {self.job.budget} bytes "
                            "even with every latent zero; raise bpp")
            self.fine_share = -1.0  # encode the dead-zoned model as it is
            return
        self.lam *= (len(data) / self.job.budget) ** 3 * 1.5
        self.fine_share = 0.25

    def report(self, net: LatentGrid, data: bytes) -> dict[str, Any]:
        info = describe_grid(*read_container(data), data)
        return {"lam": self.lam, "latent_bytes": info["latent_bytes"], "network_bytes": info["network_bytes"],
                "header_bytes": info["header_bytes"], "latent_bytes_by_level": info["latent_bytes_by_level"],
                "network_steps": list(self._choose_steps(net)), "dead_zone": self.dead_zone}

    # ------------------------------------------------------------------ decompress / info
    @classmethod
    def rebuild(cls, header: Mapping[str, Any], sections: Mapping[str, bytes]) -> LatentGrid:
        return decode_grid(header, sections)

    @classmethod
    def describe(cls, header: Mapping[str, Any], sections: Mapping[str, bytes], data: bytes) -> dict[str, Any]:
        return describe_grid(header, sections, data)
