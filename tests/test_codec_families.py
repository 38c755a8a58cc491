"""A model family registered from outside hyperproj runs through compress, decompress and the CLI.

The toy family stores one colour (the image's mean, float16) and rebuilds a model that paints it
everywhere: nothing in ``compress``, ``decompress``, ``info`` or the CLI knows about it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import hyperproj
from hyperproj import codec
from hyperproj.codec import Family, register_family
from hyperproj.codec.signals import signal_meta


class Paint(nn.Module):
    """One colour at every coordinate."""

    def __init__(self, color: torch.Tensor):
        super().__init__()
        self.register_buffer("color", color.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.color.expand(x.shape[0], -1)


@register_family("test-constant", replace=True)
class ConstantImage(Family):
    """Stores an image's mean colour as float16: a few bytes at any size."""

    def build(self, previous=None):
        return Paint(torch.zeros(self.job.signal.values.shape[1]))

    def train(self, net):
        net.color.copy_(self.job.signal.values.mean(0))

    def store(self, net):
        color = net.color.numpy().astype("<f2").tobytes()
        return {"x": signal_meta(self.job.signal)}, {"c": color}, 2

    def report(self, net, data):
        return {"color": [round(v, 3) for v in net.color.tolist()]}

    @classmethod
    def rebuild(cls, header, sections):
        return Paint(torch.from_numpy(np.frombuffer(sections["c"], "<f2").astype(np.float32)))


@pytest.fixture(scope="module")
def image():
    from hyperproj.inr import ImageSignal

    torch.manual_seed(0)
    return ImageSignal(torch.rand(12, 10, 3))


def test_toy_family_round_trips_through_compress_and_decompress(image):
    assert "test-constant" in codec.family_names()
    res = codec.compress(image, bpp=8.0, family="test-constant", progress=False)
    assert len(res.data) <= res.report["budget_bytes"] == 120
    assert res.report["attempts"] == [{"bytes": len(res.data)}] and res.report["steps"] == 0
    header, sections = codec.format.read_container(res.data)
    assert header == {"F": "test-constant", "x": {"i": [12, 10, 3]}} and set(sections) == {"c"}
    back = codec.decompress(res.data)
    assert isinstance(back, Paint) and back.hpz_signal == {"i": [12, 10, 3]}
    mean = image.values.mean(0).half().float()
    assert torch.equal(back.color, mean)
    pixels = np.asarray(codec.render(back))
    assert pixels.shape == (12, 10, 3) and (pixels == pixels[0, 0]).all()
    assert res.report["psnr"] == pytest.approx(image.evaluate(back)["psnr"])
    rep = codec.info(res.data)
    assert rep["family"] == "test-constant" and rep["section_bytes"] == {"c": 6}


def test_toy_family_over_budget_is_a_clear_error(image):
    with pytest.raises(hyperproj.HyperprojError, match="'test-constant' family's file is .* over the budget"):
        codec.compress(image, bpp=0.1, family="test-constant", progress=False)


def test_unknown_families_are_refused(image):
    with pytest.raises(hyperproj.HyperprojError, match="unknown model family 'nope'"):
        codec.compress(image, bpp=2.0, family="nope", progress=False)
    blob = codec.format.write_container({"F": "nope"}, {}, version=2)
    with pytest.raises(hyperproj.HyperprojError, match="model family 'nope', which this hyperproj does not have"):
        codec.decompress(blob)
    with pytest.raises(hyperproj.HyperprojError, match="name 'doh' is taken"):
        register_family("doh")(ConstantImage)


def test_toy_family_through_the_cli(image, tmp_path, capsys):
    from PIL import Image

    from hyperproj.cli import main

    src = tmp_path / "flat.png"
    image.to_image(image.values).save(src)
    out = tmp_path / "flat.hpz"
    assert main(["compress", str(src), "--bpp", "8", "--family", "test-constant", "--quiet", "-o", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{out}: ") and "PSNR" in line and "latent" not in line
    assert main(["decompress", str(out), "-o", str(tmp_path / "flat_dec.png")]) == 0
    pixels = np.asarray(Image.open(tmp_path / "flat_dec.png"))
    assert pixels.shape == (12, 10, 3) and (pixels == pixels[0, 0]).all()
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "test-constant"
    assert main(["compress", str(src), "--family", "nope", "--quiet", "-o", str(out)]) == 2
    assert "unknown model family 'nope'" in capsys.readouterr().err
