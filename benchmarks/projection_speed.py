"""Training-step time and memory of each projection kind against the plain network.

Two parts, printed as tables:

1. **SIREN 9×40** (9 sine layers of width 40 — the first with ``sin(30(Wx+b))`` and
   ``U(±1/fan_in)`` weights — and a linear output to 3; 13,363 parameters, 13,000 of them
   projected weights). One training step = forward + backward + Adam step, MSE against the
   pixels of ``skimage.data.astronaut`` (random targets if scikit-image is missing). The plain
   network and the same network with projected weights (``hyperproj.reparametrize``) at latent
   sizes of 30 / 60 / 100 % of the projected weights, at batches 1,024 / 16,384 / 65,536.
   Each variant is interleaved step by step with the plain network (its own pair, so that no
   variant runs on caches another one flushed) and the median ratio is reported: the machines
   here are noisy. ``streamed`` is slow and gets only a few steps.
2. **Scale check**: a 5×512 ReLU MLP (1,051,136 projected weights) at ``n = 100,000`` with
   ``fastfood``: step time against plain at a realistic batch, and extra peak memory (resident set
   size of a fresh subprocess per variant, relative to the plain one).

Experimental kinds measured here (not in the library unless they win): ``sparse`` (very sparse
±√s random projection, Li, Hastie & Church 2006, ``s = √n``, CSR matrix and its transpose) and
``dense-bf16`` (dense ``B`` stored in bfloat16).

Usage::

    .venv/bin/python benchmarks/projection_speed.py --quick     # a few seconds
    .venv/bin/python benchmarks/projection_speed.py             # full tables (several minutes)
    .venv/bin/python benchmarks/projection_speed.py --threads 1 # pin torch's thread count
    .venv/bin/python benchmarks/projection_speed.py --quick --no-scale --quality 300  # PSNR
    .venv/bin/python benchmarks/projection_speed.py --crossover  # the rule of projection="auto"

Example (library use of what is timed here):
    >>> import torch, hyperproj
    >>> siren = make_siren()
    >>> hyper = hyperproj.reparametrize(siren, latent_dim=3900, seed=0, projection="fastfood",
    ...                                 init="match")
    >>> hyper(torch.zeros(5, 2)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hyperproj  # noqa: E402
from hyperproj import rng  # noqa: E402
from hyperproj._fastfood import FastfoodProjection  # noqa: E402,F401  (registers "fastfood")
from hyperproj.projection import (  # noqa: E402
    DenseProjection,
    Projection,
    _generate_rows,
    register_projection,
)

# --------------------------------------------------------------------------- networks


class SineLayer(nn.Module):
    """``sin(w0 · (W x + b))`` with SIREN's initialisation.

    Example:
        >>> SineLayer(2, 4, first=True)(torch.zeros(3, 2)).shape
        torch.Size([3, 4])
    """

    def __init__(self, fan_in: int, fan_out: int, first: bool, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(fan_in, fan_out)
        bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


def make_siren(sine_layers: int = 9, width: int = 40, in_features: int = 2,
               out_features: int = 3) -> nn.Sequential:
    """SIREN with ``sine_layers`` sine layers of ``width`` and a linear output (13,363 params).

    Example:
        >>> sum(p.numel() for p in make_siren().parameters())
        13363
    """
    layers: list[nn.Module] = [SineLayer(in_features, width, first=True)]
    layers += [SineLayer(width, width, first=False) for _ in range(sine_layers - 1)]
    last = nn.Linear(width, out_features)
    with torch.no_grad():
        bound = math.sqrt(6.0 / width) / 30.0
        last.weight.uniform_(-bound, bound)
    layers.append(last)
    return nn.Sequential(*layers)


def make_mlp(depth: int = 5, width: int = 512, in_features: int = 2,
             out_features: int = 3) -> nn.Sequential:
    """ReLU MLP with ``depth`` hidden layers of ``width`` (1,051,136 weights at 5×512).

    Example:
        >>> sum(m.weight.numel() for m in make_mlp() if isinstance(m, torch.nn.Linear))
        1051136
    """
    layers: list[nn.Module] = [nn.Linear(in_features, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- experimental kinds


class _CSRMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z2d, mat, mat_t):
        ctx.mat_t = mat_t
        return (mat @ z2d.T).T

    @staticmethod
    def backward(ctx, grad):
        return (ctx.mat_t @ grad.T).T, None, None


@register_projection("sparse-bench")
class SparseSignProjection(Projection):
    """Very sparse random projection (Li et al. 2006): entries ``±√s`` w.p. ``1/(2s)``, else 0.

    ``s = √n`` gives unit-variance entries with ``≈ P√n`` non-zeros, stored as CSR (and its
    transpose, for the backward pass). Benchmark-only.

    Example:
        >>> p = SparseSignProjection(16, [10], [1.0], seed=0)
        >>> p(torch.ones(16)).shape
        torch.Size([10])
    """

    def __init__(self, latent_dim, layer_sizes, layer_scales, seed, distribution="uniform"):
        super().__init__(latent_dim, layer_sizes, layer_scales, seed, distribution)
        n, total = self.latent_dim, self.num_outputs
        s = max(1.0, math.sqrt(n))
        threshold = int(round((1 << 63) / s))  # |hash| < 2^63/s  <=> probability 1/s
        rows_per_block = max(1, (1 << 22) // n)
        crow, cols, vals = [torch.zeros(1, dtype=torch.int64)], [], []
        count = 0
        for start in range(0, total, rows_per_block):
            stop = min(total, start + rows_per_block)
            idx = torch.arange(start * n, stop * n, dtype=torch.int64)
            h = rng.hash_indices(self.seed, 1 << 40, idx)
            keep = (h >> 1).abs() < (threshold >> 1)
            nz = keep.nonzero().squeeze(1)
            r, c = nz // n, nz % n
            sign = torch.where(h[nz] & 1 == 1, 1.0, -1.0)
            layer_scale = torch.repeat_interleave(
                torch.tensor(self.layer_scales), torch.tensor(self.layer_sizes))[start:stop]
            vals.append(sign * math.sqrt(s) * layer_scale[r])
            cols.append(c)
            counts = torch.bincount(r, minlength=stop - start)
            crow.append(count + counts.cumsum(0))
            count += int(nz.numel())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR is beta", "invariant checks disabled"
            mat = torch.sparse_csr_tensor(torch.cat(crow), torch.cat(cols),
                                          torch.cat(vals).float(), size=(total, n))
            self.mat = mat
            self.mat_t = mat.to_sparse_coo().t().coalesce().to_sparse_csr()

    def forward(self, z):
        lead = z.shape[:-1]
        out = _CSRMatmul.apply(z.reshape(-1, self.latent_dim), self.mat, self.mat_t)
        return out.reshape(*lead, self.num_outputs)

    def state_bytes(self):
        m = self.mat
        one = (m.crow_indices().numel() + m.col_indices().numel()) * 8 + m.values().numel() * 4
        return 2 * one


@register_projection("dense-bf16-bench")
class DenseBF16Projection(DenseProjection):
    """Dense ``B`` stored in bfloat16 (half the memory of float32). Benchmark-only.

    Example:
        >>> p = DenseBF16Projection(8, [5], [1.0], seed=0)
        >>> p.matrix.dtype
        torch.bfloat16
    """

    def __init__(self, latent_dim, layer_sizes, layer_scales, seed, distribution="uniform"):
        Projection.__init__(self, latent_dim, layer_sizes, layer_scales, seed, distribution)
        self.register_buffer("matrix", _generate_rows(self, 0, self.num_outputs).bfloat16(),
                             persistent=False)

    def _apply(self, fn, recurse=True):  # keep the matrix in bfloat16 under .to(dtype)
        mat = self._buffers.pop("matrix")
        out = super()._apply(fn, recurse)
        self._buffers["matrix"] = mat
        return out

    def forward(self, z):
        return (z.to(torch.bfloat16) @ self.matrix.T).to(z.dtype)


# --------------------------------------------------------------------------- timing helpers


def image_data(count: int):
    """``count`` coordinates in [-1, 1]² and RGB targets (astronaut, else random), fixed order."""
    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut()).float() / 255.0  # 512×512×3
        img = img[::2, ::2]  # 256×256 = 65,536 pixels
        source = "astronaut 256x256"
    except Exception:  # pragma: no cover - optional dependency
        img = torch.rand(256, 256, 3, generator=torch.Generator().manual_seed(0))
        source = "random targets"
    h, w, _ = img.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    coords = torch.stack([xs, ys], -1).reshape(-1, 2)
    values = img.reshape(-1, 3)
    order = torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(0))
    reps = -(-count // coords.shape[0])
    order = order.repeat(reps)[:count]
    return coords[order].contiguous(), values[order].contiguous(), source


def build(net: nn.Module, kind: str | None, n: int) -> nn.Module:
    """The plain net (kind None) or ``hyperproj.reparametrize(net, n, projection=kind)``."""
    if kind is None:
        return net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hyperproj.reparametrize(net, latent_dim=n, seed=0, projection=kind, init="match")


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """A closure doing one Adam training step (forward, MSE, backward, update).

    Example:
        >>> m = torch.nn.Linear(2, 3)
        >>> make_step(m, torch.zeros(4, 2), torch.zeros(4, 3))()
    """
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    return step


def interleaved_medians(steps: dict, rounds: int, warmup: int = 1) -> dict:
    """Median seconds per call of each closure, calls interleaved round by round."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def state_mb(model: nn.Module) -> float:
    proj = getattr(model, "projection", None)
    return 0.0 if proj is None else proj.state_bytes() / 1e6


