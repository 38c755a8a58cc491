"""Meta-train tiny models on fixed data, under torchrun or alone (used by tests/test_modulation_ddp.py).

usage: torchrun --standalone --nproc-per-node=2 tests/_ddp_meta_script.py OUT.pt CHECKPOINT_DIR

Runs every case of ``CASES`` with ``distributed=None`` (auto-detected), a resumed run (2 steps,
then continued to 3 from the checkpoint), and a batch size not divisible by the world size; rank 0
writes ``{"world", "cases": {name: {"state", "psnr"}}, "grads", "refused": message}`` to OUT.pt
(``grads``: :func:`first_step_grads`). The test
runs the same cases in one process (:func:`run_case` with ``distributed=False``) and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

import hyperproj
from hyperproj import _distributed
from hyperproj.inr import grid_coords
from hyperproj.modulation import GatedSiren, ShiftSiren, meta_train

# name: (model kind, outer steps, global batch, first order)
CASES: dict[str, tuple[str, int, int, bool]] = {
    "shift-second-order": ("shift", 3, 4, False),
    "gated-first-order": ("gated", 2, 4, True),
    "doh-shift": ("doh", 2, 4, False),
}


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """The same 8 signals of 4×4 RGB pixels on every rank."""
    return grid_coords((4, 4)), torch.rand(8, 16, 3, generator=torch.Generator().manual_seed(123))


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gated":
        return GatedSiren(6, hidden_features=12, hidden_layers=2, rank=2, hyper_width=12)
    model = ShiftSiren(6, hidden_features=12, hidden_layers=2)
    return hyperproj.reparametrize(model, latent_dim=64, seed=0) if kind == "doh" else model


def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def run_case(name: str, distributed: bool | None, **kw: Any) -> dict[str, Any]:
    kind, steps, batch, first_order = CASES[name]
    model = build(kind)
    coords, values = data()
    history = meta_train(
        model, coords, values, steps=steps, batch_size=batch, inner_steps=2, lr=1e-3,
        first_order=first_order, progress=False, distributed=distributed, **kw,
    )  # fmt: skip
    return {"state": tensors(model), "psnr": history.psnr}


def first_step_grads(distributed: bool | None) -> dict[str, torch.Tensor]:
    """The gradients Adam receives at meta_train's first step (no clipping), by parameter name.

    Adam (and clipping) are nearly blind to a constant factor on the gradient, so equal parameters
    alone would not catch a wrong loss scaling between ranks; this checks the gradient itself.
    """
    model, (coords, values) = build("shift"), data()
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[str, torch.Tensor] = {}
    original = torch.optim.Adam.step

    def step(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        if not seen:
            seen.update({names[id(p)]: p.grad.clone() for g in self.param_groups for p in g["params"]})
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = step  # type: ignore[method-assign]
    try:
        meta_train(
            model, coords, values, steps=1, batch_size=4, inner_steps=2, grad_clip=None,
            progress=False, distributed=distributed,
        )  # fmt: skip
    finally:
        torch.optim.Adam.step = original  # type: ignore[method-assign]
    return seen


def main() -> None:
    out, ckpt_dir = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    result: dict[str, Any] = {"cases": {name: run_case(name, None) for name in CASES}}
    # resume: 2 steps with a checkpoint (rank 0 writes it), then continue to 3 steps from it
    model, (coords, values) = build("shift"), data()
    ckpt = ckpt_dir / "meta.pt"
    common = dict(batch_size=4, inner_steps=2, lr=1e-3, progress=False, checkpoint=ckpt)
    meta_train(model, coords, values, steps=2, **common)
    model = build("shift")
    history = meta_train(model, coords, values, steps=3, **common)
    result["cases"]["shift-resumed"] = {"state": tensors(model), "psnr": history.psnr}
    result["grads"] = first_step_grads(None)
    try:
        meta_train(build("shift"), coords, values, steps=1, batch_size=3, progress=False)
        result["refused"] = None
    except hyperproj.HyperprojError as err:
        result["refused"] = str(err)
    result["world"] = _distributed.world_size()
    if _distributed.rank() == 0:
        torch.save(result, out)
    if _distributed.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
