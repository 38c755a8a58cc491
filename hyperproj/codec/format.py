"""The ``.hpz`` format: the one reader of untrusted bytes.

It owns the byte container (magic, format version, a JSON header, named binary sections, CRC32),
the header schema of signal files (which family wrote the file, the SIREN/D'OH family's fields,
their types and ranges, the generator version) and the parsers of the sections' raw bytes
(quantization ranges, layer scales, buffers, entropy-coded symbols). Everything a file says
passes through here before anything is built from it; every malformed input raises
:class:`~hyperproj.HyperprojError`. ``docs/codec_format.md`` is the specification.

Container layout (all integers little-endian; ``varint`` is unsigned LEB128, at most 5 bytes)::

    offset  size      field
    0       3         magic  b"HPZ"
    3       1         format version (uint8): 1, or 2 when the header uses fields added in
                      version 2 (grouped latents ``G``); the byte layout is the same
    4       1         flags (uint8): bit 0 = meta is raw-DEFLATE compressed; other bits must be 0
    5       varint    meta_len
    ...     meta_len  meta: UTF-8 JSON  [header, [name_0, len_0, name_1, len_1, ...]]
    ...     sum(len)  section payloads, concatenated in table order
    end-4   4         CRC32 (zlib) of every byte before it

The JSON document is compact (no spaces, keys sorted) and is deflated only when that is smaller.
Reading never executes code: JSON only, no pickle. Every malformed input raises
:class:`~hyperproj.HyperprojError`.

Examples:
    >>> from hyperproj.codec.format import write_container, read_container
    >>> blob = write_container({"seed": 7}, {"z": b"\\x01\\x02"})
    >>> read_container(blob)
    ({'seed': 7}, {'z': b'\\x01\\x02'})
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rng
from .._errors import HyperprojError
from .entropy import METHODS
from .entropy import decode as decode_symbols
from .quant import Bits, QuantRange, alphabet, check_bits

__all__ = [
    "MAGIC", "FORMAT_VERSION", "MAX_LATENT", "RANGE", "write_container", "read_container", "read_input",
    "family_of", "parse_header", "read_ranges", "read_scales", "read_buffers", "read_symbols", "error",
]

MAGIC = b"HPZ"
"""The first three bytes of every ``.hpz`` file."""

FORMAT_VERSION = 2
"""The newest container format version this release writes and reads (2: the header may hold
fields a version-1 reader does not know, e.g. grouped latents; same byte layout as 1)."""

_FLAG_DEFLATE = 1
_KNOWN_FLAGS = _FLAG_DEFLATE
_MAX_META = 16 << 20  # decompressed JSON limit (guards against deflate bombs)
_MAX_NAME = 255
_MIN_SIZE = len(MAGIC) + 2 + 1 + 4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int, end: int, field: str) -> tuple[int, int]:
    value = 0
    for i in range(5):
        if pos >= end:
            raise HyperprojError(f"read_container: {field} is truncated (file ends inside it)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and byte == 0:
                raise HyperprojError(f"read_container: {field} has a non-canonical encoding")
            return value, pos
    raise HyperprojError(f"read_container: {field} is longer than 5 bytes")


def _deflate(raw: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return comp.compress(raw) + comp.flush()


def _inflate(data: bytes) -> bytes:
    dec = zlib.decompressobj(-15)
    try:
        raw = dec.decompress(data, _MAX_META + 1)
        if len(raw) > _MAX_META:
            raise HyperprojError(f"read_container: meta inflates past the {_MAX_META}-byte limit")
        raw += dec.flush()
    except zlib.error as err:
        raise HyperprojError(f"read_container: meta is not valid DEFLATE data ({err})") from None
    if not dec.eof or dec.unused_data:
        raise HyperprojError("read_container: meta DEFLATE stream is incomplete or has trailing bytes")
    return raw


def _reject_constant(name: str) -> Any:
    raise HyperprojError(f"read_container: header JSON holds {name}, which is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise HyperprojError(f"read_container: header JSON repeats the key {key!r}")
        out[key] = value
    return out


def write_container(header: Mapping[str, Any], sections: Mapping[str, bytes], version: int = 1) -> bytes:
    """Serialize a JSON-able ``header`` dict and named binary ``sections`` to ``.hpz`` bytes.

    ``header`` must be JSON data (dicts with string keys, lists, strings, ints, finite floats,
    bools, None). Section names are non-empty strings of at most 255 UTF-8 bytes; their order is
    kept. ``version`` (1 or 2) is the format version byte: write 2 only when the header holds
    fields that version-1 readers would misread, so that they refuse the file with a clear message.

    Examples:
        >>> blob = write_container({"arch": "siren"}, {"latent": bytes(10)})
        >>> blob[:3], len(blob)
        (b'HPZ', 52)
    """
    if not isinstance(header, Mapping):
        raise HyperprojError(f"write_container: header must be a dict, found {type(header).__name__}")
    if isinstance(version, bool) or version not in range(1, FORMAT_VERSION + 1):
        raise HyperprojError(f"write_container: version must be an int in [1, {FORMAT_VERSION}], found {version!r}")
    if not isinstance(sections, Mapping):
        raise HyperprojError(f"write_container: sections must be a dict of name -> bytes, found {type(sections).__name__}")
    table: list[Any] = []
    payloads: list[bytes] = []
    for name, payload in sections.items():
        if not isinstance(name, str) or not name or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME:
            raise HyperprojError(f"write_container: section names must be non-empty strings of at most {_MAX_NAME} bytes, found {name!r}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise HyperprojError(f"write_container: section {name!r} must be bytes, found {type(payload).__name__}")
        payload = bytes(payload)
        table += [name, len(payload)]
        payloads.append(payload)
    try:
        raw = json.dumps([dict(header), table], separators=(",", ":"), sort_keys=True, allow_nan=False,
                         ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise HyperprojError(f"write_container: header must be JSON-serializable data ({err})") from None
    flags = 0
    packed = _deflate(raw)
    if len(packed) < len(raw):
        raw, flags = packed, _FLAG_DEFLATE
    body = MAGIC + bytes([version, flags]) + _varint(len(raw)) + raw + b"".join(payloads)
    return body + struct.pack("<I", zlib.crc32(body))


def read_container(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Parse ``.hpz`` bytes into ``(header, sections)``; the inverse of :func:`write_container`.

    Checks, in order: size, magic, version (a newer version is refused with a clear message),
    CRC32, flags, meta and section table. Any failure raises :class:`~hyperproj.HyperprojError`.

    Examples:
        >>> header, sections = read_container(write_container({"v": [1, 2]}, {"a": b"x"}))
        >>> header, sections
        ({'v': [1, 2]}, {'a': b'x'})
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise HyperprojError(f"read_container: expected bytes, found {type(data).__name__}")
    data = bytes(data)
    if len(data) < _MIN_SIZE:
        raise HyperprojError(f"read_container: an .hpz file has at least {_MIN_SIZE} bytes, found {len(data)} (truncated?)")
    if data[: len(MAGIC)] != MAGIC:
        raise HyperprojError(f"read_container: magic bytes must be {MAGIC!r}, found {data[: len(MAGIC)]!r} (not an .hpz file)")
    version = data[len(MAGIC)]
    if version > FORMAT_VERSION:
        raise HyperprojError(f"read_container: format version {version} is newer than the newest this hyperproj reads ({FORMAT_VERSION}); upgrade hyperproj (or the file is corrupt)")
    if version < 1:
        raise HyperprojError(f"read_container: format version must be >= 1, found {version}")
    end = len(data) - 4
    (stored,) = struct.unpack("<I", data[end:])
    actual = zlib.crc32(data[:end])
    if stored != actual:
        raise HyperprojError(f"read_container: CRC32 mismatch (stored {stored:08x}, computed {actual:08x}); the file is corrupt or truncated")
    flags = data[len(MAGIC) + 1]
    if flags & ~_KNOWN_FLAGS:
        raise HyperprojError(f"read_container: unknown flags {flags:#04x} (known: {_KNOWN_FLAGS:#04x})")
    meta_len, pos = _read_varint(data, len(MAGIC) + 2, end, "meta length")
    if meta_len > end - pos:
        raise HyperprojError(f"read_container: meta length {meta_len} exceeds the {end - pos} bytes left")
    meta = data[pos : pos + meta_len]
    pos += meta_len
    if flags & _FLAG_DEFLATE:
        meta = _inflate(meta)
    if len(meta) > _MAX_META:
        raise HyperprojError(f"read_container: meta is larger than the {_MAX_META}-byte limit")
    try:
        doc = json.loads(meta.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except HyperprojError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise HyperprojError(f"read_container: meta is not valid UTF-8 JSON ({err})") from None
    if not (isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], dict) and isinstance(doc[1], list)):
        raise HyperprojError(f"read_container: meta must be the JSON array [header_object, section_table], found {type(doc).__name__}")
    header, table = doc
    if len(table) % 2:
        raise HyperprojError(f"read_container: section table must hold name/length pairs, found {len(table)} items")
    sections: dict[str, bytes] = {}
    for i in range(0, len(table), 2):
        name, length = table[i], table[i + 1]
        if not isinstance(name, str) or not name or name in sections:
            raise HyperprojError(f"read_container: section names must be unique non-empty strings, found {name!r}")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise HyperprojError(f"read_container: section {name!r} length must be a non-negative int, found {length!r}")
        if length > end - pos:
            raise HyperprojError(f"read_container: section {name!r} claims {length} bytes but only {end - pos} remain")
        sections[name] = data[pos : pos + length]
        pos += length
    if pos != end:
        raise HyperprojError(f"read_container: {end - pos} unexplained bytes after the last section")
    return header, sections


# ------------------------------------------------------------------------------- signal files

MAX_LATENT = 1 << 27
"""The largest latent size a header may declare."""

RANGE = struct.Struct("<ff")
"""One quantization range in section ``r``: float32 min, float32 max."""


def error(msg: str) -> HyperprojError:
    """The codec's error: ``hyperproj.codec: msg``."""
    return HyperprojError(f"hyperproj.codec: {msg}")


