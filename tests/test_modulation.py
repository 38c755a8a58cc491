"""hyperproj.modulation: gated/shift SIRENs, Meta-SGD inner loop, meta-training, latent files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperproj
from hyperproj import HyperModel, HyperprojError
from hyperproj.codec.format import read_container, write_container
from hyperproj.inr import grid_coords
from hyperproj.modulation import (
    GatedSiren,
    ShiftSiren,
    base_hash,
    build_modulated,
    calibrate_inner_lr,
    cut_patches,
    decode_latents,
    encode_latents,
    fit_entropy_model,
    fit_latents,
    inner_loop,
    install_photos,
    load_base,
    meta_train,
    modulated_of,
    patch_pool,
    per_signal_mse,
    quantize_latents,
    render_latents,
    save_base,
    training_photos,
)

torch.set_num_threads(1)
COORDS = grid_coords((32, 32))


def small(kind: str, d: int = 12, **kw) -> ShiftSiren | GatedSiren:
    torch.manual_seed(0)
    if kind == "shift":
        return ShiftSiren(d, hidden_features=16, hidden_layers=2, **kw)
    return GatedSiren(d, hidden_features=16, hidden_layers=2, rank=3, hyper_width=24, **kw)


@pytest.fixture(scope="module")
def real_patches() -> torch.Tensor:
    """32×32 patches of scikit-image's photos (real data), as (P, 1024, 3)."""
    photos = training_photos(max_side=256, include_debs=False)
    pool = patch_pool(photos, 32, count=48, seed=1)
    return torch.from_numpy(rearrange(pool, "p h w c -> p (h w) c"))


# ---------------------------------------------------------------- gates
def test_gate_shapes_range_and_rank():
    net = GatedSiren(20, hidden_features=24, hidden_layers=3, rank=4, hyper_width=32)
    z = torch.randn(5, 20)
    factors = net.factors(z)
    gates = net.gates(z)
    assert len(factors) == len(gates) == 3
    for (u, v), g in zip(factors, gates):
        assert u.shape == v.shape == (5, 24, 4)
        assert g.shape == (5, 24, 24)
        assert bool(((g > 0) & (g < 1)).all())
        logits = torch.logit(g.double())
        assert torch.allclose(logits, (u @ v.transpose(-1, -2)).double(), atol=1e-4)
        assert [int(torch.linalg.matrix_rank(x)) for x in u.double() @ v.double().transpose(-1, -2)] == [4] * 5


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(2, 12),
    layers=st.integers(1, 3),
    rank=st.integers(1, 4),
    batch=st.integers(1, 4),
    d=st.integers(2, 10),
)
def test_gate_shapes_and_rank_bound_property(h, layers, rank, batch, d):
    rank = min(rank, h)
    net = GatedSiren(d, hidden_features=h, hidden_layers=layers, rank=rank, hyper_width=8, hyper_blocks=1)
    gates = net.gates(torch.randn(batch, d))
    assert [tuple(g.shape) for g in gates] == [(batch, h, h)] * layers
    for g in gates:
        ranks = torch.linalg.matrix_rank(torch.logit(g.double()), rtol=1e-4)
        assert int(ranks.max()) <= rank
    assert net(torch.rand(7, 2), torch.randn(batch, d)).shape == (batch, 7, 3)


def test_hidden_layers_gated_first_and_last_not():
    net = GatedSiren(6, hidden_features=8, hidden_layers=2, rank=2)
    z = torch.randn(1, 6)
    before = net(COORDS[:10], z)
    with torch.no_grad():
        net.hypernet.out.bias.add_(5.0)  # gates move towards 1: the output must change
    assert not torch.allclose(before, net(COORDS[:10], z))
    assert net.hypernet.out.out_features == 2 * 2 * 8 * 2  # two gated layers, U and V, h × rank


