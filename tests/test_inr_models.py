"""Models and registry of hyperproj.inr: structure, init, Fourier features, INCODE, JSON specs."""

from __future__ import annotations

import copy
import json
import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperproj import HyperprojError
from hyperproj.inr import (
    MLP,
    FourierFeatures,
    ImageSignal,
    Incode,
    Siren,
    build_model,
    model_names,
    model_spec,
    register_model,
)
from hyperproj.inr.models import sine_linear


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def linears(m: torch.nn.Module) -> list[torch.nn.Linear]:
    return [x for x in m.modules() if isinstance(x, torch.nn.Linear)]


# ---------------------------------------------------------------- Siren
def test_siren_layer_count_and_doh_parameter_count():
    net = Siren(2, 40, 9, 3)
    assert len(linears(net)) == 9 + 2
    assert n_params(net) == 15003  # D'OH's Kodak target network


def test_siren_init_ranges_and_roles():
    torch.manual_seed(0)
    net = Siren(2, 64, 2, 3, first_omega=30, hidden_omega=20)
    lins = linears(net)
    assert [lin.hyperproj_init["role"] for lin in lins] == ["first", "hidden", "hidden", "last"]
    assert all(lin.hyperproj_init["rule"] == "siren" for lin in lins)
    assert lins[0].hyperproj_init["omega"] == 30.0 and lins[1].hyperproj_init["omega"] == 20.0
    first_bound = 1 / 2
    hidden_bound = math.sqrt(6 / 64) / 20
    assert lins[0].weight.abs().max() <= first_bound
    assert lins[0].weight.abs().max() > 0.9 * first_bound
    for lin in lins[1:]:
        assert lin.weight.abs().max() <= hidden_bound
        assert lin.weight.abs().max() > 0.9 * hidden_bound
    # Bias keeps nn.Linear's default U(±1/sqrt(fan_in)).
    assert lins[1].bias.abs().max() <= 1 / math.sqrt(64)


def _plain_sine(x, w, b, omega):
    return torch.sin(omega * torch.nn.functional.linear(x, w, b))


@settings(max_examples=15, deadline=None, derandomize=True)
@given(rows=st.integers(1, 9), fan_in=st.integers(1, 6), fan_out=st.integers(1, 6),
       omega=st.floats(0.5, 40.0), bias=st.booleans(), lead=st.booleans())
def test_sine_linear_matches_the_plain_expression_to_second_order(rows, fan_in, fan_out, omega, bias, lead):
    """The fused op is the same function: values, gradients and second derivatives (float64)."""
    g = torch.Generator().manual_seed(rows * 100 + fan_in * 10 + fan_out)
    shape = (2, rows, fan_in) if lead else (rows, fan_in)
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    w = (torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) / fan_in).requires_grad_()
    b = torch.randn(fan_out, generator=g, dtype=torch.float64).requires_grad_() if bias else None
    args = (x, w) + ((b,) if bias else ())

    def fused(*a):
        return sine_linear(a[0], a[1], a[2] if bias else None, omega)

    torch.testing.assert_close(fused(*args), _plain_sine(x, w, b, omega))
    assert torch.autograd.gradcheck(fused, args)
    assert torch.autograd.gradgradcheck(fused, args)