# --------------------------------------------------------------------------- part 1: SIREN


def library_siren() -> nn.Module:
    """``hyperproj.inr.Siren(2, 40, 8, 3)``: the same 9x40 SIREN with the library's fused sine layer.

    Example:
        >>> sum(p.numel() for p in library_siren().parameters())
        13363
    """
    from hyperproj.inr import Siren

    return Siren(2, 40, 8, 3)


SIREN_FACTORY = make_siren


def siren_table(fracs, batches, kinds, rounds, streamed_batches, streamed_rounds):
    torch.manual_seed(0)
    base = SIREN_FACTORY()
    projected = sum(m.weight.numel() for m in base.modules() if isinstance(m, nn.Linear))
    x_all, y_all, source = image_data(max(batches))
    print(f"\n## SIREN 9x40: {sum(p.numel() for p in base.parameters())} parameters, "
          f"{projected} projected weights; targets: {source}; torch threads "
          f"{torch.get_num_threads()}")
    results = []  # (frac, n, kind, batch, ratio, ms, state MB)
    plain_ms = {}
    for frac in fracs:
        n = int(round(frac * projected))
        models = {}
        for kind in kinds:
            t = time.perf_counter()
            models[kind] = build(base, kind, n)
            print(f"  built {kind:17s} n={n:6d} in {time.perf_counter() - t:5.1f} s, "
                  f"state {state_mb(models[kind]):8.2f} MB", flush=True)
        for batch in batches:
            x, y = x_all[:batch], y_all[:batch]
            # Each kind is timed against plain in its own interleaved pair: in one rotation of
            # all kinds, the step after a dense one starts with caches flushed by its 200-700 MB
            # matrix, which cost the next kind ~5 % at batch 1,024 (measured 2026-12-04).
            r = rounds * (8 if batch <= 1_024 else 2 if batch <= 16_384 else 1)
            plain_step = make_step(base, x, y)
            for k in kinds:
                med = interleaved_medians({"plain": plain_step, k: make_step(models[k], x, y)}, r)
                plain_ms.setdefault(batch, []).append(med["plain"] * 1e3)
                results.append((frac, n, k, batch, med[k] / med["plain"], med[k] * 1e3,
                                state_mb(models[k])))
            if "streamed" not in kinds and batch in streamed_batches:
                sm = build(base, "streamed", n)
                med_s = interleaved_medians(
                    {"plain": make_step(base, x, y), "streamed": make_step(sm, x, y)},
                    streamed_rounds)
                results.append((frac, n, "streamed", batch, med_s["streamed"] / med_s["plain"],
                                med_s["streamed"] * 1e3, state_mb(sm)))
        del models
    all_kinds = kinds + (["streamed"] if streamed_batches else [])
    print("\nstep time / plain step time (medians, each kind interleaved with plain; "
          f"{rounds} rounds, x8 at batch <= 1,024, x2 at <= 16,384); plain ms per step: "
          + ", ".join(f"batch {b}: {statistics.median(v):.1f}" for b, v in plain_ms.items()))
    head = f"{'latent':>14s} {'kind':>17s} {'state MB':>9s}" + "".join(
        f" {'b=' + str(b):>9s}" for b in batches)
    print(head)
    for frac in fracs:
        for k in all_kinds:
            rows = [r for r in results if r[0] == frac and r[2] == k]
            if not rows:
                continue
            cells = ""
            for b in batches:
                hit = [r for r in rows if r[3] == b]
                cells += f" {hit[0][4]:8.2f}x" if hit else f" {'-':>9s}"
            print(f"{f'{int(frac * 100)}% n={rows[0][1]}':>14s} {k:>17s} {rows[0][6]:9.2f}{cells}")
    return results