def test_shift_model_starts_as_plain_siren_and_counts_shifts():
    net = ShiftSiren(10, hidden_features=8, hidden_layers=2)
    assert net.num_shifts == 3 * 8
    assert torch.equal(net.shifts(torch.zeros(2, 10)), torch.zeros(2, 24))
    x = COORDS[:5]
    plain = net.last(torch.sin(30 * net.hidden[1](torch.sin(30 * net.hidden[0](torch.sin(10 * net.first(x)))))))
    assert torch.allclose(net(x, torch.zeros(10)), plain, atol=1e-6)


# ---------------------------------------------------------------- batching / torch.func
@pytest.mark.parametrize("kind", ["shift", "gated"])
def test_batched_forward_equals_per_signal(kind):
    net = small(kind)
    z = torch.randn(4, 12)
    batched = net(COORDS, z)
    single = torch.stack([net(COORDS, z[i]) for i in range(4)])
    assert batched.shape == (4, 1024, 3)
    assert torch.allclose(batched, single, atol=1e-5)
    per_signal_coords = net(COORDS.expand(4, -1, -1), z)
    assert torch.allclose(batched, per_signal_coords, atol=1e-5)


@pytest.mark.parametrize("kind", ["shift", "gated"])
def test_torch_func_vmap_and_grad(kind):
    net = small(kind)
    z = torch.randn(3, 12)
    via_vmap = torch.func.vmap(lambda zi: net(COORDS[:50], zi))(z)
    assert torch.allclose(via_vmap, net(COORDS[:50], z), atol=1e-5)
    target = torch.rand(50, 3)
    g = torch.func.grad(lambda zi: (net(COORDS[:50], zi) - target).pow(2).mean())(z[0])
    zr = z[0].clone().requires_grad_(True)
    (net(COORDS[:50], zr) - target).pow(2).mean().backward()
    assert torch.allclose(g, zr.grad, atol=1e-6)
    params = {k: v.detach() for k, v in net.named_parameters()}
    out = torch.func.functional_call(net, params, (COORDS[:50], z))
    assert torch.allclose(out, net(COORDS[:50], z))