def test_sine_linear_under_torch_func_and_compile():
    x = torch.rand(7, 3, dtype=torch.float64)
    b = torch.rand(4, dtype=torch.float64)
    ws = torch.rand(5, 4, 3, dtype=torch.float64)
    vm = torch.func.vmap(lambda w: sine_linear(x, w, b, 3.0))(ws)
    torch.testing.assert_close(vm, torch.func.vmap(lambda w: _plain_sine(x, w, b, 3.0))(ws))
    h = torch.func.hessian(lambda w: sine_linear(x, w, b, 3.0).sum())(ws[0])  # forward-over-reverse
    torch.testing.assert_close(h, torch.func.hessian(lambda w: _plain_sine(x, w, b, 3.0).sum())(ws[0]))
    net = Siren(2, 8, 1, 3)
    pts = torch.rand(10, 2)
    torch.testing.assert_close(torch.compile(net, fullgraph=True)(pts), net(pts), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sine_linear_training_uses_compiled_kernels_and_evaluation_stays_eager(dtype, monkeypatch):
    """Big training batches run sin and cos x grad through compiled kernels (the same function to
    float rounding); without gradients the output is the eager one bit for bit; double backward
    and vmap stay exact."""
    from hyperproj import _compiled

    g = torch.Generator().manual_seed(3)
    rows = (1 << 17) // 48 + 8  # just above the compiled-kernel threshold
    x = (torch.rand(rows, 48, generator=g, dtype=dtype) * 2 - 1).requires_grad_()
    w = (torch.randn(48, 48, generator=g, dtype=dtype) / 48).requires_grad_()
    b = torch.randn(48, generator=g, dtype=dtype).requires_grad_()
    up = torch.randn(rows, 48, generator=g, dtype=dtype)

    def value_and_grads():
        out = sine_linear(x, w, b, 30.0)
        return (out.detach(), *torch.autograd.grad(out, (x, w, b), up))

    fast = value_and_grads()
    assert {"inr.sin", "inr.cos_grad"} <= set(_compiled._kernels)
    assert not (_compiled.is_broken("inr.sin") or _compiled.is_broken("inr.cos_grad"))
    monkeypatch.setenv("HYPERPROJ_COMPILE", "0")
    eager = value_and_grads()
    # float rounding only: the gradients sum thousands of rows, so compare against each tensor's scale
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, e in zip(fast, eager):
        assert float((a - e).abs().max()) <= tol * float(e.abs().max()), (a - e).abs().max()
    monkeypatch.setenv("HYPERPROJ_COMPILE", "1")
    with torch.no_grad():  # evaluation: the eager sine, bit for bit
        assert torch.equal(sine_linear(x, w, b, 30.0), torch.sin(torch.nn.functional.linear(x, w * 30.0, b * 30.0)))
    if dtype == torch.float64:  # second order through the big path: exact
        (gw,) = torch.autograd.grad((sine_linear(x, w, b, 30.0) * up).sum(), w, create_graph=True)
        (gw_plain,) = torch.autograd.grad((_plain_sine(x, w, b, 30.0) * up).sum(), w, create_graph=True)
        torch.testing.assert_close(gw, gw_plain)
        v = torch.randn_like(w)
        torch.testing.assert_close(torch.autograd.grad((gw * v).sum(), b)[0],
                                   torch.autograd.grad((gw_plain * v).sum(), b)[0])
        ws = torch.stack([w.detach(), w.detach() * 0.5])
        vm = torch.func.vmap(lambda ww: sine_linear(x.detach(), ww, b.detach(), 30.0))(ws)
        torch.testing.assert_close(vm, torch.func.vmap(lambda ww: _plain_sine(x.detach(), ww, b.detach(), 30.0))(ws))


def test_sine_linear_under_bfloat16_autocast_trains():
    net = Siren(2, 8, 1, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.rand(16, 2))
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())


def test_siren_not_outermost_linear_ends_in_sine():
    net = Siren(2, 16, 1, 1, outermost_linear=False)
    out = net(torch.randn(100, 2))
    assert out.abs().max() <= 1.0
    assert linears(net)[-1].hyperproj_init["role"] == "last"


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"in_features": 0}, "in_features"),
        ({"hidden_layers": -1}, "hidden_layers"),
        ({"first_omega": 0}, "first_omega"),
        ({"fourier_features": -2}, "fourier_features"),
    ],
)
def test_siren_bad_arguments(kwargs, word):
    args = {"in_features": 2, "hidden_features": 8, "hidden_layers": 1, "out_features": 1, **kwargs}
    with pytest.raises(HyperprojError, match=word):
        Siren(**args)


