"""The SIREN/D'OH family: a registered :mod:`hyperproj.inr` model whose weights are ``B z``.

* **Model for a signal and a budget.** The latent size comes straight from the bit budget (no
  architecture search): the largest ``n`` whose file — header, ranges, biases at ``bias_bits``,
  latent entropy-coded at the bits per symbol :func:`~hyperproj.codec.rate.budgeted_bits`
  expects — fits. Without a model, :func:`default_model` sizes a SIREN for that latent. The
  latent is ``"offset"`` (``W = W0 + B z``) when ``n`` is at least 30 % of the weights, else
  ``"unit"``; the learning rate is the model's own (:func:`hyperproj.inr.default_lr`).
* **Training.** :class:`~hyperproj.codec.train.Training` (fit under the clock, optional
  fine-tuning with rounding in the loop); a re-planned attempt starts from a least-squares fit
  of the last attempt's weights in the smaller latent (:func:`hyperproj.distill.project_weights`).
* **Parts stored.** The quantized latent and untargeted parameters, entropy coded, with the
  architecture, seed and projection to regenerate ``B``: :mod:`hyperproj.codec.hypermodel`.
* **Over budget.** One bit coarser when the clock is short, else a smaller latent
  (:mod:`hyperproj.codec.rate`).

Examples:
    >>> from hyperproj.inr import Siren
    >>> hyper = hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=0)
    >>> blob = encode(hyper)
    >>> blob[:3], len(blob) < 250
    (b'HPZ', True)
"""

from __future__ import annotations

import bz2
import inspect
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ... import rng
from ...distill import project_weights
from ...inr.fit import default_lr
from ...inr.models import Siren
from ...inr.registry import model_spec
from ...inr.signals import AudioSignal, ImageSignal, OccupancySignal
from ...model import OFFSET_MIN_SHARE, HyperModel, reparametrize, resolve_latent_scale
from ...projection import projection_kinds
from ...targets import select_targets
from .. import train as train_module
from ..entropy import METHODS, empirical_entropy_bits
from ..format import MAX_LATENT, error, parse_header, read_container, read_symbols, write_container
from ..hypermodel import (
    FakeQuantModel,
    build,
    compact_config,
    ensure_kind,
    quantize,
    rebuild,
    store,
    untargeted,
)
from ..quant import DEFAULT_BIAS_BITS, DEFAULT_BITS, Bits, check_bits, width
from ..rate import budgeted_bits, largest_n, size_bound, smaller_latent
from ..signals import signal_meta
from .registry import Family, register_family

__all__ = ["Doh", "default_model", "encode", "save"]


def default_model(signal: Any, latent_dim: int | None = None) -> nn.Module:
    """The SIREN :func:`~hyperproj.codec.compress` uses when no model is given.

    Images: D'OH's target, 9 hidden layers of width 40 (first/hidden ω = 30), no Fourier
    features (measured: on kodim23 at 256 px, 200 full-batch steps, 27.5 dB without and 15.9 dB
    with 8 NeRF frequencies in front of a SIREN whose first ω is 30 — the two stack into noise);
    the width grows in steps of 8 when ``latent_dim`` exceeds the projected weights, and shrinks
    in steps of 8 (down to 8) while ``latent_dim`` is under 30 % of them, so the latent always
    gets the offset parameterisation (fixed rules, no search; measured on the demo's 256 px
    astronaut, 1,500 steps: at 0.5 bpp width 32 gave 24.57 dB against 20.77 for width 40 with a
    26 % unit latent, at 0.3 bpp width 24 gave 22.74 against 19.93). When that narrowing reaches
    width 8 (latents under ~715 values: files of under ~1 KB), the network has 3 hidden layers
    instead of 9, narrowed by the same rule (measured, 3 photos × 32 px at 4 bpp, 64 px at 1, 48 px
    at 2, 96 px at 0.5, 400 steps: 9 × 8 gave means of 11.4 / 11.4 / 14.8 / 13.6 dB — it often
    diverged — and this rule 17.4 / 16.7 / 17.0 / 16.4 (a 3 × 8 with other starting biases 17.9 /
    17.8 / 18.0 / 17.4); 7, 5 and 4 layers fell in between).
    Audio: 5 hidden layers of width 64, first ω = 3000. Occupancy: 9 × 40, 6 Fourier frequencies.

    Examples:
        >>> from hyperproj.inr import ImageSignal
        >>> net = default_model(ImageSignal(torch.rand(8, 8, 3)))
        >>> net.config["hidden_features"], net.config["hidden_layers"]
        (40, 9)
    """
    if isinstance(signal, ImageSignal):
        c = signal.shape[2]

        def weights(width: int, depth: int) -> int:
            return 2 * width + (depth * width + c) * width

        def narrowed(depth: int) -> int:
            # narrower until the latent is 30 % of the weights: a small latent trains far better
            # on a narrow network with the offset latent than on the 9 x 40 with the unit one
            width = 40
            while latent_dim is not None and width > 8 and latent_dim < OFFSET_MIN_SHARE * weights(width, depth):
                width -= 8
            return width

        depth = 9
        width = narrowed(depth)
        if width == 8 and latent_dim is not None:  # tiny budgets: a shallow network (measured above)
            depth = 3
            width = narrowed(depth)
        while latent_dim is not None and weights(width, depth) < latent_dim and width < 512:
            width += 8
        return Siren(2, width, depth, c)
    if isinstance(signal, AudioSignal):
        return Siren(1, 64, 5, signal.values.shape[1], first_omega=3000.0)
    if isinstance(signal, OccupancySignal):
        return Siren(3, 40, 9, 1, fourier_features=6)
    raise error(f"no default model for {type(signal).__name__}; pass model=")


