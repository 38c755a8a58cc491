"""The ``.hpz`` signal codec: quantize a :class:`~hyperproj.HyperModel`, write it, read it back.

A file holds what a receiver needs to rebuild the network and nothing it can regenerate: the
architecture as data (registry name + constructor arguments, never pickle), the seed, projection
kind, latent size and generator version, the bit widths, the quantization ranges, the
entropy-coded latent and untargeted parameters (biases, ...), persistent buffers that differ from
a fresh build, a fingerprint of ``B`` (checked on decode) and the signal metadata needed to render
(image H×W×C, ...). The byte layout is :mod:`hyperproj.codec.format` (magic, version, JSON header,
CRC32); ``docs/codec.md`` lists every header key.

Main entry points:

* :func:`quantize` — the quantized model, whose outputs equal the decoded file's bit for bit;
* :func:`encode` / :func:`decode` (and :func:`save` / :func:`load`) — bytes ⇄ model;
* :func:`info` — header fields and the rate breakdown of a file;
* :func:`compress` / :func:`decompress` / :func:`render` — signal → file → signal, with a hard
  bits-per-pixel guarantee.

Examples:
    >>> from hyperproj.inr import Siren
    >>> hyper = hyperproj.reparametrize(Siren(2, 16, 1, 3), latent_dim=60, seed=3)
    >>> blob = encode(hyper, bits=8)
    >>> back = decode(blob)
    >>> x = torch.rand(5, 2)
    >>> torch.equal(back(x), quantize(hyper, bits=8)(x))
    True
"""

from __future__ import annotations

import bz2
import copy
import importlib
import math
import os
import struct
import time
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import rng
from .._errors import HyperprojError
from ..distill import project_weights
from ..model import OFFSET_MIN_SHARE, HyperModel, reparametrize, resolve_latent_scale
from ..projection import projection_kinds
from .entropy import METHODS, empirical_entropy_bits
from .entropy import decode as _decode_stream
from .entropy import encode as _encode_stream
from .format import read_container, write_container
from .quant import Bits, QuantRange, dequantize, fake_quantize
from .quant import quantize as _quantize_tensor

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_BIAS_BITS",
    "CompressResult",
    "quantize",
    "encode",
    "decode",
    "save",
    "load",
    "info",
    "compress",
    "decompress",
    "render",
    "crop",
    "default_model",
]

DEFAULT_BITS = 8
"""Default bit width of the latent (the D'OH paper's 8-bit post-training quantization)."""

DEFAULT_BIAS_BITS: Bits = 10
"""Default bit width of biases and other untargeted parameters (measured; see docs/codec.md)."""

_MAX_LATENT = 1 << 27
_RANGE = struct.Struct("<ff")
_RANS_OVERHEAD = 8  # model id + two float16 + final state (<= 5 bytes): a safe upper bound
_BATCH_ROWS = 8192  # compress's minibatch for signals with more than 2x this many rows
_STEP_CAP = 10**7
_MIN_TRAIN_SECONDS = 1.0  # a time budget leaving less than this for training is refused  # steps when only a time budget bounds training
# rans gain (bits/symbol below the bit width) that compress budgets for a trained latent. Measured on
# Kodak at 0.3 bpp (docs/codec.md): offset latents code at 7.2 bits (8-bit) and 6.3 bits (7-bit);
# unit-scale latents stay near uniform (7.75 bits at 8-bit). A little is kept back: an over-budget
# file costs a shrink-and-refit round.
# With a time budget, a file over budget is re-planned with a smaller latent only when at least
# this share of the budget is left to fine-tune it (otherwise the clock leaves the warm start
# about half a second): coding the trained latent with one bit less costs about 0.5 dB (kodim23,
# 8 -> 7 bits), a least-squares warm start of a smaller random subspace without fine-tuning more.
_REPLAN_MIN_TIME_SHARE = 0.25
_LATENT_SLACK_BITS = {"offset": {8: 0.7, 7: 0.6, 6: 0.5}, "unit": {8: 0.2}}


# ----------------------------------------------------------------------------------- helpers


def _err(msg: str) -> HyperprojError:
    return HyperprojError(f"hyperproj.codec: {msg}")


def _check_bits(bits: Any, name: str) -> Bits:
    if bits == "float16":
        return "float16"
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= 16:
        raise _err(f"{name} must be an int in [2, 16] or 'float16', got {bits!r}")
    return int(bits)


def _alphabet(bits: Bits) -> int:
    return 1 << (16 if bits == "float16" else int(bits))


def _width(bits: Bits) -> int:
    return 16 if bits == "float16" else int(bits)


def _untargeted(hyper: HyperModel) -> list[tuple[str, nn.Parameter]]:
    """Every parameter except the latent, in ``named_parameters`` order (biases, ...)."""
    return [(n, p) for n, p in hyper.named_parameters() if n != "latent"]


def _persistent_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    keys = set(module.state_dict(keep_vars=True))
    return [(n, b) for n, b in module.named_buffers() if n in keys]


def _fingerprint_code(hyper: HyperModel) -> int:
    fp = hyper.fingerprint()
    return zlib.crc32(struct.pack(f"<{len(fp)}d", *fp))


def _spec_of(model: nn.Module) -> dict[str, Any]:
    from ..inr.registry import model_spec

    return model_spec(model)


