"""LatentGrid: the float model, its integer twin, and the ARM-driven rANS coder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperproj import HyperprojError
from hyperproj.codec import _arm_coding as ac
from hyperproj.inr import ImageSignal, LatentGrid, fit_grid, model_spec
from hyperproj.inr import _grid_int as gi
from hyperproj.inr.latent_grid import _laplace_bits, level_sizes, up2


def _random_arm(rng: np.random.Generator, hidden: int = 6, q: int = 6) -> list:
    k = len(gi.CONTEXT)
    shapes = [(hidden, k), (hidden, hidden), (2, hidden)]
    return [(rng.integers(-40, 41, size=s).astype(np.int64), q, rng.integers(-200, 201, size=s[0]).astype(np.int64))
            for s in shapes]


def test_level_sizes_and_params():
    net = LatentGrid(10, 7, levels=4, hidden=(8,), arm_hidden=5)
    assert level_sizes(10, 7, 4) == [(10, 7), (5, 4), (3, 2), (2, 1)]
    assert [tuple(p.shape) for p in net.latents] == level_sizes(10, 7, 4)
    assert model_spec(net)["name"] == "latent-grid"
    assert net.image().shape == (10, 7, 3)


@pytest.mark.parametrize("kwargs, word", [({"height": 0}, "height"), ({"levels": 0}, "levels"),
                                           ({"hidden": "24"}, "hidden"), ({"arm_hidden": 1.5}, "arm_hidden")])
def test_bad_config_names_parameter(kwargs, word):
    args = {"height": 8, "width": 8, **kwargs}
    with pytest.raises(HyperprojError, match=word):
        LatentGrid(**args)


def test_up2_float_matches_integer():
    rng = np.random.default_rng(0)
    x = rng.integers(-9, 10, size=(2, 5, 7))
    fl = up2(torch.as_tensor(x, dtype=torch.float64)).numpy()
    it = gi.up2(x.astype(np.int64) << gi.ACT_BITS) / 2.0**gi.ACT_BITS
    assert fl.shape == (2, 10, 14)
    assert np.abs(fl - it).max() <= 2 * 2.0**-gi.ACT_BITS  # floor shifts, one per axis
    assert np.allclose(up2(torch.ones(1, 3, 3)).numpy(), 1.0)  # the taps sum to one


def _up2_reference(x: np.ndarray) -> np.ndarray:
    """The ×2 filter written out per axis (edge-replicated taps over ``i-2 .. i+2``), float64."""
    for axis in (2, 1):
        x = np.moveaxis(x, axis, -1)
        n = x.shape[-1]
        xp = np.concatenate([x[..., :1], x[..., :1], x, x[..., -1:], x[..., -1:]], -1)
        out = np.empty(x.shape[:-1] + (2 * n,))
        for taps, phase in ((gi.UP_EVEN, 0), (gi.UP_ODD, 1)):
            out[..., phase::2] = sum(t * xp[..., k : k + n] for k, t in enumerate(taps)) / 128.0
        x = np.moveaxis(out, -1, axis)
    return x


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_up2_is_the_filter_and_its_backward_is_the_adjoint(c, h, w, seed):
    # the banded-GEMM filter (blocks of 16, halos, edge padding) against the filter written out,
    # at sizes below, at and across the block size; the backward: <up2(x), g> = <x, up2ᵀ(g)>
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c, h, w))
    xt = torch.tensor(x, requires_grad=True)
    y = up2(xt)
    assert y.shape == (c, 2 * h, 2 * w)
    assert np.allclose(y.detach().numpy(), _up2_reference(x), atol=1e-12)
    g = torch.tensor(rng.standard_normal((c, 2 * h, 2 * w)))
    y.backward(g)
    # random x and g: a wrong adjoint breaks this identity with probability one
    assert np.isclose(float((y * g).sum()), float((xt * xt.grad).sum()), rtol=1e-10, atol=1e-10)


def test_integer_decoder_tracks_float_model():
    torch.manual_seed(0)
    img = torch.rand(12, 10, 3)
    net = LatentGrid(12, 10, levels=3, hidden=(8,), arm_hidden=4)
    fit_grid(net, ImageSignal(img), steps=30, lam=1e-4, lr=3e-2)
    fl = torch.round(net.image().clamp(0, 1) * 255).detach().numpy()
    it = net.decode_pixels(gi.ACT_BITS).astype(np.float64)
    assert np.abs(fl - it).max() <= 2  # weights at 2^-12: the integer twin is within rounding


def test_fit_grid_lowers_loss_and_rate_follows_lambda():
    torch.manual_seed(0)
    sig = ImageSignal(torch.rand(16, 16, 3) * 0.2 + torch.linspace(0, 0.6, 16)[None, :, None])
    lo = LatentGrid(16, 16, levels=3, hidden=(8,), arm_hidden=4)
    h = fit_grid(lo, sig, steps=120, lam=1e-5, lr=3e-2)
    assert h["loss"][-1] < h["loss"][0]
    torch.manual_seed(0)
    hi = LatentGrid(16, 16, levels=3, hidden=(8,), arm_hidden=4)
    fit_grid(hi, sig, steps=120, lam=3e-1, lr=3e-2)
    rate = [float(m.rate_bits(m.quantized_latents("round"))) for m in (lo, hi)]
    assert rate[1] < rate[0]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rate_bits_context_defaults_to_the_latents_and_conditions_the_arm(seed):
    torch.manual_seed(seed)
    net = LatentGrid(9, 7, levels=3, hidden=(6,), arm_hidden=5)
    with torch.no_grad():
        for y in net.latents:
            y.normal_(0, 2)
    noisy = net.quantized_latents("noise")
    rounded = net.quantized_latents("round")
    assert torch.equal(net.rate_bits(noisy, noisy), net.rate_bits(noisy))
    # the values are the noisy latents, the predictions those of the context: with the rounded
    # latents as both, it is the rate of the rounded latents
    _, mu, log2b = net.arm_out(rounded)
    assert torch.allclose(net.rate_bits(rounded, rounded), net.rate_bits(rounded))
    by_hand = net.rate_bits(noisy, rounded)
    assert torch.allclose(by_hand, _laplace_bits(torch.cat([y.reshape(-1) for y in noisy]), mu, log2b).sum())


def test_rate_bits_refuses_a_context_of_other_shapes():
    net = LatentGrid(8, 8, levels=2)
    with pytest.raises(HyperprojError, match="context"):
        net.rate_bits(net.quantized_latents(), net.quantized_latents(start=1))


def _all_dead_start(seed: int) -> tuple[LatentGrid, ImageSignal]:
    """A synthesis whose every hidden unit is dead at the start (latents at zero, negative biases):
    an extreme of what PyTorch's bias initialisation does to about half the units."""
    torch.manual_seed(seed)
    img = torch.rand(16, 16, 3) * 0.3 + torch.linspace(0, 0.6, 16)[None, :, None]
    net = LatentGrid(16, 16, levels=3, hidden=(8, 8), arm_hidden=4)
    with torch.no_grad():
        for layer in net.synthesis[:-1]:
            layer.bias.fill_(-0.2)
    return net, ImageSignal(img)