def read_input(data_or_path: Any, where: str = "hyperproj.codec") -> bytes:
    """The bytes of a file given as bytes or as a path (``where`` names the caller in errors).

    Examples:
        >>> read_input("missing.hpz")
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: hyperproj.codec: no such file 'missing.hpz'
    """
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return bytes(data_or_path)
    if isinstance(data_or_path, (str, os.PathLike)):
        path = Path(data_or_path)
        if not path.is_file():
            raise HyperprojError(f"{where}: no such file {str(path)!r}")
        return path.read_bytes()
    raise HyperprojError(f"{where}: expected bytes or a path, got {type(data_or_path).__name__}")


def family_of(header: Mapping[str, Any]) -> str | None:
    """The model family a signal file names (header ``F``), ``None`` for the default family.

    Files of another kind of the ``.hpz`` family (header ``K``: modulation bases and latents) are
    refused with a message that says how to read them.

    Examples:
        >>> family_of({"a": []}), family_of({"F": "grid"})
        (None, 'grid')
    """
    kind = header.get("K")
    if kind is not None:  # another member of the .hpz family
        if isinstance(kind, str) and kind.startswith("mod-"):
            raise error(
                f"this is a meta-learned modulation file (kind {kind!r}), not a D'OH signal file: decode it "
                "with hyperproj.modulation.render_file(FILE, BASE) or 'hyperproj decompress FILE --base BASE.hpz'"
            )
        raise error(f"unknown file kind {kind!r} (a newer hyperproj may read it)")
    family = header.get("F")
    if family is not None and not isinstance(family, str):
        raise error(f"file header field 'F' (model family) is malformed: {family!r}")
    return family


