"""Compressing a collection: compress_many, the CLI over many inputs, resuming, torchrun sharding."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hyperproj
from hyperproj import HyperprojError
from hyperproj.cli import main
from hyperproj.codec.collection import MANIFEST, expand_inputs, read_signal

STEPS = 25
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Four real 32 px photos (skimage) and nothing else."""
    import skimage.data
    from PIL import Image

    d = tmp_path_factory.mktemp("imgs")
    for name, arr in [("astronaut", skimage.data.astronaut()), ("chelsea", skimage.data.chelsea()),
                      ("coffee", skimage.data.coffee()), ("rocket", skimage.data.rocket())]:
        Image.fromarray(arr).resize((32, 32)).save(d / f"{name}.png")
    return d


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperproj", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def test_expand_inputs_files_folders_globs(images, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    got = expand_inputs([images / "chelsea.png", images, str(images / "c*.png")])
    assert [p.name for p in got] == ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"]
    with pytest.raises(HyperprojError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.png")])
    with pytest.raises(HyperprojError, match="is not a file, a folder"):
        expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(HyperprojError, match="no image or .wav file"):
        expand_inputs([tmp_path])


def test_two_inputs_one_output_name_refused_before_work(images, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "coffee.png").write_bytes((images / "coffee.png").read_bytes())
    with pytest.raises(HyperprojError, match="would both be written to"):
        hyperproj.compress_many([images / "coffee.png", tmp_path / "sub" / "coffee.png"], tmp_path / "out", steps=5)
    assert not (tmp_path / "out").exists()


def test_bad_input_is_recorded_and_the_others_are_encoded(images, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("astronaut.png", "coffee.png"):
        (src / name).write_bytes((images / name).read_bytes())
    (src / "broken.png").write_bytes(b"not an image at all")
    from PIL import Image

    Image.open(images / "rocket.png").resize((8, 8)).save(src / "tiny.png")  # too small for its budget
    res = hyperproj.compress_many(src, tmp_path / "out", bpp=8.0, steps=STEPS, progress=False,
                                  baselines=("JPEG", "WEBP"), resize=None)
    by_name = {Path(r["input"]).name: r for r in res.records}
    assert by_name["broken.png"]["status"] == "failed"
    assert "broken.png" in by_name["broken.png"]["error"] and "as an image" in by_name["broken.png"]["error"]
    assert by_name["tiny.png"]["status"] == "failed" and "cannot hold" in by_name["tiny.png"]["error"]
    assert res.failed == 2
    for name in ("astronaut.png", "coffee.png"):
        rec = by_name[name]
        assert rec["status"] == "ok", rec
        data = Path(rec["output"]).read_bytes()
        assert rec["bytes"] == len(data) and rec["bpp"] <= 8.0
        decoded = hyperproj.decompress(data)  # an ordinary .hpz
        assert decoded.hpz_signal["i"] == [32, 32, 3]
        measured = read_signal(rec["input"]).evaluate(decoded)  # the record is the decoded file's
        assert rec["psnr"] == pytest.approx(measured["psnr"], abs=1e-6) and 0 < rec["ssim"] <= 1
        assert set(rec["baselines"]) == {"JPEG", "WEBP"}
    assert [Path(r["input"]).name for r in manifest(tmp_path / "out")] == sorted(by_name)
    assert not list((tmp_path / "out").glob("manifest.rank*"))
    table = res.table()
    assert "2 encoded" in table and "2 failed" in table and "WEBP" in table


def test_resume_skips_valid_files_and_redoes_the_rest(images, tmp_path):
    out = tmp_path / "out"
    first = hyperproj.compress_many(images, out, bpp=8.0, steps=STEPS, progress=False)
    assert first.failed == 0 and not any(r.get("resumed") for r in first.records)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.hpz")}
    # one file lost, one damaged: exactly those two are redone
    (out / "chelsea.hpz").unlink()
    data = bytearray((out / "coffee.hpz").read_bytes())
    data[-7] ^= 0xFF
    (out / "coffee.hpz").write_bytes(bytes(data))
    second = hyperproj.compress_many(images, out, bpp=8.0, steps=STEPS, progress=False)
    resumed = {Path(r["input"]).name: bool(r.get("resumed")) for r in second.records}
    assert resumed == {"astronaut.png": True, "chelsea.png": False, "coffee.png": False, "rocket.png": True}
    assert (out / "astronaut.hpz").stat().st_mtime_ns == stamps["astronaut.hpz"]
    hyperproj.decompress(out / "coffee.hpz")  # rewritten whole
    # the same file and record as the first run (seeded, fixed steps)
    assert [r["bytes"] for r in second.records] == [r["bytes"] for r in first.records]
    # other settings: everything is redone
    third = hyperproj.compress_many(images, out, bpp=6.0, steps=STEPS, progress=False)
    assert not any(r.get("resumed") for r in third.records)
    assert all(r["bpp"] <= 6.0 for r in manifest(out))
    assert len(manifest(out)) == 4


def test_cli_collection_exit_status_counts_failures(images, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes((images / "astronaut.png").read_bytes())
    (src / "b.png").write_bytes(b"\x89PNG broken")
    (src / "c.png").write_bytes(b"")
    status = main(["compress", str(src), "-o", str(tmp_path / "out"), "--bpp", "8", "--steps", str(STEPS), "--quiet"])
    text = capsys.readouterr().out
    assert status == 2, text  # two inputs failed
    assert "failed:" in text and "b.png" in text and "1 encoded" in text
    assert main(["compress", str(src / "a.png"), str(images / "coffee.png"), "--steps", "5"]) == 2
    assert "needs -o OUTPUT_FOLDER" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_with_nothing_encoded_twice_or_lost(images, tmp_path):
    out = tmp_path / "out"
    args = ["compress", str(images), "-o", str(out), "--bpp", "8", "--steps", "300", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "hyperproj", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and not list(out.glob("*.hpz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no clean-up at all: as if the machine died
    proc.wait()
    finished = {p.name for p in out.glob("*.hpz")}
    assert 1 <= len(finished) < 4, finished
    part = [json.loads(line) for line in (out / "manifest.rank0.jsonl").read_text().splitlines() if line.strip()]
    assert {Path(r["output"]).name for r in part} == finished  # a record for every finished file
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    records = manifest(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert {Path(r["output"]).name for r in records if not r.get("resumed")} | finished == {p.name for p in out.glob("*.hpz")}
    for name, stamp in stamps.items():  # nothing encoded twice
        assert (out / name).stat().st_mtime_ns == stamp
    assert not list(out.glob(".*.tmp")) or all(p.name.startswith(".") for p in out.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_torchrun_two_processes_match_one_process_byte_for_byte(images, tmp_path):
    common = ["compress", str(images), "--bpp", "8", "--steps", str(STEPS), "--quiet"]
    one = run_cli(*common, "-o", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "hyperproj",
         *common, "-o", str(tmp_path / "two")], capture_output=True, text=True, env=ENV, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    records = manifest(tmp_path / "two")
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert sorted(r["rank"] for r in records) == [0, 0, 1, 1]  # every input encoded once, shared out
    assert "4 encoded" in two.stdout and two.stdout.count("manifest:") == 1  # rank 0 prints the table
    for rec in records:
        name = Path(rec["output"]).name
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


# ---------------------------------------------------------------- many signals in one process
def _plans(n: int, **options):
    from hyperproj.inr import Siren

    with torch.random.fork_rng(devices=[]):  # the starting biases: the same draw on every run
        torch.manual_seed(0)
        return [hyperproj.reparametrize(Siren(2, 12, 2, 3), 120, seed=3, latent_scale="offset", **options)
                for _ in range(n)]


@pytest.mark.parametrize("projection", ["dense", "fastfood"])
def test_latent_batch_runs_every_model_and_trains_each_as_alone(projection):
    from hyperproj.codec.batch import LatentBatch, fit_together
    from hyperproj.inr import ImageSignal, fit

    gen = torch.Generator().manual_seed(0)
    signals = [ImageSignal(torch.rand(12, 12, 3, generator=gen)) for _ in range(3)]
    alone = _plans(3, projection=projection)  # each with its own random starting biases
    together = [copy.deepcopy(h) for h in alone]
    starts = [{n: p.detach().clone() for n, p in h.named_parameters()} for h in alone]
    x = signals[0].coords
    out = LatentBatch(together)(x)
    for k, hyper in enumerate(together):
        torch.testing.assert_close(out[:, 3 * k:3 * k + 3], hyper(x), atol=1e-6, rtol=1e-5)
    opts = dict(progress=False, restore_best=False, warmup=0, eval_every=1000)
    for hyper, sig in zip(alone, signals):  # WeightSpaceAdam's Euclidean projection, as compress trains
        fit(hyper, sig, 15, lr=2e-3, optimizer_kwargs={"metric": "euclidean"}, **opts)
    fit_together(together, signals, 15, lr=2e-3, **opts)
    for a, b, start in zip(alone, together, starts):
        # the same trajectory up to float rounding (batched against single matrix products, which
        # Adam's normalised steps amplify a little): within 2 % of the distance training moved
        for name, p in a.named_parameters():
            q, p0 = dict(b.named_parameters())[name], start[name]
            assert float((p - q).norm()) <= 0.02 * float((p - p0).norm()) + 1e-7, name


def test_latent_batch_refuses_models_of_different_plans():
    from hyperproj.codec.batch import LatentBatch
    from hyperproj.inr import Siren

    other = hyperproj.reparametrize(Siren(2, 12, 2, 3), 120, seed=4, latent_scale="offset")
    with pytest.raises(HyperprojError, match="another plan than HyperModel 0"):
        LatentBatch([*_plans(1), other])


def test_compress_many_trains_same_sized_images_together(images, tmp_path):
    res = hyperproj.compress_many(images, tmp_path / "out", bpp=8.0, steps=STEPS, progress=False, batch=3)
    assert res.failed == 0
    assert [r.get("batch") for r in res.records] == [3, 3, 3, None]  # 4 images: a batch of 3, then one
    single = hyperproj.compress_many(images, tmp_path / "single", bpp=8.0, steps=STEPS, progress=False)
    for rec, ref in zip(res.records, single.records):
        decoded = hyperproj.decompress(rec["output"])
        assert rec["bpp"] <= 8.0
        assert rec["psnr"] == pytest.approx(read_signal(rec["input"]).evaluate(decoded)["psnr"], abs=1e-6)
        assert abs(rec["psnr"] - ref["psnr"]) < 1.0, (rec, ref)  # trained together ~ trained alone