def test_fit_grid_revives_a_dead_synthesis(one_thread):
    # without re-arming, no gradient reaches the latents or the hidden units: the image stays one
    # flat colour (the collapse kodim17 showed); with it the fit learns the gradient
    net, sig = _all_dead_start(0)
    h = fit_grid(net, sig, steps=80, lam=1e-5, lr=3e-2)
    assert h["revived"] >= 16
    assert h["psnr"][-1] > h["psnr"][0] + 5
    img = net.image("none").detach()
    assert float(img.std(dim=(0, 1)).mean()) > 0.1
    off, sig = _all_dead_start(0)
    h_off = fit_grid(off, sig, steps=80, lam=1e-5, lr=3e-2, revive_every=0)
    assert h_off["revived"] == 0
    assert float(off.image("none").detach().std(dim=(0, 1)).mean()) < 1e-6  # flat: the old failure
    assert h["psnr"][-1] > h_off["psnr"][-1] + 5


def test_revive_dead_units_keeps_the_output():
    torch.manual_seed(1)
    net = LatentGrid(8, 8, levels=3, hidden=(6, 6), arm_hidden=4)
    feats = torch.randn(3, 64)  # (levels, pixels)
    with torch.no_grad():
        net.synthesis[1].bias[:3] = -100.0  # three units of the second layer dead on every pixel
    before = net.synthesize(feats)
    assert net.revive_dead_units(feats) >= 3
    assert torch.allclose(net.synthesize(feats), before)
    assert bool((net.synthesis[1](torch.relu(net.synthesis[0](feats.T)))[:, :3] > 0).any(0).all())
    with pytest.raises(HyperprojError, match="margin"):
        net.revive_dead_units(feats, margin=0.0)


