"""WeightSpaceAdam: the weight-gradient capture, the projected step, state, release, fit's "auto"."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperproj
from hyperproj import HyperprojError, WeightSpaceAdam
from hyperproj.inr import Siren, fit


def _offset(n: int = 60, projection: str = "dense", seed: int = 0) -> hyperproj.HyperModel:
    torch.manual_seed(seed)
    return hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=n, seed=seed, latent_scale="offset",
                                   projection=projection)


def _flat_grad_by_autograd(hyper, x, y):
    weights = {k: v.detach().requires_grad_(True) for k, v in hyper.generate_weights().items()}
    loss = ((hyper.call_with_weights(weights, x) - y) ** 2).mean()
    loss.backward()
    return torch.cat([weights[k].grad.reshape(-1) for k in hyper.target_names])


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 88), kind=st.sampled_from(["dense", "streamed", "fastfood"]), seed=st.integers(0, 2**31))
def test_latent_vjp_is_the_autograd_gradient(n, kind, seed):
    hyper = _offset(n, kind, seed % 7)
    g = torch.randn(hyper.num_projected, generator=torch.Generator().manual_seed(seed))
    flat = torch.cat([w.reshape(-1) for w in hyper.generate_weights().values()])
    (expected,) = torch.autograd.grad(flat, hyper.latent, grad_outputs=g)
    torch.testing.assert_close(hyper.latent_vjp(g), expected, rtol=1e-4, atol=1e-5)


def test_captured_weight_grad_equals_the_weight_gradient_and_accumulates():
    hyper = _offset()
    x, y = torch.rand(32, 2) * 2 - 1, torch.rand(32, 1)
    expected = _flat_grad_by_autograd(hyper, x, y)
    hyper.capture_weight_grads()
    ((hyper(x) - y) ** 2).mean().backward()
    torch.testing.assert_close(hyper.weight_grad, expected)
    assert hyper.latent.grad is None  # nothing flowed through the projection
    ((hyper(x) - y) ** 2).mean().backward()  # a second backward accumulates, like .grad does
    torch.testing.assert_close(hyper.weight_grad, 2 * expected)
    with torch.no_grad():  # evaluation does not collect anything
        hyper(x)
    torch.testing.assert_close(hyper.weight_grad, 2 * expected)


def test_first_step_is_the_projected_adam_direction():
    hyper = _offset()
    x, y = torch.rand(32, 2) * 2 - 1, torch.rand(32, 1)
    g = _flat_grad_by_autograd(hyper, x, y)
    z0 = hyper.latent.detach().clone()
    others0 = {k: p.detach().clone() for k, p in hyper.named_parameters() if k != "latent"}
    opt = WeightSpaceAdam(hyper, lr=1e-2, step_scale=1.5, metric="euclidean")
    opt.zero_grad()
    ((hyper(x) - y) ** 2).mean().backward()
    opt.step()
    # Adam's first step: m̂ = g, v̂ = g², so d = g / (|g| + eps)
    d = g / (g.abs() + 1e-8)
    z = z0.clone().requires_grad_(True)
    flat = torch.cat([w.reshape(-1) for w in hyper.generate_weights(z).values()])
    (jtd,) = torch.autograd.grad(flat, z, grad_outputs=d)
    torch.testing.assert_close(hyper.latent.detach(), z0 - 1e-2 * 1.5 * jtd, rtol=1e-5, atol=1e-7)
    # the biases got an ordinary Adam first step: |Δ| = lr for every entry with a gradient
    moved = torch.cat([(p.detach() - others0[k]).abs() for k, p in hyper.named_parameters() if k != "latent"])
    assert len(others0) > 0 and (moved > 0).any()
    torch.testing.assert_close(moved[moved > 0], torch.full_like(moved[moved > 0], 1e-2), rtol=1e-3, atol=0)
    opt.release()


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 60), kind=st.sampled_from(["dense", "orthogonal"]), seed=st.integers(0, 2**31))
def test_latent_jvp_is_the_adjoint_of_latent_vjp(n, kind, seed):
    hyper = _offset(n, kind, seed % 7)
    gen = torch.Generator().manual_seed(seed)
    v, g = torch.randn(n, generator=gen), torch.randn(hyper.num_projected, generator=gen)
    torch.testing.assert_close(hyper.latent_jvp(v) @ g, v @ hyper.latent_vjp(g), rtol=1e-4, atol=1e-4)


def _jacobian(hyper):
    return torch.autograd.functional.jacobian(
        lambda z: torch.cat([w.reshape(-1) for w in hyper.generate_weights(z).values()]), hyper.latent.detach())


@pytest.mark.parametrize("kind", ["dense", "orthogonal"])
def test_adam_metric_first_step_solves_the_weighted_least_squares(kind):
    # issue 24: below 100 % the latent step is Adam's weight step projected in Adam's metric:
    # x = c (Jᵀ V J)⁻¹ Jᵀ m̂ with V = √v̂ + ε (= |g| + ε on the first step), c = JᵀJ's scale
    hyper = _offset(20, kind)
    x, y = torch.rand(32, 2) * 2 - 1, torch.rand(32, 1)
    g = _flat_grad_by_autograd(hyper, x, y)
    z0 = hyper.latent.detach().clone()
    opt = WeightSpaceAdam(hyper, lr=1e-2, cg_iters=60)
    assert opt.metric == "adam"  # "auto" below 100 %
    opt.zero_grad()
    ((hyper(x) - y) ** 2).mean().backward()
    opt.step()
    J = _jacobian(hyper).double()
    V = g.double().abs() + 1e-8
    c = opt._jtj_scale
    expected = c * torch.linalg.solve(J.T @ (V[:, None] * J), J.T @ g.double())
    step = (z0 - hyper.latent.detach()).double() / 1e-2
    torch.testing.assert_close(step, expected, rtol=2e-3, atol=1e-6 * float(expected.abs().max()))
    if kind == "orthogonal":  # exact scale: JᵀJ = c I
        torch.testing.assert_close(J.T @ J, c * torch.eye(20, dtype=J.dtype), rtol=0, atol=1e-4 * c)
    opt.release()


def test_adam_metric_with_a_uniform_metric_is_the_euclidean_step():
    # with every √v̂ equal (a signed-constant gradient), the weighted projection is the plain one
    hyper = _offset(30, "orthogonal")
    g = torch.where(torch.arange(hyper.num_projected) % 3 == 0, 1.0, -1.0)
    steps = []
    for metric in ("adam", "euclidean"):
        h = copy.deepcopy(hyper)
        opt = WeightSpaceAdam(h, lr=1e-2, metric=metric, cg_iters=30)
        h.weight_grad = g.clone()
        opt.step()
        steps.append(hyper.latent.detach() - h.latent.detach())
        opt.release()
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-4, atol=1e-7)


def test_metric_auto_is_euclidean_at_a_full_latent_and_bad_settings_are_named():
    full = _offset(88, "orthogonal")  # Siren(2, 8, 1, 1): 88 projected weights
    assert full.num_projected == 88 and WeightSpaceAdam(full).metric == "euclidean"
    hyper = _offset(20)
    with pytest.raises(HyperprojError, match=r"metric must be one of \('auto', 'adam', 'euclidean'\), got 'l2'"):
        WeightSpaceAdam(hyper, metric="l2")
    with pytest.raises(HyperprojError, match="cg_iters must be an int >= 1, got 0"):
        WeightSpaceAdam(hyper, cg_iters=0)


def test_state_dict_round_trip_continues_identically():
    x, y = torch.rand(64, 2) * 2 - 1, torch.rand(64, 1)

    def steps(hyper, opt, k):
        for _ in range(k):
            opt.zero_grad()
            ((hyper(x) - y) ** 2).mean().backward()
            opt.step()

    a = _offset()
    opt_a = WeightSpaceAdam(a, lr=1e-3)
    steps(a, opt_a, 3)
    b = _offset()
    b.load_state_dict(a.state_dict())
    opt_b = WeightSpaceAdam(b, lr=1e-3)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # state_dict() shares live tensors
    steps(a, opt_a, 4)
    steps(b, opt_b, 4)
    torch.testing.assert_close(a.latent, b.latent)
    assert "exp_avg_w" in opt_a.state_dict()["state"][0]


def test_release_and_deletion_restore_the_autograd_path():
    hyper = _offset()
    x = torch.rand(8, 2)
    opt = WeightSpaceAdam(hyper)
    with pytest.raises(HyperprojError, match="already has a live WeightSpaceAdam"):
        WeightSpaceAdam(hyper)
    del opt
    gc.collect()
    hyper(x).sum().backward()
    assert hyper.latent.grad is not None and hyper.weight_grad is None
    opt = WeightSpaceAdam(hyper)
    opt.release()
    WeightSpaceAdam(hyper).release()  # a released HyperModel takes a new one


def test_errors_name_what_is_wrong():
    unit = hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=30, seed=0, latent_scale="unit")
    with pytest.raises(HyperprojError, match="latent_scale='offset'.*'unit'"):
        WeightSpaceAdam(unit)
    with pytest.raises(HyperprojError, match="contains no HyperModel"):
        WeightSpaceAdam(Siren(2, 8, 1, 1))
    with pytest.raises(HyperprojError, match="step_scale must be a positive number"):
        WeightSpaceAdam(_offset(), step_scale=0)
    with pytest.raises(HyperprojError, match="cannot build optimizer"):
        fit(_offset(), _tiny_signal(), steps=1, optimizer="weight_space_adam", progress=False,
            optimizer_kwargs={"momentum": 0.9})


def _tiny_signal():
    import skimage.data

    from hyperproj.inr import ImageSignal

    return ImageSignal.from_array(skimage.data.astronaut()).crop(100, 180, 16, 16)


def test_fit_builds_weight_space_adam_by_name_and_releases_it(monkeypatch):
    built = []
    original = WeightSpaceAdam.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(WeightSpaceAdam, "__init__", spy)
    sig = _tiny_signal()
    hyper = hyperproj.reparametrize(Siren(2, 8, 1, 3), latent_dim=50, seed=0, latent_scale="offset")
    z0 = hyper.latent.detach().clone()
    fit(hyper, sig, steps=3, progress=False, optimizer="adam")
    assert built == []
    unit = hyperproj.reparametrize(Siren(2, 8, 1, 3), latent_dim=50, seed=0, latent_scale="unit")
    fit(unit, sig, steps=3, progress=False)  # "auto": Adam for a unit latent
    assert built == []
    fit(hyper, sig, steps=3, progress=False)  # "auto": WeightSpaceAdam for the offset latent
    assert built == [{}]
    hist = fit(hyper, sig, steps=5, progress=False, optimizer="Weight_Space_Adam",
               optimizer_kwargs={"step_scale": 0.5}, restore_best=False)
    assert built == [{}, {"step_scale": 0.5}] and len(hist.loss) > 0
    assert not torch.equal(hyper.latent.detach(), z0)  # the latent trained
    hyper(sig.coords[:4]).sum().backward()
    assert hyper.latent.grad is not None  # fit released it at the end
