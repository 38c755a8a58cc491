"""A :class:`~hyperproj.HyperModel` as the parts a file stores, and back.

A file holds what a receiver needs to rebuild the network and nothing it can regenerate: the
architecture as data (registry name + constructor arguments without their defaults, never
pickle), the seed, projection kind, latent size and generator version, the bit widths, the
quantization ranges, the entropy-coded latent and untargeted parameters (biases, ...), layer
scales of ``B`` only when a fresh build would not reproduce them, persistent buffers that differ
from a fresh build, and a fingerprint of ``B`` (checked on decode). :func:`store` writes those
parts (header fields and sections), :func:`rebuild` reads them back; :func:`quantize` is the
model the file decodes to. The SIREN/D'OH family and ``crop`` build on these.

Examples:
    >>> from hyperproj.inr import Siren
    >>> hyper = hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=0)
    >>> header, sections, version = store(hyper, 8, 10, "rans", None)
    >>> sorted(sections), version
    (['b', 'r', 'z'], 1)
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import struct
import warnings
import zlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .. import rng
from .._errors import HyperprojError
from ..init_rules import resolve_variances
from ..inr.registry import _unwrap, build_model, model_spec
from ..model import HyperModel, initial_latent, reparametrize
from ..projection import projection_kinds
from ..targets import select_targets
from .entropy import encode as encode_symbols
from .format import RANGE, error, parse_header, read_buffers, read_ranges, read_scales, read_symbols
from .quant import (
    DEFAULT_BIAS_BITS,
    DEFAULT_BITS,
    Bits,
    alphabet,
    check_bits,
    dequantize,
    fake_quantize,
)
from .quant import quantize as quantize_tensor
from .signals import signal_meta

__all__ = ["quantize", "store", "rebuild", "reparametrize_as", "FakeQuantModel", "untargeted", "fingerprint_code",
           "compact_config", "build", "ensure_kind"]


# ----------------------------------------------------------------------------- the model's parts


def untargeted(hyper: HyperModel) -> list[tuple[str, nn.Parameter]]:
    """Every parameter except the latent, in ``named_parameters`` order (biases, ...)."""
    return [(n, p) for n, p in hyper.named_parameters() if n != "latent"]


def _persistent_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    keys = set(module.state_dict(keep_vars=True))
    return [(n, b) for n, b in module.named_buffers() if n in keys]


def fingerprint_code(hyper: HyperModel) -> int:
    """CRC32 of ``B``'s fingerprint (header ``f``)."""
    fp = hyper.fingerprint()
    return zlib.crc32(struct.pack(f"<{len(fp)}d", *fp))


