"""``torch.compile``'d elementwise kernels with an eager fallback, compiled once per process.

Shared by :mod:`hyperproj.rng` (the fused integer hash) and the fused sine layer of
:mod:`hyperproj.inr.models` (its ``sin`` forward and ``cos × grad`` backward: eager ``torch.sin``
on a CPU goes through a high-accuracy library call about 3× slower than inductor's vectorized
kernel). ``HYPERPROJ_COMPILE=0`` turns every kernel off; a kernel whose compilation or first call
fails (no C++ compiler, an unsupported device, ...) is marked broken and its callers run eager.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

_kernels: dict[str, Callable[..., Any]] = {}
_broken: set[str] = set()
# (kernel, thread count) pairs that compiled and ran in this process: inductor's CPU kernels are
# specialised to the thread count, and another count recompiles them (~8 s on a busy machine)
_warm: set[tuple[str, int]] = set()
_state = {"cold_allowed": True}


def enabled() -> bool:
    """Whether compiled kernels may be used (``HYPERPROJ_COMPILE`` is not ``"0"``)."""
    return os.environ.get("HYPERPROJ_COMPILE", "1") != "0"


def usable(name: str) -> bool:
    """Whether kernel ``name`` may be tried: compiling is enabled and it has not failed before."""
    return name not in _broken and enabled()


def is_broken(name: str) -> bool:
    """Whether kernel ``name`` failed to compile or run in this process."""
    return name in _broken


def is_warm(name: str) -> bool:
    """Whether kernel ``name`` has compiled and run in this process at the current thread count
    (its next call is cheap)."""
    return (name, torch.get_num_threads()) in _warm


@contextlib.contextmanager
def warm_only(enabled: bool = True) -> Iterator[None]:
    """Within this block a kernel that has not compiled yet is not compiled: callers run eager.

    A first compilation costs seconds (about 5 s with inductor's on-disk cache, 20 s and more
    without it or on a busy machine); :func:`hyperproj.inr.fit` uses this under a time budget too
    short to absorb that, so the budget holds.
    """
    before = _state["cold_allowed"]
    _state["cold_allowed"] = before and not enabled
    try:
        yield
    finally:
        _state["cold_allowed"] = before


def run(name: str, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor | None:
    """``torch.compile(fn, dynamic=True)(*args)``, compiled on first use; ``None`` when compiled
    kernels are off, this one failed, or it is not compiled yet inside :func:`warm_only` (the
    caller then computes eagerly)."""
    key = (name, torch.get_num_threads())
    if not usable(name) or (key not in _warm and not _state["cold_allowed"]):
        return None
    kernel = _kernels.get(name)
    if kernel is None:
        kernel = _kernels[name] = torch.compile(fn, dynamic=True)
    try:
        out = kernel(*args)
    except Exception:  # no compiler, unsupported device, ...: the caller's eager path gives the result
        _broken.add(name)
        return None
    _warm.add(key)
    return out