@pytest.mark.parametrize("kind", ["shift", "gated"])
def test_inner_loop_batched_equals_per_signal(kind, real_patches):
    net = small(kind)
    values = real_patches[:3]
    batched = inner_loop(net, COORDS, values, steps=2)
    single = torch.cat([inner_loop(net, COORDS, values[i : i + 1], steps=2) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.allclose(fit_latents(net, COORDS, values, steps=2, batch_size=2), batched, atol=1e-5)


def test_first_order_inner_loop_has_same_value_and_grads_to_init_and_lr(real_patches):
    net = small("shift")
    values = real_patches[:2]
    exact = inner_loop(net, COORDS, values, steps=2, create_graph=True)
    fo = inner_loop(net, COORDS, values, steps=2, create_graph=True, first_order=True)
    assert torch.allclose(exact, fo, atol=1e-6)
    fo.sum().backward()
    assert net.latent_init.grad is not None and net.log_inner_lr.grad is not None
    assert net.first.weight.grad is None


# ---------------------------------------------------------------- learning
@pytest.mark.parametrize("kind", ["shift", "gated"])
def test_inner_loop_improves_fit_on_real_patch(kind, real_patches):
    net = small(kind, d=16)
    meta_train(net, COORDS, real_patches[:40], steps=15, batch_size=8, inner_steps=3, first_order=True, progress=False)
    held_out = real_patches[40:]
    start = net.latent_init.detach().expand(len(held_out), -1)
    before = per_signal_mse(render_latents(net, COORDS, start), held_out)
    after = per_signal_mse(render_latents(net, COORDS, fit_latents(net, COORDS, held_out)), held_out)
    assert float(after.mean()) < 0.95 * float(before.mean())


def test_calibrate_inner_lr_picks_from_grid_and_not_worse(real_patches):
    net = small("shift")
    values = real_patches[:4]
    chosen = calibrate_inner_lr(net, COORDS, values, steps=1, grid=(1e-6, 1e-2, 1.0))
    assert chosen in (1e-6, 1e-2, 1.0)
    phi = inner_loop(net, COORDS, values, steps=1)
    with torch.no_grad():
        tiny = per_signal_mse(net(COORDS, net.latent_init.expand(4, -1)), values).mean()
        assert float(per_signal_mse(net(COORDS, phi), values).mean()) <= float(tiny) + 1e-6


@pytest.mark.slow
def test_meta_training_lowers_the_post_adaptation_loss(real_patches):
    net = small("gated", d=16)
    history = meta_train(net, COORDS, real_patches, steps=40, batch_size=8, inner_steps=2, progress=False)
    assert np.mean(history.psnr[-10:]) > np.mean(history.psnr[:5]) + 0.5


def test_checkpoint_resume_continues_identically(tmp_path, real_patches):
    values = real_patches[:16]
    kw = dict(batch_size=4, inner_steps=2, first_order=True, progress=False, checkpoint_every=2)
    straight = small("shift")
    meta_train(straight, COORDS, values, steps=4, checkpoint=tmp_path / "a.pt", **kw)
    resumed = small("shift")
    meta_train(resumed, COORDS, values, steps=2, checkpoint=tmp_path / "b.pt", **kw)
    again = small("shift")
    history = meta_train(again, COORDS, values, steps=4, checkpoint=tmp_path / "b.pt", **kw)
    assert history.step == [1, 2, 3, 4]
    for (name, p), q in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), name
    with pytest.raises(HyperprojError, match="checkpoint"):
        meta_train(small("gated"), COORDS, values, steps=4, checkpoint=tmp_path / "b.pt", **kw)


# ---------------------------------------------------------------- D'OH base
def doh_base(kind: str, fraction: float = 0.25, **kw) -> HyperModel:
    net = small(kind)
    weights = sum(p.numel() for p in net.parameters() if p.dim() >= 2)
    return hyperproj.reparametrize(net, latent_dim=int(fraction * weights), seed=5, **kw)


@pytest.mark.parametrize("kind", ["shift", "gated"])
def test_doh_base_projects_every_weight_matrix_with_the_declared_init_variance(kind):
    net = small(kind, d=12)
    doh = hyperproj.reparametrize(net, latent_dim=1000, seed=1)
    matrices = [n for n, p in net.named_parameters() if p.dim() >= 2]
    assert doh.target_names == matrices  # SIREN layers and the modulation network
    kept = {n for n, _ in doh.named_parameters()}
    assert {"base.latent_init", "base.log_inner_lr", "latent"} <= kept
    generated = doh.generate_weights()
    for name in ("hidden.0.weight", "hidden.1.weight"):  # 256 entries each: std within ~15 %
        want = net.get_parameter(name).std().item()
        assert generated[name].std().item() == pytest.approx(want, rel=0.15), name
    assert modulated_of(doh) is doh.base and modulated_of(doh).latent_dim == 12


@pytest.mark.parametrize("kind", ["shift", "gated"])
def test_doh_base_meta_trains_and_its_file_is_smaller_and_round_trips(kind, real_patches, tmp_path):
    doh = doh_base(kind)
    before = doh.latent.detach().clone()
    history = meta_train(doh, COORDS, real_patches[:16], steps=6, batch_size=4, inner_steps=2, progress=False,
                         first_order=True, checkpoint=tmp_path / "c.pt")
    assert len(history.step) == 6 and all(math.isfinite(p) for p in history.psnr)
    assert not torch.equal(doh.latent.detach(), before)  # the outer loop trains the D'OH latent
    lat = fit_latents(doh, COORDS, real_patches[16:24])
    fit_entropy_model(doh, fit_latents(doh, COORDS, real_patches[:16]))
    blob = save_base(doh, tmp_path / "base.hpz")
    plain_bytes = len(save_base(doh.materialize()))
    assert len(blob) < 0.5 * plain_bytes
    back = load_base(tmp_path / "base.hpz")
    assert isinstance(back, HyperModel) and base_hash(back) == base_hash(doh)
    assert torch.equal(render_latents(back, COORDS, lat), render_latents(doh, COORDS, lat))
    coded = encode_latents(doh, lat, step=0.25)
    assert torch.equal(decode_latents(coded, back), decode_latents(coded, doh))
    with pytest.raises(HyperprojError, match="base hash"):
        decode_latents(coded, doh.materialize())  # the plain copy is another base
    resumed = meta_train(doh_base(kind), COORDS, real_patches[:16], steps=6, batch_size=4, inner_steps=2,
                         progress=False, first_order=True, checkpoint=tmp_path / "c.pt")
    assert resumed.step == history.step
    with pytest.raises(HyperprojError, match="D'OH base"):
        meta_train(small(kind), COORDS, real_patches[:16], steps=6, checkpoint=tmp_path / "c.pt", progress=False)


def test_doh_base_file_with_a_wrong_fingerprint_is_refused():
    doh = doh_base("shift")
    header, sections = read_container(save_base(doh))
    header["doh"]["fingerprint"][0] += 1.0
    with pytest.raises(HyperprojError, match="fingerprint"):
        load_base(write_container(header, sections))
    header["doh"] = {"seed": 1}
    with pytest.raises(HyperprojError, match="'doh' is malformed"):
        load_base(write_container(header, sections))


def test_modulation_functions_reject_a_hypermodel_of_something_else():
    other = hyperproj.reparametrize(torch.nn.Linear(2, 3), latent_dim=4)
    with pytest.raises(HyperprojError, match="fit_latents: model must be a ShiftSiren or GatedSiren.*Linear"):
        fit_latents(other, COORDS, torch.rand(2, 1024, 3))


# ---------------------------------------------------------------- coding
def fitted(kind: str = "gated") -> ShiftSiren | GatedSiren:
    net = small(kind)
    fit_entropy_model(net, torch.randn(64, 12) * torch.linspace(0.1, 2.0, 12) + 3.0)
    return net


@pytest.mark.parametrize("kind", ["shift", "gated"])
def test_latent_file_round_trip(kind, tmp_path):
    net = fitted(kind)
    lat = torch.randn(5, 12) * net.latent_scale + net.latent_mean
    blob = encode_latents(net, lat, step=0.2, path=tmp_path / "z.hpz")
    assert (tmp_path / "z.hpz").read_bytes() == blob
    back = decode_latents(tmp_path / "z.hpz", net)
    _, expected = quantize_latents(net, lat, 0.2)
    assert torch.equal(back, expected)
    assert bool(((back - lat).abs() <= net.latent_scale * 0.1 + 1e-5).all())
    assert torch.equal(render_latents(net, COORDS, back), render_latents(net, COORDS, expected))
    header, _ = read_container(blob)
    assert header["K"] == "mod-latents/1" and header["b"] == base_hash(net)


def test_base_file_round_trip_and_hash(tmp_path):
    net = fitted("gated")
    blob = save_base(net, tmp_path / "base.hpz")
    back = load_base(tmp_path / "base.hpz")
    assert base_hash(back) == base_hash(net) == base_hash(blob)
    for (k, v), w in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(v, w), k
    z = torch.randn(2, 12)
    assert torch.equal(back(COORDS[:20], z), net(COORDS[:20], z))
    lat = torch.randn(3, 12)
    assert torch.equal(decode_latents(encode_latents(net, lat), back), decode_latents(encode_latents(net, lat), net))


def test_rate_falls_with_coarser_step_and_file_has_the_codec_layout():
    net = fitted("shift")
    lat = torch.randn(200, 12) * net.latent_scale + net.latent_mean
    sizes = [len(encode_latents(net, lat, step=s)) for s in (0.05, 0.2, 0.8)]
    assert sizes[0] > sizes[1] > sizes[2]
    blob = encode_latents(net, lat, step=0.2)
    assert blob[:3] == b"HPZ"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    step=st.floats(0.01, 3.0),
    scale=st.floats(0.01, 10.0),
    seed=st.integers(0, 2**16),
)
def test_quantization_round_trip_property(n, step, scale, seed):
    net = fitted("shift")
    lat = torch.randn(n, 12, generator=torch.Generator().manual_seed(seed)) * scale
    symbols, expected = quantize_latents(net, lat, step)
    if int(symbols.max() - symbols.min()) >= 1 << 16:
        with pytest.raises(HyperprojError, match="step"):
            encode_latents(net, lat, step=step)
        return
    back = decode_latents(encode_latents(net, lat, step=step), net)
    assert torch.equal(back, expected)
    bound = net.latent_scale.double() * step / 2 * (1 + 1e-5) + 1e-5 * (1 + lat.abs().double())
    assert bool(((back.double() - lat.double()).abs() <= bound).all())


