"""Post-training quantization of tensors for the codec.

Per-tensor range quantization as in the D'OH paper: a tensor ``x`` with range ``[min, max]`` is
mapped to unsigned integer symbols ``q = round((x - min) / step)`` with
``step = (max - min) / (2**bits - 1)``, and reconstructed as ``x_hat = min + q * step``. There is
no zero point and no clipping: ``min`` and ``max`` are the tensor's own extremes, so every value
is within ``step / 2`` of its reconstruction.

``bits`` is an integer from 2 to 16, or the string ``"float16"`` for IEEE half-precision
passthrough (the symbols are then the 16-bit patterns of the half-precision values).

The reconstruction is a pure function of ``(symbols, QuantRange)``, computed in float64 with one
multiply and one add per value and rounded once to float32, so encoder and decoder obtain the
same float32 values bit for bit. ``min`` and ``max`` are float32 values, stored exactly.

Examples:
    >>> import torch
    >>> from hyperproj.codec.quant import quantize, dequantize
    >>> x = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    >>> q, r = quantize(x, 8)
    >>> q.tolist(), r.bits
    ([0, 128, 191, 255], 8)
    >>> bool((dequantize(q, r) - x).abs().max() <= r.step / 2)
    True
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import torch

from .._errors import HyperprojError

__all__ = [
    "QuantRange", "Bits", "DEFAULT_BITS", "DEFAULT_BIAS_BITS", "quantize", "dequantize", "fake_quantize",
    "check_bits", "alphabet", "width",
]

Bits = int | str
"""An integer bit width from 2 to 16, or ``"float16"``."""

DEFAULT_BITS = 8
"""Default bit width of the latent (the D'OH paper's 8-bit post-training quantization)."""

DEFAULT_BIAS_BITS: Bits = 10
"""Default bit width of biases and other untargeted parameters (measured; see docs/codec.md)."""

_MIN_BITS = 2
_MAX_BITS = 16
_FLOAT16 = "float16"
_RANGE_STRUCT = struct.Struct("<Bff")


def _check_bits(bits: object, where: str) -> Bits:
    if isinstance(bits, str):
        if bits == _FLOAT16:
            return bits
        raise HyperprojError(
            f"{where}: bits must be an int in [{_MIN_BITS}, {_MAX_BITS}] or 'float16', "
            f"found the string {bits!r}"
        )
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise HyperprojError(
            f"{where}: bits must be an int in [{_MIN_BITS}, {_MAX_BITS}] or 'float16', "
            f"found {type(bits).__name__} {bits!r}"
        )
    if not _MIN_BITS <= int(bits) <= _MAX_BITS:
        raise HyperprojError(
            f"{where}: bits must be in [{_MIN_BITS}, {_MAX_BITS}] or 'float16', found {int(bits)}"
        )
    return int(bits)


def check_bits(bits: object, name: str) -> Bits:
    """``bits`` checked as a codec argument or header field called ``name``.

    Examples:
        >>> check_bits(8, "bits"), check_bits("float16", "bias_bits")
        (8, 'float16')
        >>> check_bits(1, "bits")
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: hyperproj.codec: bits must be an int in [2, 16] or 'float16', got 1
    """
    try:
        return _check_bits(bits, name)
    except HyperprojError:
        raise HyperprojError(
            f"hyperproj.codec: {name} must be an int in [{_MIN_BITS}, {_MAX_BITS}] or 'float16', got {bits!r}"
        ) from None


def width(bits: Bits) -> int:
    """Bits per symbol before entropy coding: ``bits``, or 16 for ``"float16"``.

    Examples:
        >>> width(7), width("float16")
        (7, 16)
    """
    return 16 if bits == _FLOAT16 else int(bits)


def alphabet(bits: Bits) -> int:
    """Number of possible symbols at a bit width: ``2**width(bits)``.

    Examples:
        >>> alphabet(8), alphabet("float16")
        (256, 65536)
    """
    return 1 << width(bits)


def _is_float32(value: float) -> bool:
    return struct.unpack("<f", struct.pack("<f", value))[0] == value


@dataclass(frozen=True)
class QuantRange:
    """The side information needed to dequantize one tensor: ``bits``, ``min`` and ``max``.

    ``min`` and ``max`` are finite float32 values (stored exactly as Python floats); for
    ``bits="float16"`` both are 0. Construction validates every field, so
    ``QuantRange(**dataclasses.asdict(r))`` is also the checked way back from JSON.

    Examples:
        >>> r = QuantRange(bits=8, min=-1.0, max=1.0)
        >>> r.alphabet_size, round(r.step, 6)
        (256, 0.007843)
        >>> QuantRange.from_bytes(r.to_bytes()) == r
        True
    """

    bits: Bits
    min: float
    max: float

    def __post_init__(self) -> None:
        bits = _check_bits(self.bits, "QuantRange")
        object.__setattr__(self, "bits", bits)
        for name in ("min", "max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.floating, np.integer)
            ):
                raise HyperprojError(
                    f"QuantRange.{name} must be a float, found {type(value).__name__} {value!r}"
                )
            value = float(value)
            if not math.isfinite(value):
                raise HyperprojError(f"QuantRange.{name} must be finite, found {value}")
            if not _is_float32(value):
                raise HyperprojError(
                    f"QuantRange.{name} must be exactly representable in float32, found {value!r}"
                )
            object.__setattr__(self, name, value)
        if self.min > self.max:
            raise HyperprojError(
                f"QuantRange: expected min <= max, found min={self.min} > max={self.max}"
            )
        if bits == _FLOAT16 and (self.min != 0.0 or self.max != 0.0):
            raise HyperprojError(
                f"QuantRange: bits='float16' expects min=max=0, found min={self.min}, max={self.max}"
            )

    @property
    def alphabet_size(self) -> int:
        """Number of possible symbols: ``2**bits`` (65536 for float16).

        Examples:
            >>> QuantRange(bits=4, min=0.0, max=1.0).alphabet_size
            16
        """
        return alphabet(self.bits)

    @property
    def step(self) -> float:
        """Quantization step ``(max - min) / (2**bits - 1)`` (NaN for float16).

        Examples:
            >>> QuantRange(bits=2, min=0.0, max=3.0).step
            1.0
        """
        if self.bits == _FLOAT16:
            return math.nan
        return (self.max - self.min) / ((1 << self.bits) - 1)

    def to_bytes(self) -> bytes:
        """Serialize to 9 bytes: ``uint8 bits`` (0 = float16), ``float32 min``, ``float32 max``.

        Examples:
            >>> len(QuantRange(bits=8, min=-1.0, max=1.0).to_bytes())
            9
        """
        code = 0 if self.bits == _FLOAT16 else self.bits
        return _RANGE_STRUCT.pack(code, self.min, self.max)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantRange:
        """Inverse of :meth:`to_bytes`; raises :class:`HyperprojError` on malformed input.

        Examples:
            >>> QuantRange.from_bytes(bytes([8]) + bytes(8))
            QuantRange(bits=8, min=0.0, max=0.0)
        """
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != _RANGE_STRUCT.size:
            found = (
                len(data)
                if isinstance(data, (bytes, bytearray, memoryview))
                else type(data).__name__
            )
            raise HyperprojError(
                f"QuantRange.from_bytes: expected {_RANGE_STRUCT.size} bytes, found {found}"
            )
        code, lo, hi = _RANGE_STRUCT.unpack(bytes(data))
        return cls(bits=_FLOAT16 if code == 0 else code, min=lo, max=hi)


def _as_tensor(x: object, where: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise HyperprojError(f"{where}: expected a torch.Tensor, found {type(x).__name__}")
    if not (
        x.is_floating_point()
        or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    ):
        raise HyperprojError(f"{where}: expected a real tensor, found dtype {x.dtype}")
    return x


def _check_finite(x: torch.Tensor, where: str) -> None:
    if x.is_floating_point():
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise HyperprojError(
                f"{where}: expected only finite values, found {bad} NaN/inf of {x.numel()}"
            )


def quantize(x: torch.Tensor, bits: Bits = 8) -> tuple[torch.Tensor, QuantRange]:
    """Quantize ``x`` to unsigned integer symbols in ``[0, 2**bits)`` plus its :class:`QuantRange`.

    The range is the tensor's own float32 min and max. A constant tensor gives all-zero symbols and
    ``min == max`` (it is then reconstructed exactly); an empty tensor gives an empty symbol tensor
    and ``min = max = 0``. NaN or inf raise :class:`HyperprojError`. With ``bits="float16"`` the
    symbols are the half-precision bit patterns (values beyond float16's range raise).

    Returns:
        ``(symbols, qrange)``: an int64 tensor on the CPU with the shape of ``x``, and the range.

    Examples:
        >>> q, r = quantize(torch.tensor([0.0, 1.0, 2.0, 3.0]), 2)
        >>> q.tolist(), (r.min, r.max)
        ([0, 1, 2, 3], (0.0, 3.0))
    """
    bits = _check_bits(bits, "quantize")
    x = _as_tensor(x, "quantize").detach().cpu()
    _check_finite(x, "quantize")
    if bits == _FLOAT16:
        h = x.to(torch.float16)
        if not bool(torch.isfinite(h).all()):
            raise HyperprojError(
                "quantize: bits='float16' expects values within +-65504, "
                f"found max |x| = {float(x.abs().max())}"
            )
        symbols = h.view(torch.int16).to(torch.int64) & 0xFFFF
        return symbols, QuantRange(bits=_FLOAT16, min=0.0, max=0.0)
    x32 = x.to(torch.float32)
    if x32.numel() == 0:
        return torch.zeros(x.shape, dtype=torch.int64), QuantRange(bits=bits, min=0.0, max=0.0)
    lo = float(x32.min())
    hi = float(x32.max())
    qrange = QuantRange(bits=bits, min=lo, max=hi)
    if hi == lo:
        return torch.zeros(x.shape, dtype=torch.int64), qrange
    levels = (1 << bits) - 1
    scaled = (x32.to(torch.float64) - lo) / qrange.step
    symbols = torch.round(scaled).clamp_(0, levels).to(torch.int64)
    return symbols, qrange


def dequantize(symbols: torch.Tensor, qrange: QuantRange) -> torch.Tensor:
    """Reconstruct float32 values from symbols: ``min + q * step`` (exact and deterministic).

    Accepts a torch tensor or a numpy array of integers in ``[0, qrange.alphabet_size)``.

    Examples:
        >>> dequantize(torch.tensor([0, 1, 3]), QuantRange(bits=2, min=0.0, max=3.0)).tolist()
        [0.0, 1.0, 3.0]
    """
    if not isinstance(qrange, QuantRange):
        raise HyperprojError(
            f"dequantize: qrange must be a QuantRange, found {type(qrange).__name__}"
        )
    if isinstance(symbols, np.ndarray):
        symbols = torch.from_numpy(np.ascontiguousarray(symbols))
    if (
        not isinstance(symbols, torch.Tensor)
        or symbols.is_floating_point()
        or symbols.is_complex()
        or symbols.dtype == torch.bool
    ):
        found = symbols.dtype if isinstance(symbols, torch.Tensor) else type(symbols).__name__
        raise HyperprojError(f"dequantize: symbols must be an integer tensor, found {found}")
    q = symbols.detach().cpu().to(torch.int64)
    if q.numel() and (int(q.min()) < 0 or int(q.max()) >= qrange.alphabet_size):
        raise HyperprojError(
            f"dequantize: symbols must lie in [0, {qrange.alphabet_size}), "
            f"found range [{int(q.min())}, {int(q.max())}]"
        )
    if qrange.bits == _FLOAT16:
        return q.to(torch.int16).view(torch.float16).to(torch.float32)
    if qrange.min == qrange.max:
        return torch.full(q.shape, qrange.min, dtype=torch.float32)
    # Two separate float64 ops (no fused multiply-add), then one rounding to float32.
    values = q.to(torch.float64) * qrange.step
    values = values + qrange.min
    return values.to(torch.float32)


def fake_quantize(x: torch.Tensor, bits: Bits = 8) -> torch.Tensor:
    """Quantize-dequantize in the forward pass, identity gradient (straight-through estimator).

    The forward value equals ``dequantize(*quantize(x, bits))`` (up to float rounding of the
    computation on ``x``'s device and dtype); the gradient flows to ``x`` unchanged. Use it for
    quantization-aware fine-tuning. The range is taken from ``x`` itself (not differentiated).

    Examples:
        >>> x = torch.tensor([0.0, 0.4, 1.0], requires_grad=True)
        >>> y = fake_quantize(x, 2)
        >>> [round(v, 4) for v in y.tolist()]
        [0.0, 0.3333, 1.0]
        >>> y.sum().backward(); x.grad.tolist()
        [1.0, 1.0, 1.0]
    """
    bits = _check_bits(bits, "fake_quantize")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        found = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise HyperprojError(f"fake_quantize: expected a floating-point tensor, found {found}")
    if x.numel() == 0:
        return x.clone()
    with torch.no_grad():
        _check_finite(x, "fake_quantize")
        if bits == _FLOAT16:
            xq = x.to(torch.float16).to(x.dtype)
        else:
            x32 = x.to(torch.float32)
            lo = x32.min()
            hi = x32.max()
            levels = (1 << bits) - 1
            wide = (
                torch.float64
                if x.device.type == "cpu" or x.dtype == torch.float64
                else torch.float32
            )
            step = (hi.to(wide) - lo.to(wide)) / levels
            safe = torch.where(step > 0, step, torch.ones_like(step))
            q = torch.round((x32.to(wide) - lo.to(wide)) / safe).clamp_(0, levels)
            xq = (q * step + lo.to(wide)).to(torch.float32).to(x.dtype)
    return x + (xq - x).detach()