def test_fit_grid_rejects_bad_input():
    net = LatentGrid(8, 8, levels=2, hidden=(4,), arm_hidden=4)
    with pytest.raises(HyperprojError, match="shape"):
        fit_grid(net, ImageSignal(torch.rand(9, 8, 3)), steps=1)
    with pytest.raises(HyperprojError, match="lam"):
        fit_grid(net, ImageSignal(torch.rand(8, 8, 3)), steps=1, lam=-1.0)
    with pytest.raises(HyperprojError, match="revive_every"):
        fit_grid(net, ImageSignal(torch.rand(8, 8, 3)), steps=1, revive_every=-1)
    for bad in (0.0, 1.5, "0.8"):
        with pytest.raises(HyperprojError, match="coarse_target"):
            fit_grid(net, ImageSignal(torch.rand(8, 8, 3)), steps=1, coarse_target=bad)


def test_forward_renders_pixels_at_coordinates():
    net = LatentGrid(6, 4, levels=2, hidden=(4,), arm_hidden=4)
    pix = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    net.set_decoded(pix)
    sig = ImageSignal(torch.zeros(6, 4, 3))
    out = sig.render(net)
    assert torch.equal(torch.round(out * 255).to(torch.uint8).reshape(6, 4, 3), torch.as_tensor(pix))


@settings(max_examples=60, deadline=None)
@given(mu=st.integers(-2000, 2000), j=st.integers(gi.J_MIN, gi.J_MAX), a=st.integers(1, 300))
def test_laplace_cdf_is_a_valid_table(mu, j, a):
    c = gi.laplace_cdf(np.array([mu]), np.array([j]), a)[0]
    assert c[0] == 0 and c[-1] == 1 << gi.PREC and len(c) == 2 * a + 2
    assert np.all(np.diff(c) >= 1)
    starts, freqs = gi.symbol_intervals(np.arange(-a, a + 1), np.full(2 * a + 1, mu), np.full(2 * a + 1, j), a)
    assert np.array_equal(starts, c[:-1]) and np.array_equal(freqs, np.diff(c))


def test_laplace_cdf_follows_the_distribution():
    c = gi.laplace_cdf(np.array([0, 3 * 16]), np.array([0, 0]), 8)
    p = np.diff(c, axis=1) / 2.0**gi.PREC
    assert p[0].argmax() == 8 and p[1].argmax() == 8 + 3  # peak at mu (symbol index A + mu)
    assert abs(p[0, 8] - (1 - np.exp(-0.5))) < 1e-3  # Laplace(0, 1) mass on [-1/2, 1/2]


