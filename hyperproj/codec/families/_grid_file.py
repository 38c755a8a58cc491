"""The grid family's file: its header, its sections and the networks' fixed-point weights.

* **Networks.** The synthesis and the ARM as integers at a power-of-two step ``2**-q``
  (:meth:`~hyperproj.inr.LatentGrid.integer_layers`), zigzagged and coded with the library's
  fitted-Laplace rANS (:func:`hyperproj.codec.entropy.encode`).
* **Projected networks** (optional, header field ``p``): the weights as the D'OH latent ``z``'s
  integers at step ``2**-qz`` (section ``z``) and the seed of the ±1 matrices; the decoder
  rebuilds each layer's integer weights with :func:`~hyperproj.inr.latent_grid.projected_weights`
  (int64, exact) and sections ``s``/``a`` hold the biases alone. A file without ``p`` is a
  version-1 file as before.
* **Latents.** One rANS stream per non-zero level under the integer ARM's per-latent
  probabilities (:mod:`hyperproj.codec._arm_coding`).
* **Reading.** Every header field is checked before the first symbol is decoded; the pixels come
  from integer arithmetic only (:mod:`hyperproj.inr._grid_int`).

Header fields: ``c`` (``[levels, hidden widths, ARM width]``), ``v`` (grid format version, 1), ``A`` (each level's largest
|latent|, 0 = all zero and no stream), ``qs``/``qa`` (network steps ``2**-q``), ``ns``/``na``
(network alphabets), ``x`` (signal metadata: ``{"i": [H, W, C]}``), optional ``p`` (projected
networks: ``{"d": latent size, "s": seed, "g": generator version, "qz": latent step, "nz": latent
alphabet, "k": [[synthesis shifts], [ARM shifts]]}``, an empty list: that network stored directly). Sections: ``s`` (synthesis), ``a`` (ARM),
``z`` (the networks' latent, with ``p`` only), ``l0``… (latent levels, finest first).

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

from ... import rng
from ..._errors import HyperprojError
from ...inr import _grid_int as gi
from ...inr.latent_grid import LatentGrid, projected_weights
from .. import _arm_coding as ac
from ..entropy import decode as decode_symbols
from ..entropy import encode as encode_symbols
from ..format import error
from .registry import write_file

__all__ = ["encode_grid", "decode_grid", "describe_grid", "GRID_VERSION", "net_code", "int_code", "net_parts", "container_bytes", "store_grid"]

GRID_VERSION = 1
"""The grid family's own layout version (header ``v``)."""

_MAX_PIXELS = 1 << 26
_MAX_ALPHABET = 1 << 12
_MAX_WEIGHT = 1 << 15  # |integer weight| bound, direct or realised (the coder's alphabet 2**16 after zigzag)
_MAX_SIGNS = 1 << 24  # the most ±1 entries a projected file may ask the decoder to generate


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
    return int_code(np.concatenate([np.concatenate([w.reshape(-1), b.reshape(-1)]) for w, _, b in layers]))


def int_code(ints: np.ndarray) -> tuple[bytes, int] | None:
    """Integers zigzagged and rANS coded: ``(bytes, alphabet)``, ``None`` when one is too wide.

    Examples:
        >>> int_code(np.array([0, -1, 2, 1]))[1]
        5
    """
    z = _zigzag(np.asarray(ints, dtype=np.int64).reshape(-1))
    alphabet = int(z.max()) + 1 if z.size else 1
    if alphabet > 1 << 16:
        return None
    return encode_symbols(z, alphabet, "rans"), alphabet


def _int_decode(data: bytes, count: int, alphabet: int) -> np.ndarray:
    return _unzigzag(decode_symbols(data, count, alphabet, "rans").astype(np.int64))


def _net_decode(data: bytes, shapes: list[tuple[int, int]], q: int, alphabet: int) -> list:
    ints = _int_decode(data, sum(o * i + o for o, i in shapes), alphabet)
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


def encode_grid(net: LatentGrid, q_synthesis: int, q_arm: int, latents: list[np.ndarray] | None = None,
                qz: int | None = None) -> bytes:
    """The ``.hpz`` bytes of ``net`` with its networks at steps ``2**-q_synthesis``, ``2**-q_arm``
    (``latents``: integer grids to store instead of the rounded latents; ``qz``: store projected
    networks as their latent at step ``2**-qz``, see :func:`store_grid`).

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> encode_grid(LatentGrid(4, 4, levels=2, hidden=(4,), arm_hidden=4), 8, 8)[:3]
        b'HPZ'
    """
    header, sections = store_grid(net, q_synthesis, q_arm, latents, qz)
    return write_file("grid", header, sections, 2)


