"""The .hpz codec: bit-exact round trips, the bpp guarantee, decoder fuzzing, version checks, CLI."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import time

import pytest
import torch

import hyperproj
from hyperproj import codec, rng
from hyperproj.codec import hypermodel, rate
from hyperproj.codec.format import read_container, write_container
from hyperproj.inr import ImageSignal, Siren


def _small_hyper(seed=0, n=120, kind="dense", ff=0, **kw):
    net = Siren(2, 16, 2, 3, fourier_features=ff)
    return hyperproj.reparametrize(net, n, seed, projection=kind, **kw)


@pytest.fixture(scope="module")
def astronaut():
    import skimage.data

    return ImageSignal.from_array(skimage.data.astronaut()).crop(180, 190, 64, 64).resize(32)


@pytest.fixture(scope="module")
def trained_file(astronaut):
    torch.manual_seed(0)
    res = codec.compress(astronaut, bpp=6.0, model=Siren(2, 16, 2, 3), steps=40, qat_steps=10,
                         lr=1e-3, progress=False, fit_options={"eval_every": 10})
    return res


def test_roundtrip_bit_exact_dense_and_streamed():
    x = torch.rand(257, 2) * 2 - 1
    for kind in ("dense", "streamed"):
        hyper = _small_hyper(kind=kind)
        with torch.no_grad():  # make biases non-trivial
            for _, p in hypermodel.untargeted(hyper):
                p.add_(torch.randn_like(p) * 0.1)
        for bits, bias_bits in ((8, 10), (6, "float16"), (12, 16)):
            blob = codec.encode(hyper, bits=bits, bias_bits=bias_bits)
            back = codec.decode(blob)
            q = codec.quantize(hyper, bits=bits, bias_bits=bias_bits)
            assert torch.equal(back(x), q(x)), (kind, bits, bias_bits)
            assert back.projection.kind == kind


@pytest.mark.parametrize("method", ["rans", "bzip2", "raw"])
def test_methods_roundtrip(method):
    hyper = _small_hyper(seed=5)
    blob = codec.encode(hyper, method=method)
    x = torch.rand(10, 2)
    assert torch.equal(codec.decode(blob)(x), codec.quantize(hyper)(x))
    assert codec.info(blob)["header"]["method"] == method


def test_stored_scales_for_data_dependent_init():
    net = Siren(2, 16, 1, 3)
    hyper = hyperproj.reparametrize(net, 50, 1, init="match")
    blob = codec.encode(hyper)
    assert codec.info(blob)["header"]["stored_scales"]
    x = torch.rand(9, 2)
    assert torch.equal(codec.decode(blob)(x), codec.quantize(hyper)(x))


def test_sine_biases_are_wrapped_into_one_period_before_rounding():
    """sin(ω(Wx + b)) is periodic in b: the file stores b moved into [-π/ω, π/ω), the same
    function at a finer step (a first-layer bias spread over many periods would otherwise waste
    the bias bits)."""
    hyper = hyperproj.reparametrize(Siren(2, 16, 1, 3), 60, 0, latent_scale="offset")
    period = 2 * torch.pi / 30.0
    with torch.no_grad():
        hyper.base.net[0].linear.bias.copy_(torch.linspace(-3, 3, 16))  # ~29 periods of spread
    x = torch.rand(200, 2) * 2 - 1
    decoded = codec.decode(codec.encode(hyper, bits=16, bias_bits=16))
    first = decoded.base.net[0].linear.bias
    assert first.abs().max() <= period / 2 + 1e-6
    torch.testing.assert_close(decoded(x), hyper(x), atol=2e-4, rtol=0)
    # at 10 bits the wrapped bias is rounded ~29x more finely than the raw range would allow
    err_wrapped = (codec.quantize(hyper, bias_bits=10)(x) - hyper(x)).abs().max()
    assert err_wrapped < 0.002  # 0.008 without the wrap
    # the output's last layer has no sine: its bias is not wrapped
    assert hypermodel._bias_period(hyper, "base.net.2.bias") is None


def test_compress_file_decompress_bit_exact_and_bpp_guarantee(trained_file, astronaut, tmp_path):
    res = trained_file
    assert res.report["bpp"] <= 6.0
    assert len(res.data) <= res.report["budget_bytes"] == int(6.0 * 32 * 32) // 8
    path = res.save(tmp_path / "a.hpz")
    back = codec.decompress(path)
    assert torch.equal(back(astronaut.coords), res.model(astronaut.coords))
    assert codec.render(back).size == (32, 32)
    assert res.report["psnr"] == pytest.approx(astronaut.evaluate(back)["psnr"])
    assert res.report["psnr"] > 10


def test_bpp_guarantee_tight_budget(astronaut):
    # a budget where the entropy estimate is tight: the loop must still end under budget
    res = codec.compress(astronaut, bpp=4.0, model=Siren(2, 16, 2, 3), steps=5, qat_steps=0,
                         progress=False, fit_options={"eval_every": 5})
    assert res.report["bpp"] <= 4.0
    assert len(res.data) <= 4.0 * 32 * 32 / 8


def test_compress_defaults_pick_the_latent_parameterisation_by_share(astronaut):
    # offset when n >= 30 % of the weights (it learns faster), unit below (W0 cannot be cancelled)
    big = codec.compress(astronaut, bpp=16.0, model=Siren(2, 16, 2, 3), steps=3, qat_steps=0, progress=False)
    small = codec.compress(astronaut, bpp=3.0, model=Siren(2, 16, 2, 3), steps=3, qat_steps=0, progress=False)
    weights = 2 * 16 + 2 * 16 * 16 + 16 * 3
    assert big.report["steps"] == small.report["steps"] == 3  # no re-plan: one fit of 3 steps each
    assert big.report["latent_dim"] >= 0.3 * weights and big.model.latent_scale == "offset"
    assert small.report["latent_dim"] < 0.3 * weights and small.model.latent_scale == "unit"
    assert codec.default_model(astronaut).config["fourier_features"] == 0


def test_compress_time_budget_bounds_training(astronaut):
    # 4 s: on a slow CI machine setting up took 0.7 s and the reserved evaluations 1 s, so a
    # 2 s budget was (rightly) refused as too small to train
    res = codec.compress(astronaut, bpp=8.0, model=Siren(2, 16, 2, 3), time_budget=4.0, progress=False)
    assert res.report["bpp"] <= 8.0 and res.report["psnr"] > 12
    assert res.report["seconds"] < 30  # the clock, not the 10**7-step cap, ended training
    assert 0 < res.report["steps"] < 10**7


@pytest.mark.parametrize("budget", [4.0, 8.0])
def test_compress_time_budget_holds_on_the_wall_clock(astronaut, budget):
    # issue 24: the whole call, kernel compilation and evaluations included, ends within
    # budget + max(1 s, 3 %); a fresh process would compile the sine kernels (5-40 s) on its first
    # step, which fit does not start under a budget this short. The first optimizer a process builds
    # imports torch._dynamo (2-5 s, counted by the budget, so alone in a fresh process a 4 s budget
    # is rightly refused as too small): built here first, so the test does not depend on its order
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    tic = time.perf_counter()
    res = codec.compress(astronaut, bpp=8.0, time_budget=budget, progress=False)
    wall = time.perf_counter() - tic
    assert wall <= budget + max(1.0, 0.03 * budget), wall
    assert res.report["seconds"] <= wall and res.report["steps"] > 0


@pytest.mark.parametrize("bad", [0, -3, 0.0, float("nan"), float("inf"), True, "10"])
def test_compress_refuses_a_time_budget_that_is_not_a_positive_number(astronaut, bad):
    with pytest.raises(hyperproj.HyperprojError, match="time_budget must be a positive number of seconds"):
        codec.compress(astronaut, bpp=8.0, time_budget=bad, progress=False)


def test_compress_says_when_a_time_budget_is_too_small_to_train(astronaut):
    tic = time.perf_counter()
    with pytest.raises(hyperproj.HyperprojError, match=r"time_budget=0.001 s is too small to train"):
        codec.compress(astronaut, bpp=8.0, time_budget=0.001, progress=False)
    assert time.perf_counter() - tic < 5  # refused before any training


def test_cli_refuses_a_bad_time_budget(tmp_path, capsys):
    import skimage.data
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(skimage.data.astronaut()[:32, :32]).save(src)
    from hyperproj.cli import main

    assert main(["compress", str(src), "--time-budget", "-3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "time_budget must be a positive number of seconds" in err[0], err
    assert not (tmp_path / "a.hpz").exists()


@pytest.mark.slow
def test_no_rate_collapses_in_a_sweep():
    # issue 24: compress's model widens with the rate (9 x 40 up to 9 x 64 here) and at a fixed lr
    # of 1e-3 the wide ones collapsed to a flat image (kodim05 at 0.5 bpp: 13.8 dB, at 0.3: 21.8).
    # The default learning rate now falls with width x depth; PSNR must rise with the rate.
    import skimage.data

    sig = ImageSignal.from_array(skimage.data.coffee()).center_crop(400).resize(96)
    rows = []
    for bpp in (2.0, 4.0, 8.0, 16.0, 32.0):
        res = codec.compress(sig, bpp=bpp, steps=250, progress=False, fit_options={"eval_every": 50})
        rows.append((bpp, res.report["bpp"], res.report["psnr"], res.model.base.config["hidden_features"]))
    assert rows[-1][3] >= 56, rows  # the sweep reaches the widths that used to collapse
    for (bpp, real, psnr, _), (_, _, nxt, _) in zip(rows, rows[1:] + [(0, 0, math.inf, 0)]):
        assert real <= bpp
        assert nxt >= psnr - 0.2, rows
    assert rows[-1][2] >= rows[0][2] + 3, rows


def test_over_budget_without_time_left_codes_one_bit_coarser(astronaut, monkeypatch):
    # A latent a few % too large for the budget, and (forced) no time left to fine-tune a smaller
    # one: the trained latent is coded with 7 bits instead of being re-planned from a warm start.
    model = Siren(2, 16, 2, 3)
    fits = codec.compress(astronaut, bpp=4.0, model=model, steps=60, progress=False)
    n = int(fits.report["latent_dim"] * 1.06)
    monkeypatch.setattr(rate, "_REPLAN_MIN_TIME_SHARE", 1.0)
    res = codec.compress(astronaut, bpp=4.0, model=model, latent_dim=n, steps=60, time_budget=60.0,
                         progress=False)
    first, second = res.report["attempts"]
    assert first["bits"] == 8 and first["bytes"] > res.report["budget_bytes"]
    assert second == {"latent_dim": n, "bits": 7, "bytes": len(res.data)}
    assert res.report["bits"] == 7 and res.report["latent_dim"] == n
    assert len(res.data) <= res.report["budget_bytes"]
    assert codec.info(res.data)["header"]["bits"] == 7
    # rounding one bit coarser costs little next to the float model it came from
    assert res.report["psnr"] > res.report["unquantized"]["psnr"] - 1.5


def test_budget_too_small_is_a_clear_error(astronaut):
    with pytest.raises(hyperproj.HyperprojError, match="cannot hold even the header"):
        codec.compress(astronaut, bpp=0.01, steps=1, progress=False)


def test_info_breakdown(trained_file):
    rep = codec.info(trained_file.data)
    assert rep["bytes"] == len(trained_file.data)
    assert rep["header_bytes"] + rep["range_bytes"] + rep["latent_bytes"] + rep["param_bytes"] == rep["bytes"]
    assert rep["latent_count"] == trained_file.report["latent_dim"]
    assert rep["header"]["signal"] == {"i": [32, 32, 3]}
    # rans is never worse than raw packing + its 1-byte model id
    assert rep["latent_bytes"] <= rep["raw_bytes"]["latent"] + 1


def test_decoder_fuzz_only_hyperproj_errors(trained_file):
    data = trained_file.data
    r = random.Random(0)
    cases = [data[:k] for k in range(0, len(data), max(1, len(data) // 40))]
    for _ in range(60):
        b = bytearray(data)
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
        cases.append(bytes(b))
    cases += [b"", b"HPZ", data + b"\x00", b"\x00" * 50]
    for case in cases:
        with pytest.raises(hyperproj.HyperprojError):
            codec.decode(case)


def _rewrite(data: bytes, **changes) -> bytes:
    header, sections = read_container(data)
    header.update(changes)
    return write_container(header, sections)


def test_foreign_generator_version_refused(trained_file):
    bad = _rewrite(trained_file.data, g=rng.GENERATOR_VERSION + 1)
    with pytest.raises(hyperproj.HyperprojError, match="generator version"):
        codec.decode(bad)


def test_foreign_projection_kind_refused(trained_file):
    pytest.importorskip("hyperproj._fastfood")
    # same header, but claims fastfood: the regenerated B has another fingerprint
    bad = _rewrite(trained_file.data, p="fastfood")
    with pytest.raises(hyperproj.HyperprojError, match="fingerprint of B does not match"):
        codec.decode(bad)


def test_unknown_projection_kind_refused(trained_file):
    bad = _rewrite(trained_file.data, p="quantum")
    with pytest.raises(hyperproj.HyperprojError, match="projection kind 'quantum'"):
        codec.decode(bad)


def test_different_generator_implementation_refused(trained_file, monkeypatch):
    from hyperproj.projection import Projection

    real = Projection.fingerprint
    monkeypatch.setattr(Projection, "fingerprint", lambda self, count=4: [v + 1e-3 for v in real(self, count)])
    with pytest.raises(hyperproj.HyperprojError, match="fingerprint"):
        codec.decode(trained_file.data)


def test_cli_roundtrip_and_errors(trained_file, tmp_path, capsys):
    from hyperproj.cli import main

    path = trained_file.save(tmp_path / "x.hpz")
    assert main(["info", str(path)]) == 0
    assert "rate breakdown" in capsys.readouterr().out
    out_png = tmp_path / "x_dec.png"
    assert main(["decompress", str(path), "-o", str(out_png)]) == 0
    assert out_png.is_file()
    capsys.readouterr()
    bad = tmp_path / "bad.hpz"
    bad.write_bytes(path.read_bytes()[:-3])
    assert main(["decompress", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hyperproj: error:") and err.count("\n") == 1 and "CRC32" in err
    assert main(["compress", str(tmp_path / "nope.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["bogus"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("command", ["compress", "decompress", "crop"])
def test_cli_missing_output_folder_is_one_line_before_any_work(command, trained_file, tmp_path, capsys,
                                                              monkeypatch):
    import numpy as np
    from PIL import Image

    from hyperproj.cli import main

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output folder was checked")

    for name in ("compress", "decompress", "crop", "decode"):
        monkeypatch.setattr(codec, name, no_work)
    if command == "compress":
        src = tmp_path / "p.png"
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
        extra = []
    else:
        src = trained_file.save(tmp_path / "x.hpz")
        extra = ["--box", "0", "0", "1", "1"] if command == "crop" else []
    missing = tmp_path / "x" / "y"
    assert main([command, str(src), *extra, "-o", str(missing / "out.bin")]) == 2
    err = capsys.readouterr().err
    assert err == f"hyperproj: error: output folder {str(missing)!r} does not exist\n"
    assert not missing.exists()


def test_cli_every_argument_has_help():
    import argparse

    from hyperproj.cli import _parser

    parser = _parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subs) == 1
    commands = subs[0].choices
    assert {"compress", "decompress", "info", "crop", "demo"} <= set(commands)
    choice_help = {c.dest: c.help for c in subs[0]._choices_actions}
    missing = [name for name in commands if not choice_help.get(name)]
    for prog, p in [("hyperproj", parser), *commands.items()]:
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (isinstance(action.help, str) and action.help.strip()):
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


@pytest.mark.slow
def test_cli_compress_subprocess(tmp_path):
    import numpy as np
    import skimage.data
    from PIL import Image

    img = skimage.data.astronaut()[100:124, 200:224]
    Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / "p.png")
    out = tmp_path / "p.hpz"
    cmd = [sys.executable, "-m", "hyperproj", "compress", str(tmp_path / "p.png"), "-o", str(out),
           "--bpp", "8", "--steps", "5", "--qat-steps", "0", "--quiet",
           "--model", '{"name": "siren", "config": {"in_features": 2, "hidden_features": 8, "hidden_layers": 1, "out_features": 3}}']
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size <= 8 * 24 * 24 / 8
    done = subprocess.run([sys.executable, "-m", "hyperproj", "info", str(tmp_path / "p.png")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("kind", ["dense", "fastfood"])
def test_offset_parameterisation_roundtrip(kind):
    hyper = _small_hyper(seed=3, kind=kind, latent_scale="offset")
    with torch.no_grad():
        hyper.latent.normal_(0, 0.1)
    blob = codec.encode(hyper)
    back = codec.decode(blob)
    assert back.latent_scale == "offset"
    x = torch.rand(33, 2) * 2 - 1
    assert torch.equal(back(x), codec.quantize(hyper)(x))


def test_clock_latent_cap_keeps_the_plan_when_the_clock_allows_it():
    from hyperproj.codec import train

    sig = ImageSignal(torch.rand(16, 16, 3))
    make = lambda n: Siren(2, max(8, n // 40), 1, 3)  # noqa: E731 - wider for a larger latent
    assert train.clock_latent_cap(make, 4000, 100, sig, None) == (4000, None)  # no clock: no timing
    assert train.clock_latent_cap(make, 90, 100, sig, 1e-9) == (90, None)  # the base network: never capped
    n, steps = train.clock_latent_cap(make, 4000, 100, sig, 1e6)
    assert n == 4000 and steps > train.MIN_CLOCK_STEPS
    n, steps = train.clock_latent_cap(make, 4000, 100, sig, 1e-6)
    assert n == 100 and steps < train.MIN_CLOCK_STEPS  # down to the floor, never under it


def test_a_clock_too_short_for_a_widened_network_plans_a_narrower_one(monkeypatch):
    # issue 24: at a high rate the plan widens the SIREN; a short clock gave that wide network a
    # few hundred steps and a worse picture than a lower rate (kodim01, 120 s: 24.19 dB at 1 bpp,
    # 21.05 at 2 bpp after 231 steps). Step costs are pinned here so that the test does not hang
    # on this machine's load.
    import skimage.data

    from hyperproj.codec import train

    sig = ImageSignal.from_array(skimage.data.coffee()).center_crop(300).resize(96)
    monkeypatch.setattr(train, "step_seconds", lambda net, signal: 1e-6)  # a fast machine: as planned
    wide = codec.compress(sig, bpp=16.0, time_budget=8.0, progress=False)
    assert "clock_cap" not in wide.report and wide.model.base.config["hidden_features"] > 40
    monkeypatch.setattr(train, "step_seconds", lambda net, signal: 0.5)  # 500 steps would need > 4 min
    capped = codec.compress(sig, bpp=16.0, time_budget=8.0, progress=False)
    cap = capped.report["clock_cap"]
    assert cap["latent"] < cap["planned_latent"] and cap["estimated_steps"] < 500
    assert capped.report["latent_dim"] < wide.report["latent_dim"]
    assert capped.model.base.config["hidden_features"] == 40 and capped.report["latent_dim"] <= cap["latent"]
    assert capped.report["bpp"] <= 16.0


@pytest.mark.slow
def test_demo_quick_rises_with_rate_and_the_default_family_wins(tmp_path, one_thread, capsys):
    # the README's main job at --quick (the real image and rates, 300 steps a file): before the
    # shrink towards the ARM's predictions and the finest level from 1 bpp, the default route fell
    # from 26.32 dB at 1 bpp to 25.98 at 2 bpp (the D'OH family there), and a 0.3 bpp grid file
    # 6 % over budget decoded at 13.6 dB
    from hyperproj.cli._demo import demo

    rows = demo(tmp_path, quick=True, progress=False)
    auto = [r for r in rows if r["route"] == "auto"]
    assert [r["target_bpp"] for r in auto] == [0.5, 1.0, 2.0]
    assert all(r["bpp"] <= r["target_bpp"] and r["psnr"] > 20.0 for r in rows)  # no file over, none collapsed
    assert all(b["psnr"] >= a["psnr"] - 0.2 for a, b in zip(auto, auto[1:]))  # no rate below its neighbour
    for r in (r for r in auto if r["family"] != "doh"):  # another family chosen: not below the D'OH route
        doh = next(d for d in rows if d["route"] == "doh" and d["target_bpp"] == r["target_bpp"])
        assert r["psnr"] >= doh["psnr"] - 0.2
    assert "astronaut 256x256, 300 training steps per file" in capsys.readouterr().out


def test_demo_shows_the_default_choice_and_the_doh_route_beside_it(tmp_path, monkeypatch, capsys):
    from hyperproj.cli._demo import demo
    from hyperproj.codec import _auto

    monkeypatch.setattr(_auto, "AUTO_GRID_MIN_PIXELS", 1)  # a small image takes the grid family at 0.5 and 1 bpp
    rows = demo(tmp_path, size=128, steps=3, progress=False)
    assert [(r["target_bpp"], r["route"], r["family"]) for r in rows] == [
        (0.5, "auto", "grid"), (0.5, "doh", "doh"), (1.0, "auto", "grid"), (1.0, "doh", "doh"),
        (2.0, "auto", "grid"), (2.0, "doh", "doh")]
    assert all(r["bpp"] <= r["target_bpp"] for r in rows)
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + len(rows)
    assert {r["file"] for r in rows} == {p.name for p in tmp_path.glob("*.hpz")}
    table = capsys.readouterr().out
    assert table.count(" grid ") == 3 and table.count(" doh ") == 3