def test_wavefront_orders_every_context_first():
    h, w = 5, 7
    when = np.full((h, w), -1)
    for t, (rows, cols) in enumerate(gi.wavefront(h, w)):
        when[rows, cols] = t
    assert (when >= 0).all()
    for i in range(h):
        for j in range(w):
            for di, dj in gi.CONTEXT:
                if 0 <= i + di < h and 0 <= j + dj < w:
                    assert when[i + di, j + dj] < when[i, j]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), h=st.integers(1, 9), w=st.integers(1, 9), a=st.integers(0, 20),
       spread=st.floats(0.05, 8.0))
def test_coder_round_trip_with_arm_probabilities(seed, h, w, a, spread):
    rng = np.random.default_rng(seed)
    q = np.clip(np.round(rng.laplace(0, spread, size=(h, w))), -a, a).astype(np.int64)
    arm = _random_arm(rng)
    data = ac.encode_level(q, a, arm)
    assert np.array_equal(ac.decode_level(data, h, w, a, arm), q)
    if a:
        assert abs(8 * len(data) - ac.level_bits(q, a, arm)) <= 8 * 5 + 0.01 * h * w  # state + renorm slack


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), shapes=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=3),
       spread=st.floats(0.0, 6.0), s=st.floats(0.0, 4.0))
def test_shrink_to_prediction_moves_each_latent_towards_the_decoders_prediction(seed, shapes, spread, s):
    # the over-budget fallback: in decoding order, each latent moves by s towards the location the
    # integer ARM predicts from its neighbours as coded — so recomputing the ARM on the result (as
    # the decoder does) must find every value between round(mu) and round(y), within the alphabet
    rng = np.random.default_rng(seed)
    arm = _random_arm(rng)
    ys = [rng.laplace(0, spread, size=hw) if spread else np.zeros(hw) for hw in shapes]
    out = ac.shrink_to_prediction(ys, s, arm)
    assert [q.shape for q in out] == [y.shape for y in ys]
    if s == 0:
        assert all(np.array_equal(q, np.round(y)) for q, y in zip(out, ys))
    for q, y in zip(out, ys):
        a = int(np.abs(np.round(y)).max())
        assert q.dtype == np.int64 and np.abs(q).max() <= a
        if a == 0:
            continue
        mu16, _ = gi.arm_params(gi.contexts(q), arm)
        mu = (mu16 / 16.0).reshape(q.shape)
        r = y - mu
        want = np.clip(np.where(np.abs(r) <= s, np.round(mu), np.round(y - np.sign(r) * s)), -a, a)
        assert np.array_equal(q, want)
    with pytest.raises(HyperprojError, match="s must be"):
        ac.shrink_to_prediction(ys, -0.1, arm)


def test_coder_refuses_damage():
    rng = np.random.default_rng(1)
    q = rng.integers(-3, 4, size=(8, 8))
    arm = _random_arm(rng)
    data = ac.encode_level(q, 3, arm)
    with pytest.raises(HyperprojError):
        ac.decode_level(data[:-1], 8, 8, 3, arm)
    with pytest.raises(HyperprojError):
        ac.decode_level(data + b"\x00", 8, 8, 3, arm)
    with pytest.raises(HyperprojError):
        ac.decode_level(b"\x01", 8, 8, 3, arm)
    with pytest.raises(HyperprojError, match="alphabet"):
        ac.encode_level(q, 2, arm)


def test_coarse_phase_trains_coarse_levels_only_then_all():
    torch.manual_seed(0)
    sig = ImageSignal(torch.rand(16, 16, 3))
    net = LatentGrid(16, 16, levels=3, hidden=(8,), arm_hidden=4)
    fit_grid(net, sig, steps=20, lam=1e-4, lr=3e-2, coarse_share=1.0, latent_lr_scale=5)
    assert float(net.latents[0].abs().max()) == 0.0 and float(net.latents[1].abs().max()) > 0.0
    h = fit_grid(net, sig, steps=20, lam=1e-4, lr=3e-2, coarse_share=0.5, latent_lr_scale=5)
    assert float(net.latents[0].abs().max()) > 0.0 and h["steps"] == 20


