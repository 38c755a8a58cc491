"""The grid family's file: its header, its sections and the networks' fixed-point weights.

* **Networks.** The synthesis and the ARM as integers at a power-of-two step ``2**-q``
  (:meth:`~hyperproj.inr.LatentGrid.integer_layers`), zigzagged and coded with the library's
  fitted-Laplace rANS (:func:`hyperproj.codec.entropy.encode`).
* **Latents.** One rANS stream per non-zero level under the integer ARM's per-latent
  probabilities (:mod:`hyperproj.codec._arm_coding`).
* **Reading.** Every header field is checked before the first symbol is decoded; the pixels come
  from integer arithmetic only (:mod:`hyperproj.inr._grid_int`).

Header fields: ``c`` (``[levels, hidden widths, ARM width]``), ``v`` (grid format version, 1), ``A`` (each level's largest
|latent|, 0 = all zero and no stream), ``qs``/``qa`` (network steps ``2**-q``), ``ns``/``na``
(network alphabets), ``x`` (signal metadata: ``{"i": [H, W, C]}``). Sections: ``s`` (synthesis), ``a`` (ARM),
``l0``… (latent levels, finest first).

The training and the choices (budget, steps, latent shrink) are the family's,
:mod:`hyperproj.codec.families.grid`; it re-exports what this module defines.

Examples:
    >>> from hyperproj.inr import LatentGrid
    >>> from hyperproj.codec.format import read_container
    >>> net = LatentGrid(8, 8, levels=2, hidden=(8,), arm_hidden=4)
    >>> blob = encode_grid(net, 8, 8)
    >>> decoded = decode_grid(*read_container(blob))
    >>> decoded.decoded_pixels.shape
    (8, 8, 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

from ..._errors import HyperprojError
from ...inr import _grid_int as gi
from ...inr.latent_grid import LatentGrid
from .. import _arm_coding as ac
from ..entropy import decode as decode_symbols
from ..entropy import encode as encode_symbols
from ..format import error
from .registry import write_file

__all__ = ["encode_grid", "decode_grid", "describe_grid", "GRID_VERSION", "net_code", "store_grid"]

GRID_VERSION = 1
"""The grid family's own layout version (header ``v``)."""

_MAX_PIXELS = 1 << 26
_MAX_ALPHABET = 1 << 12


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v < 0, -2 * v - 1, 2 * v)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return np.where(z % 2 == 1, -(z + 1) // 2, z // 2)


def net_code(layers: list) -> tuple[bytes, int] | None:
    """The integers of fixed-point layers ``[(w_int, q, b_int), ...]`` zigzagged and coded with the
    library's rANS: ``(bytes, alphabet)``, or ``None`` when an integer is too wide for the coder.

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> data, alphabet = net_code(LatentGrid(4, 4, levels=2, hidden=(4,)).integer_layers("arm", 6))
        >>> isinstance(data, bytes), alphabet > 1
        (True, True)
    """
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
    header, sections = store_grid(net, q_synthesis, q_arm, latents)
    return write_file("grid", header, sections, 2)


def store_grid(net: LatentGrid, q_syn: int, q_arm: int,
               latents: list[np.ndarray] | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The header and sections of ``net``'s file (networks at steps ``2**-q_syn``, ``2**-q_arm``;
    ``latents``: integer grids to store instead of the rounded latents); a level of zeros has no
    section.

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> header, sections = store_grid(LatentGrid(4, 4, levels=2, hidden=(4,)), 8, 8, None)
        >>> header["A"], sorted(sections)
        ([0, 0], ['a', 's'])
    """
    lat = net.integer_latents() if latents is None else latents
    alphabets = [int(np.abs(q).max()) if q.size else 0 for q in lat]
    if max(alphabets) > _MAX_ALPHABET:
        raise error(f"grid: a latent reached {max(alphabets)}, past the coder's bound {_MAX_ALPHABET}")
    syn = net.integer_layers("synthesis", q_syn)
    arm = net.integer_layers("arm", q_arm)
    sc, ar = net_code(syn), net_code(arm)
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
        >>> from hyperproj.codec.format import read_container
        >>> header, sections = read_container(encode_grid(LatentGrid(4, 4, levels=2, hidden=(4,)), 8, 8))
        >>> decode_grid(header, sections).decoded_pixels.dtype
        dtype('uint8')
    """
    h = _parse(header, sections)
    cfg = h["config"]
    net = LatentGrid(**cfg)
    syn = _net_decode(sections["s"], _shapes(net.synthesis), h["qs"], h["ns"])
    arm = _net_decode(sections["a"], _shapes(net.arm), h["qa"], h["na"])
    lat = ac.decode_levels([sections.get(f"l{k}", b"") for k in range(len(net.sizes))], list(net.sizes), h["A"], arm)
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
        >>> from hyperproj.codec.format import read_container
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
