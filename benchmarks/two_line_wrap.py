"""The two-line wrap with every default, against the plain network it wraps.

On 128 px centre crops of three scikit-image photos (astronaut, coffee, chelsea), ``--steps``
full-batch steps each (default 600), in one run:

* the plain network, ``fit(net, signal, steps, lr=1e-3)`` (the reference the robustness issue
  names) and ``fit(net, signal, steps)`` (fit's default learning rate);
* ``fit(hyperproj.reparametrize(net, n, seed=0), signal, steps)`` with every default, at
  n = 100 % and 50 % of the projected weights;
* a plain network of the same depth whose parameter count is about the 50 % D'OH model's
  trainable count (latent + biases), ``fit`` defaults.

for ``Siren(2, 64, 3, 3)`` and ``Incode(2, 64, 3, 3)`` (only INCODE's composer is projected; its
harmonizer trains as usual). Prints PSNR per crop and the two targets: D'OH at 100 % within
1 dB of the plain network at lr 1e-3, D'OH at 50 % not below the equal-size plain network.

Usage::

    python benchmarks/two_line_wrap.py                 # ~15 min on 1 CPU thread
    python benchmarks/two_line_wrap.py --steps 200 --models siren
    python benchmarks/two_line_wrap.py --projection fastfood,orthogonal   # D'OH columns per kind
    python benchmarks/two_line_wrap.py --models siren --seeds 0,1,2 --ends   # seed means; ends trained directly
"""

from __future__ import annotations

import argparse
import time
import warnings

import skimage.data
import torch

import hyperproj
from hyperproj.inr import ImageSignal, Incode, Siren, fit

CROPS = ("astronaut", "coffee", "chelsea")


def crop(name: str, size: int) -> ImageSignal:
    sig = ImageSignal.from_array(getattr(skimage.data, name)())
    h, w, _ = sig.shape
    return sig.center_crop(min(h, w)).resize(size)


