"""Cropping a ``.hpz`` file of a Local-Global INR without retraining (``hyperproj crop``).

A file written from ``reparametrize(LocalGlobal(...), n, seed, groups="partition")`` holds the
latent as ``[z_g, z_{o_1}, z_{o_2}, ...]`` (header field ``G = [global_dim, partition_dim]``)
and each per-partition bias tensor partition by partition. :func:`crop_file`:

1. finds the held partitions that overlap the box (from the architecture in the header);
2. entropy-decodes the quantized symbols, drops the removed partitions' latent groups and bias
   rows, and entropy-codes the kept symbols again with the same method (lossless: the symbols and
   the quantization ranges are copied, nothing is re-quantized or retrained);
3. writes the architecture with the kept partitions (``partitions`` runs of original indices), the
   new latent size, the new fingerprint of ``B`` (the kept partitions' ``B_o`` are regenerated
   from their original indices, so they are the same), and for images/audio the sample window
   (``x["w"]``) that :func:`~hyperproj.codec.render` uses to place the crop.

So the kept region decodes bit for bit as from the uncropped file, and the file shrinks in
proportion to the removed partitions (header and shared weights stay).

Examples:
    >>> import hyperproj
    >>> from hyperproj.inr import LocalGlobal
    >>> net = LocalGlobal(1, 1, (8,), local_features=4, global_features=4, hidden_layers=0)
    >>> blob = hyperproj.codec.encode(hyperproj.reparametrize(net, 100, seed=0, groups="partition"))
    >>> half = crop(blob, ((0.0,), (1.0,)))
    >>> hyperproj.codec.decode(half).base.partition_ids
    [4, 5, 6, 7]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._errors import HyperprojError
from ..inr.local_global import LocalGlobal, _runs
from ..inr.signals import grid_coords
from ..targets import select_targets
from .entropy import encode as encode_symbols
from .format import parse_header, read_container, read_input, read_symbols, write_container
from .hypermodel import build, compact_config, ensure_kind, fingerprint_code, reparametrize_as
from .quant import alphabet

__all__ = ["crop", "crop_file"]


def _err(msg: str) -> HyperprojError:
    return HyperprojError(f"hyperproj.codec.crop: {msg}")


def crop(data_or_path: Any, box: Any) -> bytes:
    """A cropped copy of a ``.hpz`` file of a :class:`~hyperproj.inr.LocalGlobal` encoded with
    ``groups="partition"``: the partitions outside ``box = (lower_corner, upper_corner)`` (model
    coordinates) and their latents and biases are dropped; no retraining, no re-quantization.

    The kept region decodes bit for bit as before and the file shrinks in proportion; image
    metadata records the pixel window so :func:`~hyperproj.codec.render` shows the crop. Details:
    :mod:`hyperproj.codec.cropfile`.

    Examples:
        >>> from hyperproj.inr import LocalGlobal
        >>> net = LocalGlobal(2, 1, (4, 4), local_features=4, global_features=4, hidden_layers=0)
        >>> blob = hyperproj.codec.encode(hyperproj.reparametrize(net, 200, seed=0, groups="partition"))
        >>> small = crop(blob, ((-1, -1), (0, 0)))
        >>> hyperproj.codec.decode(small).base.num_partitions, len(small) < len(blob)
        (4, True)
    """
    return crop_file(read_input(data_or_path), box)


def _window(meta: Any, lg, kept: set[int]) -> Any:
    """The signal metadata of the crop: the sample window of the kept partitions."""
    if not isinstance(meta, dict):
        return meta
    meta = dict(meta)
    if isinstance(meta.get("i"), list) and len(meta["i"]) == 3 and lg.in_features == 2:
        h, w, c = (int(v) for v in meta["i"])
        top, left, full_h, full_w = (int(v) for v in meta.get("w", [0, 0, h, w]))
        grid = grid_coords((full_h, full_w)).view(full_h, full_w, 2)[top : top + h, left : left + w]
        cells = lg.cell_of(grid.reshape(-1, 2)).view(h, w)
        inside = torch.isin(cells, torch.tensor(sorted(kept)))
        rows, cols = inside.any(1).nonzero().flatten(), inside.any(0).nonzero().flatten()
        if not len(rows):
            raise _err("the kept partitions hold no pixel of the image")
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        if not bool(inside[r0:r1, c0:c1].all()):
            raise _err("the kept partitions do not form a rectangle of pixels")
        meta["i"] = [r1 - r0, c1 - c0, c]
        meta["w"] = [top + r0, left + c0, full_h, full_w]
    elif isinstance(meta.get("a"), list) and len(meta["a"]) == 4 and lg.in_features == 1:
        n = int(meta["a"][0])
        start, full_n = (int(v) for v in meta.get("w", [0, n]))
        t = torch.linspace(-1.0, 1.0, full_n)[start : start + n, None]
        inside = torch.isin(lg.cell_of(t), torch.tensor(sorted(kept))).nonzero().flatten()
        if not len(inside):
            raise _err("the kept partitions hold no sample of the audio clip")
        s0, s1 = int(inside[0]), int(inside[-1]) + 1
        meta["a"] = [s1 - s0, *meta["a"][1:]]
        meta["w"] = [start + s0, full_n]
    return meta


def crop_file(data: bytes, box: Any) -> bytes:
    """The ``.hpz`` bytes of ``data`` cropped to the partitions overlapping ``box`` (see the module docstring).

    Examples:
        >>> crop_file(b"HPZ", ((0,), (1,)))
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: read_container: ...
    """
    header, sections = read_container(data)
    h = parse_header(header)
    if h["groups"] is None:
        raise _err(
            "the file's latent is not grouped by partition; only files of a LocalGlobal encoded from "
            "hyperproj.reparametrize(model, latent_dim, seed, groups='partition') can be cropped"
        )
    g, m = h["groups"]
    ensure_kind(h["kind"])
    base = build(h["spec"])
    if not isinstance(base, LocalGlobal):
        raise _err(f"the file's model is {h['spec']['name']!r}, not a LocalGlobal ('local-global')")
    held = base.partition_ids
    slot_of = {pid: s for s, pid in enumerate(held)}
    kept = [i for i in base.cells_in_box(box, "hyperproj.codec.crop") if i in slot_of]
    if not kept:
        raise _err(f"box {box!r} overlaps none of the file's {len(held)} partitions")
    slots = torch.tensor([slot_of[i] for i in kept], dtype=torch.int64)
    k = len(held)
    if h["n"] != g + k * m:
        raise _err(f"file header latent size {h['n']} does not match groups {g} + {k} x {m}")

    # --- symbols: drop the removed partitions' latent groups and bias rows ------------------------
    names = h["targets"] or select_targets(base, None, None)
    per = base.partition_parameters()
    params = [(n, p) for n, p in base.named_parameters() if n not in set(names)]
    zsym = read_symbols(sections.get("z"), h["n"], h["bits"], h["method"], "latent")
    psym = read_symbols(sections.get("b"), sum(p.numel() for _, p in params), h["bias_bits"], h["method"], "parameter")
    new_z = np.concatenate([zsym[:g], zsym[g:].reshape(k, m)[slots.numpy()].reshape(-1)])
    parts, pos = [], 0
    for name, p in params:
        chunk = psym[pos : pos + p.numel()]
        pos += p.numel()
        if name in per:
            chunk = chunk.reshape(k, per[name])[slots.numpy()].reshape(-1)
        parts.append(chunk)
    new_p = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    new_sections = dict(sections)
    new_sections["z"] = encode_symbols(new_z, alphabet(h["bits"]), h["method"])
    if "b" in sections:
        new_sections["b"] = encode_symbols(new_p, alphabet(h["bias_bits"]), h["method"])

    # --- header: architecture, latent size, fingerprint, signal window ----------------------------
    config = dict(base.config)
    config["partitions"] = _runs(kept)
    new_base = LocalGlobal(**config)
    new_header = dict(header)
    new_header["a"] = [h["spec"]["name"], compact_config(new_base, new_base.config)]
    new_header["n"] = g + len(kept) * m
    if h["signal"] is not None:
        new_header["x"] = _window(h["signal"], base, set(kept))
    groups = {"kind": "partition", "global_dim": g, "partition_dim": m}
    hyper = reparametrize_as(h, new_base, new_header["n"], sections, groups=groups)  # same B_o, same scales
    new_header["f"] = fingerprint_code(hyper)
    return write_container(new_header, new_sections, version=2)
