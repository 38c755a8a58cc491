"""hyperproj._heap: freed memory kept in the C heap while a training loop runs (glibc only)."""

from __future__ import annotations

import resource

import pytest
import torch

from hyperproj import _heap
from hyperproj._heap import heap_policy_active, retained_heap

glibc = pytest.mark.skipif(_heap._glibc() is None, reason="the heap policy needs Linux with glibc (mallopt)")

_BIG = 16 << 20  # floats: a 64 MiB block, above glibc's largest adaptive mmap threshold (32 MiB)


def _faults_per_block(repeats: int = 5) -> float:
    """Minor page faults of one allocate-touch-free of a 64 MiB tensor: the median of ``repeats``
    after a first one (a heap that grows once more on the way faults in one block more, once)."""
    torch.ones(_BIG)
    counts = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(_BIG)  # touches every page
        del x
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sorted(counts)[repeats // 2]


@glibc
def test_a_retained_heap_reuses_a_freed_block_instead_of_faulting_it_in_again(monkeypatch):
    monkeypatch.delenv("HYPERPROJ_HEAP", raising=False)
    pages = _BIG * 4 // resource.getpagesize()
    outside = _faults_per_block()
    if outside < 0.5 * pages:  # e.g. transparent huge pages for every mapping: one fault per 2 MiB
        pytest.skip(f"this kernel faults a fresh 64 MiB mapping in {outside:.0f} times, not once a page "
                    f"({pages}): page faults cannot show the reuse here")
    with retained_heap() as on:
        assert on and heap_policy_active()
        inside = _faults_per_block()
    assert not heap_policy_active()
    # glibc maps a block this size afresh each time (every page faults in); kept, it is reused
    assert inside < 0.05 * pages, (inside, outside, pages)


@glibc
def test_nested_blocks_restore_only_when_the_last_one_leaves(monkeypatch):
    monkeypatch.delenv("HYPERPROJ_HEAP", raising=False)
    with retained_heap():
        with retained_heap() as inner:
            assert inner
        assert heap_policy_active()  # the outer block still holds
    assert not heap_policy_active()


def test_the_policy_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("HYPERPROJ_HEAP", "system")
    with retained_heap() as on:
        assert on is False and not heap_policy_active()


@glibc
def test_fit_grid_runs_inside_a_retained_heap_and_leaves_it(monkeypatch):
    from hyperproj.inr import ImageSignal, LatentGrid, fit_grid, latent_grid

    monkeypatch.delenv("HYPERPROJ_HEAP", raising=False)
    seen = []
    real = latent_grid.LatentGrid.rate_bits

    def spy(self, *a, **k):
        seen.append(heap_policy_active())
        return real(self, *a, **k)

    monkeypatch.setattr(latent_grid.LatentGrid, "rate_bits", spy)
    net = LatentGrid(8, 8, levels=2, hidden=(4,), arm_hidden=4)
    fit_grid(net, ImageSignal(torch.rand(8, 8, 3)), steps=3)
    assert seen and all(seen)
    assert not heap_policy_active()


def test_a_misspelt_policy_is_refused_by_name(monkeypatch):
    from hyperproj import HyperprojError

    monkeypatch.setenv("HYPERPROJ_HEAP", "System")
    with pytest.raises(HyperprojError, match="HYPERPROJ_HEAP must be 'retain'.*'System'"):
        with retained_heap():
            pass