def test_half_resolution_phase_aims_at_its_share_of_the_bit_target(one_thread):
    # the controller there leaves room for the finest level: aiming at half the target, the coarse
    # levels end with fewer bits than aiming at all of it
    sig = ImageSignal(torch.rand(32, 32, 3) * 0.5 + torch.linspace(0, 0.5, 32)[None, :, None])
    rates = []
    for aim in (0.5, 1.0):
        torch.manual_seed(0)
        net = LatentGrid(32, 32, levels=4, hidden=(8,), arm_hidden=4)
        fit_grid(net, sig, steps=300, lam=1e-3, lr=3e-2, coarse_share=1.0, coarse_target=aim,
                 target_bits=600.0, latent_lr_scale=5)
        rates.append(float(net.rate_bits(net.quantized_latents("round", start=1))))
    assert rates[0] < 0.8 * rates[1]


def test_fit_grid_times_its_steps_under_a_clock_and_restores_the_thread_count(monkeypatch):
    # the same governor as fit: under a time budget with more than one thread, every step is timed,
    # the measurements are dropped when the resolution changes, the thread count comes back
    from hyperproj.inr import latent_grid as lg
    from hyperproj.inr.fit import _ThreadGovernor

    seen = {"steps": 0, "forgot": 0, "closed": 0}

    class Recording(_ThreadGovernor):
        def after_step(self, seconds):
            seen["steps"] += 1
            super().after_step(seconds)

        def forget(self):
            seen["forgot"] += 1
            super().forget()

        def close(self):
            seen["closed"] += 1
            super().close()

    monkeypatch.setattr(lg, "_ThreadGovernor", Recording)
    base = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = LatentGrid(16, 16, levels=3, hidden=(8,), arm_hidden=4)
        h = fit_grid(net, ImageSignal(torch.rand(16, 16, 3)), time_budget=1.0, steps=10**6, coarse_share=0.5)
        assert torch.get_num_threads() == 2
        assert seen["steps"] == h["steps"] > 0 and seen["forgot"] == 1 and seen["closed"] == 1
        seen.update(steps=0, closed=0)
        fit_grid(net, ImageSignal(torch.rand(16, 16, 3)), steps=5)  # a fixed step count: no governor
        assert seen["steps"] == 0 and seen["closed"] == 0
    finally:
        torch.set_num_threads(base)


def _arm_of_scale(rng: np.random.Generator, hidden: int, q: int, scale: int) -> list:
    k = len(gi.CONTEXT)
    shapes = [(hidden, k), (hidden, hidden), (2, hidden)]
    return [(rng.integers(-scale, scale + 1, size=s).astype(np.int64), q,
             rng.integers(-5 * scale, 5 * scale + 1, size=s[0]).astype(np.int64)) for s in shapes]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), levels=st.integers(1, 4), scale=st.sampled_from([3, 40, 400, 1 << 20, 1 << 31]),
       q=st.integers(0, gi.ACT_BITS), damage=st.sampled_from([None, "flip", "cut", "extra"]))