def test_latent_file_errors():
    net = fitted("gated")
    other = fitted("shift")
    blob = encode_latents(net, torch.randn(2, 12))
    with pytest.raises(HyperprojError, match="coded against base"):
        decode_latents(blob, other)
    with pytest.raises(HyperprojError, match="mod-latents/1"):
        decode_latents(save_base(net), net)
    with pytest.raises(HyperprojError, match="mod-base/1"):
        load_base(blob)
    with pytest.raises(HyperprojError, match="CRC32"):
        decode_latents(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:], net)
    with pytest.raises(HyperprojError, match="no such file"):
        decode_latents("/no/such/file.hpz", net)
    header, sections = read_container(blob)
    with pytest.raises(HyperprojError, match="'n'"):
        decode_latents(write_container({**header, "n": "two"}, sections), net)
    with pytest.raises(HyperprojError, match="latents must be a tensor"):
        encode_latents(net, torch.randn(2, 5))
    with pytest.raises(HyperprojError, match="finite"):
        encode_latents(net, torch.full((1, 12), math.nan))
    with pytest.raises(HyperprojError, match="step"):
        encode_latents(net, torch.randn(1, 12), step=0)
    with pytest.raises(HyperprojError, match="at least 2"):
        fit_entropy_model(net, torch.randn(1, 12))


