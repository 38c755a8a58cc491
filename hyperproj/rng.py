"""Counter-based random numbers: ``value = f(seed, stream, index)``.

Every value is a pure function of three integers, computed with 64-bit integer hashing in torch
``int64`` ops (SplitMix64's finaliser). So the numbers are the same

* for any chunking: generating indices ``[0, 1000)`` at once or as ``[0, 500) + [500, 1000)``
  gives identical values;
* on any device: integer ops are exact; uniform and Rademacher values are built from integer
  bits with exact float32 arithmetic, so they are bit-identical on CPU and GPU;
* across torch releases: nothing here depends on torch's own generators, and the global RNG is
  never touched.

Normal values go through Box–Muller (``log``, ``sqrt``, ``cos``), whose float results may differ
by an ulp between devices or math libraries; their integer inputs are still identical.

``GENERATOR_VERSION`` is written into every exported configuration and file; it changes whenever
any value produced here would change.

Examples:
    >>> from hyperproj import rng
    >>> a = rng.uniform(seed=7, stream=0, start=0, count=6)
    >>> b = torch.cat([rng.uniform(7, 0, 0, 2), rng.uniform(7, 0, 2, 4)])
    >>> torch.equal(a, b)
    True
"""

from __future__ import annotations

import math

import torch

from . import _compiled
from ._errors import HyperprojError

__all__ = [
    "GENERATOR_VERSION",
    "hash_indices",
    "uniform",
    "normal",
    "rademacher",
    "distribution_values",
    "DISTRIBUTIONS",
]

GENERATOR_VERSION = 1

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_STREAM_SALT = 0xD1B54A32D192ED03


def _signed(x: int) -> int:
    """Two's-complement view of an unsigned 64-bit integer as a Python int in int64 range."""
    x &= _MASK64
    return x - (1 << 64) if x >= (1 << 63) else x


def _mix_int(x: int) -> int:
    """SplitMix64 finaliser on a Python int (used for keys; same maths as the tensor version)."""
    x &= _MASK64
    x ^= x >> 30
    x = (x * _M1) & _MASK64
    x ^= x >> 27
    x = (x * _M2) & _MASK64
    x ^= x >> 31
    return x


def _check_seed(seed: object, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise HyperprojError(
            f"hyperproj.rng: {name} must be an int in [0, 2**63), got {type(seed).__name__} {seed!r}"
        )
    if not 0 <= seed < (1 << 63):
        raise HyperprojError(f"hyperproj.rng: {name} must be an int in [0, 2**63), got {seed}")
    return seed


def _key(seed: int, stream: int) -> int:
    """64-bit key of a (seed, stream) pair."""
    _check_seed(seed)
    _check_seed(stream, "stream")
    return _mix_int(_mix_int(seed + _GOLDEN) ^ ((stream * _STREAM_SALT + _GOLDEN) & _MASK64))


# Logical right shift on int64 tensors: torch's >> is arithmetic, so mask the sign-extended bits.
def _lsr(x: torch.Tensor, k: int) -> torch.Tensor:
    return (x >> k) & ((1 << (64 - k)) - 1)


def hash_indices(seed: int, stream: int, index: torch.Tensor) -> torch.Tensor:
    """64 random bits (as int64) for each integer in ``index``.

    ``hash_indices(seed, stream, i)`` is SplitMix64's output for state ``key(seed, stream) +
    (i + 1) * golden``: a pure function of its three arguments.

    Examples:
        >>> bits = hash_indices(0, 0, torch.arange(3))
        >>> bits.dtype
        torch.int64
    """
    if index.dtype != torch.int64:
        raise HyperprojError(f"hyperproj.rng.hash_indices: index must be int64, got {index.dtype}")
    key = _signed(_key(seed, stream))
    # In-place ops keep the temporaries to two int64 tensors (this runs on large blocks).
    x = index * _signed(_GOLDEN)
    x += _signed((key + _GOLDEN) & _MASK64)
    for shift, mult in ((30, _M1), (27, _M2), (31, None)):
        t = x >> shift
        t &= (1 << (64 - shift)) - 1
        x ^= t
        if mult is not None:
            x *= _signed(mult)
    return x


def _indices(start: int, count: int, device) -> torch.Tensor:
    if count < 0 or start < 0:
        raise HyperprojError(f"hyperproj.rng: start and count must be >= 0, got {start}, {count}")
    return torch.arange(start, start + count, dtype=torch.int64, device=device)


_TWO_M23 = 2.0**-23


def _open_unit(bits23: torch.Tensor) -> torch.Tensor:
    """23 integer bits -> float32 in (0, 1): (2u + 1) / 2**24, exact in float32."""
    return (bits23.to(torch.float32) * 2.0 + 1.0) * (_TWO_M23 / 2.0)


def _uniform_from_bits(h: torch.Tensor) -> torch.Tensor:
    return _open_unit(_lsr(h, 41))


def _symmetric_unit_variance_uniform(h: torch.Tensor) -> torch.Tensor:
    # (2u+1)/2**23 - 1 is exact: values in (-1, 1), symmetric, mean exactly 0 over all u.
    u = _lsr(h, 41).to(torch.float32)
    return ((u * 2.0 + 1.0) * _TWO_M23 - 1.0) * math.sqrt(3.0)


def _normal_from_bits(h: torch.Tensor) -> torch.Tensor:
    u1 = _open_unit(_lsr(h, 41))
    u2 = _open_unit(_lsr(h, 18) & ((1 << 23) - 1))
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)