def store_grid(net: LatentGrid, q_syn: int, q_arm: int, latents: list[np.ndarray] | None,
               qz: int | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The header and sections of ``net``'s file (networks at steps ``2**-q_syn``, ``2**-q_arm``;
    ``latents``: integer grids to store instead of the rounded latents); a level of zeros has no
    section. With ``qz`` (a model with ``net_latent_dim`` only) the weights are stored as the
    networks' latent at step ``2**-qz`` (header ``p``, section ``z``) and ``q_syn``/``q_arm`` are
    the biases' steps; without it, a projected model's weights are stored directly.

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> header, sections = store_grid(LatentGrid(4, 4, levels=2, hidden=(4,)), 8, 8, None)
        >>> header["A"], sorted(sections)
        ([0, 0], ['a', 's'])
        >>> header, sections = store_grid(LatentGrid(4, 4, levels=2, hidden=(4,), net_latent_dim=20), 8, 8, None, qz=9)
        >>> header["p"]["d"], sorted(sections)
        (20, ['a', 's', 'z'])
    """
    lat = net.integer_latents() if latents is None else latents
    alphabets = [int(np.abs(q).max()) if q.size else 0 for q in lat]
    if max(alphabets) > _MAX_ALPHABET:
        raise error(f"grid: a latent reached {max(alphabets)}, past the coder's bound {_MAX_ALPHABET}")
    syn, arm, (sc, ar, zc) = net_parts(net, q_syn, q_arm, qz)
    if sc is None or ar is None or zc is None:
        raise error("grid: a network weight is too large for its step; use a coarser step (smaller q)")
    header, sections = _header(net, q_syn, q_arm, qz, alphabets, (sc, ar, zc))
    for k, (q, a) in enumerate(zip(lat, alphabets)):
        if a:
            sections[f"l{k}"] = ac.encode_level(q, a, arm)
    return header, sections


def _header(net: LatentGrid, q_syn: int, q_arm: int, qz: int | None, alphabets: list[int],
            codes: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    (sc, ar, zc), cfg = codes, net.config
    header = {"c": [cfg["levels"], cfg["hidden"], cfg["arm_hidden"]], "v": GRID_VERSION, "A": alphabets,
              "qs": q_syn, "qa": q_arm, "ns": sc[1], "na": ar[1],
              "x": {"i": [cfg["height"], cfg["width"], cfg["channels"]]}}
    sections = {"s": sc[0], "a": ar[0]}
    if qz is not None:
        header["p"] = {"d": net.net_latent_dim, "s": net.net_seed, "g": rng.GENERATOR_VERSION, "qz": qz,
                       "nz": zc[1], "k": [net.net_shifts["synthesis"], net.net_shifts["arm"]]}
        sections["z"] = zc[0]
    return header, sections


def container_bytes(net: LatentGrid, q_syn: int, q_arm: int, qz: int | None, codes: Any) -> int:
    """The bytes of a file of ``net`` with these network steps and codes (``net_parts``) but no
    latent sections: what the networks and the header take, so that two forms compare whole.

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> net = LatentGrid(4, 4, levels=2, hidden=(4,), arm_hidden=4)
        >>> container_bytes(net, 8, 8, None, net_parts(net, 8, 8, None)[2]) == len(encode_grid(net, 8, 8))
        True
    """
    header, sections = _header(net, q_syn, q_arm, qz, [0] * len(net.sizes), codes)
    return len(write_file("grid", header, sections, 2))


def net_parts(net: LatentGrid, q_syn: int, q_arm: int, qz: int | None) -> tuple[list, list, list]:
    """The integer layers of ``net``'s synthesis and ARM as a file at these steps holds them, and
    the codes of the sections ``s``, ``a``, ``z`` (``(bytes, alphabet)``, ``None`` where an integer
    is too wide): a projected network's section holds its biases at its step, the other
    network's its weights and biases; ``z`` is ``(b"", 1)`` without ``qz``.

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> net = LatentGrid(4, 4, levels=2, hidden=(4,), arm_hidden=4, net_latent_dim=10)
        >>> syn, arm, codes = net_parts(net, 8, 8, 10)
        >>> syn[0][1], arm[0][1], [c[1] > 0 for c in codes]
        (12, 8, [True, True, True])
    """
    syn = net.integer_layers("synthesis", q_syn, qz)
    arm = net.integer_layers("arm", q_arm, qz)
    if qz is None:
        return syn, arm, [net_code(syn), net_code(arm), (b"", 1)]
    codes = []
    for which, layers, q in (("synthesis", syn, q_syn), ("arm", arm, q_arm)):
        if not net.net_shifts[which]:  # not projected: stored as before
            codes.append(net_code(layers))
        elif max(int(np.abs(w).max()) for w, _, _ in layers) >= _MAX_WEIGHT:
            codes.append(None)
        else:  # the layers hold the biases shifted to 2**-ACT_BITS
            codes.append(int_code(np.concatenate([b >> (gi.ACT_BITS - q) for _, _, b in layers])))
    return syn, arm, [*codes, int_code(net.integer_net_latent(qz))]


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
    if "p" in header:
        out["p"] = _parse_projection(header["p"], cfg)
    expected = {"s", "a"} | {f"l{k}" for k, v in enumerate(a) if v} | ({"z"} if "p" in header else set())
    if set(sections) != expected:
        raise error(f"grid file sections {sorted(sections)} are not the expected {sorted(expected)}")
    return out


def _parse_projection(p: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The projected networks' header field ``p`` checked (every problem raises HyperprojError)."""
    if not isinstance(p, dict) or set(p) != {"d", "s", "g", "qz", "nz", "k"}:
        raise error(f"grid file header field 'p' (projected networks) must hold d, s, g, qz, nz, k; found {p!r}")
    if p["g"] != rng.GENERATOR_VERSION:
        raise error(f"grid file header field 'p' names random generator version {p['g']!r}; "
                    f"this hyperproj has {rng.GENERATOR_VERSION}")
    out = {"d": _int_field(p, "d", 1, 1 << 16, "'p': projected networks' latent size"),
           "s": _int_field(p, "s", 0, (1 << 31) - 1, "'p': projection seed"),
           "qz": _int_field(p, "qz", 0, 24, "'p': networks' latent step"),
           "nz": _int_field(p, "nz", 1, 1 << 16, "'p': networks' latent alphabet")}
    widths = [cfg["levels"], *cfg["hidden"], cfg["channels"]]
    shapes = {"synthesis": list(zip(widths[1:], widths[:-1])),
              "arm": [(cfg["arm_hidden"], len(gi.CONTEXT)), (cfg["arm_hidden"], cfg["arm_hidden"]), (2, cfg["arm_hidden"])]}
    k = p["k"]
    if not (isinstance(k, list) and len(k) == 2 and all(isinstance(v, list) for v in k)
            and all(len(v) in (0, len(shapes[w])) for v, w in zip(k, ("synthesis", "arm"))) and any(k)
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 24 for v in k for x in v)):
        raise error(f"grid file header field 'p' has bad layer shifts 'k' {k!r}")
    if out["d"] * max(o * i for v in shapes.values() for o, i in v) > _MAX_SIGNS:
        raise error(f"grid file header field 'p' asks for a latent of {out['d']} entries, too many for these networks")
    return {**out, "k": {"synthesis": k[0], "arm": k[1]}, "shapes": shapes}


