"""Files written by an earlier codec still decode bit for bit (issue 25: the format does not change).

``tests/fixtures/*.hpz`` were written by the codec before it became a package
(``tests/fixtures/make_fixtures.py``, commit 3322854); ``manifest.json`` holds SHA-256 digests of
what that code decoded them to (state, float32 outputs, rendered pixels), of the bytes it wrote when
re-encoding or cropping them, its ``info`` reports, and what ``compress`` wrote for three seeded
runs with their reports. Everything runs on one thread (the codec's bit-exactness holds per
device and thread setting).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperproj import codec

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
SIGNAL_FILES = [name for name in MANIFEST["files"] if not name.startswith("mod_")]

sys.path.insert(0, str(FIXTURES))
from make_fixtures import compress_case, signal_outputs  # noqa: E402

sys.path.remove(str(FIXTURES))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes(name: str) -> bytes:
    data = (FIXTURES / f"{name}.hpz").read_bytes()
    assert sha(data) == MANIFEST["files"][name]["sha256"], f"{name}.hpz itself changed"
    return data


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("name", SIGNAL_FILES)
def test_fixture_decodes_bit_identically(name):
    entry = MANIFEST["files"][name]
    data = _bytes(name)
    model = codec.decompress(data)
    state = b"".join(t.detach().numpy().astype("<f4").tobytes() for t in model.state_dict().values()
                     if isinstance(t, torch.Tensor))
    assert sha(state) == entry["state_sha256"]
    image, out = signal_outputs(model)
    assert sha(out.astype("<f4").tobytes()) == entry["output_sha256"]
    if image is not None:
        assert sha(image.tobytes()) == entry["render_sha256"]
    assert json.loads(json.dumps(codec.info(data))) == entry["info"]
    if "encode" in entry:  # the encoder writes the same bytes for the same model
        args = entry["encode"]
        assert sha(codec.encode(model, **args)) == entry["reencoded_sha256"]


def test_fixture_crop_writes_the_same_bytes():
    source, box = MANIFEST["files"]["lg_crop"]["crop_of"]
    assert codec.crop(_bytes(source), box) == _bytes("lg_crop")


def test_fixture_modulation_files():
    from hyperproj.modulation import (
        decode_latents,
        encode_latents,
        load_base,
        render_file,
        save_base,
    )

    base_bytes, latents_bytes = _bytes("mod_base"), _bytes("mod_latents")
    entry = MANIFEST["files"]["mod_latents"]
    base = load_base(base_bytes)
    assert save_base(base) == base_bytes
    latents = decode_latents(latents_bytes, base)
    assert sha(latents.numpy().astype("<f4").tobytes()) == entry["latents_sha256"]
    assert sha(render_file(latents_bytes, base_bytes).tobytes()) == entry["render_sha256"]
    assert encode_latents(base, latents, step=0.3, shape=(4, 5)) == latents_bytes


@pytest.mark.parametrize("name", sorted(MANIFEST["compress"]))
def test_compress_writes_the_same_file_and_report(name):
    case = MANIFEST["compress"][name]
    res = compress_case(case["args"])
    report = json.loads(json.dumps({k: v for k, v in res.report.items() if k != "seconds"}))
    assert report == case["report"]
    assert sha(res.data) == case["sha256"]


def test_cli_decompresses_fixtures(tmp_path, capsys):
    from PIL import Image

    from hyperproj.cli import main

    out = tmp_path / "plain.png"
    assert main(["decompress", str(FIXTURES / "plain.hpz"), "-o", str(out)]) == 0
    assert sha(np.asarray(Image.open(out)).tobytes()) == MANIFEST["files"]["plain"]["render_sha256"]
    assert main(["info", str(FIXTURES / "lg_crop.hpz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == MANIFEST["files"]["lg_crop"]["info"]
    assert main(["decompress", str(FIXTURES / "mod_latents.hpz"), "--base", str(FIXTURES / "mod_base.hpz"),
                 "-o", str(tmp_path / "m.png")]) == 0