def _compact_config(model: nn.Module, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the entries equal to the constructor's defaults (fewer header bytes)."""
    import inspect

    from ..inr.registry import _unwrap

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


def _build(spec: Mapping[str, Any]) -> nn.Module:
    from ..inr.registry import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(spec)


def _ensure_kind(kind: str) -> None:
    if kind in projection_kinds():
        return
    if kind == "fastfood":
        try:
            importlib.import_module("hyperproj._fastfood")
        except ImportError:
            pass
    if kind not in projection_kinds():
        raise _err(
            f"the file uses projection kind {kind!r}, which this hyperproj does not provide "
            f"(known: {projection_kinds()}); upgrade hyperproj"
        )


def _expected_scales(base: nn.Module, names: list[str], n: int, seed: int, latent_scale: str, groups: Any = None) -> list[float]:
    """The layer scales ``reparametrize(..., init="auto")`` gives a fresh ``base`` (no projection built)."""
    from ..init_rules import resolve_variances
    from ..model import initial_latent

    if groups is not None:  # grouped latent (LocalGlobal, groups="partition"): per-group norms
        return groups.scales([var for var, _ in resolve_variances(base, names, "auto")], seed, latent_scale)
    z_norm = float(initial_latent(n, seed, latent_scale).double().norm())
    return [math.sqrt(var) / z_norm for var, _ in resolve_variances(base, names, "auto")]


def _signal_meta(signal: Any) -> dict[str, Any] | None:
    if signal is None:
        return None
    if isinstance(signal, Mapping):
        return dict(signal)
    from ..inr.signals import AudioSignal, ImageSignal, OccupancySignal

    if isinstance(signal, ImageSignal):
        return {"i": list(signal.shape)}
    if isinstance(signal, AudioSignal):
        return {"a": [signal.num_samples, signal.values.shape[1], signal.sample_rate, signal.scale]}
    if isinstance(signal, OccupancySignal):
        return {"o": signal.grid_resolution}
    raise _err(f"signal must be an ImageSignal, AudioSignal, OccupancySignal, a dict or None, got {type(signal).__name__}")


# ----------------------------------------------------------------------------------- quantize


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
    zq, zr = _quantize_tensor(hyper.latent.detach(), bits)
    parts = []
    for name, p in _untargeted(hyper):
        q, r = _quantize_tensor(_wrap_periodic(p.detach(), _bias_period(hyper, name)), bias_bits)
        parts.append((name, q, r))
    return (zq, zr), parts


def _share_projection_copy(hyper: HyperModel) -> HyperModel:
    # The projection is a deterministic operator regenerated from the seed: share, never copy it.
    return copy.deepcopy(hyper, memo={id(hyper.projection): hyper.projection})


@torch.no_grad()
def quantize(hyper: HyperModel, bits: Bits = DEFAULT_BITS, bias_bits: Bits = DEFAULT_BIAS_BITS) -> HyperModel:
    """A copy of ``hyper`` with the latent and every untargeted parameter quantized and restored.

    Its outputs equal those of ``decode(encode(hyper, bits, bias_bits))`` bit for bit (on the same
    device and thread settings). The projection operator is shared with ``hyper``, not copied.

    Examples:
        >>> h = hyperproj.reparametrize(torch.nn.Linear(4, 2), latent_dim=6, seed=0)
        >>> q = quantize(h, bits=4)
        >>> len(set(q.latent.tolist())) <= 16
        True
    """
    if not isinstance(hyper, HyperModel):
        raise _err(f"quantize expects a HyperModel, got {type(hyper).__name__}")
    bits = _check_bits(bits, "bits")
    bias_bits = _check_bits(bias_bits, "bias_bits")
    (zq, zr), parts = _quantize_parts(hyper, bits, bias_bits)
    out = _share_projection_copy(hyper)
    out.latent.copy_(dequantize(zq, zr).to(out.latent.dtype).view_as(out.latent))
    params = dict(_untargeted(out))
    for name, q, r in parts:
        params[name].copy_(dequantize(q, r).to(params[name].dtype).view_as(params[name]))
    return out


# ----------------------------------------------------------------------------------- encode


def _header_and_layout(hyper: HyperModel, bits: Bits, bias_bits: Bits, method: str, signal: Any):
    """The JSON header, and whether scales / buffers must be stored."""
    from ..targets import select_targets

    spec = _spec_of(hyper)
    cfg = hyper.config()
    fresh = _build(spec)
    header: dict[str, Any] = {
        "a": [spec["name"], _compact_config(hyper, spec["config"])],
        "g": rng.GENERATOR_VERSION,
        "n": hyper.latent_dim,
        "s": hyper.seed,
        "p": hyper.projection.kind,
        "q": [bits, bias_bits],
        "f": _fingerprint_code(hyper),
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
    meta = _signal_meta(signal if signal is not None else getattr(hyper, "hpz_signal", None))
    if meta:
        header["x"] = meta
    if getattr(hyper, "_groups", None) is not None:  # one latent group per partition (croppable)
        header["G"] = [hyper._groups.global_dim, hyper._groups.partition_dim]
    return header, store_scales, buffers


def _sections(hyper, bits, bias_bits, method, store_scales, buffers) -> dict[str, bytes]:
    (zq, zr), parts = _quantize_parts(hyper, bits, bias_bits)
    ranges = b""
    if bits != "float16":
        ranges += _RANGE.pack(zr.min, zr.max)
    if bias_bits != "float16":
        ranges += b"".join(_RANGE.pack(r.min, r.max) for _, _, r in parts)
    sections: dict[str, bytes] = {}
    if ranges:
        sections["r"] = ranges
    sections["z"] = _encode_stream(zq.reshape(-1), _alphabet(bits), method)
    if parts:
        sym = torch.cat([q.reshape(-1) for _, q, _ in parts])
        sections["b"] = _encode_stream(sym, _alphabet(bias_bits), method)
    if store_scales:
        scales = list(hyper.projection.layer_scales)
        sections["s"] = struct.pack(f"<{len(scales)}d", *scales)
    if buffers:
        sections["k"] = b"".join(b.numpy().tobytes() for _, b in buffers)
    return sections


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
    :func:`render` needs; by default the model's ``hpz_signal`` attribute is used if set.

    Examples:
        >>> from hyperproj.inr import Siren
        >>> hyper = hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=0)
        >>> blob = encode(hyper)
        >>> blob[:3], len(blob) < 250
        (b'HPZ', True)
    """
    if not isinstance(hyper, HyperModel):
        raise _err(f"encode expects a HyperModel, got {type(hyper).__name__}")
    bits = _check_bits(bits, "bits")
    bias_bits = _check_bits(bias_bits, "bias_bits")
    if method not in METHODS:
        raise _err(f"method must be one of {METHODS}, got {method!r}")
    header, store_scales, buffers = _header_and_layout(hyper, bits, bias_bits, method, signal)
    version = 2 if "G" in header else 1  # version 1 readers know no grouped latents: refuse clearly
    return write_container(header, _sections(hyper, bits, bias_bits, method, store_scales, buffers), version=version)


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


# ----------------------------------------------------------------------------------- decode


def _read(data_or_path: Any) -> bytes:
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return bytes(data_or_path)
    if isinstance(data_or_path, (str, os.PathLike)):
        path = Path(data_or_path)
        if not path.is_file():
            raise _err(f"no such file {str(path)!r}")
        return path.read_bytes()
    raise _err(f"expected bytes or a path, got {type(data_or_path).__name__}")


def _parse(header: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the header's keys and types (raises HyperprojError)."""

    kind = header.get("K")
    if kind is not None:  # another member of the .hpz family
        if isinstance(kind, str) and kind.startswith("mod-"):
            raise _err(
                f"this is a meta-learned modulation file (kind {kind!r}), not a D'OH signal file: decode it "
                "with hyperproj.modulation.render_file(FILE, BASE) or 'hyperproj decompress FILE --base BASE.hpz'"
            )
        raise _err(f"unknown file kind {kind!r} (a newer hyperproj may read it)")

    def need(key: str, types, what: str):
        if key not in header:
            raise _err(f"file header lacks the field {key!r} ({what})")
        value = header[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise _err(f"file header field {key!r} ({what}) is malformed: {value!r}")
        return value

    arch = need("a", list, "architecture")
    if len(arch) != 2 or not isinstance(arch[0], str) or not isinstance(arch[1], dict):
        raise _err(f"file header field 'a' (architecture) is malformed: {arch!r}")
    qb = need("q", list, "bit widths")
    if len(qb) != 2:
        raise _err(f"file header field 'q' (bit widths) is malformed: {qb!r}")
    h = {
        "spec": {"name": arch[0], "config": arch[1]},
        "generator": need("g", int, "generator version"),
        "n": need("n", int, "latent size"),
        "seed": need("s", int, "seed"),
        "kind": need("p", str, "projection kind"),
        "bits": _check_bits(qb[0], "bits"),
        "bias_bits": _check_bits(qb[1], "bias_bits"),
        "fingerprint": need("f", int, "fingerprint"),
        "distribution": header.get("d", "uniform"),
        "latent_scale": header.get("l", "unit"),
        "method": header.get("m", "rans"),
        "targets": header.get("t"),
        "buffers": header.get("k", []),
        "signal": header.get("x"),
        "groups": header.get("G"),
    }
    g = h["groups"]
    if g is not None and not (isinstance(g, list) and len(g) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in g)):
        raise _err(f"file header field 'G' (latent groups) is malformed: {g!r}")
    if not 1 <= h["n"] <= _MAX_LATENT:
        raise _err(f"file header latent size {h['n']} is out of range [1, {_MAX_LATENT}]")
    if h["method"] not in METHODS:
        raise _err(f"file header coding method {h['method']!r} is not one of {METHODS}")
    if h["generator"] != rng.GENERATOR_VERSION:
        raise _err(
            f"the file was written with generator version {h['generator']}, this hyperproj has "
            f"version {rng.GENERATOR_VERSION}: B cannot be regenerated identically; use a "
            "hyperproj release with the file's generator version"
        )
    return h


def _take(stream: bytes | None, count: int, bits: Bits, method: str, what: str) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if stream is None:
        raise _err(f"file lacks the {what} section")
    return _decode_stream(stream, count, _alphabet(bits), method)


def _ranges(data: bytes, count: int) -> list[tuple[float, float]]:
    if len(data) != count * _RANGE.size:
        raise _err(f"range section holds {len(data)} bytes, expected {count * _RANGE.size}")
    out = []
    for i in range(count):
        lo, hi = _RANGE.unpack_from(data, i * _RANGE.size)
        out.append((lo, hi))
    return out


def _qrange(bits: Bits, lo_hi: tuple[float, float] | None) -> QuantRange:
    if bits == "float16":
        return QuantRange(bits="float16", min=0.0, max=0.0)
    return QuantRange(bits=bits, min=lo_hi[0], max=lo_hi[1])


@torch.no_grad()
def _decode(data: bytes) -> HyperModel:
    header, sections = read_container(data)
    h = _parse(header)
    _ensure_kind(h["kind"])
    base = _build(h["spec"])
    options: dict[str, Any] = {
        "projection": h["kind"],
        "distribution": h["distribution"],
        "latent_scale": h["latent_scale"],
    }
    if h["targets"] is not None:
        options["targets"] = h["targets"]
    if h["groups"] is not None:
        g = h["groups"]
        options["groups"] = {"kind": "partition", "global_dim": g[0], "partition_dim": g[1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hyper = reparametrize(base, h["n"], h["seed"], copy_base=False, **options)
    if "s" in sections:
        k = len(hyper.target_names)
        if len(sections["s"]) != 8 * k:
            raise _err(f"scale section holds {len(sections['s'])} bytes, expected {8 * k}")
        cfg = hyper.config()
        for t, s in zip(cfg["targets"], struct.unpack(f"<{k}d", sections["s"])):
            t["scale"] = s
        cfg["fingerprint"] = None
        hyper.load_config(cfg)
    if _fingerprint_code(hyper) != h["fingerprint"]:
        raise _err(
            f"fingerprint of B does not match: the file was written with projection "
            f"{h['kind']!r} / generator {h['generator']} by a hyperproj whose B differs from this "
            "one's (different projection implementation or generator); refusing to decode garbage"
        )
    params = _untargeted(hyper)
    nb = 0 if h["bits"] == "float16" else 1
    npar = 0 if h["bias_bits"] == "float16" else len(params)
    rr = _ranges(sections.get("r", b""), nb + npar)
    zsym = _take(sections.get("z"), h["n"], h["bits"], h["method"], "latent")
    zr = _qrange(h["bits"], rr[0] if nb else None)
    hyper.latent.copy_(dequantize(zsym, zr).view_as(hyper.latent))
    total = sum(p.numel() for _, p in params)
    psym = _take(sections.get("b"), total, h["bias_bits"], h["method"], "parameter")
    pos = 0
    for i, (_, p) in enumerate(params):
        r = _qrange(h["bias_bits"], rr[nb + i] if npar else None)
        p.copy_(dequantize(psym[pos : pos + p.numel()], r).to(p.dtype).view_as(p))
        pos += p.numel()
    if h["buffers"]:
        raw = sections.get("k", b"")
        pos = 0
        for name, dtype, shape in h["buffers"]:
            buf = hyper.base.get_buffer(name)
            tdtype = getattr(torch, dtype)
            nbytes = math.prod(shape) * torch.empty(0, dtype=tdtype).element_size()
            chunk = raw[pos : pos + nbytes]
            if len(chunk) != nbytes:
                raise _err(f"buffer section too short for {name!r}")
            arr = torch.frombuffer(bytearray(chunk), dtype=tdtype).reshape(shape)
            buf.copy_(arr)
            pos += nbytes
        if pos != len(raw):
            raise _err("buffer section has trailing bytes")
    hyper.eval()
    hyper.hpz_signal = h["signal"]
    hyper.hpz_header = dict(header)
    return hyper


def decode(data: bytes) -> HyperModel:
    """Rebuild the quantized :class:`~hyperproj.HyperModel` from ``.hpz`` bytes.

    Raises :class:`~hyperproj.HyperprojError` (and nothing else) for any malformed or foreign
    input: a wrong CRC, a different generator version, a projection kind this hyperproj lacks, or
    a fingerprint of ``B`` that the regenerated projection does not reproduce. The decoded model
    carries ``hpz_signal`` (the signal metadata) and ``hpz_header``.

    Examples:
        >>> from hyperproj.inr import Siren
        >>> blob = encode(hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=4))
        >>> decode(blob).seed
        4
        >>> decode(blob[:-1])
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: read_container: CRC32 mismatch ...
    """
    data = _read(data)
    try:
        return _decode(data)
    except HyperprojError:
        raise
    except Exception as err:  # noqa: BLE001 - a file must never raise anything else
        raise _err(f"malformed file: {type(err).__name__}: {err}") from None


def load(path: str | os.PathLike) -> HyperModel:
    """:func:`decode` the file at ``path``.

    Examples:
        >>> load("missing.hpz")
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: hyperproj.codec: no such file 'missing.hpz'
    """
    return decode(_read(path))


def decompress(path_or_bytes: Any) -> HyperModel:
    """Decode a compressed signal (a path or bytes) into its model; :func:`render` shows it.

    Examples:
        >>> decompress(b"HPZ")
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: read_container: ...
    """
    return decode(_read(path_or_bytes))


# ----------------------------------------------------------------------------------- info


def info(data_or_path: Any) -> dict[str, Any]:
    """Header fields and the rate breakdown of a ``.hpz`` file (no projection is built).

    Keys: ``bytes`` (file size), ``header_bytes`` (container + JSON header), ``range_bytes``,
    ``latent_bytes``, ``param_bytes`` (biases and other untargeted parameters), ``other_bytes``,
    ``latent_count``, ``param_count``, ``entropy_bytes`` and ``bzip2_bytes`` (per stream: the
    symbols' empirical entropy and bzip2's size, for comparison), ``bpp`` (images), ``header``
    (the decoded fields).

    Examples:
        >>> from hyperproj.inr import Siren
        >>> rep = info(encode(hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=0)))
        >>> rep["latent_count"], rep["param_count"]
        (20, 17)
    """
    data = _read(data_or_path)
    try:
        header, sections = read_container(data)
        h = _parse(header)
        from ..targets import select_targets

        base = _build(h["spec"])
        names = h["targets"] or select_targets(base, None, None)
        target_ids = {id(base.get_parameter(n)) for n in names}
        pcount = sum(p.numel() for _, p in base.named_parameters() if id(p) not in target_ids)
        zsym = _take(sections.get("z"), h["n"], h["bits"], h["method"], "latent")
        psym = _take(sections.get("b"), pcount, h["bias_bits"], h["method"], "parameter")
    except HyperprojError:
        raise
    except Exception as err:  # noqa: BLE001
        raise _err(f"malformed file: {type(err).__name__}: {err}") from None
    sec = {k: len(v) for k, v in sections.items()}

    def bz(sym: np.ndarray, bits: Bits) -> int:
        if sym.size == 0:
            return 0
        dtype = "<u1" if _width(bits) <= 8 else "<u2"
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
        "entropy_bytes": {
            "latent": empirical_entropy_bits(zsym) / 8,
            "params": empirical_entropy_bits(psym) / 8,
        },
        "bzip2_bytes": {"latent": bz(zsym, h["bits"]), "params": bz(psym, h["bias_bits"])},
        "raw_bytes": {
            "latent": math.ceil(zsym.size * _width(h["bits"]) / 8),
            "params": math.ceil(psym.size * _width(h["bias_bits"]) / 8),
        },
        "header": {
            "architecture": h["spec"],
            "generator_version": h["generator"],
            "latent_dim": h["n"],
            "seed": h["seed"],
            "projection": h["kind"],
            "distribution": h["distribution"],
            "latent_scale": h["latent_scale"],
            "bits": h["bits"],
            "bias_bits": h["bias_bits"],
            "method": h["method"],
            "fingerprint_crc32": h["fingerprint"],
            "signal": h["signal"],
            "stored_scales": "s" in sections,
            "stored_buffers": [b[0] for b in h["buffers"]],
            "groups": h["groups"],
        },
    }
    sig = h["signal"] or {}
    if isinstance(sig, dict) and isinstance(sig.get("i"), list) and len(sig["i"]) == 3:
        out["bpp"] = 8 * len(data) / (sig["i"][0] * sig["i"][1])
    return out


# ----------------------------------------------------------------------------------- crop


def crop(data_or_path: Any, box: Any) -> bytes:
    """A cropped copy of a ``.hpz`` file of a :class:`~hyperproj.inr.LocalGlobal` encoded with
    ``groups="partition"``: the partitions outside ``box = (lower_corner, upper_corner)`` (model
    coordinates) and their latents and biases are dropped; no retraining, no re-quantization.

    The kept region decodes bit for bit as before and the file shrinks in proportion; image
    metadata records the pixel window so :func:`render` shows the crop. Details:
    :func:`hyperproj.codec.cropfile.crop_file`.

    Examples:
        >>> from hyperproj.inr import LocalGlobal
        >>> net = LocalGlobal(2, 1, (4, 4), local_features=4, global_features=4, hidden_layers=0)
        >>> blob = encode(hyperproj.reparametrize(net, 200, seed=0, groups="partition"))
        >>> small = crop(blob, ((-1, -1), (0, 0)))
        >>> decode(small).base.num_partitions, len(small) < len(blob)
        (4, True)
    """
    from .cropfile import crop_file

    return crop_file(_read(data_or_path), box)


# ----------------------------------------------------------------------------------- render


def _image_shape(model: nn.Module) -> tuple[int, int, int] | None:
    sig = getattr(model, "hpz_signal", None)
    if isinstance(sig, dict) and isinstance(sig.get("i"), list) and len(sig["i"]) == 3:
        return tuple(int(v) for v in sig["i"])  # type: ignore[return-value]
    return None


def render(model: nn.Module, shape: tuple[int, int, int] | None = None, path: str | os.PathLike | None = None):
    """The signal a (decoded) model represents: a PIL image for images (H×W×C from the file, or
    ``shape``), an (N, C) tensor at the original scale for audio (written as wav if ``path``).
    With ``path`` an image is saved too (format from the suffix).

    Examples:
        >>> from hyperproj.inr import Siren, ImageSignal
        >>> hyper = hyperproj.reparametrize(Siren(2, 8, 1, 3), latent_dim=20, seed=0)
        >>> img = render(decode(encode(hyper, signal=ImageSignal(torch.rand(6, 5, 3)))))
        >>> img.size
        (5, 6)
    """
    from ..inr.signals import AudioSignal, ImageSignal
    from .cropfile import window_coords

    shape = shape or _image_shape(model)
    if shape is not None:
        sig = ImageSignal(torch.zeros(*shape))
        img = sig.to_image(sig.render(model, window_coords(model)))
        if path is not None:
            img.save(path)
        return img
    meta = getattr(model, "hpz_signal", None)
    if isinstance(meta, dict) and isinstance(meta.get("a"), list) and len(meta["a"]) == 4:
        n, c, rate, scale = meta["a"]
        sig = AudioSignal(np.zeros((int(n), int(c)), np.float32), int(rate), float(scale))
        pred = sig.render(model, window_coords(model))
        if path is not None:
            sig.to_wav(pred, path)
        return pred * sig.scale
    raise _err("render: the model carries no image/audio metadata; pass shape=(H, W, C)")


# ----------------------------------------------------------------------------------- compress


@dataclass
class CompressResult:
    """What :func:`compress` returns: the decoded ``model``, the file ``data`` and a ``report``.

    ``report`` keys: ``latent_dim``, ``bits``, ``bias_bits``, ``budget_bytes``, ``file_bytes``,
    ``est_bpp`` (stored values × bits / pixels, the paper's estimate), ``bpp`` (the file, header
    included), the decoded model's metrics (``psnr``, ``ssim`` for images), ``seconds``,
    ``attempts``.

    Examples:
        >>> r = CompressResult(model=None, data=b"xyz", report={"bpp": 0.1})
        >>> r.bytes, len(r)
        (b'xyz', 3)
    """

    model: Any
    data: bytes
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> bytes:  # noqa: A003 - the brief's name for the file
        """The file's bytes (alias of ``data``)."""
        return self.data

    def __len__(self) -> int:
        return len(self.data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the file; returns the path."""
        path = Path(path)
        path.write_bytes(self.data)
        return path


def _samples(signal: Any) -> int:
    from ..inr.signals import AudioSignal, ImageSignal

    if isinstance(signal, ImageSignal):
        return signal.num_pixels
    if isinstance(signal, AudioSignal):
        return signal.num_samples
    return 0


def default_model(signal: Any, latent_dim: int | None = None) -> nn.Module:
    """The SIREN :func:`compress` uses when no model is given.

    Images: D'OH's target, 9 hidden layers of width 40 (first/hidden ω = 30), no Fourier
    features (measured: on kodim23 at 256 px, 200 full-batch steps, 27.5 dB without and 15.9 dB
    with 8 NeRF frequencies in front of a SIREN whose first ω is 30 — the two stack into noise);
    the width grows in steps of 8 when ``latent_dim`` exceeds the projected weights, and shrinks
    in steps of 8 (down to 8) while ``latent_dim`` is under 30 % of them, so the latent always
    gets the offset parameterisation (fixed rules, no search; measured on the demo's 256 px
    astronaut, 1,500 steps: at 0.5 bpp width 32 gave 24.57 dB against 20.77 for width 40 with a
    26 % unit latent, at 0.3 bpp width 24 gave 22.74 against 19.93). Audio: 5 hidden layers of width 64, first ω =
    3000. Occupancy: 9 × 40, 6 Fourier frequencies.

    Examples:
        >>> from hyperproj.inr import ImageSignal
        >>> net = default_model(ImageSignal(torch.rand(8, 8, 3)))
        >>> net.config["hidden_features"], net.config["hidden_layers"]
        (40, 9)
    """
    from ..inr.models import Siren
    from ..inr.signals import AudioSignal, ImageSignal, OccupancySignal

    if isinstance(signal, ImageSignal):
        c = signal.shape[2]

        def weights(width: int) -> int:
            return 2 * width + (9 * width + c) * width

        width = 40
        if latent_dim is not None and latent_dim < OFFSET_MIN_SHARE * weights(width):
            # narrower until the latent is 30 % of the weights: a small latent trains far better
            # on a narrow network with the offset latent than on the 9 x 40 with the unit one
            while width > 8 and latent_dim < OFFSET_MIN_SHARE * weights(width):
                width -= 8
        while latent_dim is not None and weights(width) < latent_dim and width < 512:
            width += 8
        return Siren(2, width, 9, c)
    if isinstance(signal, AudioSignal):
        return Siren(1, 64, 5, signal.values.shape[1], first_omega=3000.0)
    if isinstance(signal, OccupancySignal):
        return Siren(3, 40, 9, 1, fourier_features=6)
    raise _err(f"no default model for {type(signal).__name__}; pass model=")


def _as_signal(signal: Any):
    from ..inr.signals import ImageSignal, Signal

    if isinstance(signal, Signal):
        return signal
    if isinstance(signal, (str, os.PathLike)):
        return ImageSignal.from_file(signal)
    if isinstance(signal, (np.ndarray, torch.Tensor)):
        return ImageSignal.from_array(np.asarray(signal))
    raise _err(f"signal must be a hyperproj.inr Signal, an image path or an array, got {type(signal).__name__}")


class _FakeQuantModel(nn.Module):
    """Runs ``hyper`` with its latent and untargeted parameters fake-quantized (straight-through)."""

    def __init__(self, hyper: HyperModel, bits: Bits, bias_bits: Bits):
        super().__init__()
        self.hyper = hyper
        self.bits = bits
        self.bias_bits = bias_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        over = {"latent": fake_quantize(self.hyper.latent, self.bits)}
        for name, p in _untargeted(self.hyper):
            over[name] = fake_quantize(p, self.bias_bits)
        return torch.func.functional_call(self.hyper, over, (x,))

    def optimizer_param_groups(self, lr: float):
        return self.hyper.optimizer_param_groups(lr)


def _budget_fit(header: dict, sections_bound: dict[str, int]) -> int:
    """Exact container size for a header and section lengths (placeholder bytes)."""
    return len(write_container(header, {k: bytes(v) for k, v in sections_bound.items()}))


def _size_bound(hyper_like: dict[str, Any], n: int, bits: Bits, bias_bits: Bits, n_params: int,
                n_param_tensors: int, latent_bits_per_symbol: float | None) -> int:
    """Upper bound (``latent_bits_per_symbol=None``: raw packing) or estimate of the file size."""
    header = dict(hyper_like)
    header["n"] = n
    ranges = (0 if bits == "float16" else 8) + (0 if bias_bits == "float16" else 8 * n_param_tensors)
    if latent_bits_per_symbol is None:
        z = 1 + math.ceil(n * _width(bits) / 8)
    else:
        z = _RANS_OVERHEAD + math.ceil(n * latent_bits_per_symbol / 8)
    sections = {"r": ranges, "z": z}
    if n_params:
        sections["b"] = 1 + math.ceil(n_params * _width(bias_bits) / 8)
    return _budget_fit(header, sections) + 4  # +4: deflate of the real table may differ by a byte or so


def _largest_n(fits, high: int) -> int:
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


def _warm_start(src: HyperModel, dst: HyperModel) -> None:
    """Warm start ``dst`` (smaller latent) from ``src``: least-squares fit of its generated
    weights (:func:`hyperproj.distill.project_weights`), untargeted parameters copied."""
    with torch.no_grad():
        for (_, p), (_, q) in zip(_untargeted(src), _untargeted(dst)):
            q.copy_(p)
    project_weights(dst, src.generate_weights(), weighting="none", cg_iters=60)


def compress(
    signal: Any,
    bpp: float = 0.3,
    model: nn.Module | None = None,
    *,
    bits: Bits = DEFAULT_BITS,
    bias_bits: Bits = DEFAULT_BIAS_BITS,
    steps: int | None = None,
    lr: float | None = None,
    qat_steps: int | None = None,
    time_budget: float | None = None,
    projection: str = "auto",
    seed: int = 0,
    method: str = "rans",
    max_bytes: int | None = None,
    latent_dim: int | None = None,
    progress: bool = True,
    fit_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> CompressResult:
    """Compress ``signal`` into a ``.hpz`` file of at most ``bpp`` bits per pixel (header included).

    The latent size comes straight from the bit budget (no architecture search): the largest
    ``n`` whose file — header, ranges, biases at ``bias_bits``, latent entropy-coded at an
    estimated bits/symbol — fits ``bpp × pixels`` bits. The model is reparametrized with
    ``latent_scale="offset"`` (``W = W0 + R z``, z from 0: it learns several dB faster per step
    than the paper's or the unit parameterisation, see the Codec docs) when ``n`` is at least
    30 % of the weights, else with the unit latent, trained (``steps`` Adam
    steps at ``lr``, minibatches of 8,192 rows for signals over 16,384 rows — for images drawn
    where the error is, :class:`~hyperproj.inr.ErrorSampling` — cosine decay, best state kept),
    optionally fine-tuned with straight-through fake quantization of latent and biases (``qat_steps``; off by default: measured to cost more training time than it wins
    back), quantized and encoded. With ``time_budget`` the clock bounds training (``steps``
    defaults to a cap it never reaches, the cosine decay follows the clock, and fine-tuning, if
    asked for, gets the last 20 %). If the real file is over budget, the latent shrinks to the size the measured
    bits/symbol allow (warm-started by a least-squares fit of the trained weights, then
    fine-tuned) until it fits — unless a time budget leaves under a quarter of itself for that
    fine-tuning, in which case the trained latent is coded with one bit less instead (a warm start
    without fine-tuning is far worse); raw bit packing bounds the coded size, so the loop always
    ends under budget. ``max_bytes`` sets the budget in bytes instead (needed for occupancy signals).

    Args:
        signal: ``ImageSignal`` (or an image path / array), ``AudioSignal`` (bpp = bits per
            sample) or ``OccupancySignal`` (with ``max_bytes``).
        model: a registered :mod:`hyperproj.inr` model (default: :func:`default_model`).
        steps: training steps (default 2000, or time-bounded when ``time_budget`` is given).
        lr: Adam learning rate (default 1e-3 for the offset latent, the edge of stability for
            SIREN and offset D'OH alike; 3e-3 with latent × 10 for the unit latent).
        time_budget: seconds for the whole call (training gets what encoding does not need).
        projection: ``"auto"``, ``"dense"``, ``"streamed"``, ``"fastfood"``.
        latent_dim: force ``n`` (the guarantee still holds: it shrinks if the file is over).
        fit_options: extra arguments for :func:`hyperproj.inr.fit`.
        **options: passed to :func:`hyperproj.reparametrize` (``init``, ``latent_scale``, ...).

    Returns:
        :class:`CompressResult` with the *decoded* model and its metrics; ``report`` also holds
        ``unquantized`` (the trained float model's metrics: the gap is what rounding cost),
        ``latent_bits_per_symbol`` (the coded latent's real cost) and ``recoveries`` (divergences
        that :func:`~hyperproj.inr.fit` rolled back, ``(step, lr factor)``) and ``steps`` (training
        steps taken, over every attempt; fine-tuning with rounding not counted).

    Examples:
        >>> import skimage.data
        >>> from hyperproj.inr import ImageSignal
        >>> sig = ImageSignal.from_array(skimage.data.astronaut()).resize(64)
        >>> res = compress(sig, bpp=0.5, steps=300, progress=False)  # doctest: +SKIP
        >>> res.report["bpp"] <= 0.5  # doctest: +SKIP
        True
    """
    from ..inr.fit import ErrorSampling, default_lr, fit
    from ..inr.signals import ImageSignal

    t0 = time.perf_counter()
    signal = _as_signal(signal)
    bits = _check_bits(bits, "bits")
    bias_bits = _check_bits(bias_bits, "bias_bits")
    if method not in METHODS:
        raise _err(f"method must be one of {METHODS}, got {method!r}")
    samples = _samples(signal)
    if max_bytes is None:
        if not samples:
            raise _err(f"compress: pass max_bytes= for a {type(signal).__name__} (bpp needs pixels)")
        if not (isinstance(bpp, (int, float)) and bpp > 0 and math.isfinite(bpp)):
            raise _err(f"compress: bpp must be a positive number, got {bpp!r}")
        budget = int(bpp * samples) // 8
    else:
        budget = int(max_bytes)
    if projection not in ("auto", *projection_kinds()) and projection == "fastfood":
        _ensure_kind("fastfood")
    if time_budget is not None and (
            isinstance(time_budget, bool) or not isinstance(time_budget, (int, float))
            or not math.isfinite(time_budget) or time_budget <= 0):
        raise _err(f"compress: time_budget must be a positive number of seconds or None, got {time_budget!r}")
    lr_given = lr is not None
    if options.get("latent_scale") == "auto":  # compress resolves it below, knowing n and the model
        del options["latent_scale"]
    fit_options = dict(fit_options or {})
    fit_options.setdefault("scheduler", "cosine")
    if samples > 2 * _BATCH_ROWS:  # minibatches learn far more per pixel visited than full passes
        fit_options.setdefault("batch_size", _BATCH_ROWS)
        if isinstance(signal, ImageSignal) and fit_options["batch_size"] is not None:
            # rows drawn where the error is (measured on Kodak at 0.3 bpp, docs/codec.md)
            fit_options.setdefault("sampling", ErrorSampling())
    if steps is None:  # with a time budget the clock ends training and steps is only a cap
        steps = _STEP_CAP if time_budget is not None else 2000
    # measured (docs/codec.md): fine-tuning with rounding in the loop cost more training time than
    # it won back, so it is off unless asked for
    qat_steps = 0 if qat_steps is None else int(qat_steps)

    # --- the latent size from the budget (known before training) -----------------------------
    from ..targets import select_targets

    def layout(net: nn.Module):
        names = select_targets(net, options.get("targets"), options.get("exclude"))
        ids = {id(net.get_parameter(n)) for n in names}
        P = sum(net.get_parameter(n).numel() for n in names)
        rest = [p for _, p in net.named_parameters() if id(p) not in ids]
        return P, sum(p.numel() for p in rest), len(rest)

    def plan(net: nn.Module, bps: float | None, cap: int | None = None) -> int:
        spec = _spec_of(net)
        P, npar, ntens = layout(net)
        like = {
            "a": [spec["name"], _compact_config(net, spec["config"])], "g": rng.GENERATOR_VERSION, "s": seed,
            "p": "fastfood", "q": [bits, bias_bits], "f": 4294967295, "x": _signal_meta(signal),
        }
        if options.get("latent_scale", "unit") != "unit":
            like["l"] = options["latent_scale"]
        if method != "rans":
            like["m"] = method
        high = min(P if cap is None else cap, _MAX_LATENT)
        return _largest_n(lambda n: _size_bound(like, n, bits, bias_bits, npar, ntens, bps) <= budget, high)

    def est_bps(latent_scale: str) -> float:  # budgeted bits per latent symbol
        slack = _LATENT_SLACK_BITS.get(latent_scale, {}).get(_width(bits), 0.0) if method == "rans" else 0.0
        return _width(bits) - slack

    scale_guess = options.get("latent_scale", "unit" if "groups" in options else "offset")
    if model is None:
        # D'OH's 9 x 40 target; wider only when the budget buys more latent values than weights
        probe = default_model(signal)
        model = default_model(signal, latent_dim=plan(probe, est_bps(scale_guess), cap=_MAX_LATENT))
    _spec_of(model)  # validates the model early
    n_safe = plan(model, None)
    if n_safe < 1:
        raise _err(
            f"compress: a budget of {budget} bytes ({8 * budget / max(samples, 1):.4g} bpp) cannot "
            "hold even the header and the biases of this model; raise bpp or use a smaller model"
        )
    n = latent_dim if latent_dim is not None else max(plan(model, est_bps(scale_guess)), n_safe)
    if "groups" not in options and "latent_scale" not in options:
        # reparametrize's "auto" rule: offset learns fastest while the latent spans enough of the
        # weights; below ~30 % the frozen random W0 cannot be cancelled, so small latents use unit
        options["latent_scale"] = resolve_latent_scale("auto", n, layout(model)[0])
        if options["latent_scale"] != scale_guess and latent_dim is None:  # it codes less tightly
            n = max(plan(model, est_bps(options["latent_scale"])), n_safe)
    # the model's own rate (a SIREN's falls with width x depth: 1e-3 at 10 x 40, 5e-4 at 10 x 80)
    lr = lr if lr_given else default_lr(model)
    if options.get("latent_scale", "unit") == "unit":
        options.setdefault("latent_lr_scale", 10.0)
        lr = lr if lr_given else 3 * lr  # measured best for the unit latent: 3e-3 at 10 x 40

    attempts = []
    previous: HyperModel | None = None
    data = b""
    hyper = None
    remaining_steps = steps
    eval_seconds: float | None = None
    unquantized: dict[str, float] = {}
    recoveries: list[tuple[int, float]] = []
    trained_steps = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            hyper = reparametrize(model, n, seed, projection=projection, **options)
        hyper.hpz_signal = _signal_meta(signal)
        if previous is not None:
            _warm_start(previous, hyper)
        if time_budget is not None and eval_seconds is None:
            # fit's budget excludes its evaluations; reserve wall time for every full-signal pass
            tic = time.perf_counter()
            signal.evaluate(hyper)
            eval_seconds = time.perf_counter() - tic
        left = None if time_budget is None else time_budget - (time.perf_counter() - t0)
        # passes still to come: 2 in this fit, 4 around fine-tuning, 1 for the report
        reserve = 0.0 if eval_seconds is None else (3 + 4 * bool(qat_steps)) * eval_seconds + 1.0
        main_budget = None if left is None else (left - reserve) * (1 - 0.2 * bool(qat_steps))
        if main_budget is not None and main_budget < _MIN_TRAIN_SECONDS and previous is None:
            spent = time.perf_counter() - t0
            raise _err(
                f"compress: time_budget={time_budget:g} s is too small to train this model: setting up "
                f"took {spent:.1f} s and the full-signal evaluations still to come take about "
                f"{reserve:.1f} s, which leaves {max(main_budget, 0.0):.1f} s for training (at least "
                f"{_MIN_TRAIN_SECONDS:g} s needed); give at least {spent + reserve + 10 * _MIN_TRAIN_SECONDS:.0f} s "
                "for a useful result, or pass steps= without a time budget"
            )
        if remaining_steps > 0 and (main_budget is None or main_budget > 0):
            history = fit(hyper, signal, remaining_steps, lr=lr, progress=progress, time_budget=main_budget,
                          **fit_options)
            unquantized = history.metrics[history.best_index] if history.best_index is not None else {}
            recoveries += history.recoveries
            trained_steps += history.step[-1] if history.step else 0
        if qat_steps > 0:
            left = None if time_budget is None else max(
                time_budget - (time.perf_counter() - t0) - 5 * (eval_seconds or 0.0) - 1.0, 0.5)
            qat_opts = dict(fit_options)
            qat_opts["scheduler"] = None
            spec_m = signal.metric
            before = signal.evaluate(quantize(hyper, bits, bias_bits))[spec_m.name]
            saved = [p.detach().clone() for p in hyper.parameters()]
            fit(_FakeQuantModel(hyper, bits, bias_bits), signal, qat_steps, lr=lr * 0.1,
                progress=progress, time_budget=left, **qat_opts)
            after = signal.evaluate(quantize(hyper, bits, bias_bits))[spec_m.name]
            if not spec_m.better(after, before):  # QAT did not help: keep the trained state
                with torch.no_grad():
                    for p, v in zip(hyper.parameters(), saved):
                        p.copy_(v)
        data = encode(hyper, bits, bias_bits, method, signal=signal)
        attempts.append({"latent_dim": n, "bits": bits, "bytes": len(data)})
        if len(data) <= budget:
            break
        short_of_time = time_budget is not None and (
            time_budget - (time.perf_counter() - t0) < _REPLAN_MIN_TIME_SHARE * time_budget)
        if short_of_time and bits != "float16" and int(bits) > 2:
            # no time left to fine-tune a smaller latent: code this trained one one bit coarser
            coarser = encode(hyper, int(bits) - 1, bias_bits, method, signal=signal)
            attempts.append({"latent_dim": n, "bits": int(bits) - 1, "bytes": len(coarser)})
            if len(coarser) <= budget:
                data, bits = coarser, int(bits) - 1
                break
        if n <= n_safe:
            raise _err(f"compress: internal error, the safe latent size {n} gave {len(data)} > {budget} bytes")
        # over budget: shrink n to what the measured bits/symbol allow, warm start, fine-tune
        sections = read_container(data)[1]
        bps = 8 * (len(sections["z"]) - _RANS_OVERHEAD) / n + 0.02
        new_n = plan(model, bps)
        over = len(data) - budget
        new_n = min(new_n, n - max(1, math.ceil(8 * over / max(bps, 1e-3))))
        n = max(new_n, n_safe)
        previous = hyper
        remaining_steps = max(steps // 4, 1)
    seconds = time.perf_counter() - t0
    decoded = decode(data)
    report: dict[str, Any] = {
        "latent_dim": hyper.latent_dim,
        "projected_weights": hyper.num_projected,
        "bits": bits,
        "bias_bits": bias_bits,
        "projection": hyper.projection.kind,
        "budget_bytes": budget,
        "file_bytes": len(data),
        "attempts": attempts,
        "recoveries": recoveries,
        "steps": trained_steps,
        "sampling": str(fit_options.get("sampling", "uniform")),
        "seconds": seconds,
    }
    npar = sum(p.numel() for _, p in _untargeted(hyper))
    if samples:
        report["target_bpp"] = 8 * budget / samples if max_bytes is not None else bpp
        report["est_bpp"] = (hyper.latent_dim * _width(bits) + npar * _width(bias_bits)) / samples
        report["bpp"] = 8 * len(data) / samples
    report["latent_bits_per_symbol"] = 8 * len(read_container(data)[1]["z"]) / hyper.latent_dim
    report.update(signal.evaluate(decoded))
    # the trained float model before rounding (the state fit kept): what quantization cost
    report["unquantized"] = {k: v for k, v in unquantized.items() if k in report}
    return CompressResult(model=decoded, data=data, report=report)