# ---------------------------------------------------------------- Fourier features
@given(d=st.integers(1, 4), L=st.integers(0, 6), keep=st.booleans())
@settings(max_examples=30, deadline=None)
def test_fourier_features_shape_and_values(d, L, keep):
    if L == 0 and not keep:
        with pytest.raises(HyperprojError):
            FourierFeatures(d, L, include_input=keep)
        return
    enc = FourierFeatures(d, L, include_input=keep)
    x = torch.rand(7, d) * 2 - 1
    y = enc(x)
    assert y.shape == (7, enc.out_features) == (7, d * (int(keep) + 2 * L))
    assert n_params(enc) == 0
    off = d if keep else 0
    if keep:
        torch.testing.assert_close(y[:, :d], x)
    for k in range(L):
        base = off + 2 * d * k
        torch.testing.assert_close(y[:, base : base + d], torch.sin(2**k * math.pi * x))
        torch.testing.assert_close(y[:, base + d : base + 2 * d], torch.cos(2**k * math.pi * x))


def test_fourier_features_parameter_counts_match_docs_table():
    # The table in docs/models.md lists these numbers.
    assert n_params(Siren(2, 40, 9, 3)) == 15003
    assert n_params(Siren(2, 40, 9, 3, fourier_features=10)) == 15003 + 40 * 40
    assert n_params(MLP(2, 64, 3, 3)) == 12867
    assert n_params(MLP(2, 64, 3, 3, fourier_features=10)) == 12867 + 64 * 40


def test_fourier_features_compose_in_front_of_a_model():
    enc = FourierFeatures(2, 4)
    net = torch.nn.Sequential(enc, Siren(enc.out_features, 16, 1, 3))
    assert net(torch.zeros(3, 2)).shape == (3, 3)


# ---------------------------------------------------------------- MLP
def test_mlp_activations_and_init_declarations():
    relu = MLP(2, 32, 1, 3)
    assert isinstance(relu.net[1], torch.nn.ReLU)
    assert [lin.hyperproj_init for lin in linears(relu)][0] == {"rule": "torch", "role": "first"}
    he = MLP(2, 256, 1, 3, activation="gelu", init="he")
    lin = linears(he)[1]
    assert lin.hyperproj_init["rule"] == "he"
    # kaiming_uniform with relu gain: bound sqrt(6 / fan_in)
    assert lin.weight.abs().max() <= math.sqrt(6 / 256)
    assert float(lin.weight.detach().std()) == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    with pytest.raises(HyperprojError, match="activation"):
        MLP(2, 8, 1, 1, activation="swish2")


# ---------------------------------------------------------------- INCODE
def image(h=24, w=20):
    return ImageSignal(torch.rand(h, w, 3, generator=torch.Generator().manual_seed(1)))


def test_incode_structure_targets_and_roles():
    net = Incode(2, 32, 2, 3)
    assert Incode.hyperproj_targets == ("composer",)
    roles = [lin.hyperproj_init["role"] for lin in linears(net.composer)]
    assert roles == ["first", "hidden", "hidden", "last"]
    # Harmonizer's MLP: 64 -> 64 -> 32 -> 4
    assert [(m.in_features, m.out_features) for m in linears(net.harmonizer)] == [(64, 64), (64, 32), (32, 4)]


def test_incode_without_signal_runs_composer_with_neutral_coefficients():
    net = Incode(2, 16, 1, 3)
    x = torch.rand(5, 2)
    torch.testing.assert_close(net(x), net.composer(x))
    assert net.coefficients().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert float(net.regularization_loss()) == 0.0


def test_incode_set_signal_reference_start_and_regularizer():
    net = Incode(2, 16, 1, 3, harmonizer_resolution=16)
    net.set_signal(image(40, 30))
    assert net.signal_image.shape == (1, 3, 16, 12)  # longer side capped, aspect kept
    raw = net.raw_coefficients()
    # Reference init: tiny MLP weights, biases 0.3120, so raw ≈ 0.312 and a = b = exp(0.312).
    torch.testing.assert_close(raw, torch.full((4,), 0.312), atol=0.01, rtol=0)
    net(torch.rand(3, 2))
    assert float(net.regularization_loss().detach()) == 0.0  # all raw values positive
    with torch.no_grad():
        net.harmonizer.mlp[-1].bias.copy_(torch.tensor([-1.0, -1.0, -1.0, -1.0]))
    net(torch.rand(3, 2))
    expected = sum([0.1993, 0.0196, 0.0588, 0.0269])
    assert float(net.regularization_loss()) == pytest.approx(expected, rel=0.02)


