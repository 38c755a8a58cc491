"""``hyperproj demo``: the README's job, a bundled photo at three rates beside JPEG and WebP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NAME = "demo"

DEMO_STEPS = 1500  # per file: about a minute each on a 2-core CPU
DEMO_QUICK_STEPS = 300  # --quick: the same image and rates, a fifth of the steps (about 1.5 min)


def demo(out: str | Path = "hyperproj-demo", quick: bool = False, size: int | None = None,
         steps: int | None = None, budget: float | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Compress ``skimage.data.astronaut()`` (resized) at three rates with a fixed number of
    training steps per file (default 1,500, ``quick``: 300 — the same table on an idle and a busy
    machine), or within ``budget`` seconds per file if given — with the default family choice (``family="auto"``) and,
    where that chose another family, with the SIREN/D'OH route too; print a table beside JPEG/WebP
    at the same rate, write the decoded images, ``results.csv`` and ``rd.png`` (if matplotlib is
    installed) into ``out``.

    Examples:
        >>> rows = demo("/tmp/hp-demo", quick=True, progress=False)  # doctest: +SKIP
    """
    import skimage.data

    from .. import codec
    from ..inr.signals import ImageSignal

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = size or 256
    if steps is None and budget is None:
        steps = DEMO_QUICK_STEPS if quick else DEMO_STEPS
    rates = (0.5, 1.0, 2.0)
    signal = ImageSignal.from_array(skimage.data.astronaut()).resize(size)
    signal.to_image(signal.values).save(out / "original.png")
    rows = []
    for bpp in rates:  # the default family choice ("auto"), and the SIREN/D'OH route beside it where they differ
        for family in ("auto", "doh"):
            if family == "doh" and rows[-1]["family"] == "doh":
                break
            res = codec.compress(signal, bpp=bpp, steps=steps, time_budget=budget if steps is None else None,
                                 progress=progress, family=family)
            r = res.report
            name = f"astronaut_{bpp:g}bpp" + ("" if family == "auto" else "_doh")
            path = res.save(out / f"{name}.hpz")
            codec.render(res.model, path=out / f"{name}.png")
            rows.append({"target_bpp": bpp, "family": r["family"], "route": family, "bpp": r["bpp"],
                         "bytes": r["file_bytes"], "psnr": r["psnr"], "ssim": r["ssim"], "seconds": r["seconds"],
                         "file": path.name})
    from ..codec.baselines import classic_at_rate

    classic = {fmt: [classic_at_rate(signal, fmt, r["bpp"]) for r in rows] for fmt in ("JPEG", "WEBP")}
    how = f"{steps} training steps per file" if steps is not None else f"{budget:g} s per file, everything included"
    print(f"astronaut {size}x{size}, {how}; family: the default choice (auto), and the SIREN/D'OH route (doh) "
          "where auto chose another")
    print(f"{'target':>7} {'family':>7} {'file bpp':>9} {'bytes':>6} {'PSNR':>7} {'SSIM':>7} {'sec':>6}"
          f"   {'JPEG bpp/PSNR':>14} {'WebP bpp/PSNR':>14}")
    for i, r in enumerate(rows):
        ref = "".join(
            f"   {c['bpp']:6.3f}/{c['psnr']:6.2f}" if c else f"   {'-':>14}" for c in (classic["JPEG"][i], classic["WEBP"][i])
        )
        print(f"{r['target_bpp']:7.2f} {r['family']:>7} {r['bpp']:9.3f} {r['bytes']:6d} "
              f"{r['psnr']:7.2f} {r['ssim']:7.4f} {r['seconds']:6.1f}{ref}")
    print("(JPEG/WebP through Pillow at the largest quality whose file is not above hyperproj's file)")
    with open(out / "results.csv", "w") as fh:
        fh.write(",".join(rows[0]) + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r.values()) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
    else:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for route, label in (("auto", "hyperproj, default family"), ("doh", "hyperproj, SIREN/D'OH route")):
            pts = [r for r in rows if r["route"] == route or (route == "doh" and r["family"] == "doh")]
            if pts:
                ax.plot([r["bpp"] for r in pts], [r["psnr"] for r in pts], "o-" if route == "auto" else "^:", label=label)
        for fmt, pts in classic.items():
            pts = [c for c in pts if c]
            if pts:
                ax.plot([c["bpp"] for c in pts], [c["psnr"] for c in pts], "s--", label=f"{fmt} (Pillow)")
        ax.set_xlabel("bits per pixel (file)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"astronaut {size}x{size}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "rd.png", dpi=120)
        plt.close(fig)
    print(f"wrote {out}/")
    return rows


def add(sub) -> None:
    m = sub.add_parser(NAME, help="compress a bundled photo at three rates; table, images, plot")
    m.add_argument("--out", default="hyperproj-demo", help="output directory (default ./hyperproj-demo)")
    m.add_argument("--quick", action="store_true", help=f"the same image and rates with {DEMO_QUICK_STEPS} steps per file (about 1.5 min)")
    m.add_argument("--size", type=int, default=None, help="image side in pixels (default 256)")
    m.add_argument("--steps", type=int, default=None,
                   help=f"training steps per rate (default {DEMO_STEPS}; quick: {DEMO_QUICK_STEPS}): the same "
                        "numbers on an idle and a busy machine")
    m.add_argument("--budget", type=float, default=None,
                   help="seconds per rate, everything included, instead of a fixed step count (the result "
                        "then depends on the machine's speed and load)")
    m.add_argument("--quiet", action="store_true", help="no progress bars")


def run(a) -> int:
    demo(a.out, quick=a.quick, size=a.size, steps=a.steps, budget=a.budget, progress=not a.quiet)
    return 0