# ---------------------------------------------------------------- errors and data
def test_clear_errors_for_bad_arguments():
    net = small("gated")
    with pytest.raises(HyperprojError, match=r"latents must have shape \(B, 12\)"):
        net(COORDS, torch.randn(2, 5))
    with pytest.raises(HyperprojError, match="coords must have shape"):
        net(torch.rand(10, 3), torch.randn(2, 12))
    with pytest.raises(HyperprojError, match="agree on B"):
        net(torch.rand(3, 10, 2), torch.randn(2, 12))
    with pytest.raises(HyperprojError, match="rank must be <= hidden_features"):
        GatedSiren(4, hidden_features=4, rank=5)
    with pytest.raises(HyperprojError, match="latent_dim must be an int >= 1"):
        ShiftSiren(0)
    with pytest.raises(HyperprojError, match="first_omega"):
        ShiftSiren(4, first_omega=-1.0)
    with pytest.raises(HyperprojError, match="kind must be one of"):
        build_modulated("film", {})
    with pytest.raises(HyperprojError, match="bad config"):
        build_modulated("shift", {"latent_dim": 3, "colour": 1})
    with pytest.raises(HyperprojError, match=r"values must be a tensor \(P, N=1024"):
        meta_train(net, COORDS, torch.rand(4, 100, 3), steps=1)
    with pytest.raises(HyperprojError, match="lr must be a positive number"):
        meta_train(net, COORDS, torch.rand(4, 1024, 3), steps=1, lr=0)
    with pytest.raises(HyperprojError, match="model must be a ShiftSiren or GatedSiren"):
        fit_latents(torch.nn.Linear(2, 3), COORDS, torch.rand(1, 1024, 3))
    with pytest.raises(HyperprojError, match="steps must be an int >= 0"):
        inner_loop(net, COORDS, torch.rand(1, 1024, 3), steps=-1)