def build(kind: str, width: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return Siren(2, width, 3, 3) if kind == "siren" else Incode(2, width, 3, 3, harmonizer_resolution=128)


def projected(net: torch.nn.Module) -> int:
    hyper = hyperproj.reparametrize(net, 1, seed=0)
    return hyper.num_projected


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def equal_width(kind: str, budget: int) -> int:
    """Widest plain network of that kind whose trainable count is at most ``budget``."""
    width = 2
    while trainable(build(kind, width + 1, 0)) <= budget:
        width += 1
    return width


def run(model: torch.nn.Module, sig: ImageSignal, steps: int, **kw) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fit(model, sig, steps, progress=False, eval_every=max(steps // 12, 1), **kw).best[1]


def ends_direct(net: torch.nn.Module, n: int, seed: int, projection: str) -> torch.nn.Module:
    """``net`` wrapped with its first and last projected weight left out of the projection (trained
    directly) and the latent smaller by their size: the same trainable count as the plain wrap at ``n``."""
    names = hyperproj.reparametrize(net, 1, seed=seed).target_names
    ends = [names[0], names[-1]]
    params = dict(net.named_parameters())
    return hyperproj.reparametrize(net, n - sum(params[e].numel() for e in ends), seed=seed,
                                   exclude=ends, projection=projection)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600, help="full-batch steps per fit (default 600)")
    ap.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128)")
    ap.add_argument("--models", default="siren,incode", help="comma list of siren, incode")
    ap.add_argument("--crops", default=",".join(CROPS), help=f"comma list of scikit-image photos (default {','.join(CROPS)})")
    ap.add_argument("--width", type=int, default=64, help="hidden width of the wrapped network (default 64)")
    ap.add_argument("--seeds", default="0", help="comma list of seeds (model seed = D'OH seed; default 0); "
                    "with several, the mean of each gap is printed at the end")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--projection", default="auto",
                    help="comma list of projection kinds for the D'OH columns (default auto: the default)")
    ap.add_argument("--ends", action="store_true",
                    help="add a column: D'OH 50 %% with the first and last projected weight trained directly "
                         "(latent smaller by their size, same trainable count)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    print(f"# two-line wrap, {a.steps} full-batch steps, {a.size} px crops, width {a.width}, seeds {seeds}, "
          f"{a.threads} thread(s), hyperproj {hyperproj.__version__}", flush=True)
    kinds = [k.strip() for k in a.projection.split(",") if k.strip()]
    failures, gaps_by_column = [], {}
    for kind in [m.strip() for m in a.models.split(",") if m.strip()]:
        for seed in seeds:
            P = projected(build(kind, a.width, seed))
            half = hyperproj.reparametrize(build(kind, a.width, seed), P // 2, seed=seed)
            small = equal_width(kind, trainable(half))
            tag = (lambda k: f" [{k}]") if kinds != ["auto"] else (lambda k: "")
            doh_cols = [c for k in kinds for c in (f"D'OH 100 %{tag(k)}", f"D'OH 50 %{tag(k)}")
                        + ((f"D'OH 50 % ends direct{tag(k)}",) if a.ends else ())]
            cols = ["plain lr 1e-3", "plain default lr", *doh_cols, f"plain width {small}"]
            gaps = [c for k in kinds for c in (f"100 % gap{tag(k)}", f"50 % − equal size{tag(k)}")
                    + ((f"ends direct − equal size{tag(k)}",) if a.ends else ())]
            print(f"\n## {kind}, seed {seed}: {P} projected weights; D'OH 50 % trains {trainable(half)} values, the "
                  f"plain width-{small} network {trainable(build(kind, small, seed))}")
            print("| crop | " + " | ".join(cols + gaps) + " |")
            print("|---|" + "---:|" * (len(cols) + len(gaps)))
            for name in [c.strip() for c in a.crops.split(",") if c.strip()]:
                sig = crop(name, a.size)
                tic = time.perf_counter()
                plain = [run(build(kind, a.width, seed), sig, a.steps, lr=1e-3), run(build(kind, a.width, seed), sig, a.steps)]
                doh, cells = [], []
                for k in kinds:
                    runs = [run(hyperproj.reparametrize(build(kind, a.width, seed), n, seed=seed, projection=k), sig, a.steps)
                            for n in (P, P // 2)]
                    if a.ends:
                        runs.append(run(ends_direct(build(kind, a.width, seed), P // 2, seed, k), sig, a.steps))
                    doh += runs
                    cells.append((f"100 % gap{tag(k)}", plain[0] - runs[0]))
                    cells.append((f"50 % − equal size{tag(k)}", runs[1]))
                    if a.ends:
                        cells.append((f"ends direct − equal size{tag(k)}", runs[2]))
                ref = run(build(kind, small, seed), sig, a.steps)
                cells = [(c, v if c.startswith("100 %") else v - ref) for c, v in cells]
                for c, v in cells:
                    gaps_by_column.setdefault((kind, c), []).append(v)
                    if c.startswith("100 %") and v > 1.0:
                        failures.append(f"{kind}/{name}/seed {seed}{c[9:]}: D'OH at 100 % is {v:.2f} dB below the plain network")
                    if c.startswith("50 %") and v < 0:
                        failures.append(f"{kind}/{name}/seed {seed}{c[17:]}: D'OH at 50 % is {-v:.2f} dB below the "
                                        "equal-size plain network")
                print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in [*plain, *doh, ref]) + " | "
                      + " | ".join(f"{v:+.2f}" for _, v in cells) + f" |  ({time.perf_counter() - tic:.0f} s)", flush=True)
    if len(seeds) > 1:
        print("\nmean over crops and seeds (positive 100 % gap: D'OH below the plain network at lr 1e-3):")
        for (kind, c), vals in gaps_by_column.items():
            print(f"  {kind:7s} {c:34s} {sum(vals) / len(vals):+.2f} dB  (min {min(vals):+.2f}, max {max(vals):+.2f}, {len(vals)} runs)")
    print("\nchecks: " + ("all passed" if not failures else f"{len(failures)} failed"))
    for f in failures:
        print(f"  - {f}")


if __name__ == "__main__":
    main()