# --------------------------------------------------------------------------- part 2: scale


def _child_memory(kind: str, n: int, batch: int) -> None:
    """Subprocess body: peak RSS growth of 3 training steps of the MLP with ``kind``."""
    torch.manual_seed(0)
    x = torch.rand(batch, 2) * 2 - 1
    y = torch.rand(batch, 3)
    base = make_mlp()
    before = _reset_peak_rss_kb()
    model = build(base, None if kind == "plain" else kind, n)
    step = make_step(model, x, y)
    for _ in range(3):
        step()
    peak = _peak_rss_kb()
    print(json.dumps({"kind": kind, "peak_growth_mb": (peak - before) / 1024,
                      "state_mb": state_mb(model)}))


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _reset_peak_rss_kb() -> int:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); return the current RSS in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # pragma: no cover - then peaks include start-up
        pass
    rss = _status_kb("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss_kb() -> int:
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def scale_check(n: int, batch: int, rounds: int, memory: bool = True) -> None:
    torch.manual_seed(0)
    base = make_mlp()
    projected = sum(m.weight.numel() for m in base.modules() if isinstance(m, nn.Linear))
    print(f"\n## Scale check: 5x512 ReLU MLP, {projected} projected weights, n={n}, batch {batch}")
    print(f"  dense B would take {projected * n * 4 / 2**30:.0f} GiB (float32): not run; "
          f"streamed regenerates {projected * n / 1e9:.0f}e9 values twice per step: not run")
    x = torch.rand(batch, 2) * 2 - 1
    y = torch.rand(batch, 3)
    t = time.perf_counter()
    ff = build(base, "fastfood", n)
    print(f"  fastfood built in {time.perf_counter() - t:.2f} s: {ff.projection}")
    med = interleaved_medians({"plain": make_step(base, x, y), "fastfood": make_step(ff, x, y)},
                              rounds)
    z = ff.latent.detach().clone().requires_grad_(True)

    def proj_only():
        ff.projection(z).sum().backward()

    proj_ms = interleaved_medians({"p": proj_only}, rounds)["p"] * 1e3
    print(f"  step: plain {med['plain'] * 1e3:.1f} ms, fastfood {med['fastfood'] * 1e3:.1f} ms "
          f"-> {med['fastfood'] / med['plain']:.3f}x (target <= 1.25x); projection forward+"
          f"backward alone {proj_ms:.1f} ms")
    if not memory:
        print(f"  memory: fastfood buffers {state_mb(ff):.1f} MB (peak RSS: run without --quick)")
        return
    mem = {}
    for kind in ("plain", "fastfood"):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--_child", kind, "--n", str(n),
             "--scale-batch", str(batch), "--threads", str(torch.get_num_threads())],
            capture_output=True, text=True, check=True)
        mem[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    extra = mem["fastfood"]["peak_growth_mb"] - mem["plain"]["peak_growth_mb"]
    print(f"  memory: fastfood buffers {mem['fastfood']['state_mb']:.1f} MB; peak RSS growth "
          f"plain {mem['plain']['peak_growth_mb']:.0f} MB, fastfood "
          f"{mem['fastfood']['peak_growth_mb']:.0f} MB -> extra {extra:.0f} MB (target < 1 GB)")


# --------------------------------------------------------------------------- part 3: quality


def crossover(batches=(1_024, 16_384), rounds: int = 40) -> None:
    """Dense vs fastfood step time on SIREN 9×40 as ``B`` grows: where ``"auto"`` should switch.

    ``B`` has ``13,000 · n`` floats; n runs from 10 (0.5 MiB) to 1,280 (63.5 MiB). Each kind is
    interleaved with the plain network, and the ratio dense / fastfood of the two medians is
    printed next to the kind ``projection="auto"`` picks at that size.
    """
    torch.manual_seed(0)
    base = make_siren()
    x_all, y_all, _ = image_data(max(batches))
    print(f"\n## Dense vs fastfood as B grows (SIREN 9x40, {rounds} rounds per pair, ratio of "
          "medians, each interleaved with plain)")
    print(f"{'n':>6s} {'B MiB':>7s} {'auto picks':>10s}" + "".join(
        f" {'dense/ff b=' + str(b):>17s}" for b in batches))
    for n in (10, 40, 80, 120, 160, 240, 320, 640, 1280):
        b_mb = 4 * 13_000 * n / 2**20
        picked = hyperproj.projection.resolve_kind("auto", latent_dim=n, num_outputs=13_000)
        cells = ""
        for batch in batches:
            x, y = x_all[:batch], y_all[:batch]
            plain = make_step(base, x, y)
            med = {}
            for kind in ("dense", "fastfood"):
                r = rounds if batch <= 1_024 else max(5, rounds // 4)
                med[kind] = interleaved_medians({"plain": plain, kind: make_step(build(base, kind, n), x, y)},
                                                r)[kind]
            cells += f" {med['dense'] / med['fastfood']:16.2f}x"
        print(f"{n:6d} {b_mb:7.1f} {picked:>10s}{cells}", flush=True)


def quality_check(steps: int, frac: float, lr: float, seeds: int = 1,
                  latent_scale: str = "unit") -> None:
    """PSNR after ``steps`` full-batch Adam steps on astronaut 128×128: dense vs fastfood.

    With ``seeds > 1`` each seed (init and projection) is run for dense and fastfood (uniform
    ``G``) only, and the mean and spread of the fastfood − dense difference are printed.
    """
    x_all, y_all, source = image_data(128 * 128)
    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut()).float()[::4, ::4] / 255.0
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, 128), torch.linspace(-1, 1, 128),
                                indexing="ij")
        x_all, y_all = torch.stack([xs, ys], -1).reshape(-1, 2), img.reshape(-1, 3)
        source = "astronaut 128x128"
    except Exception:  # pragma: no cover - optional dependency
        pass
    n = int(round(frac * 13000))
    print(f"\n## Quality: SIREN 9x40 on {source}, full batch, {steps} Adam steps, latent n={n} "
          f"({latent_scale}) at lr {lr:g} (plain SIREN at lr 1e-4), seeds 0..{seeds - 1}")
    runs = [("dense", "uniform"), ("fastfood", "uniform")]
    if seeds == 1:
        runs += [("fastfood", "rademacher"), (None, None)]
    diffs = []
    for seed in range(seeds):
        psnrs = {}
        for kind, dist in runs:
            torch.manual_seed(seed)
            base = make_siren()
            if kind is None:
                model, groups = base, [{"params": list(base.parameters()), "lr": 1e-4}]
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = hyperproj.reparametrize(base, latent_dim=n, seed=seed, projection=kind,
                                                    distribution=dist, init="match",
                                                    latent_lr_scale=1.0,
                                                    latent_scale=latent_scale)
                groups = model.optimizer_param_groups(lr)
            opt = torch.optim.Adam(groups)
            t = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(model(x_all), y_all)
                loss.backward()
                opt.step()
            with torch.no_grad():
                psnr = -10 * math.log10(float(torch.nn.functional.mse_loss(model(x_all), y_all)))
            psnrs[(kind, dist)] = psnr
            print(f"  seed {seed} {kind or 'plain':9s} G={str(dist):10s} PSNR {psnr:6.2f} dB "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        diffs.append(psnrs[("fastfood", "uniform")] - psnrs[("dense", "uniform")])
    if seeds > 1:
        sd = statistics.stdev(diffs)
        print(f"  fastfood - dense: mean {statistics.mean(diffs):+.2f} dB, sd {sd:.2f}, "
              f"per seed " + " ".join(f"{d:+.2f}" for d in diffs))


# --------------------------------------------------------------------------- main


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds: one latent, one batch")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--no-experimental", action="store_true", help="skip sparse and bf16 kinds")
    ap.add_argument("--no-scale", action="store_true", help="skip the 5x512 scale check")
    ap.add_argument("--n", type=int, default=100_000, help="latent size of the scale check")
    ap.add_argument("--scale-batch", type=int, default=None, help="batch of the scale check")
    ap.add_argument("--quality", type=int, default=0, metavar="STEPS",
                    help="also fit astronaut 128x128 for STEPS steps: PSNR dense vs fastfood")
    ap.add_argument("--quality-lr", type=float, default=1e-2, help="latent lr of --quality")
    ap.add_argument("--quality-latent-scale", default="unit", choices=["unit", "offset", "paper"],
                    help="latent parameterisation of --quality (offset: use --quality-lr 1e-3)")
    ap.add_argument("--quality-seeds", type=int, default=1,
                    help="seeds of --quality (> 1: dense vs fastfood only, mean difference)")
    ap.add_argument("--library-siren", action="store_true",
                    help="time hyperproj.inr.Siren (fused sine layer) instead of the plain nn.Sequential SIREN")
    ap.add_argument("--crossover", action="store_true",
                    help="only the dense-vs-fastfood crossover behind projection='auto'")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.library_siren:
        global SIREN_FACTORY
        SIREN_FACTORY = library_siren
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._child:
        _child_memory(args._child, args.n, args.scale_batch)
        return
    kinds = ["dense", "fastfood"]
    if not args.no_experimental:
        kinds += ["sparse-bench", "dense-bf16-bench"]
    t0 = time.perf_counter()
    load0 = _load()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load0}")
    if args.crossover:
        crossover()
        print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average {_load()} (start {load0})")
        return
    if args.quick:
        siren_table([0.3], [1024], ["fastfood"], rounds=15, streamed_batches=[],
                    streamed_rounds=0)
        if not args.no_scale:
            scale_check(args.n, args.scale_batch or 256, rounds=3, memory=False)
    else:
        siren_table([0.3, 0.6, 1.0], [1024, 16384, 65536], kinds, rounds=9,
                    streamed_batches=[1024, 16384], streamed_rounds=2)
        if not args.no_scale:
            for batch in ([args.scale_batch] if args.scale_batch else [4096, 16384]):
                scale_check(args.n, batch, rounds=5)
    if args.quality:
        for frac in (0.3, 1.0):
            quality_check(args.quality, frac, args.quality_lr, args.quality_seeds,
                          args.quality_latent_scale)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average {_load()} (start {load0})")


if __name__ == "__main__":
    main()