def test_incode_freeze_makes_composer_self_sufficient():
    sig = image()
    net = Incode(2, 16, 1, 3)
    net.set_signal(sig)
    before = net(sig.coords).detach()
    net.freeze_harmonizer()
    assert bool(net.frozen)
    torch.testing.assert_close(net(sig.coords), before)
    torch.testing.assert_close(net.composer(sig.coords), before)
    assert not any(p.requires_grad for p in net.harmonizer.parameters())
    # The 4 numbers survive a state_dict round trip into a fresh model.
    fresh = build_model(model_spec(net))
    fresh.load_state_dict(net.state_dict())
    torch.testing.assert_close(fresh(sig.coords), before)
    fresh2 = build_model(model_spec(net))
    fresh2.composer.load_state_dict(net.composer.state_dict())
    fresh2.freeze_harmonizer(net.composer.coefficients.tolist())
    torch.testing.assert_close(fresh2(sig.coords), before)


def test_incode_set_signal_errors_and_copy_after_forward():
    net = Incode(2, 16, 1, 3)
    with pytest.raises(HyperprojError, match="set_signal"):
        net.set_signal(torch.rand(10, 10, 4))
    with pytest.raises(HyperprojError, match="no signal"):
        net.raw_coefficients()
    net.set_signal(image())
    net(torch.rand(3, 2)).sum().backward()  # leaves a graph tensor in the scratch holder
    copy.deepcopy(net)
    pickle.loads(pickle.dumps(net))


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize(
    "model",
    [
        Siren(2, 16, 1, 3, first_omega=20, fourier_features=3),
        MLP(3, 8, 2, 1, activation="gelu", init="he"),
        Incode(2, 16, 1, 3, harmonizer_blocks=1),
        FourierFeatures(2, 3, include_input=False),
    ],
    ids=["siren", "mlp", "incode", "fourier"],
)
def test_registry_round_trip(model):
    spec = model_spec(model)
    assert json.loads(json.dumps(spec)) == spec
    rebuilt = build_model(spec)
    assert type(rebuilt) is type(model)
    assert model_spec(rebuilt) == spec
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(4, spec["config"]["in_features"])
    torch.testing.assert_close(rebuilt(x), model(x))


def test_registry_errors():
    with pytest.raises(HyperprojError, match="known models") as err:
        build_model({"name": "sirne", "config": {}})
    assert "siren" in str(err.value)
    with pytest.raises(HyperprojError, match="does not fit"):
        build_model({"name": "siren", "config": {"width": 3}})
    with pytest.raises(HyperprojError, match="not a registered model"):
        model_spec(torch.nn.Linear(2, 2))
    with pytest.raises(HyperprojError, match="already taken"):
        register_model("siren")(type("Other", (torch.nn.Module,), {}))
    assert {"siren", "mlp", "incode", "fourier-features"} <= set(model_names())


def test_model_spec_unwraps_hypermodel():
    hyperproj = pytest.importorskip("hyperproj")
    if not hasattr(hyperproj, "reparametrize"):
        pytest.skip("hyperproj.reparametrize not available yet")
    net = Siren(2, 16, 1, 3)
    hyper = hyperproj.reparametrize(net, latent_dim=20, seed=0)
    assert model_spec(hyper) == model_spec(net)


def test_incode_reparametrize_targets_only_composer():
    hyperproj = pytest.importorskip("hyperproj")
    if not hasattr(hyperproj, "reparametrize"):
        pytest.skip("hyperproj.reparametrize not available yet")
    net = Incode(2, 16, 1, 3, harmonizer_blocks=1)
    hyper = hyperproj.reparametrize(net, latent_dim=50, seed=0)
    assert all(name.startswith("composer.") for name in hyper.target_names)
    sig = image()
    hyper.base.set_signal(sig)
    assert hyper(sig.coords).shape == (sig.num_pixels, 3)