def test_decoder_matches_the_reference_decoder(seed, levels, scale, q, damage):
    """The lockstep decoder with cached tables and float64 ARM gives the reference decoder's grids
    (tests/_grid_reference.py: the 74d1a50 decoder), and refuses exactly the streams it refuses."""
    from _grid_reference import reference_decode_level

    rng = np.random.default_rng(seed)
    arm = _arm_of_scale(rng, int(rng.integers(1, 9)), q, scale)
    shapes = [(int(rng.integers(1, 13)), int(rng.integers(1, 13))) for _ in range(levels)]
    alphabets = [int(rng.choice([0, 1, 2, 5, 20, 300])) for _ in range(levels)]
    grids = [np.clip(np.round(rng.laplace(0, rng.uniform(0.1, 8), size=s)), -a, a).astype(np.int64)
             for s, a in zip(shapes, alphabets)]
    streams = [ac.encode_level(g, a, arm) for g, a in zip(grids, alphabets)]
    k = int(rng.integers(levels))
    if damage and streams[k]:
        data = bytearray(streams[k])
        if damage == "flip":
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        streams[k] = bytes(data[:-1] if damage == "cut" else data + (b"\x00" if damage == "extra" else b""))
    try:
        want = [reference_decode_level(d, h, w, a, arm) for d, (h, w), a in zip(streams, shapes, alphabets)]
    except HyperprojError:
        want = None
    if want is None:
        with pytest.raises(HyperprojError):
            ac.decode_levels(streams, shapes, alphabets, arm)
        return
    got = ac.decode_levels(streams, shapes, alphabets, arm)
    assert all(np.array_equal(g, r) for g, r in zip(got, want))
    if damage is None:
        assert all(np.array_equal(g, r) for g, r in zip(got, grids))
        assert all(np.array_equal(ac.decode_level(d, h, w, a, arm), r)
                   for d, (h, w), a, r in zip(streams, shapes, alphabets, grids))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 50), width=st.integers(1, 20), depth=st.integers(1, 4),
       xbits=st.integers(0, 40), wbits=st.integers(0, 34), q=st.integers(0, gi.ACT_BITS))
def test_mlp_and_arm_match_the_int64_reference(seed, n, width, depth, xbits, wbits, q):
    """:func:`gi.mlp` (float64 where exact, else int64), :func:`gi.arm_function` and
    :func:`gi.synthesize` equal the int64 reference, inside and past the float64-exact bound."""
    from _grid_reference import reference_arm_params, reference_mlp, reference_synthesize

    rng = np.random.default_rng(seed)
    dims = [int(rng.integers(1, 17)) for _ in range(depth)] + [2]
    layers = [(rng.integers(-(1 << wbits), (1 << wbits) + 1, size=(o, i)), q,
               rng.integers(-(1 << wbits), (1 << wbits) + 1, size=o)) for i, o in zip([width] + dims, dims)]
    x = rng.integers(-(1 << xbits), (1 << xbits) + 1, size=(n, width))
    assert np.array_equal(gi.mlp(x, layers), reference_mlp(x, layers))
    arm = [(rng.integers(-(1 << wbits), (1 << wbits) + 1, size=(o, i)), q,
            rng.integers(-(1 << wbits), (1 << wbits) + 1, size=o)) for i, o in zip([12] + dims, dims)]
    a = int(rng.integers(1, 1 << min(xbits, 12) + 1))
    ctx = rng.integers(-a, a + 1, size=(n, 12))
    for got, want in zip(gi.arm_function(arm, a)(ctx), reference_arm_params(ctx, arm)):
        assert np.array_equal(got, want)
    lat = [rng.integers(-a, a + 1, size=(5, 7)), rng.integers(-a, a + 1, size=(3, 4))]
    syn = [(rng.integers(-(1 << wbits), (1 << wbits) + 1, size=(o, i)), q,
            rng.integers(-(1 << wbits), (1 << wbits) + 1, size=o)) for i, o in zip([2, 6], [6, 3])]
    assert np.array_equal(gi.synthesize(lat, syn), reference_synthesize(lat, syn))


