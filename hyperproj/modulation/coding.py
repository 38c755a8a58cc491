"""Entropy-coded latents in the ``.hpz`` family, against a shared base stored once.

Two file kinds, both :mod:`hyperproj.codec.format` files (magic ``HPZ``, format version, JSON
header, named sections, CRC32), told apart by the header key ``"K"``:

* **base** (``"K": "mod-base/1"``): the meta-learned network — kind, constructor config, the
  number of inner steps it was trained with, and every ``state_dict`` tensor as raw little-endian
  float32 (weights, hypernetwork, ``latent_init``, ``inner_lr`` and the per-dimension entropy
  model ``latent_mean``/``latent_scale``). Written once per dataset.
* **latents** (``"K": "mod-latents/1"``): ``n`` quantized latents and the content hash of the
  base they belong to (``"b"``: the first 128 bits of the SHA-256 of the base file's bytes, as
  hex). Decoding checks the hash, so a latent file never silently decodes with the wrong base.

Quantization: per dimension ``j`` the latent is whitened with the entropy model fitted on the
training latents, ``u_j = (φ_j − μ_j) / σ_j``, and rounded on a uniform grid of ``step``:
``q_j = round(u_j / step)``; the decoder computes ``φ̂_j = μ_j + σ_j · step · q_j`` (float64,
one rounding to float32, the same on both sides). After whitening every dimension follows the
same unit-scale model, so the symbols ``q`` are coded as one stream by the codec's own entropy
coder (:func:`hyperproj.codec.entropy.encode`, method ``"rans"``: it fits a discretized Gaussian or
Laplace to the symbols — 5 bytes of parameters — or falls back to bit packing). The step is the
rate knob; the rate reported is the file's size in bits.

Examples:
    >>> from hyperproj.modulation import ShiftSiren
    >>> net = ShiftSiren(8, hidden_features=8, hidden_layers=1)
    >>> _ = fit_entropy_model(net, torch.randn(100, 8))
    >>> blob = encode_latents(net, torch.randn(3, 8), step=0.5)
    >>> decode_latents(blob, net).shape
    torch.Size([3, 8])
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import HyperprojError
from ..codec.entropy import MAX_ALPHABET
from ..codec.entropy import decode as _decode_stream
from ..codec.entropy import encode as _encode_stream
from ..codec.format import read_container, read_input, write_container
from ..model import HyperModel, reparametrize
from .models import ModulatedSiren, build_modulated, modulated_of

__all__ = [
    "BASE_KIND",
    "LATENTS_KIND",
    "fit_entropy_model",
    "quantize_latents",
    "save_base",
    "load_base",
    "base_hash",
    "encode_latents",
    "decode_latents",
    "latents_file_info",
    "render_file",
]

BASE_KIND = "mod-base/1"
"""Header ``"K"`` of a base-network file."""

LATENTS_KIND = "mod-latents/1"
"""Header ``"K"`` of a latents file."""

def _err(where: str, msg: str) -> HyperprojError:
    return HyperprojError(f"hyperproj.modulation.{where}: {msg}")


def _check_latents(where: str, model: ModulatedSiren, latents: Any) -> torch.Tensor:
    if not isinstance(latents, torch.Tensor) or latents.dim() != 2 or latents.shape[1] != model.latent_dim:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise _err(where, f"latents must be a tensor (n, {model.latent_dim}), got {shape}")
    if latents.shape[0] == 0:
        raise _err(where, "latents holds no rows (n = 0)")
    if not bool(torch.isfinite(latents).all()):
        raise _err(where, "latents must be finite, found NaN or inf")
    return latents.detach().cpu().float()


def _check_step(where: str, step: Any) -> float:
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
        raise _err(where, f"step must be a positive finite number, got {step!r}")
    return float(step)


@torch.no_grad()
def fit_entropy_model(model: ModulatedSiren, latents: torch.Tensor, min_scale: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the per-dimension model (mean, std ≥ ``min_scale``) on training latents; stored in the model.

    Sets the buffers ``model.latent_mean`` and ``model.latent_scale`` (they travel in the base
    file) and returns them.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> net = ShiftSiren(2, hidden_features=4, hidden_layers=1)
        >>> mean, scale = fit_entropy_model(net, torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
        >>> mean.tolist(), scale.tolist()
        ([1.0, 1.0], [1.0, 0.0010000000474974513])
    """
    model = modulated_of(model, "fit_entropy_model")
    lat = _check_latents("fit_entropy_model", model, latents)
    if lat.shape[0] < 2:
        raise _err("fit_entropy_model", f"needs at least 2 latents to fit a scale, got {lat.shape[0]}")
    mean = lat.double().mean(0)
    scale = lat.double().std(0, unbiased=False).clamp_min(float(min_scale))
    model.latent_mean.copy_(mean.float())
    model.latent_scale.copy_(scale.float())
    return model.latent_mean.clone(), model.latent_scale.clone()


