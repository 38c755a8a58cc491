"""Small helpers for running under ``torchrun`` / :mod:`torch.distributed` (private module).

hyperproj does not schedule processes itself: ``torchrun`` starts them and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; these helpers read that
state and, where asked, initialise the default process group from it. Without a process group
(a plain ``python`` run) every helper answers as for one process of rank 0, so callers need no
special case.

Examples:
    >>> rank(), world_size(), is_distributed()
    (0, 1, False)
    >>> shard_range(10, rank=1, world=4)
    (3, 6)
"""

from __future__ import annotations

import os

import torch

from ._errors import HyperprojError

__all__ = ["rank", "world_size", "is_distributed", "launched_by_torchrun", "init_from_env", "shard_range", "barrier"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank in the default process group (0 without one).

    Examples:
        >>> rank()
        0
    """
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    """Number of processes in the default process group (1 without one).

    Examples:
        >>> world_size()
        1
    """
    return torch.distributed.get_world_size() if _initialized() else 1


def is_distributed() -> bool:
    """True when a default process group is initialised and holds more than one process.

    Examples:
        >>> is_distributed()
        False
    """
    return _initialized() and torch.distributed.get_world_size() > 1


def launched_by_torchrun() -> bool:
    """True when the environment holds the variables ``torchrun`` sets for each process.

    Examples:
        >>> import os
        >>> launched_by_torchrun() == all(v in os.environ for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))
        True
    """
    return all(v in os.environ for v in _TORCHRUN_VARS)


def init_from_env(device: torch.device | str | None = None) -> bool:
    """Initialise the default process group from ``torchrun``'s environment, if needed.

    Does nothing and returns False when a group is already initialised, when ``torchrun`` did not
    launch this process, or when :mod:`torch.distributed` is unavailable; returns True when it
    initialised the group. The backend is gloo for CPU tensors and NCCL for CUDA ones: with
    ``device`` a CUDA device, NCCL (and this process's CUDA device is set to ``LOCAL_RANK``); with
    ``device`` None and CUDA available, ``"cpu:gloo,cuda:nccl"`` (one group for both); else gloo.

    Examples:
        >>> init_from_env()  # a plain python run: nothing to do
        False

        Under ``torchrun --nproc-per-node=2 script.py``, the script calls ``init_from_env()``
        and then ``rank()`` is 0 or 1 and ``world_size()`` is 2.
    """
    if not torch.distributed.is_available() or _initialized() or not launched_by_torchrun():
        return False
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        backend = "nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    elif dev is None and torch.cuda.is_available():
        backend = "cpu:gloo,cuda:nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend=backend)
    return True


def shard_range(total: int, rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of ``total`` items that ``rank`` of ``world`` processes takes.

    Defaults to this process's rank and world size. Shards differ in size by at most one, the
    first ``total % world`` ranks taking one more; together they cover ``range(total)`` in order.

    Examples:
        >>> [shard_range(10, r, 4) for r in range(4)]
        [(0, 3), (3, 6), (6, 8), (8, 10)]
        >>> shard_range(5)  # one process takes everything
        (0, 5)
    """
    if rank is None:
        rank = torch.distributed.get_rank() if _initialized() else 0
    world = world_size() if world is None else world
    if world < 1 or not 0 <= rank < world or total < 0:
        raise HyperprojError(
            f"hyperproj.shard_range: need total >= 0 and 0 <= rank < world, got total={total}, "
            f"rank={rank}, world={world}"
        )
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def barrier() -> None:
    """Wait for every process of the default process group (returns at once without one).

    Examples:
        >>> barrier()
    """
    if is_distributed():
        torch.distributed.barrier()
