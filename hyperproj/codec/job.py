"""What one ``compress`` call was asked to do, checked once: the :class:`Job` every step reads.

It holds the signal, the byte budget, the bit widths and entropy coder, the training knobs, the
clock (the time budget covers the whole call), the attempts made so far and the
:class:`~hyperproj.codec.train.Training` shared by them. Model families receive it.

Examples:
    >>> from hyperproj.inr import ImageSignal
    >>> job = Job.create(ImageSignal(torch.rand(8, 8, 3)), bpp=2.0)
    >>> job.budget, job.steps, job.bits
    (16, 2000, 8)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from ..inr.signals import Signal
from .entropy import METHODS
from .format import error
from .quant import DEFAULT_BIAS_BITS, DEFAULT_BITS, Bits, check_bits
from .rate import budget_bytes
from .signals import as_signal, samples
from .train import Training, default_steps, fit_defaults

__all__ = ["Job"]


@dataclass
class Job:
    """A checked ``compress`` request (see :func:`hyperproj.codec.compress` for each field)."""

    signal: Signal
    samples: int
    budget: int
    bpp: Any
    max_bytes: int | None
    bits: Bits
    bias_bits: Bits
    method: str
    time_budget: float | None
    steps: int
    lr: float | None
    qat_steps: int
    seed: int
    progress: bool
    fit_options: dict[str, Any]
    t0: float = field(default_factory=time.perf_counter)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    training: Training = field(init=False)

    def __post_init__(self) -> None:
        self.training = Training(self)

    @classmethod
    def create(cls, signal: Any, bpp: Any = 0.3, *, max_bytes: int | None = None, bits: Any = DEFAULT_BITS,
               bias_bits: Any = DEFAULT_BIAS_BITS, method: str = "rans", time_budget: Any = None,
               steps: int | None = None, lr: float | None = None, qat_steps: int | None = None, seed: int = 0,
               progress: bool = True, fit_options: dict[str, Any] | None = None) -> Job:
        """Check the arguments in compress's order and fill in its defaults; the clock starts here."""
        t0 = time.perf_counter()
        signal = as_signal(signal)
        bits = check_bits(bits, "bits")
        bias_bits = check_bits(bias_bits, "bias_bits")
        if method not in METHODS:
            raise error(f"method must be one of {METHODS}, got {method!r}")
        count = samples(signal)
        budget = budget_bytes(signal, count, bpp, max_bytes)
        if time_budget is not None and (
                isinstance(time_budget, bool) or not isinstance(time_budget, (int, float))
                or not math.isfinite(time_budget) or time_budget <= 0):
            raise error(f"compress: time_budget must be a positive number of seconds or None, got {time_budget!r}")
        # measured (docs/codec.md): fine-tuning with rounding in the loop cost more training time than
        # it won back, so it is off unless asked for
        return cls(signal=signal, samples=count, budget=budget, bpp=bpp, max_bytes=max_bytes, bits=bits,
                   bias_bits=bias_bits, method=method, time_budget=time_budget,
                   steps=default_steps(steps, time_budget), lr=lr, qat_steps=0 if qat_steps is None else int(qat_steps),
                   seed=seed, progress=progress, fit_options=fit_defaults(signal, fit_options), t0=t0)

    def elapsed(self) -> float:
        """Seconds since the call began."""
        return time.perf_counter() - self.t0

    def left(self) -> float | None:
        """Seconds the time budget still leaves (``None`` without one; negative when spent)."""
        return None if self.time_budget is None else self.time_budget - self.elapsed()