def _dequantize(model: ModulatedSiren, symbols: torch.Tensor, step: float) -> torch.Tensor:
    mean = model.latent_mean.detach().cpu().double()
    scale = model.latent_scale.detach().cpu().double()
    grid = symbols.to(torch.float64) * step  # separate float64 ops: identical on both sides
    return (mean + scale * grid).float()


@torch.no_grad()
def quantize_latents(model: ModulatedSiren, latents: torch.Tensor, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed integer symbols ``round((φ − μ) / (σ · step))`` and their reconstruction ``(n, d)``.

    The reconstruction equals what :func:`decode_latents` returns for the same symbols, bit for
    bit.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> net = ShiftSiren(2, hidden_features=4, hidden_layers=1)
        >>> q, back = quantize_latents(net, torch.tensor([[0.26, -1.0]]), step=0.5)
        >>> q.tolist(), back.tolist()
        ([[1, -2]], [[0.5, -1.0]])
    """
    model = modulated_of(model, "quantize_latents")
    lat = _check_latents("quantize_latents", model, latents)
    step = _check_step("quantize_latents", step)
    mean = model.latent_mean.detach().cpu().double()
    scale = model.latent_scale.detach().cpu().double()
    symbols = torch.round((lat.double() - mean) / scale / step).to(torch.int64)
    return symbols, _dequantize(model, symbols, step)


def _state_items(model: ModulatedSiren | HyperModel) -> list[tuple[str, torch.Tensor]]:
    # a D'OH base's ``_extra_state`` (its projection config) goes into the header, not here
    return [(k, v.detach().cpu().float().contiguous()) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)]


def save_base(model: ModulatedSiren | HyperModel, path: str | os.PathLike | None = None) -> bytes:
    """The base-network file (bytes); also written to ``path`` if given.

    Deterministic: the same model gives the same bytes, hence the same :func:`base_hash`.

    Examples:
        >>> from hyperproj.modulation import GatedSiren
        >>> net = GatedSiren(4, hidden_features=4, hidden_layers=1, rank=1, hyper_width=4)
        >>> blob = save_base(net)
        >>> blob[:3], load_base(blob).config == net.config
        (b'HPZ', True)
    """
    spec = modulated_of(model, "save_base")
    items = _state_items(model)
    header = {
        "K": BASE_KIND,
        "kind": spec.kind,
        "config": spec.config,
        "inner_steps": int(getattr(spec, "meta_inner_steps", 3)),
        "tensors": [[name, list(t.shape)] for name, t in items],
    }
    if isinstance(model, HyperModel):  # D'OH base: seed, kinds, per-layer scales, fingerprint of B
        header["doh"] = model.config()
    payload = b"".join(t.numpy().astype("<f4").tobytes() for _, t in items)
    blob = write_container(header, {"w": payload})
    if path is not None:
        Path(path).write_bytes(blob)
    return blob


def _read(where: str, data_or_path: Any) -> bytes:
    return read_input(data_or_path, f"hyperproj.modulation.{where}")


def _kind(where: str, header: dict[str, Any], expected: str) -> None:
    found = header.get("K")
    if found != expected:
        what = "a hyperproj signal file (hyperproj.decompress reads it)" if found is None else repr(found)
        raise _err(where, f"expected a file of kind {expected!r}, found {what}")


def load_base(data_or_path: bytes | str | os.PathLike) -> ModulatedSiren | HyperModel:
    """Rebuild the base network from :func:`save_base`'s bytes or file (in eval mode).

    A D'OH base (saved from a ``hyperproj.reparametrize``'d model) comes back as that
    :class:`~hyperproj.HyperModel`, its ``B`` regenerated from the stored seed and checked
    against the stored fingerprint.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> net = ShiftSiren(4, hidden_features=4, hidden_layers=1)
        >>> back = load_base(save_base(net))
        >>> torch.equal(back(torch.zeros(2, 2), torch.ones(4)), net(torch.zeros(2, 2), torch.ones(4)))
        True
    """
    where = "load_base"
    data = _read(where, data_or_path)
    header, sections = read_container(data)
    _kind(where, header, BASE_KIND)
    kind, config, tensors = header.get("kind"), header.get("config"), header.get("tensors")
    inner = header.get("inner_steps")
    if not isinstance(tensors, list) or not isinstance(inner, int) or "w" not in sections:
        raise _err(where, "base file header lacks 'tensors'/'inner_steps' or the 'w' section")
    spec = build_modulated(kind, config)
    model: ModulatedSiren | HyperModel = spec
    doh = header.get("doh")
    if doh is not None:
        model = _doh_model(where, spec, doh)
    own = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    payload = sections["w"]
    state: dict[str, torch.Tensor] = {}
    pos = 0
    for entry in tensors:
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in own and isinstance(entry[1], list)):
            raise _err(where, f"base file tensor entry {entry!r} does not name a tensor of this model")
        name, shape = entry
        if tuple(shape) != tuple(own[name].shape):
            raise _err(where, f"base file tensor {name!r} has shape {shape}, the model expects {list(own[name].shape)}")
        nbytes = 4 * int(np.prod(shape, dtype=np.int64))
        if pos + nbytes > len(payload):
            raise _err(where, f"base file section 'w' ends inside tensor {name!r}")
        arr = np.frombuffer(payload, dtype="<f4", count=nbytes // 4, offset=pos).astype(np.float32)
        state[name] = torch.from_numpy(arr.reshape(shape))
        pos += nbytes
    if pos != len(payload) or set(state) != set(own):
        missing = sorted(set(own) - set(state))
        raise _err(where, f"base file tensors do not match the model (missing {missing}, {len(payload) - pos} bytes left)")
    if doh is not None:
        state["_extra_state"] = doh  # HyperModel.load_config: adopts the scales, checks B's fingerprint
    model.load_state_dict(state)
    spec.meta_inner_steps = inner
    return model.eval()


def _doh_model(where: str, spec: ModulatedSiren, doh: Any) -> HyperModel:
    """The D'OH wrapper a base file's ``"doh"`` header describes (weights still to be loaded)."""
    try:
        targets = [t["name"] for t in doh["targets"]]
        latent_dim, seed = doh["latent_dim"], doh["seed"]
        options = {k: doh[k] for k in ("projection", "distribution", "latent_scale")}
    except (KeyError, TypeError) as err:
        raise _err(where, f"base file header 'doh' is malformed ({err!r}); expected a HyperModel config") from None
    if "groups" in doh:
        raise _err(where, "base file header 'doh' uses groups=, which modulated bases do not support")
    return reparametrize(spec, latent_dim, seed, targets=targets, copy_base=False, **options)


def base_hash(base: ModulatedSiren | HyperModel | bytes) -> str:
    """Content hash of a base: the first 32 hex digits of the SHA-256 of its :func:`save_base` bytes.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> net = ShiftSiren(4, hidden_features=4, hidden_layers=1)
        >>> len(base_hash(net)), base_hash(net) == base_hash(save_base(net))
        (32, True)
    """
    if isinstance(base, (ModulatedSiren, HyperModel)):
        base = save_base(base)
    if not isinstance(base, (bytes, bytearray, memoryview)):
        raise _err("base_hash", f"base must be a model or base-file bytes, got {type(base).__name__}")
    return hashlib.sha256(bytes(base)).hexdigest()[:32]


def encode_latents(
    model: ModulatedSiren | HyperModel,
    latents: torch.Tensor,
    step: float = 0.25,
    path: str | os.PathLike | None = None,
    shape: tuple[int, ...] | None = None,
) -> bytes:
    """A latents file for ``latents (n, d)``: quantized with ``step`` (in units of each dimension's σ).

    The file references the base ``model`` by :func:`base_hash`. Also written to ``path`` if
    given. Its size in bits over the pixel count is the rate. ``shape`` (e.g. ``(32, 32)``, the
    grid each latent renders on) is stored so ``hyperproj decompress FILE --base BASE`` can draw
    the patches without being told; it costs a few header bytes.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> net = ShiftSiren(16, hidden_features=8, hidden_layers=1)
        >>> blob = encode_latents(net, torch.zeros(1, 16))
        >>> len(blob) < 150
        True
    """
    where = "encode_latents"
    spec = modulated_of(model, where)
    symbols, _ = quantize_latents(spec, latents, step)
    lo, hi = int(symbols.min()), int(symbols.max())
    alphabet = hi - lo + 1
    if alphabet > MAX_ALPHABET:
        raise _err(
            where,
            f"step={step} gives {alphabet} distinct levels (> {MAX_ALPHABET}); use a larger step or "
            "refit the entropy model on latents like these",
        )
    header = {
        "K": LATENTS_KIND,
        "b": base_hash(model),
        "n": int(symbols.shape[0]),
        "d": int(symbols.shape[1]),
        "q": float(step),
        "o": lo,
        "a": alphabet,
    }
    if shape is not None:
        header["r"] = _check_shape(where, spec, shape)
    stream = _encode_stream((symbols - lo).reshape(-1).numpy(), alphabet, "rans")
    blob = write_container(header, {"z": stream})
    if path is not None:
        Path(path).write_bytes(blob)
    return blob


def _check_shape(where: str, model: ModulatedSiren, shape: Any) -> list[int]:
    ok = isinstance(shape, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
    if not ok or len(shape) != model.in_features:
        raise _err(
            where,
            f"shape must be {model.in_features} positive ints (the grid one latent renders on), got {shape!r}",
        )
    return [int(v) for v in shape]


def latents_file_info(data_or_path: bytes | str | os.PathLike) -> dict[str, Any]:
    """Header fields of a latents file without its base: ``base`` hash, ``count``, ``latent_dim``,
    ``step``, ``shape`` (or None), ``bytes``.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> net = ShiftSiren(4, hidden_features=4, hidden_layers=1)
        >>> rep = latents_file_info(encode_latents(net, torch.zeros(3, 4), shape=(8, 8)))
        >>> rep["count"], rep["latent_dim"], rep["shape"]
        (3, 4, [8, 8])
    """
    where = "latents_file_info"
    data = _read(where, data_or_path)
    header, _ = read_container(data)
    _kind(where, header, LATENTS_KIND)
    shape = header.get("r")
    return {"base": header.get("b"), "count": header.get("n"), "latent_dim": header.get("d"),
            "step": header.get("q"), "shape": shape, "bytes": len(data)}


def render_file(
    data_or_path: bytes | str | os.PathLike,
    base: ModulatedSiren | HyperModel | bytes | str | os.PathLike,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Decode a latents file against its base and draw every latent: ``(n, *shape, C)`` uint8.

    ``shape`` defaults to the one stored by :func:`encode_latents`; outputs are clipped to
    [0, 1] and rounded to 8 bits (the patches' range).

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> net = ShiftSiren(4, hidden_features=4, hidden_layers=1)
        >>> blob = encode_latents(net, torch.zeros(2, 4), shape=(4, 5))
        >>> render_file(blob, save_base(net)).shape
        (2, 4, 5, 3)
    """
    from ..inr.signals import grid_coords
    from .meta import render_latents

    where = "render_file"
    model = base if isinstance(base, (ModulatedSiren, HyperModel)) else load_base(base)
    data = _read(where, data_or_path)
    latents = decode_latents(data, model)
    if shape is None:
        header, _ = read_container(data)
        shape = header.get("r")
        if shape is None:
            raise _err(where, "the latents file stores no grid shape; pass shape=(H, W) (e.g. (32, 32))")
    shape = tuple(_check_shape(where, modulated_of(model, where), shape))
    with torch.no_grad():
        out = render_latents(model, grid_coords(shape), latents)
    arr = (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return arr.reshape(len(latents), *shape, arr.shape[-1])


def decode_latents(data_or_path: bytes | str | os.PathLike, model: ModulatedSiren | HyperModel) -> torch.Tensor:
    """Latents ``(n, d)`` float32 from a latents file; ``model`` must be the base it references.

    Raises :class:`~hyperproj.HyperprojError` when the file is malformed or was coded against a
    different base (its hash differs).

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> a, b = ShiftSiren(4, hidden_features=4, hidden_layers=1), ShiftSiren(4, hidden_features=4, hidden_layers=2)
        >>> decode_latents(encode_latents(a, torch.zeros(1, 4)), b)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        hyperproj._errors.HyperprojError: ...
    """
    where = "decode_latents"
    spec = modulated_of(model, where)
    header, sections = read_container(_read(where, data_or_path))
    _kind(where, header, LATENTS_KIND)
    fields = {}
    for key, types in (("b", str), ("n", int), ("d", int), ("q", (int, float)), ("o", int), ("a", int)):
        value = header.get(key)
        if not isinstance(value, types) or isinstance(value, bool):
            raise _err(where, f"latents file header field {key!r} is missing or malformed: {value!r}")
        fields[key] = value
    own = base_hash(model)
    if fields["b"] != own:
        raise _err(
            where,
            f"the file was coded against base {fields['b']}, but this model's base hash is {own}; "
            "load the matching base file with load_base",
        )
    if fields["d"] != spec.latent_dim or fields["n"] < 1 or not 1 <= fields["a"] <= MAX_ALPHABET:
        raise _err(
            where,
            f"latents file header is inconsistent: n={fields['n']}, d={fields['d']} (model: "
            f"{spec.latent_dim}), alphabet={fields['a']}",
        )
    step = _check_step(where, fields["q"])
    if "z" not in sections:
        raise _err(where, "latents file lacks the 'z' section")
    symbols = _decode_stream(sections["z"], fields["n"] * fields["d"], fields["a"], "rans")
    symbols = torch.from_numpy(symbols).reshape(fields["n"], fields["d"]) + fields["o"]
    return _dequantize(spec, symbols, step)
