"""Moved to :mod:`hyperproj.codec.quant`; this name stays for existing imports."""

from .codec.quant import Bits, QuantRange, dequantize, fake_quantize, quantize  # noqa: F401
