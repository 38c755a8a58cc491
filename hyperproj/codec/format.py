"""The ``.hpz`` byte container: magic, format version, a JSON header, named binary sections, CRC32.

Layout (all integers little-endian; ``varint`` is unsigned LEB128, at most 5 bytes)::

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
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from .._errors import HyperprojError

__all__ = ["MAGIC", "FORMAT_VERSION", "write_container", "read_container"]

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
        raise HyperprojError(
            "read_container: meta DEFLATE stream is incomplete or has trailing bytes"
        )
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
        raise HyperprojError(
            f"write_container: header must be a dict, found {type(header).__name__}"
        )
    if isinstance(version, bool) or version not in range(1, FORMAT_VERSION + 1):
        raise HyperprojError(
            f"write_container: version must be an int in [1, {FORMAT_VERSION}], found {version!r}"
        )
    if not isinstance(sections, Mapping):
        raise HyperprojError(
            f"write_container: sections must be a dict of name -> bytes, found {type(sections).__name__}"
        )
    table: list[Any] = []
    payloads: list[bytes] = []
    for name, payload in sections.items():
        if (
            not isinstance(name, str)
            or not name
            or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME
        ):
            raise HyperprojError(
                f"write_container: section names must be non-empty strings of at most {_MAX_NAME} "
                f"bytes, found {name!r}"
            )
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise HyperprojError(
                f"write_container: section {name!r} must be bytes, found {type(payload).__name__}"
            )
        payload = bytes(payload)
        table += [name, len(payload)]
        payloads.append(payload)
    try:
        raw = json.dumps(
            [dict(header), table],
            separators=(",", ":"),
            sort_keys=True,
            allow_nan=False,
            ensure_ascii=False,
        ).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise HyperprojError(
            f"write_container: header must be JSON-serializable data ({err})"
        ) from None
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
        raise HyperprojError(
            f"read_container: an .hpz file has at least {_MIN_SIZE} bytes, found {len(data)} (truncated?)"
        )
    if data[: len(MAGIC)] != MAGIC:
        raise HyperprojError(
            f"read_container: magic bytes must be {MAGIC!r}, found {data[: len(MAGIC)]!r} "
            "(not an .hpz file)"
        )
    version = data[len(MAGIC)]
    if version > FORMAT_VERSION:
        raise HyperprojError(
            f"read_container: format version {version} is newer than the newest this hyperproj "
            f"reads ({FORMAT_VERSION}); upgrade hyperproj (or the file is corrupt)"
        )
    if version < 1:
        raise HyperprojError(f"read_container: format version must be >= 1, found {version}")
    end = len(data) - 4
    (stored,) = struct.unpack("<I", data[end:])
    actual = zlib.crc32(data[:end])
    if stored != actual:
        raise HyperprojError(
            f"read_container: CRC32 mismatch (stored {stored:08x}, computed {actual:08x}); "
            "the file is corrupt or truncated"
        )
    flags = data[len(MAGIC) + 1]
    if flags & ~_KNOWN_FLAGS:
        raise HyperprojError(
            f"read_container: unknown flags {flags:#04x} (known: {_KNOWN_FLAGS:#04x})"
        )
    meta_len, pos = _read_varint(data, len(MAGIC) + 2, end, "meta length")
    if meta_len > end - pos:
        raise HyperprojError(
            f"read_container: meta length {meta_len} exceeds the {end - pos} bytes left"
        )
    meta = data[pos : pos + meta_len]
    pos += meta_len
    if flags & _FLAG_DEFLATE:
        meta = _inflate(meta)
    if len(meta) > _MAX_META:
        raise HyperprojError(f"read_container: meta is larger than the {_MAX_META}-byte limit")
    try:
        doc = json.loads(
            meta.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except HyperprojError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise HyperprojError(f"read_container: meta is not valid UTF-8 JSON ({err})") from None
    if not (
        isinstance(doc, list)
        and len(doc) == 2
        and isinstance(doc[0], dict)
        and isinstance(doc[1], list)
    ):
        raise HyperprojError(
            "read_container: meta must be the JSON array [header_object, section_table], "
            f"found {type(doc).__name__}"
        )
    header, table = doc
    if len(table) % 2:
        raise HyperprojError(
            f"read_container: section table must hold name/length pairs, found {len(table)} items"
        )
    sections: dict[str, bytes] = {}
    for i in range(0, len(table), 2):
        name, length = table[i], table[i + 1]
        if not isinstance(name, str) or not name or name in sections:
            raise HyperprojError(
                f"read_container: section names must be unique non-empty strings, found {name!r}"
            )
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise HyperprojError(
                f"read_container: section {name!r} length must be a non-negative int, found {length!r}"
            )
        if length > end - pos:
            raise HyperprojError(
                f"read_container: section {name!r} claims {length} bytes but only {end - pos} remain"
            )
        sections[name] = data[pos : pos + length]
        pos += length
    if pos != end:
        raise HyperprojError(
            f"read_container: {end - pos} unexplained bytes after the last section"
        )
    return header, sections