def _projected_layers(sections: Mapping[str, bytes], h: Mapping[str, Any]) -> tuple[list, list]:
    """The integer layers of a projected file (weights rebuilt from ``z``, biases shifted)."""
    p = h["p"]
    z = _int_decode(sections["z"], p["d"], p["nz"])
    out = []
    for which, sec, q, n in (("synthesis", "s", h["qs"], h["ns"]), ("arm", "a", h["qa"], h["na"])):
        shapes = p["shapes"][which]
        if not p["k"][which]:  # this network's weights are stored directly
            out.append(_net_decode(sections[sec], shapes, q, n))
            continue
        b = _int_decode(sections[sec], sum(o for o, _ in shapes), n)
        ws = projected_weights(z, p["qz"], p["s"], which, shapes, p["k"][which])
        if max(int(np.abs(w).max()) for w in ws) >= _MAX_WEIGHT:
            raise error("grid file's projected networks give a weight past the decoder's bound")
        offsets = np.cumsum([0] + [o for o, _ in shapes])
        out.append([(w, gi.ACT_BITS, b[offsets[i]:offsets[i + 1]] << (gi.ACT_BITS - q)) for i, w in enumerate(ws)])
    return out[0], out[1]


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
    if "p" in h:
        syn, arm = _projected_layers(sections, h)
    else:
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
    """``info``'s report of a grid file: bytes per part (latents by level, networks, header) and
    for a file with projected networks ``network_form: "projected"`` and ``net_latent_bytes`` (the
    latent ``z``; the synthesis and ARM bytes are then their biases'); a file without these keys
    stores its weights directly (the report of such files is unchanged since version 1).

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
        "network_bytes": sec["s"] + sec["a"] + sec.get("z", 0),
        "section_bytes": sec,
        "header": {"config": cfg, "alphabets": h["A"], "synthesis_step": f"2^-{h['qs']}",
                   "arm_step": f"2^-{h['qa']}", "signal": header.get("x")},
    }
    if "p" in h:  # the weights are the latent's; the synthesis/ARM sections hold the biases
        out["network_form"], out["net_latent_bytes"] = "projected", sec["z"]
        out["header"]["projected_networks"] = {"latent_dim": h["p"]["d"], "seed": h["p"]["s"],
                                               "latent_step": f"2^-{h['p']['qz']}", "shifts": header["p"]["k"],
                                               "networks": [w for w in ("synthesis", "arm") if h["p"]["k"][w]]}
    out["bpp"] = 8 * len(data) / (cfg["height"] * cfg["width"])
    return out
