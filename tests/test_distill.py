"""hyperproj.distill: least-squares projection of trained weights into the latent."""

import pytest
import torch
from torch import nn

import hyperproj
from hyperproj import HyperprojError


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 3))


P = 2 * 24 + 24 * 24 + 24 * 3  # 696 projected weights


def _planted(n, seed=5, init="torch", projection="dense", latent_scale="unit"):
    """A plain network whose weights are exactly B z_true for the operator distill will build."""
    h0 = hyperproj.reparametrize(_mlp(), n, seed, init=init, projection=projection, latent_scale=latent_scale)
    z = torch.randn(n, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h0.latent.copy_(z)
    return h0.materialize(), z


@pytest.mark.parametrize("kwargs", [{}, {"weighting": "none"}, {"projection": "streamed"},
                                    {"solver": "gram"}, {"solver": "gram", "block_rows": 5},
                                    {"projection": "fastfood"}, {"latent_scale": "offset"}])
def test_exact_recovery_of_planted_latent(kwargs):
    plain, z = _planted(200, projection="fastfood" if kwargs.get("projection") == "fastfood" else "dense",
                        latent_scale=kwargs.get("latent_scale", "unit"))
    hyper = hyperproj.distill(plain, 200, 5, init="torch", **kwargs)
    torch.testing.assert_close(hyper.latent.detach(), z, rtol=0, atol=5e-5)
    assert max(hyper.distill_report.residuals.values()) < 1e-5


def test_block_size_does_not_change_solution():
    net = _mlp(3)
    a = hyperproj.distill(net, 300, 2, solver="gram", block_rows=1).latent.detach()
    b = hyperproj.distill(net, 300, 2, solver="gram", block_rows=10_000).latent.detach()
    c = hyperproj.distill(net, 300, 2, solver="cgls").latent.detach()
    torch.testing.assert_close(c, a, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weighting", ["none", "relative"])
def test_residual_monotone_in_latent_size(weighting):
    # B's columns do not depend on n (column-major generation), so the subspaces are nested and
    # the weighted least-squares residual cannot rise with n.
    net = _mlp(4)
    totals = []
    for n in (50, 150, 300, 500, 690):
        rep = hyperproj.distill(net, n, 0, weighting=weighting).distill_report
        norms = {name: float(net.get_parameter(name).detach().norm()) for name in rep.residuals}
        if weighting == "relative":
            totals.append(sum(r**2 for r in rep.residuals.values()))
        else:
            totals.append(sum((r * norms[k]) ** 2 for k, r in rep.residuals.items()))
    assert all(b <= a * (1 + 1e-4) for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < 0.05 * totals[0]


@pytest.mark.parametrize("projection", ["dense", "fastfood", "streamed"])
@pytest.mark.parametrize("weighting", ["relative", "none"])
def test_square_system_is_solved_exactly(projection, weighting):
    # n = P: B is square (condition number ~ n), so only a direct solve reproduces the weights;
    # any weighting gives the same unique solution.
    net = _mlp(6)
    hyper = hyperproj.distill(net, P, 0, projection=projection, weighting=weighting)
    rep = hyper.distill_report
    assert rep.solver == "lu"
    assert max(rep.residuals.values()) < 1e-4, rep.residuals
    x = torch.rand(32, 2)
    torch.testing.assert_close(hyper(x), net(x), rtol=1e-4, atol=1e-5)


def test_explicit_gram_solver_at_square_size_uses_lu():
    rep = hyperproj.distill(_mlp(6), P, 0, solver="gram").distill_report
    assert rep.solver == "lu" and max(rep.residuals.values()) < 1e-4
    with pytest.raises(HyperprojError, match="solver='lu' needs a square system"):
        hyperproj.distill(_mlp(6), P - 1, 0, solver="lu")


def test_min_norm_when_latent_exceeds_weights():
    net = _mlp(5)
    hyper = hyperproj.distill(net, P + 100, 0)
    rep = hyper.distill_report
    assert rep.solver == "gram-min-norm"
    assert max(rep.residuals.values()) < 1e-4
    # biases and untargeted parameters are copied
    torch.testing.assert_close(hyper.base[0].bias, net[0].bias)
    x = torch.rand(16, 2)
    torch.testing.assert_close(hyper(x), net(x), rtol=1e-3, atol=1e-4)


def test_report_and_original_untouched():
    net = _mlp(6)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    hyper = hyperproj.distill(net, 100, 0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    text = str(hyper.distill_report)
    assert "relative residual" in text and "solver=cgls" in text  # n = 100 < 0.7 P: CG
    assert hyper.distill_report.latent_norm > 0


def test_clear_errors():
    with pytest.raises(HyperprojError, match="weighting must be one of"):
        hyperproj.distill(_mlp(), 10, weighting="loud")
    with pytest.raises(HyperprojError, match="solver must be"):
        hyperproj.distill(_mlp(), 10, solver="magic")
    hyper = hyperproj.reparametrize(_mlp(), 10)
    with pytest.raises(HyperprojError, match="not a HyperModel"):
        hyperproj.distill(hyper, 10)
    with pytest.raises(HyperprojError, match="needs a signal"):
        hyperproj.distill(_mlp(), 10, steps=5)
    with pytest.raises(HyperprojError, match="nothing to target"):
        hyperproj.distill(nn.Tanh(), 10)
