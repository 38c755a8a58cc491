"""Tests for the codec's building blocks: quantization, entropy coding and the .hpz container."""

from __future__ import annotations

import doctest
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperproj._errors import HyperprojError
from hyperproj.codec import entropy as _entropy
from hyperproj.codec import format as _container
from hyperproj.codec import quant
from hyperproj.codec.entropy import decode, empirical_entropy_bits, encode
from hyperproj.codec.format import FORMAT_VERSION, MAGIC, read_container, write_container
from hyperproj.codec.quant import QuantRange, dequantize, fake_quantize, quantize

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None, database=None)
BITS = st.integers(2, 16)


def _maxabs(t: torch.Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


# ----------------------------------------------------------------------------- quantization


@st.composite
def float_tensors(draw):
    n = draw(st.integers(0, 200))
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, -5.0, 1e4]))
    seed = draw(st.integers(0, 2**31))
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=gen) * scale + offset


@SETTINGS
@given(float_tensors(), BITS)
def test_quantize_roundtrip_error_bound(x, bits):
    q, r = quantize(x, bits)
    assert q.dtype == torch.int64 and q.shape == x.shape
    if x.numel():
        assert int(q.min()) >= 0 and int(q.max()) < 2**bits
        assert r.min == float(x.min()) and r.max == float(x.max())
    xh = dequantize(q, r)
    assert xh.dtype == torch.float32 and xh.shape == x.shape
    bound = r.step / 2 if r.max > r.min else 0.0
    # float32 rounding of the reconstruction adds at most one ulp of the largest magnitude
    ulp = max(abs(r.min), abs(r.max)) * 2.0**-23
    assert _maxabs(xh.double() - x.double()) <= bound * (1 + 1e-9) + ulp
    # the decoder reproduces the same bits from the stored range
    r2 = QuantRange.from_bytes(r.to_bytes())
    assert r2 == r
    assert torch.equal(dequantize(q.numpy(), r2), xh)
    # quantizing the reconstruction is idempotent up to one step
    q2, _ = quantize(xh, bits)
    assert _maxabs(q2 - q) <= 1


def test_quantize_extremes_hit_ends():
    x = torch.tensor([-2.0, 0.1, 3.0])
    q, r = quantize(x, 8)
    assert q.tolist()[0] == 0 and q.tolist()[-1] == 255
    xh = dequantize(q, r)
    assert xh[0] == -2.0 and xh[-1] == 3.0


def test_quantize_constant_and_empty():
    q, r = quantize(torch.full((5,), 0.3), 4)
    assert q.tolist() == [0] * 5 and r.min == r.max
    assert torch.equal(dequantize(q, r), torch.full((5,), 0.3))
    q, r = quantize(torch.zeros(0, 3), 8)
    assert q.shape == (0, 3) and r == QuantRange(8, 0.0, 0.0)
    assert dequantize(q, r).shape == (0, 3)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_quantize_rejects_non_finite(bad):
    with pytest.raises(HyperprojError, match="finite"):
        quantize(torch.tensor([0.0, bad]), 8)
    with pytest.raises(HyperprojError, match="finite"):
        fake_quantize(torch.tensor([0.0, bad]), 8)


@pytest.mark.parametrize("bits", [0, 1, 17, 8.0, "8", True, "float32"])
def test_bad_bits(bits):
    with pytest.raises(HyperprojError, match="bits"):
        quantize(torch.ones(3), bits)


def test_quantrange_validation():
    with pytest.raises(HyperprojError, match="min <= max"):
        QuantRange(8, 1.0, 0.0)
    with pytest.raises(HyperprojError, match="float32"):
        QuantRange(8, 0.1, 1.0)  # 0.1 is not a float32 value
    with pytest.raises(HyperprojError, match="finite"):
        QuantRange(8, 0.0, math.inf)
    with pytest.raises(HyperprojError, match="9 bytes"):
        QuantRange.from_bytes(b"\x08")
    with pytest.raises(HyperprojError, match="bits"):
        QuantRange.from_bytes(bytes([40]) + bytes(8))
    with pytest.raises(HyperprojError, match="symbols must lie"):
        dequantize(torch.tensor([0, 4]), QuantRange(2, 0.0, 1.0))
    with pytest.raises(HyperprojError, match="integer"):
        dequantize(torch.tensor([0.5]), QuantRange(2, 0.0, 1.0))


