"""``hyperproj info``: header fields and the rate breakdown of a ``.hpz`` file (:func:`hyperproj.codec.info`)."""

from __future__ import annotations

import json
from pathlib import Path

from ._common import file_kind

NAME = "info"


def add(sub) -> None:
    i = sub.add_parser(NAME, help="header fields and rate breakdown of a .hpz file")
    i.add_argument("input", help=".hpz file to describe")
    i.add_argument("--json", action="store_true", help="print JSON")


def _print(rep: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(rep, indent=1))
    else:
        for key, value in rep.items():
            print(f"{key:15s} {value}")
    return 0


def run(a) -> int:
    from .. import codec

    kind = file_kind(a.input)
    if kind is not None and kind.startswith("mod-"):
        from ..modulation import coding

        if kind == "mod-latents/1":
            rep = coding.latents_file_info(a.input)
        else:
            data = Path(a.input).read_bytes()
            base = coding.load_base(data)
            rep = {"kind": base.kind, "config": base.config, "hash": coding.base_hash(data),
                   "parameters": sum(p.numel() for p in base.parameters()), "bytes": len(data)}
        return _print({"file_kind": kind, **rep}, a.json)
    rep = codec.info(a.input)
    if a.json or "family" in rep or "latent_bytes" not in rep:  # JSON, or a family with its own report
        return _print(rep, a.json)
    h = rep["header"]
    arch = h["architecture"]
    print(f"file            {a.input}: {rep['bytes']} bytes" + (f", {rep['bpp']:.4f} bpp" if "bpp" in rep else ""))
    print(f"architecture    {arch['name']} {json.dumps(arch['config'], separators=(',', ':'))} (non-default args)")
    print(f"signal          {h['signal']}")
    print(f"projection      {h['projection']}, seed {h['seed']}, latent {h['latent_dim']}, "
          f"latent_scale {h['latent_scale']}, distribution {h['distribution']}, generator v{h['generator_version']}")
    print(f"bits            latent {h['bits']}, biases {h['bias_bits']}, coder {h['method']}")
    print(f"fingerprint     crc32 {h['fingerprint_crc32']:#010x}")
    print("rate breakdown  part      count   bytes  bits   entropy(B)  bzip2(B)  raw(B)")
    print(f"                header        -  {rep['header_bytes']:6d}  {8 * rep['header_bytes']:6d}")
    print(f"                ranges        -  {rep['range_bytes']:6d}  {8 * rep['range_bytes']:6d}")
    for key, cnt, name in (("latent", rep["latent_count"], "latent"), ("params", rep["param_count"], "biases")):
        nbytes = rep["latent_bytes"] if key == "latent" else rep["param_bytes"]
        print(f"                {name:8s} {cnt:6d}  {nbytes:6d}  {8 * nbytes:6d}  {rep['entropy_bytes'][key]:10.1f}  "
              f"{rep['bzip2_bytes'][key]:8d}  {rep['raw_bytes'][key]:6d}")
    if rep["other_bytes"]:
        print(f"                other         -  {rep['other_bytes']:6d}")
    return 0