def test_cut_patches_matches_slicing_and_pool_is_seeded():
    img = np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    patches = cut_patches(img, 32)
    assert patches.shape == (6, 32, 32, 3)
    assert np.array_equal(patches[4], img[32:64, 32:64])
    a = patch_pool([img], 32, count=3, seed=5)
    assert np.array_equal(a, patch_pool([img], 32, count=3, seed=5)) and a.max() <= 1.0
    with pytest.raises(HyperprojError, match="holds no 32×32 patch"):
        cut_patches(np.zeros((10, 10, 3)), 32)
    with pytest.raises(HyperprojError, match="no such .deb"):
        install_photos("/no/such.deb")


def test_training_photos_are_real_and_not_kodak():
    photos = training_photos(max_side=128, include_debs=True)
    assert {"astronaut", "coffee", "chelsea"} <= set(photos)
    assert not any("kodim" in name for name in photos)
    assert all(p.dtype == np.uint8 and p.shape[2] == 3 and max(p.shape[:2]) <= 128 for p in photos.values())


def test_cli_decompresses_a_latents_file_against_its_base(tmp_path, capsys):
    from PIL import Image

    from hyperproj import decompress
    from hyperproj.cli import main
    from hyperproj.modulation import latents_file_info, render_file

    net = fitted("shift")
    lat = torch.randn(5, 12) * net.latent_scale + net.latent_mean
    save_base(net, tmp_path / "base.hpz")
    encode_latents(net, lat, step=0.2, path=tmp_path / "z.hpz", shape=(32, 32))
    assert latents_file_info(tmp_path / "z.hpz")["shape"] == [32, 32]
    patches = render_file(tmp_path / "z.hpz", tmp_path / "base.hpz")
    expected = render_latents(net, COORDS, decode_latents(tmp_path / "z.hpz", net)).clamp(0, 1)
    expected = (expected * 255).round().to(torch.uint8).reshape(5, 32, 32, 3).numpy()
    assert np.array_equal(patches, expected)

    out = tmp_path / "mosaic.png"
    assert main(["decompress", str(tmp_path / "z.hpz"), "--base", str(tmp_path / "base.hpz"), "-o", str(out), "--columns", "2"]) == 0
    mosaic = np.asarray(Image.open(out))
    assert mosaic.shape == (3 * 32, 2 * 32, 3)
    assert np.array_equal(mosaic[32:64, 32:64], patches[3])
    assert not mosaic[64:, 32:].any()  # the unused sixth cell stays black
    assert main(["info", str(tmp_path / "z.hpz")]) == 0
    assert "mod-latents/1" in capsys.readouterr().out

    # Without a base, or with the D'OH decoder, the message says what the file is and what to do.
    assert main(["decompress", str(tmp_path / "z.hpz")]) == 2
    assert "--base" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "base.hpz")]) == 2
    assert "base network" in capsys.readouterr().err
    with pytest.raises(HyperprojError, match="modulation file"):
        decompress(tmp_path / "z.hpz")
    other = small("shift", d=12, first_omega=7.0)
    save_base(other, tmp_path / "other.hpz")
    assert main(["decompress", str(tmp_path / "z.hpz"), "--base", str(tmp_path / "other.hpz")]) == 2
    assert "base hash" in capsys.readouterr().err
    encode_latents(net, lat, path=tmp_path / "noshape.hpz")
    with pytest.raises(HyperprojError, match="stores no grid shape"):
        render_file(tmp_path / "noshape.hpz", net)
    with pytest.raises(HyperprojError, match="shape must be 2 positive ints"):
        encode_latents(net, lat, shape=(32,))