def test_float16_passthrough():
    x = torch.tensor([0.0, -0.0, 1.5, -3.25e-3, 65504.0, 1e-7])
    q, r = quantize(x, "float16")
    assert r.bits == "float16" and r.alphabet_size == 65536
    assert int(q.min()) >= 0 and int(q.max()) < 65536
    assert torch.equal(dequantize(q, r), x.half().float())
    assert QuantRange.from_bytes(r.to_bytes()) == r
    with pytest.raises(HyperprojError, match="65504"):
        quantize(torch.tensor([1e6]), "float16")


@SETTINGS
@given(float_tensors(), st.one_of(BITS, st.just("float16")))
def test_fake_quantize_matches_and_passes_gradient(x, bits):
    if bits == "float16":
        x = x.clamp(-6e4, 6e4)
    x = x.clone().requires_grad_(True)
    y = fake_quantize(x, bits)
    ref = dequantize(*quantize(x.detach(), bits))
    assert torch.allclose(y.detach(), ref, rtol=0, atol=1e-6 * (1 + _maxabs(ref)))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_fake_quantize_exact_on_cpu():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fake_quantize(x, 8), dequantize(*quantize(x, 8)))


# ----------------------------------------------------------------------------- entropy coding


@st.composite
def symbol_arrays(draw):
    alphabet = draw(st.one_of(st.integers(1, 20), st.sampled_from([255, 256, 257, 4096, 65536])))
    n = draw(st.sampled_from([0, 1, 2, 3, 17, 500]))
    kind = draw(st.sampled_from(["uniform", "gauss", "laplace", "constant", "ends"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "uniform":
        arr = rng.integers(0, alphabet, n)
    elif kind == "gauss":
        arr = np.round(rng.normal(alphabet / 2, alphabet / 10 + 0.3, n))
    elif kind == "laplace":
        arr = np.round(rng.laplace(alphabet / 3, alphabet / 20 + 0.2, n))
    elif kind == "constant":
        arr = np.full(n, rng.integers(0, alphabet))
    else:
        arr = rng.choice([0, alphabet - 1], n)
    return np.clip(arr, 0, alphabet - 1).astype(np.int64), alphabet


@SETTINGS
@given(symbol_arrays(), st.sampled_from(_entropy.METHODS))
def test_entropy_roundtrip(case, method):
    arr, alphabet = case
    data = encode(arr, alphabet, method)
    out = decode(data, arr.size, alphabet, method)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("method", _entropy.METHODS)
def test_entropy_input_kinds(method):
    seq = [0, 5, 5, 7]
    for symbols in (seq, np.array(seq, dtype=np.uint8), torch.tensor(seq).reshape(2, 2)):
        assert decode(encode(symbols, 8, method), 4, 8, method).tolist() == seq


def test_entropy_errors():
    with pytest.raises(HyperprojError, match="method"):
        encode([1], 4, "zip")
    with pytest.raises(HyperprojError, match="alphabet_size"):
        encode([1], 0, "raw")
    with pytest.raises(HyperprojError, match=r"\[0, 4\)"):
        encode([4], 4, "raw")
    with pytest.raises(HyperprojError, match="integers"):
        encode(np.array([0.5]), 4, "raw")
    with pytest.raises(HyperprojError, match="count"):
        decode(b"", -1, 4, "raw")
    with pytest.raises(HyperprojError, match="bytes"):
        decode(b"\x00\x00", 1, 4, "raw")
    with pytest.raises(HyperprojError, match="outside the alphabet"):
        decode(b"\xe0", 1, 5, "raw")
    with pytest.raises(HyperprojError, match="padding"):
        decode(b"\x01", 1, 4, "raw")


def _gauss_symbols(n, bits=8, seed=0):
    x = torch.from_numpy(np.random.default_rng(seed).normal(0, 1, n).astype(np.float32))
    return quantize(x, bits)[0].numpy()


def test_rans_near_entropy_and_beats_baselines():
    for n in (300, 4000, 13000):
        arr = _gauss_symbols(n)
        sizes = {m: len(encode(arr, 256, m)) for m in _entropy.METHODS}
        h = empirical_entropy_bits(arr) / 8
        assert sizes["rans"] <= min(sizes["raw"], sizes["bzip2"])
        if n >= 4000:
            assert sizes["rans"] <= h * 1.01 + 16
    # near-uniform data falls back to packing (+1 byte)
    arr = np.random.default_rng(0).integers(0, 256, 1000)
    assert len(encode(arr, 256, "rans")) == 1001


def test_rans_speed():
    import time

    arr = _gauss_symbols(30000)
    t0 = time.perf_counter()
    data = encode(arr, 256, "rans")
    decode(data, arr.size, 256, "rans")
    assert time.perf_counter() - t0 < 2.0  # about 0.05 s on a laptop core


def test_rans_freq_table_is_pinned():
    # The table is part of the file format: pin a checksum so any change is noticed.
    freq = _entropy._freq_table(_entropy._MODEL_GAUSS, 127.5, 31.25, 256)
    assert int(freq.sum()) == 1 << 16 and int(freq.min()) >= 1
    assert zlib.crc32(freq.astype("<i8").tobytes()) == 0xAE957230
    freq = _entropy._freq_table(_entropy._MODEL_LAPLACE, 3.0, 0.75, 16)
    assert int(freq.sum()) == 1 << 12


def test_own_exp_is_accurate():
    t = np.concatenate([np.linspace(0, 50, 5001), [0.6931471805599453, 100.0, 699.0]])
    ours = _entropy._exp_neg(t)
    ref = np.array([math.exp(-v) for v in t])
    assert np.all(np.abs(ours - ref) <= 1e-12 * ref)
    assert (_entropy._exp_neg(np.array([1e6])) > 0).all()  # clamped: always a normal float


def test_empirical_entropy():
    assert empirical_entropy_bits([]) == 0.0
    assert empirical_entropy_bits([3, 3, 3]) == 0.0
    assert empirical_entropy_bits(torch.tensor([0, 1, 2, 3])) == 8.0
    with pytest.raises(HyperprojError):
        empirical_entropy_bits([-1])


def test_entropy_decoder_fuzz():
    rng = np.random.default_rng(1)
    for method in _entropy.METHODS:
        arr = _gauss_symbols(200, bits=6, seed=2)
        good = encode(arr, 64, method)
        for trial in range(300):
            data = bytearray(good)
            if trial % 3 == 0:
                data = data[: rng.integers(0, len(data))]
            else:
                for _ in range(rng.integers(1, 4)):
                    if data:
                        i = rng.integers(0, len(data))
                        data[i] ^= 1 << int(rng.integers(0, 8))
            count = arr.size + (trial % 5 == 4)
            try:
                out = decode(bytes(data), count, 64, method)
            except HyperprojError:
                continue
            # no checksum inside a stream: a decode may succeed, but must be well formed
            assert out.shape == (count,) and (out >= 0).all() and (out < 64).all()


# ----------------------------------------------------------------------------- container


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=15,
)


@SETTINGS
@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    st.dictionaries(st.text(min_size=1, max_size=8), st.binary(max_size=300), max_size=4),
)
def test_container_roundtrip(header, sections):
    blob = write_container(header, sections)
    h, s = read_container(blob)
    assert h == header and s == sections
    assert list(s) == list(sections)


def _sample_blob():
    header = {
        "arch": {"type": "Siren", "hidden": 64, "layers": 3, "omega": 30.0},
        "seed": 1234,
        "tensors": [{"name": "latent", "shape": [500], "bits": 8, "method": "rans"}],
    }
    arr = _gauss_symbols(500)
    return write_container(header, {"latent": encode(arr, 256, "rans"), "bias": bytes(range(40))})


def test_container_fuzz_truncation_and_bitflips():
    blob = _sample_blob()
    original = read_container(blob)
    rng = np.random.default_rng(0)
    cases = [blob[:n] for n in range(len(blob))]
    cases += [blob + b"\x00", blob + blob]
    for trial in range(3000):
        data = bytearray(blob)
        for _ in range(1 if trial < 1500 else int(rng.integers(2, 9))):
            i = int(rng.integers(0, len(data)))
            data[i] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(data))
    for data in cases:
        try:
            result = read_container(data)
        except HyperprojError:
            continue
        assert data == blob and result == original, "corrupt input decoded silently"


