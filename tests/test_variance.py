"""Variance matching: generated weights start with the variance their init rule asks for.

Statistical tolerance. Given the initial latent z0, each generated entry w_i = s_l (R_i · z0) is
zero-mean with variance exactly s_l² ‖z0‖² = Var_target (R has unit-variance i.i.d. entries),
and distinct entries of a layer are independent. For m entries, m·mean(w²)/σ² is χ²_m for normal
R, and more concentrated for uniform or Rademacher R (their sums are strictly sub-Gaussian).
Laurent & Massart (2000): P(χ²_m ≥ m + 2√(mx) + 2x) ≤ e^{-x} and P(χ²_m ≤ m − 2√(mx)) ≤ e^{-x}.
With x = 18 each tail fails with probability ≤ 1.6e-8, so the check's false-failure rate per
example is far below 1e-6. The mean uses Hoeffding's sub-Gaussian bound at the same level.
Hypothesis runs derandomized, so CI sees the same examples every time.
"""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hyperproj
from hyperproj.init_rules import InitContext, get_rule

X = 18.0


def _second_moment_ok(w: torch.Tensor, target: float) -> bool:
    m = w.numel()
    ratio = float(w.double().pow(2).mean()) / target
    lower = 1 - 2 * math.sqrt(X / m)
    upper = 1 + 2 * math.sqrt(X / m) + 2 * X / m
    return lower <= ratio <= upper


def _mean_ok(w: torch.Tensor, target: float) -> bool:
    m = w.numel()
    return abs(float(w.double().mean())) <= math.sqrt(2 * X * target / m)


def _mlp(widths):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


RULES = ["torch", "he", "xavier", "siren", "siren-doh", "match"]


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    widths=st.lists(st.integers(8, 64), min_size=2, max_size=5),
    latent_dim=st.integers(1, 400),
    seed=st.integers(0, 2**63 - 1),
    rule=st.sampled_from(RULES),
    distribution=st.sampled_from(["uniform", "normal", "rademacher"]),
    latent_scale=st.sampled_from(["unit", "paper"]),
)
def test_generated_weights_match_rule_variance(widths, latent_dim, seed, rule, distribution, latent_scale):
    net = _mlp(widths)
    hyper = hyperproj.reparametrize(
        net, latent_dim=latent_dim, seed=seed, init=rule, projection="dense",
        distribution=distribution, latent_scale=latent_scale,
    )
    weights = hyper.generate_weights()
    names = hyper.target_names
    for i, name in enumerate(names):
        role = "first" if i == 0 else ("last" if i == len(names) - 1 else "hidden")
        module = net.get_submodule(name.rpartition(".")[0])
        target = get_rule(rule)(InitContext(module, "weight", name, module.weight, role))
        w = weights[name].detach()
        if w.numel() < 64:
            continue
        assert _second_moment_ok(w, target), (name, float(w.pow(2).mean()) / target)
        assert _mean_ok(w, target), name


@settings(max_examples=25, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), latent_dim=st.integers(1, 300))
def test_same_seed_identical_different_seed_differs(seed, latent_dim):
    net = _mlp([16, 32, 8])
    a = hyperproj.reparametrize(net, latent_dim, seed).generate_weights()
    b = hyperproj.reparametrize(net, latent_dim, seed).generate_weights()
    c = hyperproj.reparametrize(net, latent_dim, (seed + 1) % 2**63).generate_weights()
    for name in a:
        assert torch.equal(a[name], b[name])
        assert not torch.equal(a[name], c[name])


def _empirical_torch_init_variance(make):
    torch.manual_seed(0)
    return float(torch.cat([make().weight.detach().flatten() for _ in range(20)]).var())


def test_torch_rule_agrees_with_pytorch_defaults():
    # Check the 'torch' rule against what PyTorch's own initialisers produce.
    cases = [
        (lambda: nn.Linear(50, 40), "weight"),
        (lambda: nn.Conv2d(6, 8, 3), "weight"),
        (lambda: nn.ConvTranspose2d(6, 8, 3), "weight"),
        (lambda: nn.Conv1d(4, 5, 7), "weight"),
        (lambda: nn.Embedding(100, 30), "weight"),
        (lambda: nn.Bilinear(10, 20, 30), "weight"),
    ]
    for make, pname in cases:
        mod = make()
        want = get_rule("torch")(InitContext(mod, pname, pname, mod.weight))
        got = _empirical_torch_init_variance(make)
        assert abs(got / want - 1) < 0.06, (type(mod).__name__, got, want)
    mha = nn.MultiheadAttention(32, 4)
    want = get_rule("torch")(InitContext(mha, "in_proj_weight", "in_proj_weight", mha.in_proj_weight))
    torch.manual_seed(0)
    got = float(torch.cat([nn.MultiheadAttention(32, 4).in_proj_weight.detach().flatten() for _ in range(10)]).var())
    assert abs(got / want - 1) < 0.06


def test_siren_rule_values():
    lin = nn.Linear(40, 40)
    first = get_rule("siren")(InitContext(lin, "weight", "w", lin.weight, "first"))
    hidden = get_rule("siren")(InitContext(lin, "weight", "w", lin.weight, "hidden", {"omega": 30.0}))
    assert math.isclose(first, (1 / 40) ** 2 / 3)  # U(±1/fan_in)
    assert math.isclose(hidden, (math.sqrt(6 / 40) / 30) ** 2 / 3)  # U(±sqrt(6/fan_in)/ω)
    doh = get_rule("siren-doh")(InitContext(lin, "weight", "w", lin.weight, "hidden"))
    assert math.isclose(doh, (1 / (30 * math.sqrt(40))) ** 2 / 3)  # U(±1/(ω sqrt(fan_in)))


def test_match_rule_is_exact_at_large_size():
    net = nn.Sequential(nn.Linear(200, 300))
    with torch.no_grad():
        net[0].weight.mul_(7.0)
    hyper = hyperproj.reparametrize(net, 500, 3, init="match")
    w = hyper.generate_weights()["0.weight"]
    target = float(net[0].weight.detach().var(unbiased=False))
    assert _second_moment_ok(w, target)
