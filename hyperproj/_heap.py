"""Keep freed memory in the C heap while a training loop runs (Linux with glibc only).

A training step on a full-size image allocates and frees tensors of several to tens of megabytes
(a 16-wide activation of a 768×512 image is 25 MB). glibc's ``malloc`` serves blocks above its
mmap threshold with a fresh ``mmap`` (the threshold starts at 128 KiB and rises on the fly to at
most 32 MiB) and gives a freed heap top back to the kernel above its trim threshold, so step after
step the same sizes come back as new pages that fault in on first touch. Inside
:func:`retained_heap` both thresholds are 1 GiB: freed blocks stay in the heap and the next step
reuses them. Measured on the grid family's full-resolution step (``python benchmarks/grid_step.py
--heap``, kodim01, one thread: 1.49× side by side): see ``docs/latent_grid.md``, "Limits".

Leaving the block, the thresholds are set to glibc's own adaptive ceilings (mmap 32 MiB, trim
64 MiB: where its adaptation ends on a process that has freed a block that large) and
``malloc_trim(0)`` returns the kept memory to the kernel. Nested and concurrent blocks (threads)
count: the last one out restores. Set ``HYPERPROJ_HEAP=system`` to leave the allocator alone.

Examples:
    >>> with retained_heap():
    ...     x = sum(range(3))
    >>> x
    3
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
from collections.abc import Iterator

from ._errors import HyperprojError

__all__ = ["retained_heap", "heap_policy_active"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP = 1 << 30
_RESTORE_MMAP, _RESTORE_TRIM = 32 << 20, 64 << 20
_lock = threading.Lock()
_depth = 0
_active = False


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (``mallopt`` and ``malloc_trim`` there), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has no such symbol)
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def heap_policy_active() -> bool:
    """Whether a :func:`retained_heap` block is holding freed memory right now.

    Examples:
        >>> heap_policy_active()
        False
    """
    return _active


@contextlib.contextmanager
def retained_heap() -> Iterator[bool]:
    """Within the block glibc keeps freed memory for reuse (see the module docstring); yields
    whether the policy is on (False off glibc, or with ``HYPERPROJ_HEAP=system``).

    Examples:
        >>> with retained_heap() as on:
        ...     isinstance(on, bool)
        True
    """
    global _depth, _active
    policy = os.environ.get("HYPERPROJ_HEAP", "retain")
    if policy not in ("retain", "system"):
        raise HyperprojError(f"the environment variable HYPERPROJ_HEAP must be 'retain' (the default) or "
                             f"'system', got {policy!r}")
    libc = None if policy == "system" else _glibc()
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            kept = [libc.mallopt(option, _KEEP) for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD)]
            _active = any(kept)  # restored on the way out even if only one was taken
        on = _active
    try:
        yield on
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _active:
                libc.mallopt(_M_MMAP_THRESHOLD, _RESTORE_MMAP)
                libc.mallopt(_M_TRIM_THRESHOLD, _RESTORE_TRIM)
                libc.malloc_trim(0)
                _active = False