# ---------------------------------------------------------------- projected (D'OH) networks
def test_projected_networks_keep_the_plain_init_and_train():
    from hyperproj.inr.latent_grid import projected_weights

    torch.manual_seed(0)
    plain = LatentGrid(16, 16, levels=3, hidden=(16, 16), arm_hidden=12)
    torch.manual_seed(0)
    net = LatentGrid(16, 16, levels=3, hidden=(16, 16), arm_hidden=12, net_latent_dim=300, net_seed=3,
                     net_projected="both")
    torch.manual_seed(0)
    syn_only = LatentGrid(16, 16, levels=3, hidden=(16, 16), arm_hidden=12, net_latent_dim=300, net_seed=3)
    assert [n for n, _ in syn_only.named_parameters() if n.endswith("weight")] == [f"arm.{i}.weight" for i in range(3)]
    assert syn_only.net_shifts["arm"] == [] and len(syn_only.net_shifts["synthesis"]) == 3
    assert torch.equal(syn_only.arm[0].weight, plain.arm[0].weight)
    # the option off changes nothing: same parameters, same names
    assert [n for n, _ in plain.named_parameters()] == ["latents.0", "latents.1", "latents.2", *[
        f"{w}.{i}.{p}" for w, k in (("synthesis", 3), ("arm", 3)) for i in range(k) for p in ("weight", "bias")]]
    assert "net_latent_dim" not in plain.config
    # projected: z and the biases are the parameters; the weights have the plain init's spread
    names = [n for n, _ in net.named_parameters()]
    assert names[0] == "net_z" and not any(n.endswith("weight") for n in names)
    for a, b in zip([*plain.synthesis, *plain.arm], [*net.synthesis, *net.arm]):
        assert torch.equal(a.bias, b.bias)
        assert 0.5 < float(b.weight.detach().std() / a.weight.detach().std()) < 2.0
    hist = fit_grid(net, ImageSignal(torch.rand(16, 16, 3)), steps=40, lam=1e-3)
    assert hist["loss"][-1] < hist["loss"][0]
    # the integer rule: R z_int at 2**-qz scaled by 2**-k, rounded to 2**-ACT_BITS
    for qz in (4, 9, 15):
        layers = net.integer_layers("synthesis", 8, qz)
        z = net.integer_net_latent(qz)
        for (w, q, b), m, k in zip(layers, net.synthesis, net.net_shifts["synthesis"]):
            assert q == gi.ACT_BITS and np.all(b % (1 << (gi.ACT_BITS - 8)) == 0)
            exact = (m.signs.double().numpy() @ z).reshape(w.shape) * 2.0 ** (gi.ACT_BITS - k - qz)
            assert np.all(np.abs(w - exact) <= 0.5)
    assert np.array_equal(projected_weights(z, 15, 3, "synthesis", [(16, 3)], net.net_shifts["synthesis"][:1])[0],
                          net.integer_layers("synthesis", 8, 15)[0][0])


@pytest.mark.parametrize("kwargs, word", [({"net_latent_dim": 0}, "net_latent_dim"), ({"net_latent_dim": 2.5}, "net_latent_dim"),
                                          ({"net_latent_dim": 4, "net_seed": -1}, "net_seed"),
                                          ({"net_latent_dim": 4, "net_projected": "arm"}, "net_projected")])
def test_bad_projection_option_names_it(kwargs, word):
    with pytest.raises(HyperprojError, match=word):
        LatentGrid(4, 4, levels=2, **kwargs)


def test_projected_model_refuses_direct_weight_loading():
    net = LatentGrid(2, 2, levels=1, hidden=(2,), arm_hidden=2, net_latent_dim=3)
    with pytest.raises(HyperprojError, match="projected"):
        net.load_integer([np.zeros((2, 2), np.int64)], [], [])
    with pytest.raises(HyperprojError, match="net_latent_dim"):
        LatentGrid(2, 2, levels=1).integer_net_latent(8)


def test_revive_dead_units_with_projected_weights_moves_only_the_bias():
    net = LatentGrid(4, 4, levels=2, hidden=(3,), net_latent_dim=10)
    with torch.no_grad():
        net.synthesis[0].bias.fill_(-1.0)  # every unit dead on zero features
    feats = torch.zeros(2, 16)
    before, z = net.synthesize(feats), net.net_z.detach().clone()
    assert net.revive_dead_units(feats, margin=1e-2) == 3
    assert torch.equal(net.net_z, z)  # the latent (so every weight) is untouched
    assert torch.allclose(net.synthesis[0].bias, torch.full((3,), 1e-2))
    bound = 1e-2 * float(net.synthesis[1].weight.abs().sum(1).max())
    assert float((net.synthesize(feats) - before).abs().max()) <= bound + 1e-6