def parse_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """The SIREN/D'OH family's header fields, checked (keys in ``docs/codec.md``).

    Examples:
        >>> h = parse_header({"a": ["siren", {}], "g": 1, "n": 20, "s": 0, "p": "dense", "q": [8, 10], "f": 1})
        >>> h["n"], h["bits"], h["latent_scale"], h["method"]
        (20, 8, 'unit', 'rans')
    """
    family_of(header)

    def need(key: str, types, what: str):
        if key not in header:
            raise error(f"file header lacks the field {key!r} ({what})")
        value = header[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise error(f"file header field {key!r} ({what}) is malformed: {value!r}")
        return value

    arch = need("a", list, "architecture")
    if len(arch) != 2 or not isinstance(arch[0], str) or not isinstance(arch[1], dict):
        raise error(f"file header field 'a' (architecture) is malformed: {arch!r}")
    qb = need("q", list, "bit widths")
    if len(qb) != 2:
        raise error(f"file header field 'q' (bit widths) is malformed: {qb!r}")
    h = {
        "spec": {"name": arch[0], "config": arch[1]},
        "generator": need("g", int, "generator version"),
        "n": need("n", int, "latent size"),
        "seed": need("s", int, "seed"),
        "kind": need("p", str, "projection kind"),
        "bits": check_bits(qb[0], "bits"),
        "bias_bits": check_bits(qb[1], "bias_bits"),
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
        raise error(f"file header field 'G' (latent groups) is malformed: {g!r}")
    if not 1 <= h["n"] <= MAX_LATENT:
        raise error(f"file header latent size {h['n']} is out of range [1, {MAX_LATENT}]")
    if h["method"] not in METHODS:
        raise error(f"file header coding method {h['method']!r} is not one of {METHODS}")
    if h["generator"] != rng.GENERATOR_VERSION:
        raise error(
            f"the file was written with generator version {h['generator']}, this hyperproj has "
            f"version {rng.GENERATOR_VERSION}: B cannot be regenerated identically; use a "
            "hyperproj release with the file's generator version"
        )
    return h


def read_ranges(data: bytes, bits: list[Bits]) -> list[QuantRange]:
    """Section ``r``: the quantization ranges of tensors at widths ``bits``, one each (tensors at
    ``"float16"`` store none).

    Examples:
        >>> read_ranges(RANGE.pack(-1.0, 1.0), [8, "float16"])
        [QuantRange(bits=8, min=-1.0, max=1.0), QuantRange(bits='float16', min=0.0, max=0.0)]
    """
    stored = [b for b in bits if b != "float16"]
    if len(data) != len(stored) * RANGE.size:
        raise error(f"range section holds {len(data)} bytes, expected {len(stored) * RANGE.size}")
    out, pos = [], 0
    for b in bits:
        if b == "float16":
            out.append(QuantRange(bits="float16", min=0.0, max=0.0))
        else:
            lo, hi = RANGE.unpack_from(data, pos)
            pos += RANGE.size
            out.append(QuantRange(bits=b, min=lo, max=hi))
    return out


def read_scales(data: bytes, count: int) -> list[float]:
    """Section ``s``: ``count`` per-layer scales of ``B`` (float64)."""
    if len(data) != 8 * count:
        raise error(f"scale section holds {len(data)} bytes, expected {8 * count}")
    return list(struct.unpack(f"<{count}d", data))


def read_buffers(data: bytes, specs: list) -> Iterator[tuple[str, torch.Tensor]]:
    """Section ``k``: the stored buffers, ``(name, tensor)`` in the header's order (``specs``:
    header ``k``, ``[name, dtype, shape]`` each)."""
    pos = 0
    for name, dtype, shape in specs:
        tdtype = getattr(torch, dtype)
        nbytes = math.prod(shape) * torch.empty(0, dtype=tdtype).element_size()
        chunk = data[pos : pos + nbytes]
        if len(chunk) != nbytes:
            raise error(f"buffer section too short for {name!r}")
        yield name, torch.frombuffer(bytearray(chunk), dtype=tdtype).reshape(shape)
        pos += nbytes
    if pos != len(data):
        raise error("buffer section has trailing bytes")


def read_symbols(stream: bytes | None, count: int, bits: Bits, method: str, what: str) -> np.ndarray:
    """``count`` quantized symbols of width ``bits`` from an entropy-coded section (``what``
    names it in errors).

    Examples:
        >>> read_symbols(None, 0, 8, "rans", "latent").size
        0
    """
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if stream is None:
        raise error(f"file lacks the {what} section")
    return decode_symbols(stream, count, alphabet(bits), method)
