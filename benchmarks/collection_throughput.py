"""Signals per hour when compressing a collection, the ways one can run it, side by side in one run.

Crops (``--size`` px, centred) of the Kodak images in ``--data`` (or of scikit-image's photos when
the folder is absent) are compressed at fixed ``--steps`` with the README's command line:

* ``one``      — one process, one signal at a time, 1 thread (``OMP_NUM_THREADS=1``);
* ``batched``  — one process, ``--batch K`` same-sized crops trained together, 1 thread;
* ``torchrun`` — ``torchrun --nproc-per-node=2``, 1 thread each (the inputs shared out by rank);
* ``threads``  — one process, one at a time, torch's default thread count (what a user gets).

Each mode writes its own folder; the table gives wall seconds, signals per hour, the ratio to
``one`` and the mean PSNR from each manifest (the same files whatever the split: torchrun's are
byte-identical to ``one``'s, which the table checks).

    python benchmarks/collection_throughput.py --data ../shared/data/kodak --crops 16 --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import kodak_dir  # noqa: E402


def crops(data: Path | None, count: int, size: int, dest: Path) -> list[Path]:
    import numpy as np
    from PIL import Image

    if data is not None and data.is_dir() and sorted(data.glob("*.png")):
        sources = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(data.glob("*.png"))]
    else:
        import skimage.data

        print(f"no Kodak folder at {data}; using scikit-image's photos")
        sources = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    out = []
    for i in range(count):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        # different windows when an image is reused
        top = (h - size) // 2 + (i // len(sources)) * 7 % max(h - size, 1) // 2
        left = (w - size) // 2
        path = dest / f"crop{i:02d}.png"
        Image.fromarray(img[top:top + size, left:left + size]).save(path)
        out.append(path)
    return out


def run(mode: str, src: Path, out: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = ["compress", str(src), "-o", str(out), "--bpp", str(args.bpp), "--steps", str(args.steps), "--quiet"]
    if mode == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "hyperproj", *common]
        env["OMP_NUM_THREADS"] = "1"
    else:
        cmd = [sys.executable, "-m", "hyperproj", *common]
        if mode == "batched":
            cmd += ["--batch", str(args.batch)]
        if mode != "threads":
            env["OMP_NUM_THREADS"] = "1"
        else:
            env.pop("OMP_NUM_THREADS", None)
    tic = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    psnr = sum(r["psnr"] for r in records) / len(records)
    return {"mode": mode, "wall": wall, "count": len(records), "psnr": psnr}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=kodak_dir())
    p.add_argument("--crops", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--bpp", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--modes", default="one,batched,torchrun,threads")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "crops"
        src.mkdir()
        crops(args.data, args.crops, args.size, src)
        rows = [run(mode, src, tmp / mode, args) for mode in args.modes.split(",")]
        base = next((r for r in rows if r["mode"] == "one"), rows[0])
        print(f"\n{args.crops} crops of {args.size} px, {args.steps} steps, {args.bpp} bpp, {os.cpu_count()} CPUs")
        print(f"{'mode':<10} {'wall s':>8} {'signals/h':>10} {'vs one':>7} {'mean PSNR':>10}  files")
        for r in rows:
            same = ""
            if r["mode"] != base["mode"]:
                equal = all((tmp / r["mode"] / f.name).read_bytes() == f.read_bytes()
                            for f in (tmp / base["mode"]).glob("*.hpz"))
                same = "identical to one's" if equal else "differ from one's"
            print(f"{r['mode']:<10} {r['wall']:>8.1f} {3600 * r['count'] / r['wall']:>10.0f} "
                  f"{base['wall'] / r['wall']:>6.2f}x {r['psnr']:>10.2f}  {same}")


if __name__ == "__main__":
    main()