def encode(
    hyper: HyperModel,
    bits: Bits = DEFAULT_BITS,
    bias_bits: Bits = DEFAULT_BIAS_BITS,
    method: str = "rans",
    signal: Any = None,
) -> bytes:
    """The ``.hpz`` bytes of ``hyper``: quantized (``bits`` for the latent, ``bias_bits`` for the
    biases and other untargeted parameters) and entropy coded (``method``: ``"rans"``,
    ``"bzip2"`` or ``"raw"``).

    The wrapped model must come from :mod:`hyperproj.inr`'s registry (``model_spec`` works on it).
    ``signal`` (an ``ImageSignal`` / ``AudioSignal`` / ``OccupancySignal``) adds what
    :func:`~hyperproj.codec.render` needs; by default the model's ``hpz_signal`` attribute is used if set.

    Examples:
        >>> from hyperproj.inr import Siren
        >>> hyper = hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=0)
        >>> encode(hyper, bits=8)[:3]
        b'HPZ'
    """
    if not isinstance(hyper, HyperModel):
        raise error(f"encode expects a HyperModel, got {type(hyper).__name__}")
    bits = check_bits(bits, "bits")
    bias_bits = check_bits(bias_bits, "bias_bits")
    if method not in METHODS:
        raise error(f"method must be one of {METHODS}, got {method!r}")
    header, sections, version = store(hyper, bits, bias_bits, method, signal)
    return write_container(header, sections, version=version)


def save(hyper: HyperModel, path: str | os.PathLike, **options: Any) -> int:
    """Write ``encode(hyper, **options)`` to ``path``; returns the file size in bytes.

    Examples:
        >>> import tempfile, os
        >>> from hyperproj.inr import Siren
        >>> hyper = hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "m.hpz")
        >>> save(hyper, path) == os.path.getsize(path)
        True
    """
    data = encode(hyper, **options)
    Path(path).write_bytes(data)
    return len(data)


def _layout(net: nn.Module, options: Mapping[str, Any]) -> tuple[int, int, int]:
    """Projected weights, untargeted values and untargeted tensors of ``net`` under ``options``."""
    names = select_targets(net, options.get("targets"), options.get("exclude"))
    ids = {id(net.get_parameter(n)) for n in names}
    rest = [p for _, p in net.named_parameters() if id(p) not in ids]
    return sum(net.get_parameter(n).numel() for n in names), sum(p.numel() for p in rest), len(rest)


# reparametrize's keyword options (latent_dim, seed and projection are compress's own arguments)
_REPARAMETRIZE_OPTIONS = frozenset(p.name for p in inspect.signature(HyperModel.__init__).parameters.values()
                                   if p.kind is p.KEYWORD_ONLY) - {"projection"}


