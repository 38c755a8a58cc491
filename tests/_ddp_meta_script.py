"""Meta-train a tiny model on fixed data; run under torchrun or alone (tests/test_modulation_ddp.py).

usage: python _ddp_meta_script.py OUT.pt STEPS BATCH KIND FIRST_ORDER [DISTRIBUTED]
  KIND: shift | gated | doh;  FIRST_ORDER: 0 | 1;  DISTRIBUTED: auto | 0 | 1 (default auto)

Writes rank 0's final state_dict, the history and the world size to OUT.pt.
"""

from __future__ import annotations

import sys

import torch

import hyperproj
from hyperproj import _distributed
from hyperproj.inr import grid_coords
from hyperproj.modulation import GatedSiren, ShiftSiren, meta_train


def main() -> None:
    out, steps, batch, kind, first_order = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
    distributed = {"auto": None, "0": False, "1": True}[sys.argv[6] if len(sys.argv) > 6 else "auto"]
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(123)
    coords, values = grid_coords((4, 4)), torch.rand(8, 16, 3, generator=gen)
    torch.manual_seed(0)
    if kind == "gated":
        model = GatedSiren(6, hidden_features=12, hidden_layers=2, rank=2, hyper_width=12)
    else:
        model = ShiftSiren(6, hidden_features=12, hidden_layers=2)
    if kind == "doh":
        model = hyperproj.reparametrize(model, latent_dim=64, seed=0)
    try:
        history = meta_train(
            model, coords, values, steps=steps, batch_size=batch, inner_steps=2, lr=1e-3,
            first_order=first_order, progress=False, distributed=distributed,
        )  # fmt: skip
    except hyperproj.HyperprojError as err:
        print(f"HyperprojError: {err}", flush=True)
        sys.exit(3)
    if _distributed.rank() == 0:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save({"state": state, "psnr": history.psnr, "world": _distributed.world_size()}, out)
    if _distributed.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