def compact_config(model: nn.Module, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the entries equal to the constructor's defaults (fewer header bytes)."""
    try:
        params = inspect.signature(type(_unwrap(model))).parameters
    except (TypeError, ValueError):
        return dict(config)
    out = {}
    for k, v in config.items():
        p = params.get(k)
        if p is None or p.default is inspect.Parameter.empty or p.default != v or type(p.default) is not type(v):
            out[k] = v
    return out


def build(spec: Mapping[str, Any]) -> nn.Module:
    """The registered model ``spec`` names, built under a fixed torch seed (the same every time)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(spec)


def ensure_kind(kind: str) -> None:
    """Refuse a projection kind this hyperproj cannot regenerate (after trying to load fastfood)."""
    if kind in projection_kinds():
        return
    if kind == "fastfood":
        try:
            importlib.import_module("hyperproj._fastfood")
        except ImportError:
            pass
    if kind not in projection_kinds():
        raise error(
            f"the file uses projection kind {kind!r}, which this hyperproj does not provide "
            f"(known: {projection_kinds()}); upgrade hyperproj"
        )


def _expected_scales(base: nn.Module, names: list[str], n: int, seed: int, latent_scale: str, groups: Any = None) -> list[float]:
    """The layer scales ``reparametrize(..., init="auto")`` gives a fresh ``base`` (no projection built)."""
    if groups is not None:  # grouped latent (LocalGlobal, groups="partition"): per-group norms
        return groups.scales([var for var, _ in resolve_variances(base, names, "auto")], seed, latent_scale)
    z_norm = float(initial_latent(n, seed, latent_scale).double().norm())
    return [math.sqrt(var) / z_norm for var, _ in resolve_variances(base, names, "auto")]


# ----------------------------------------------------------------------------- quantize


def _bias_period(hyper: HyperModel, name: str) -> float | None:
    """The period a module declares for a parameter its output is periodic in (``hyperproj_bias_period``
    on the owner of a ``bias``, e.g. a sine layer's ``2π/ω``), else ``None``."""
    prefix, _, leaf = name.rpartition(".")
    if leaf != "bias":
        return None
    period = getattr(hyper.get_submodule(prefix) if prefix else hyper, "hyperproj_bias_period", None)
    return float(period) if isinstance(period, (int, float)) and math.isfinite(period) and period > 0 else None


def _wrap_periodic(value: torch.Tensor, period: float | None) -> torch.Tensor:
    """``value`` moved into ``[-period/2, period/2)`` by whole periods (the same function, a smaller range)."""
    if period is None:
        return value
    half = period / 2
    return torch.remainder(value + half, period) - half


def _quantize_parts(hyper: HyperModel, bits: Bits, bias_bits: Bits):
    zq, zr = quantize_tensor(hyper.latent.detach(), bits)
    parts = []
    for name, p in untargeted(hyper):
        q, r = quantize_tensor(_wrap_periodic(p.detach(), _bias_period(hyper, name)), bias_bits)
        parts.append((name, q, r))
    return (zq, zr), parts


@torch.no_grad()
def quantize(hyper: HyperModel, bits: Bits = DEFAULT_BITS, bias_bits: Bits = DEFAULT_BIAS_BITS) -> HyperModel:
    """A copy of ``hyper`` with the latent and every untargeted parameter quantized and restored.

    Its outputs equal those of ``decode(encode(hyper, bits, bias_bits))`` bit for bit (on the same
    device and thread settings). The projection operator is shared with ``hyper``, not copied
    (a deterministic operator regenerated from the seed).

    Examples:
        >>> h = hyperproj.reparametrize(torch.nn.Linear(4, 2), latent_dim=6, seed=0)
        >>> q = quantize(h, bits=4)
        >>> len(set(q.latent.tolist())) <= 16
        True
    """
    if not isinstance(hyper, HyperModel):
        raise error(f"quantize expects a HyperModel, got {type(hyper).__name__}")
    bits = check_bits(bits, "bits")
    bias_bits = check_bits(bias_bits, "bias_bits")
    (zq, zr), parts = _quantize_parts(hyper, bits, bias_bits)
    out = copy.deepcopy(hyper, memo={id(hyper.projection): hyper.projection})
    out.latent.copy_(dequantize(zq, zr).to(out.latent.dtype).view_as(out.latent))
    params = dict(untargeted(out))
    for name, q, r in parts:
        params[name].copy_(dequantize(q, r).to(params[name].dtype).view_as(params[name]))
    return out


class FakeQuantModel(nn.Module):
    """Runs ``hyper`` with its latent and untargeted parameters fake-quantized (straight-through)."""

    def __init__(self, hyper: HyperModel, bits: Bits, bias_bits: Bits):
        super().__init__()
        self.hyper = hyper
        self.bits = bits
        self.bias_bits = bias_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        over = {"latent": fake_quantize(self.hyper.latent, self.bits)}
        for name, p in untargeted(self.hyper):
            over[name] = fake_quantize(p, self.bias_bits)
        return torch.func.functional_call(self.hyper, over, (x,))

    def optimizer_param_groups(self, lr: float):
        return self.hyper.optimizer_param_groups(lr)


# ----------------------------------------------------------------------------- store


def _header(hyper: HyperModel, bits: Bits, bias_bits: Bits, method: str, signal: Any):
    """The JSON header, and whether scales / buffers must be stored."""
    spec = model_spec(hyper)
    cfg = hyper.config()
    fresh = build(spec)
    header: dict[str, Any] = {
        "a": [spec["name"], compact_config(hyper, spec["config"])],
        "g": rng.GENERATOR_VERSION,
        "n": hyper.latent_dim,
        "s": hyper.seed,
        "p": hyper.projection.kind,
        "q": [bits, bias_bits],
        "f": fingerprint_code(hyper),
    }
    if cfg["distribution"] != "uniform":
        header["d"] = cfg["distribution"]
    if hyper.latent_scale != "unit":
        header["l"] = hyper.latent_scale
    if method != "rans":
        header["m"] = method
    try:
        default_targets = select_targets(fresh, None, None)
    except HyperprojError:
        default_targets = None
    if default_targets != hyper.target_names:
        header["t"] = list(hyper.target_names)
    try:
        expected = _expected_scales(fresh, hyper.target_names, hyper.latent_dim, hyper.seed, hyper.latent_scale,
                                    getattr(hyper, "_groups", None))
    except Exception:  # noqa: BLE001 - any failure means: store the scales
        expected = None
    store_scales = expected != list(hyper.projection.layer_scales)
    fresh_buffers = dict(_persistent_buffers(fresh))
    buffers = []
    for name, buf in _persistent_buffers(hyper.base):
        other = fresh_buffers.get(name)
        if other is None or other.shape != buf.shape or other.dtype != buf.dtype or not torch.equal(other, buf.cpu()):
            buffers.append((name, buf.detach().cpu().contiguous()))
    if buffers:
        header["k"] = [[n, str(b.dtype).replace("torch.", ""), list(b.shape)] for n, b in buffers]
    meta = signal_meta(signal if signal is not None else getattr(hyper, "hpz_signal", None))
    if meta:
        header["x"] = meta
    if getattr(hyper, "_groups", None) is not None:  # one latent group per partition (croppable)
        header["G"] = [hyper._groups.global_dim, hyper._groups.partition_dim]
    return header, store_scales, buffers


def store(hyper: HyperModel, bits: Bits, bias_bits: Bits, method: str, signal: Any) -> tuple[dict[str, Any], dict[str, bytes], int]:
    """The header, the sections and the container version of ``hyper``'s file (arguments checked
    by the caller). Sections: ``r`` ranges, ``z`` latent, ``b`` untargeted parameters, ``s``
    layer scales, ``k`` buffers; version 2 only for grouped latents (a version-1 reader refuses it)."""
    header, store_scales, buffers = _header(hyper, bits, bias_bits, method, signal)
    (zq, zr), parts = _quantize_parts(hyper, bits, bias_bits)
    ranges = b""
    if bits != "float16":
        ranges += RANGE.pack(zr.min, zr.max)
    if bias_bits != "float16":
        ranges += b"".join(RANGE.pack(r.min, r.max) for _, _, r in parts)
    sections: dict[str, bytes] = {}
    if ranges:
        sections["r"] = ranges
    sections["z"] = encode_symbols(zq.reshape(-1), alphabet(bits), method)
    if parts:
        sym = torch.cat([q.reshape(-1) for _, q, _ in parts])
        sections["b"] = encode_symbols(sym, alphabet(bias_bits), method)
    if store_scales:
        scales = list(hyper.projection.layer_scales)
        sections["s"] = struct.pack(f"<{len(scales)}d", *scales)
    if buffers:
        sections["k"] = b"".join(b.numpy().tobytes() for _, b in buffers)
    return header, sections, 2 if "G" in header else 1


# ----------------------------------------------------------------------------- rebuild


def reparametrize_as(h: Mapping[str, Any], base: nn.Module, n: int, sections: Mapping[str, bytes], **extra: Any) -> HyperModel:
    """``reparametrize`` a fresh ``base`` as the parsed header ``h`` says, with the stored layer
    scales (section ``s``) if any."""
    options: dict[str, Any] = {"projection": h["kind"], "distribution": h["distribution"],
                               "latent_scale": h["latent_scale"], **extra}
    if h["targets"] is not None:
        options["targets"] = h["targets"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hyper = reparametrize(base, n, h["seed"], copy_base=False, **options)
    if "s" in sections:  # stored layer scales (a non-default init)
        cfg = hyper.config()
        for t, s in zip(cfg["targets"], read_scales(sections["s"], len(cfg["targets"]))):
            t["scale"] = s
        cfg["fingerprint"] = None
        hyper.load_config(cfg)
    return hyper


@torch.no_grad()
def rebuild(header: Mapping[str, Any], sections: Mapping[str, bytes]) -> HyperModel:
    """The quantized :class:`~hyperproj.HyperModel` a SIREN/D'OH file's header and sections describe."""
    h = parse_header(header)
    ensure_kind(h["kind"])
    extra = {}
    if h["groups"] is not None:
        g = h["groups"]
        extra["groups"] = {"kind": "partition", "global_dim": g[0], "partition_dim": g[1]}
    hyper = reparametrize_as(h, build(h["spec"]), h["n"], sections, **extra)
    if fingerprint_code(hyper) != h["fingerprint"]:
        raise error(
            f"fingerprint of B does not match: the file was written with projection "
            f"{h['kind']!r} / generator {h['generator']} by a hyperproj whose B differs from this "
            "one's (different projection implementation or generator); refusing to decode garbage"
        )
    params = untargeted(hyper)
    widths = [h["bits"]] + [h["bias_bits"]] * len(params)
    ranges = read_ranges(sections.get("r", b""), widths)
    zsym = read_symbols(sections.get("z"), h["n"], h["bits"], h["method"], "latent")
    hyper.latent.copy_(dequantize(zsym, ranges[0]).view_as(hyper.latent))
    total = sum(p.numel() for _, p in params)
    psym = read_symbols(sections.get("b"), total, h["bias_bits"], h["method"], "parameter")
    pos = 0
    for (_, p), r in zip(params, ranges[1:]):
        p.copy_(dequantize(psym[pos : pos + p.numel()], r).to(p.dtype).view_as(p))
        pos += p.numel()
    if h["buffers"]:
        for name, value in read_buffers(sections.get("k", b""), h["buffers"]):
            hyper.base.get_buffer(name).copy_(value)
    return hyper.eval()
