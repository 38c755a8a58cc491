"""The ``.hpz`` signal codec: a signal becomes a small model, the model a checksummed file, and back.

One module per step, each using only the ones listed before it (``docs/architecture.md``)::

    signal ─► model ─► fit ─► quantize ─► entropy code ─► container       (compress)
    container ─► header + sections ─► model ─► render                    (decompress)

* :mod:`~hyperproj.codec.entropy` — lossless coders of integer symbols (rANS, bzip2, raw);
* :mod:`~hyperproj.codec.quant` — tensors ⇄ integer symbols and ranges; bit widths;
* :mod:`~hyperproj.codec.format` — the container, the header schema, the one reader of untrusted bytes;
* :mod:`~hyperproj.codec.signals` — what a file records of its signal (header ``x``);
* :mod:`~hyperproj.codec.hypermodel` — a :class:`~hyperproj.HyperModel` as the parts a file stores, and back;
* :mod:`~hyperproj.codec.rate` — bit budget → model size; the over-budget path;
* :mod:`~hyperproj.codec.train` — training under compress's clock;
* :mod:`~hyperproj.codec.job` — one compress request, checked;
* :mod:`~hyperproj.codec.families` — model families by registry (SIREN/D'OH today);
* :mod:`~hyperproj.codec.cropfile` — cutting a grouped Local-Global file to a box;
* :mod:`~hyperproj.codec.rendering` — the signal a decoded model represents;
* :mod:`~hyperproj.codec.pipeline` — :func:`compress`, :func:`decompress`, :func:`info`;
* :mod:`~hyperproj.codec.baselines` — JPEG / WebP / JPEG2000 and COIN at a matched rate.

Main entry points: :func:`compress` / :func:`decompress` / :func:`render` (signal → file →
signal, with a hard bits-per-pixel guarantee), :func:`encode` / :func:`decode` (and
:func:`save` / :func:`load`; bytes ⇄ model), :func:`quantize` (the model whose outputs equal the
decoded file's bit for bit), :func:`info`, :func:`crop`; :func:`register_family`.

Examples:
    >>> from hyperproj.inr import Siren
    >>> hyper = hyperproj.reparametrize(Siren(2, 16, 1, 3), latent_dim=60, seed=3)
    >>> blob = encode(hyper, bits=8)
    >>> back = decode(blob)
    >>> x = torch.rand(5, 2)
    >>> torch.equal(back(x), quantize(hyper, bits=8)(x))
    True
"""

from .collection import CollectionResult, compress_many
from .cropfile import crop
from .families import Family, family_names, get_family, register_family
from .families.doh import default_model, encode, save
from .hypermodel import quantize
from .pipeline import CompressResult, compress, decode, decompress, info, load
from .quant import DEFAULT_BIAS_BITS, DEFAULT_BITS
from .rendering import render

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
    "compress_many",
    "CollectionResult",
    "decompress",
    "render",
    "crop",
    "default_model",
    "Family",
    "register_family",
    "get_family",
    "family_names",
]
