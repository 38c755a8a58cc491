"""torchrun / ``torch.distributed`` in one place: the rank, the world size, the process group.

hyperproj never schedules processes itself: ``torchrun`` starts them and sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``... ; :func:`init_from_env` joins the default process group it
describes (gloo on CPU, NCCL when CUDA is used) if that is not done yet. Without torchrun
everything here answers as for one process (rank 0 of 1).

Examples:
    >>> rank(), world_size(), is_distributed()
    (0, 1, False)
"""

from __future__ import annotations

import os

import torch

__all__ = ["rank", "world_size", "is_distributed", "launched_by_torchrun", "init_from_env", "barrier"]


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting ``RANK`` and ``WORLD_SIZE``) started this process.

    Examples:
        >>> isinstance(launched_by_torchrun(), bool)
        True
    """
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def is_distributed() -> bool:
    """Whether a default process group with more than one process is initialised.

    Examples:
        >>> is_distributed()
        False
    """
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun's environment describes, once; returns :func:`is_distributed`.

    ``backend``: default gloo, or NCCL when CUDA is available and ``LOCAL_RANK`` names a GPU
    (then that GPU becomes the current device). Without torchrun's variables nothing happens.

    Examples:
        >>> init_from_env()  # not under torchrun: one process
        False
    """
    dist = torch.distributed
    if not launched_by_torchrun() or not dist.is_available():
        return is_distributed()
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return is_distributed()


def rank() -> int:
    """This process's rank in the default group (0 without one).

    Examples:
        >>> rank()
        0
    """
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes in the default group (1 without one).

    Examples:
        >>> world_size()
        1
    """
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every process of the default group (nothing to wait for in one process).

    Examples:
        >>> barrier()
    """
    if is_distributed():
        torch.distributed.barrier()
