"""hyperproj.modulation.meta_train under torchrun: DistributedDataParallel over 2 CPU processes.

One ``torchrun --standalone --nproc-per-node=2`` launch (gloo on loopback, one thread per process)
runs the cases of ``tests/_ddp_meta_script.py``; each must end with the same parameters and
history as one process trained on the same global batches.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ddp_meta_script import CASES, build, data, first_step_grads, run_case

from hyperproj import HyperprojError, _distributed
from hyperproj.modulation import meta_train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent

# Some PyTorch builds (e.g. older macOS and Windows wheels) ship without torch.distributed or gloo:
# there is then no process group to launch, so the two-process tests cannot run.
needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this PyTorch build has no torch.distributed with the gloo backend",
)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Rank 0's results of one 2-process torchrun launch of tests/_ddp_meta_script.py."""
    tmp = tmp_path_factory.mktemp("ddp")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        str(ROOT / "tests" / "_ddp_meta_script.py"), str(tmp / "out.pt"), str(tmp),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return torch.load(tmp / "out.pt", weights_only=False)


@needs_gloo
@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_match_one_process(two_ranks, name):
    assert two_ranks["world"] == 2
    mine = run_case(name, distributed=False)
    theirs = two_ranks["cases"][name]
    assert mine["state"].keys() == theirs["state"].keys()
    for key, value in mine["state"].items():
        torch.testing.assert_close(theirs["state"][key], value, atol=1e-5, rtol=1e-5, msg=key)
    # the history is the global batch's PSNR, as in one process
    assert theirs["psnr"] == pytest.approx(mine["psnr"], abs=1e-4)


@needs_gloo
def test_averaged_gradient_is_the_global_batch_gradient(two_ranks):
    """The all-reduced gradient (raw, before Adam) equals one process's on the global batch.

    Each rank's loss is the mean MSE over its 2 signals and DDP averages over the 2 ranks, which
    is the mean over all 4: a sum, or a mean without averaging, would be off by a factor 2 here.
    """
    mine, theirs = first_step_grads(False), two_ranks["grads"]
    assert mine.keys() == theirs.keys() and len(mine) > 5
    for key, value in mine.items():
        assert value.abs().max() > 0, key
        torch.testing.assert_close(theirs[key], value, atol=1e-6, rtol=1e-4, msg=key)


@needs_gloo
def test_two_ranks_resume_from_rank0_checkpoint(two_ranks):
    """2 steps with a checkpoint then resumed to 3 steps on 2 ranks == 3 steps in one process."""
    mine = run_case("shift-second-order", distributed=False)  # shift, 3 steps, batch 4, second order
    theirs = two_ranks["cases"]["shift-resumed"]
    for key, value in mine["state"].items():
        torch.testing.assert_close(theirs["state"][key], value, atol=1e-5, rtol=1e-5, msg=key)
    assert theirs["psnr"] == pytest.approx(mine["psnr"], abs=1e-4)


@needs_gloo
def test_batch_not_divisible_by_world_size_is_refused(two_ranks):
    msg = two_ranks["refused"]
    assert msg is not None, "batch_size=3 on 2 processes was accepted"
    assert "batch_size=3 is not divisible by the number of processes (2)" in msg
    assert "multiple of 2" in msg


def test_distributed_true_without_torchrun_raises(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    coords, values = data()
    with pytest.raises(HyperprojError, match="distributed=True needs torchrun"):
        meta_train(build("shift"), coords, values, steps=1, batch_size=2, progress=False, distributed=True)
    with pytest.raises(HyperprojError, match="distributed must be None, True or False"):
        meta_train(build("shift"), coords, values, steps=1, batch_size=2, progress=False, distributed="yes")


def test_auto_without_torchrun_is_one_process():
    """distributed=None outside torchrun trains alone, exactly as distributed=False."""
    assert not _distributed.is_distributed()
    a, b = run_case("gated-first-order", None), run_case("gated-first-order", False)
    for key, value in a["state"].items():
        assert torch.equal(value, b["state"][key]), key


def test_shard_range_covers_everything_in_order():
    for total in range(0, 12):
        for world in range(1, 5):
            ranges = [_distributed.shard_range(total, r, world) for r in range(world)]
            assert [i for a, b in ranges for i in range(a, b)] == list(range(total))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1
    with pytest.raises(HyperprojError, match="0 <= rank < world"):
        _distributed.shard_range(4, rank=2, world=2)