def test_container_fuzz_with_valid_crc():
    """Mutations whose CRC is recomputed reach the parser: it must still only raise HyperprojError."""
    blob = _sample_blob()
    rng = np.random.default_rng(3)
    for trial in range(3000):
        body = bytearray(blob[:-4])
        if trial % 4 == 0:
            body = body[: int(rng.integers(0, len(body) + 1))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                i = int(rng.integers(3, min(len(body), 140)))  # mostly the flags/length/meta bytes
                body[i] ^= 1 << int(rng.integers(0, 8))
        data = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        try:
            header, sections = read_container(data)
        except HyperprojError:
            continue
        assert isinstance(header, dict) and all(isinstance(v, bytes) for v in sections.values())


def _craft(meta: bytes, payload: bytes = b"", *, version=FORMAT_VERSION, flags=0) -> bytes:
    body = MAGIC + bytes([version, flags]) + _container._varint(len(meta)) + meta + payload
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "at least"),
        (b"PK\x03\x04" + bytes(20), "magic"),
        (_craft(b"[{},[]]", version=FORMAT_VERSION + 1), "newer"),
        (_craft(b"[{},[]]", version=0), "version"),
        (_craft(b"[{},[]]")[:-1] + b"\x00", "CRC32"),
        (_craft(b"[{},[]]", flags=0x80), "flags"),
        (
            _craft(
                b"[{},[]",
            ),
            "JSON",
        ),
        (_craft(b"\xff\xfe"), "JSON"),
        (_craft(b'[{"a":NaN},[]]'), "NaN"),
        (_craft(b'[{"a":1,"a":2},[]]'), "repeats"),
        (_craft(b"[" * 100000 + b"]" * 100000), "JSON"),
        (_craft(b'{"a":1}'), "array"),
        (_craft(b'[{},["x"]]'), "pairs"),
        (_craft(b'[{},["x",-1]]'), "non-negative"),
        (_craft(b'[{},["x",true]]'), "non-negative"),
        (_craft(b'[{},["x",5]]', b"ab"), "claims"),
        (_craft(b'[{},["x",1,"x",1]]', b"ab"), "unique"),
        (_craft(b'[{},["x",1]]', b"ab"), "unexplained"),
        (_craft(b"[{},[]]", flags=1), "DEFLATE"),
        (MAGIC + bytes([FORMAT_VERSION, 0]) + b"\xff" * 6 + b"\x00\x00\x00\x00", "CRC32"),
    ],
)
def test_container_malformed_messages(data, message):
    with pytest.raises(HyperprojError, match=message):
        read_container(data)