@register_family("doh")
class Doh(Family):
    """The SIREN/D'OH family (see the module docstring): the default family of files, and
    ``compress``'s choice for every signal but mid-rate images (``family="auto"``)."""

    def __init__(self, job: Any, model: nn.Module | None = None, *, projection: str = "auto",
                 latent_dim: int | None = None, **options: Any):
        super().__init__(job, model, **options)
        unknown = sorted(set(options) - _REPARAMETRIZE_OPTIONS)
        if unknown:
            raise error(f"compress: the 'doh' family takes no options {unknown} (its options go to "
                        f"hyperproj.reparametrize: {sorted(_REPARAMETRIZE_OPTIONS)})")
        if projection not in ("auto", *projection_kinds()) and projection == "fastfood":
            ensure_kind("fastfood")
        if options.get("latent_scale") == "auto":  # resolved below, knowing n and the model
            del options["latent_scale"]
        self.projection, self.bits, self.first, self.remaining_steps = projection, job.bits, True, job.steps
        self.clock_cap: dict[str, Any] | None = None
        scale_guess = options.get("latent_scale", "unit" if "groups" in options else "offset")
        if model is None:
            # D'OH's 9 x 40 target; wider only when the budget buys more latent values than weights.
            # Its biases' initial values come from torch's generator seeded with the job's seed (the
            # global one untouched): the same seed and settings give the same file in any process
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(job.seed)
                probe = default_model(job.signal)
                bps = budgeted_bits(job.bits, job.method, scale_guess)
                planned = self._plan(probe, bps, cap=MAX_LATENT)
                # under a clock, a network widened for a high rate must still get enough steps
                n_clock, est = train_module.clock_latent_cap(lambda k: default_model(job.signal, latent_dim=k), planned,
                                                _layout(probe, options)[0], job.signal, job.left())
                if n_clock < planned:
                    self.clock_cap = {"planned_latent": planned, "latent": n_clock,
                                      "estimated_steps": round(est or 0.0), "min_steps": train_module.MIN_CLOCK_STEPS}
                model = default_model(job.signal, latent_dim=n_clock)
        model_spec(model)  # validates the model early
        self.model = model
        self.n_safe = self._plan(model, None)
        if self.n_safe < 1:
            raise error(
                f"compress: a budget of {job.budget} bytes ({8 * job.budget / max(job.samples, 1):.4g} bpp) cannot "
                "hold even the header and the biases of this model; raise bpp or use a smaller model"
            )
        n = latent_dim if latent_dim is not None else max(self._plan(model, budgeted_bits(job.bits, job.method, scale_guess)), self.n_safe)
        if "groups" not in options and "latent_scale" not in options:
            # reparametrize's "auto" rule: offset learns fastest while the latent spans enough of the
            # weights; below ~30 % the frozen random W0 cannot be cancelled, so small latents use unit
            options["latent_scale"] = resolve_latent_scale("auto", n, _layout(model, options)[0])
            if options["latent_scale"] != scale_guess and latent_dim is None:  # it codes less tightly
                n = max(self._plan(model, budgeted_bits(job.bits, job.method, options["latent_scale"])), self.n_safe)
        self.n = n
        # the model's own rate (a SIREN's falls with width x depth: 1e-3 at 10 x 40, 5e-4 at 10 x 80)
        self.lr = job.lr if job.lr is not None else default_lr(model)
        if options.get("latent_scale", "unit") == "unit":
            options.setdefault("latent_lr_scale", 10.0)
            self.lr = self.lr if job.lr is not None else 3 * self.lr  # measured best for the unit latent

    def _plan(self, net: nn.Module, bps: float | None, cap: int | None = None) -> int:
        """The largest latent whose file fits the budget at ``bps`` bits per latent symbol (``None``:
        raw packing, a hard bound)."""
        job = self.job
        spec = model_spec(net)
        P, npar, ntens = _layout(net, self.options)
        like = {
            "a": [spec["name"], compact_config(net, spec["config"])], "g": rng.GENERATOR_VERSION, "s": job.seed,
            "p": "orthogonal", "q": [job.bits, job.bias_bits], "f": 4294967295, "x": signal_meta(job.signal),
        }
        if self.options.get("latent_scale", "unit") != "unit":
            like["l"] = self.options["latent_scale"]
        if job.method != "rans":
            like["m"] = job.method
        high = min(P if cap is None else cap, MAX_LATENT)
        return largest_n(lambda n: size_bound(like, n, job.bits, job.bias_bits, npar, ntens, bps) <= job.budget, high)

    def build(self, previous: HyperModel | None = None) -> HyperModel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            hyper = reparametrize(self.model, self.n, self.job.seed, projection=self.projection, **self.options)
        hyper.hpz_signal = signal_meta(self.job.signal)
        if previous is not None:  # least-squares fit of the last attempt's weights, untargeted copied
            with torch.no_grad():
                for (_, p), (_, q) in zip(untargeted(previous), untargeted(hyper)):
                    q.copy_(p)
            project_weights(hyper, previous.generate_weights(), weighting="none", cg_iters=60)
        return hyper

    def train(self, hyper: HyperModel) -> None:
        bits, bias_bits, training = self.bits, self.job.bias_bits, self.job.training
        training.fit(hyper, self.remaining_steps, self.lr, first=self.first)
        training.fine_tune(hyper, self.lr, rounded=lambda m: quantize(m, bits, bias_bits),
                           fake=lambda m: FakeQuantModel(m, bits, bias_bits))

    def store(self, hyper: HyperModel, bits: Bits | None = None) -> tuple[dict[str, Any], dict[str, bytes], int]:
        job = self.job
        return store(hyper, self.bits if bits is None else bits, job.bias_bits, job.method, job.signal)

    def attempt(self, hyper: HyperModel, data: bytes) -> dict[str, Any]:
        return {"latent_dim": self.n, "bits": self.bits, "bytes": len(data)}

    def coarser(self, hyper: HyperModel, budget: int) -> bytes | None:
        """The trained latent coded one bit coarser, if that fits."""
        if self.bits == "float16" or int(self.bits) <= 2:
            return None
        bits = int(self.bits) - 1
        header, sections, version = self.store(hyper, bits)
        data = write_container(header, sections, version=version)
        self.job.attempts.append({"latent_dim": self.n, "bits": bits, "bytes": len(data)})
        if len(data) > budget:
            return None
        self.bits = bits
        return data

    def shrink(self, hyper: HyperModel, data: bytes) -> None:
        """The latent the measured bits per symbol allow; trained again for a quarter of the steps."""
        self.n = smaller_latent(self.n, self.n_safe, data, self.job.budget, lambda bps: self._plan(self.model, bps))
        self.first = False
        self.remaining_steps = max(self.job.steps // 4, 1)

    def report(self, hyper: HyperModel, data: bytes) -> dict[str, Any]:
        job = self.job
        out = {"latent_dim": hyper.latent_dim, "projected_weights": hyper.num_projected, "bits": self.bits,
               "bias_bits": job.bias_bits, "projection": hyper.projection.kind}
        if job.samples:
            npar = sum(p.numel() for _, p in untargeted(hyper))
            out["est_bpp"] = (hyper.latent_dim * width(self.bits) + npar * width(job.bias_bits)) / job.samples
        out["latent_bits_per_symbol"] = 8 * len(read_container(data)[1]["z"]) / hyper.latent_dim
        if self.clock_cap is not None:  # planned smaller so that the time budget trains it enough
            out["clock_cap"] = self.clock_cap
        return out

    @classmethod
    def rebuild(cls, header: Mapping[str, Any], sections: Mapping[str, bytes]) -> HyperModel:
        return rebuild(header, sections)

    @classmethod
    def describe(cls, header: Mapping[str, Any], sections: Mapping[str, bytes], data: bytes) -> dict[str, Any]:
        h = parse_header(header)
        base = build(h["spec"])
        names = h["targets"] or select_targets(base, None, None)
        target_ids = {id(base.get_parameter(n)) for n in names}
        pcount = sum(p.numel() for _, p in base.named_parameters() if id(p) not in target_ids)
        zsym = read_symbols(sections.get("z"), h["n"], h["bits"], h["method"], "latent")
        psym = read_symbols(sections.get("b"), pcount, h["bias_bits"], h["method"], "parameter")
        sec = {k: len(v) for k, v in sections.items()}

        def bz(sym: np.ndarray, bits: Bits) -> int:
            if sym.size == 0:
                return 0
            dtype = "<u1" if width(bits) <= 8 else "<u2"
            return len(bz2.compress(sym.astype(dtype).tobytes(), 9))

        out: dict[str, Any] = {
            "bytes": len(data),
            "header_bytes": len(data) - sum(sec.values()),
            "range_bytes": sec.get("r", 0),
            "latent_bytes": sec.get("z", 0),
            "param_bytes": sec.get("b", 0),
            "other_bytes": sec.get("s", 0) + sec.get("k", 0),
            "latent_count": int(zsym.size),
            "param_count": int(psym.size),
            "entropy_bytes": {"latent": empirical_entropy_bits(zsym) / 8, "params": empirical_entropy_bits(psym) / 8},
            "bzip2_bytes": {"latent": bz(zsym, h["bits"]), "params": bz(psym, h["bias_bits"])},
            "raw_bytes": {"latent": math.ceil(zsym.size * width(h["bits"]) / 8),
                          "params": math.ceil(psym.size * width(h["bias_bits"]) / 8)},
            "header": {
                "architecture": h["spec"], "generator_version": h["generator"], "latent_dim": h["n"],
                "seed": h["seed"], "projection": h["kind"], "distribution": h["distribution"],
                "latent_scale": h["latent_scale"], "bits": h["bits"], "bias_bits": h["bias_bits"],
                "method": h["method"], "fingerprint_crc32": h["fingerprint"], "signal": h["signal"],
                "stored_scales": "s" in sections, "stored_buffers": [b[0] for b in h["buffers"]],
                "groups": h["groups"],
            },
        }
        sig = h["signal"] or {}
        if isinstance(sig, dict) and isinstance(sig.get("i"), list) and len(sig["i"]) == 3:
            out["bpp"] = 8 * len(data) / (sig["i"][0] * sig["i"][1])
        return out
