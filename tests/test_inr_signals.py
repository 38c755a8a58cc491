"""Signals and metrics: coordinates, round trips, real files, inside test, marching cubes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _data import KODAK_DIR, astronaut_crop, audio_path, kodak_path, mesh_path
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperproj import HyperprojError
from hyperproj.inr import (
    AudioSignal,
    ImageSignal,
    OccupancySignal,
    Siren,
    _mesh,
    grid_coords,
    iou,
    psnr,
    ssim,
)


# ---------------------------------------------------------------- coordinates
@given(h=st.integers(1, 40), w=st.integers(1, 40))
@settings(max_examples=40, deadline=None)
def test_image_coords_keep_the_aspect_ratio(h, w):
    sig = ImageSignal(torch.zeros(h, w, 1))
    c = sig.coords.view(h, w, 2)
    assert sig.coords.dtype == torch.float32 and sig.coords.shape == (h * w, 2)
    longer = max(h, w)
    if longer > 1:
        step = 2 / (longer - 1)
        # Square pixels: the same step along both axes.
        if h > 1:
            torch.testing.assert_close(c[1:, :, 0] - c[:-1, :, 0], torch.full((h - 1, w), step))
        if w > 1:
            torch.testing.assert_close(c[:, 1:, 1] - c[:, :-1, 1], torch.full((h, w - 1), step))
        # Longer axis spans exactly [-1, 1]; the shorter one is centred and proportionally shorter.
        axis = 0 if h >= w else 1
        assert c[..., axis].min() == pytest.approx(-1) and c[..., axis].max() == pytest.approx(1)
        other = 1 - axis
        span = (min(h, w) - 1) * step
        assert float(c[..., other].max() - c[..., other].min()) == pytest.approx(span, abs=1e-6)
        assert float(c[..., other].mean()) == pytest.approx(0, abs=1e-6)
    # Row-major: values follow the same order as coords.
    assert sig.values.shape == (h * w, 1)


def test_grid_coords_3d():
    g = grid_coords((3, 3, 3))
    assert g.shape == (27, 3)
    assert g[0].tolist() == [-1, -1, -1] and g[-1].tolist() == [1, 1, 1] and g[1].tolist() == [-1, -1, 0]


# ---------------------------------------------------------------- images
def test_image_from_array_uint8_and_to_image_round_trip():
    import skimage.data

    arr = skimage.data.astronaut()[:50, :70]
    sig = ImageSignal.from_array(arr)
    assert sig.shape == (50, 70, 3) and sig.num_pixels == 3500
    assert 0.0 <= float(sig.values.min()) and float(sig.values.max()) <= 1.0
    back = np.array(sig.to_image(sig.values))
    np.testing.assert_array_equal(back, arr)
    gray = ImageSignal.from_array(skimage.data.camera()[:10, :12])
    assert gray.shape == (10, 12, 1) and gray.to_image(gray.values).mode == "L"


def test_image_from_file_and_errors(tmp_path):
    import skimage.data
    from PIL import Image

    path = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(path)
    sig = ImageSignal.from_file(path)
    assert sig.shape == (400, 600, 3)
    assert ImageSignal.from_file(path, mode="L").shape == (400, 600, 1)
    with pytest.raises(HyperprojError, match="no such file"):
        ImageSignal.from_file(tmp_path / "missing.png")
    with pytest.raises(HyperprojError, match=r"\[0, 1\]"):
        ImageSignal.from_array(np.full((2, 2), 3.0))
    with pytest.raises(HyperprojError, match="does not fit"):
        sig.crop(390, 0, 20, 20)


def test_kodak_file_when_available():
    path = kodak_path()
    if path is None:
        pytest.skip(f"Kodak PNGs not present in {KODAK_DIR} (set HYPERPROJ_KODAK)")
    sig = ImageSignal.from_file(path)
    assert sig.shape in ((512, 768, 3), (768, 512, 3))
    assert sig.coords[:, 1].abs().max() == pytest.approx(1.0)  # landscape: columns span [-1, 1]


def test_crop_resize_center_crop():
    sig = astronaut_crop(64)
    assert sig.shape == (64, 64, 3)
    assert sig.resize(32).shape == (32, 32, 3)
    assert sig.resize((16, 8)).shape == (16, 8, 3)
    assert sig.center_crop(10, 20).shape == (10, 20, 3)


def test_image_evaluate_perfect_and_quantized():
    sig = astronaut_crop(32)
    lookup = {tuple(c.tolist()): v for c, v in zip(sig.coords, sig.values)}

    class Oracle(torch.nn.Module):
        def forward(self, x):
            return torch.stack([lookup[tuple(c.tolist())] for c in x])

    res = sig.evaluate(Oracle())
    assert res["psnr"] == math.inf and res["ssim"] == pytest.approx(1.0)
    # Small errors vanish after 8-bit rounding, as they would in a saved PNG.
    class Near(Oracle):
        def forward(self, x):
            return super().forward(x) + 0.001

    assert sig.evaluate(Near())["psnr"] == math.inf


# ---------------------------------------------------------------- metrics
def test_psnr_ssim_iou_against_references():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((40, 50, 3))
    b = np.clip(a + rng.normal(scale=0.05, size=a.shape), 0, 1)
    assert psnr(torch.tensor(a), torch.tensor(b)) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1), abs=1e-6)
    ref = structural_similarity(
        a, b, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(torch.tensor(a), torch.tensor(b)) == pytest.approx(ref, abs=1e-4)
    assert iou(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 0])) == pytest.approx(1 / 3)
    with pytest.raises(HyperprojError, match="same shape"):
        psnr(torch.zeros(3), torch.zeros(4))


# ---------------------------------------------------------------- audio
def test_audio_real_clip_and_wav_round_trip(tmp_path):
    sig = AudioSignal.from_file(audio_path())
    assert sig.sample_rate == 48000 and sig.values.shape[1] == 1
    assert float(sig.values.abs().max()) == pytest.approx(1.0)
    assert sig.coords[0, 0] == -1 and sig.coords[-1, 0] == 1
    part = sig.crop(20000, 4096)
    assert part.num_samples == 4096 and part.scale == sig.scale
    out = part.to_wav(part.values, tmp_path / "x.wav")
    again = AudioSignal.from_file(out)
    assert again.num_samples == 4096
    # 16-bit round trip: within one quantisation step of the original samples.
    assert float((again.values * again.scale - part.values * part.scale).abs().max()) <= 1 / 32768 + 1e-7


def test_audio_synthetic_and_errors(tmp_path):
    t = np.linspace(0, 1, 2000)
    sig = AudioSignal(0.5 * np.sin(2 * np.pi * 5 * t), sample_rate=2000)
    assert sig.scale == pytest.approx(0.5, rel=1e-3)
    res = sig.evaluate(lambda x: torch.zeros(len(x), 1))
    assert res["snr"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(HyperprojError, match="no such file"):
        AudioSignal.from_file(tmp_path / "none.wav")
    with pytest.raises(HyperprojError, match="does not fit"):
        sig.crop(1990, 100)


# ---------------------------------------------------------------- meshes
def cube_mesh():
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = np.array([t for q in quads for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))])
    return v, f


def test_inside_cube_is_exact_even_on_aligned_grids():
    v, f = cube_mesh()
    v = v * 0.5
    assert _mesh.is_watertight(f)
    g = grid_coords((21, 21, 21)).double().numpy()  # grid points coincide with edges/vertices' xy
    got = _mesh.inside(v, f, g)
    want = np.all(np.abs(g) < 0.5 - 1e-9, axis=1)
    boundary = np.any(np.isclose(np.abs(g), 0.5), axis=1)
    np.testing.assert_array_equal(got[~boundary], want[~boundary])


def test_inside_agrees_across_ray_directions_on_real_mesh():
    v, f = _mesh.load_mesh(mesh_path("bunny00"))
    v = _mesh.normalize(v, 0.05)
    assert _mesh.is_watertight(f)
    pts = np.random.default_rng(0).uniform(-1, 1, (20000, 3))
    along_z = _mesh.inside(v, f, pts)
    along_x = _mesh.inside(v[:, [1, 2, 0]], f, pts[:, [1, 2, 0]])
    assert (along_z == along_x).mean() > 0.999
    assert 0.05 < along_z.mean() < 0.4


def test_occupancy_signal_sampling_reproducible_and_labels(tmp_path):
    path = mesh_path("elephant")
    a = OccupancySignal.from_mesh(path, num_points=4000, grid_resolution=16, seed=3)
    b = OccupancySignal.from_mesh(path, num_points=4000, grid_resolution=16, seed=3)
    c = OccupancySignal.from_mesh(path, num_points=4000, grid_resolution=16, seed=4)
    torch.testing.assert_close(a.coords, b.coords)
    assert not torch.equal(a.coords, c.coords)
    assert a.coords.shape == (4000, 3) and a.values.shape == (4000, 1)
    assert float(a.coords.abs().max()) <= 1.0
    assert 0.05 < float(a.values.mean()) < 0.6  # near-surface half is about half inside
    assert np.abs(a.vertices).max() == pytest.approx(0.95)
    # Perfect predictor of the grid gives IoU 1.
    truth = a.grid_occupancy()
    table = {tuple(p.tolist()): float(t) for p, t in zip(a.grid(), truth)}

    class Oracle(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[1.0 if table.get(tuple(p.tolist()), 0.0) else -1.0] for p in x])

    assert a.evaluate(Oracle())["iou"] == 1.0
    verts, faces = a.to_mesh(Oracle(), tmp_path / "m.ply")
    assert len(faces) > 100 and np.abs(verts).max() <= 1.0
    assert (tmp_path / "m.ply").read_bytes().startswith(b"ply\nformat binary_little_endian")
    a.to_mesh(Oracle(), tmp_path / "m.obj")
    assert (tmp_path / "m.obj").read_text().startswith("v ")
    with pytest.raises(HyperprojError, match="ply or .obj"):
        a.to_mesh(Oracle(), tmp_path / "m.stl")
    with pytest.raises(HyperprojError, match="never cross 0"):
        a.to_mesh(lambda x: -torch.ones(len(x), 1))


def test_occupancy_bad_arguments():
    v, f = cube_mesh()
    with pytest.raises(HyperprojError, match="num_points"):
        OccupancySignal(v, f, num_points=0)
    with pytest.raises(HyperprojError, match="grid_resolution"):
        OccupancySignal(v, f, grid_resolution=1)
    with pytest.raises(HyperprojError, match="not found"):
        OccupancySignal.from_mesh("/nonexistent/bunny.off")


def test_render_is_chunked_and_restores_training_mode():
    sig = astronaut_crop(32)
    net = Siren(2, 8, 1, 3)
    net.train()
    full = net(sig.coords).detach()
    torch.testing.assert_close(sig.render(net, chunk_size=100), full)
    assert net.training