def test_container_deflate_bomb_refused():
    meta = b"[{" + b'"a":0,' * 4_000_000 + b'"b":0},[]]'
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    with pytest.raises(HyperprojError, match="limit"):
        read_container(_craft(comp.compress(meta) + comp.flush(), flags=1))


def test_container_write_errors():
    with pytest.raises(HyperprojError, match="JSON"):
        write_container({"x": object()}, {})
    with pytest.raises(HyperprojError, match="JSON"):
        write_container({"x": math.nan}, {})
    with pytest.raises(HyperprojError, match="section"):
        write_container({}, {"": b""})
    with pytest.raises(HyperprojError, match="bytes"):
        write_container({}, {"a": "text"})
    with pytest.raises(HyperprojError, match="header"):
        write_container([1], {})
    with pytest.raises(HyperprojError, match="bytes"):
        read_container("HPZ")


def test_container_is_compact():
    assert len(write_container({}, {})) == 17
    assert (
        len(_sample_blob()) - sum(len(v) for v in read_container(_sample_blob())[1].values()) < 160
    )


# ----------------------------------------------------------------------------- docs


@pytest.mark.parametrize("module", [quant, _entropy, _container])
def test_docstring_examples(module):
    result = doctest.testmod(
        module, extraglobs={"torch": torch, "np": np}, optionflags=doctest.ELLIPSIS
    )
    assert result.failed == 0