def _rademacher_from_bits(h: torch.Tensor) -> torch.Tensor:
    return (_lsr(h, 63).to(torch.float32) * 2.0) - 1.0


#: Zero-mean, unit-variance distributions available for projection matrices.
DISTRIBUTIONS = {
    "uniform": _symmetric_unit_variance_uniform,
    "normal": _normal_from_bits,
    "rademacher": _rademacher_from_bits,
}


# Large requests of the exact (integer-built) distributions go through a torch.compile'd kernel
# that fuses the ~15 int64 passes into one: ~10x faster, bit-identical (a test checks), compiled
# once per process (hyperproj._compiled: HYPERPROJ_COMPILE=0 disables it; any compile failure
# falls back to eager).
_COMPILE_MIN_VALUES = 1 << 24
_EAGER_CHUNK = 1 << 16


def _fused(distribution: str):
    """The hash and the float mapping as one function, for hyperproj._compiled to compile (once)."""
    to_float = DISTRIBUTIONS[distribution]

    def kernel(index: torch.Tensor, key: int) -> torch.Tensor:
        x = index * _signed(_GOLDEN) + key
        x = x ^ _lsr(x, 30)
        x = x * _signed(_M1)
        x = x ^ _lsr(x, 27)
        x = x * _signed(_M2)
        return to_float(x ^ _lsr(x, 31))

    return kernel


def _kernel_name(distribution: str) -> str:
    return f"rng.{distribution}"


def _use_compiled(index: torch.Tensor, distribution: str) -> bool:
    return (
        distribution in ("uniform", "rademacher")
        and index.numel() >= _COMPILE_MIN_VALUES
        and _compiled.usable(_kernel_name(distribution))
    )


def distribution_values(
    seed: int, stream: int, index: torch.Tensor, distribution: str = "uniform"
) -> torch.Tensor:
    """Zero-mean, unit-variance float32 values at arbitrary int64 ``index`` positions.

    ``distribution`` is one of ``"uniform"`` (U(-√3, √3)), ``"normal"`` or ``"rademacher"``.

    Examples:
        >>> v = distribution_values(3, 1, torch.arange(10_000), "rademacher")
        >>> sorted(v.unique().tolist())
        [-1.0, 1.0]
    """
    try:
        fn = DISTRIBUTIONS[distribution]
    except KeyError:
        raise HyperprojError(
            f"hyperproj.rng: unknown distribution {distribution!r}; known: {sorted(DISTRIBUTIONS)}"
        ) from None
    if _use_compiled(index, distribution):
        if index.dtype != torch.int64:
            raise HyperprojError(f"hyperproj.rng: index must be int64, got {index.dtype}")
        key = _signed((_key(seed, stream) + _GOLDEN) & _MASK64)
        out = _compiled.run(_kernel_name(distribution), _fused(distribution), index, key)
        if out is not None:  # None: compiling is off or failed; eager gives the same values
            return out
    if index.numel() <= _EAGER_CHUNK or index.device.type != "cpu":
        return fn(hash_indices(seed, stream, index))
    # On CPU the eager hash is memory-bound: each of its ~12 int64 ops streams the whole block
    # through RAM. Cache-sized chunks keep the temporaries in L2 (2^24 values: 30 → 80 M/s here,
    # benchmarks/rng_throughput.py); values are elementwise, so chunking cannot change them.
    flat = index.reshape(-1)
    out = torch.empty(flat.shape, dtype=torch.float32)
    for a in range(0, flat.numel(), _EAGER_CHUNK):
        out[a : a + _EAGER_CHUNK] = fn(hash_indices(seed, stream, flat[a : a + _EAGER_CHUNK]))
    return out.reshape(index.shape)


def uniform(
    seed: int, stream: int, start: int, count: int, *, low: float = 0.0, high: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``count`` float32 values uniform on the open interval (low, high), indices from ``start``.

    With the default bounds the values are exactly ``(2u + 1) / 2**24`` for 23-bit integers u.

    Examples:
        >>> x = uniform(seed=1, stream=2, start=0, count=4, low=-1.0, high=1.0)
        >>> bool(((x > -1) & (x < 1)).all())
        True
    """
    u = _uniform_from_bits(hash_indices(seed, stream, _indices(start, count, device)))
    if low == 0.0 and high == 1.0:
        return u
    return u * (high - low) + low


def normal(
    seed: int, stream: int, start: int, count: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """``count`` standard normal float32 values (Box–Muller on 2×23 hashed bits).

    Examples:
        >>> x = normal(seed=0, stream=0, start=0, count=100_000)
        >>> abs(float(x.std()) - 1.0) < 0.02
        True
    """
    return _normal_from_bits(hash_indices(seed, stream, _indices(start, count, device)))


def rademacher(
    seed: int, stream: int, start: int, count: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """``count`` float32 values in {-1, +1}, each with probability 1/2.

    Examples:
        >>> rademacher(seed=0, stream=0, start=0, count=3).abs().tolist()
        [1.0, 1.0, 1.0]
    """
    return _rademacher_from_bits(hash_indices(seed, stream, _indices(start, count, device)))
