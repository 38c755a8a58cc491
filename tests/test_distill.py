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
    # B's columns do not depend on n (column-major generation), so with the linear (unit) latent
    # the subspaces are nested and the weighted least-squares residual cannot rise with n. (The
    # offset latent, distill's default from 30 % of the weights, reaches the affine set W0 + range(B)
    # whose W0 = B z0 changes with n, so its residuals are not nested.)
    net = _mlp(4)
    totals = []
    for n in (50, 150, 300, 500, 690):
        rep = hyperproj.distill(net, n, 0, weighting=weighting, latent_scale="unit").distill_report
        norms = {name: float(net.get_parameter(name).detach().norm()) for name in rep.residuals}
        if weighting == "relative":
            totals.append(sum(r**2 for r in rep.residuals.values()))
        else:
            totals.append(sum((r * norms[k]) ** 2 for k, r in rep.residuals.items()))
    assert all(b <= a * (1 + 1e-4) for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < 0.05 * totals[0]


# relative residual reached at n = P: the offset latent solves for W - W0 in units of each layer's
# update gain, which costs about one digit of float32 (observed 1.1e-4 against 3e-5 for unit)
_SQUARE_TOL = {"unit": 1e-4, "offset": 5e-4}


@pytest.mark.parametrize("latent_scale", ["unit", "offset"])
@pytest.mark.parametrize("projection", ["dense", "fastfood", "streamed"])
@pytest.mark.parametrize("weighting", ["relative", "none"])
def test_square_system_is_solved_exactly(projection, weighting, latent_scale):
    # n = P: B is square (condition number ~ n), so only a direct solve reproduces the weights;
    # any weighting gives the same unique solution.
    net = _mlp(6)
    hyper = hyperproj.distill(net, P, 0, projection=projection, weighting=weighting, latent_scale=latent_scale)
    rep = hyper.distill_report
    assert rep.solver == "lu"
    assert max(rep.residuals.values()) < _SQUARE_TOL[latent_scale], rep.residuals
    x = torch.rand(32, 2)
    tol = _SQUARE_TOL[latent_scale]
    torch.testing.assert_close(hyper(x), net(x), rtol=tol, atol=tol / 10)


def test_explicit_gram_solver_at_square_size_uses_lu():
    rep = hyperproj.distill(_mlp(6), P, 0, solver="gram").distill_report  # offset latent at n = P
    assert rep.solver == "lu" and max(rep.residuals.values()) < _SQUARE_TOL["offset"]
    with pytest.raises(HyperprojError, match="solver='lu' needs a square system"):
        hyperproj.distill(_mlp(6), P - 1, 0, solver="lu")


@pytest.mark.parametrize("projection", ["dense", "auto"])
def test_min_norm_when_latent_exceeds_weights(projection):
    net = _mlp(5)
    hyper = hyperproj.distill(net, P + 100, 0, projection=projection)
    rep = hyper.distill_report
    # auto: the orthogonal kind (n > P/2), whose conditioning lets CG solve it; CG from z = 0 stays
    # in the row space of B, so it also ends at the minimum-norm solution
    assert rep.solver == ("gram-min-norm" if projection == "dense" else "cgls")
    assert max(rep.residuals.values()) < 1e-4
    if projection == "auto":
        proj = hyper.projection
        assert proj.kind == "orthogonal"
        z = hyper.latent.detach().double()
        rows = proj.rows(0, proj.num_outputs).double()  # (P, n): z in their span <=> minimum norm
        in_span = rows.T @ torch.linalg.lstsq(rows.T, z).solution
        assert float((in_span - z).norm() / z.norm()) < 1e-4
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


# ---------------------------------------------------------------- distill + fine-tune vs plain
# The cheap version of benchmarks/distill.py part 3: a 48-px astronaut crop, Siren(2, 20, 2, 3)
# (963 parameters, 900 projected weights) pretrained 200 full-batch steps, distilled at 50 %
# (450 latent + 63 biases = 513 trainable, offset latent) and fine-tuned 100 steps with distill's
# defaults, against a plain Siren(2, 14, 2, 3) (507 parameters) trained 300 steps with fit's defaults.
_SMALL = {"size": 48, "width": 20, "depth": 2, "pretrain": 200, "finetune": 100, "plain_width": 14}


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _small_run(signal, seed):
    from hyperproj.inr import Siren, fit

    cfg = _SMALL
    torch.manual_seed(seed)
    siren = Siren(2, cfg["width"], cfg["depth"], 3)
    fit(siren, signal, cfg["pretrain"], progress=False, seed=seed)
    n = sum(p.numel() for p in siren.parameters() if p.dim() >= 2) // 2
    hyper = hyperproj.distill(siren, n, seed=seed, signal=signal, steps=cfg["finetune"], fit_options={"seed": seed})
    torch.manual_seed(seed)
    plain = Siren(2, cfg["plain_width"], cfg["depth"], 3)
    # the plain SIREN has about the D'OH model's trainable count (latent + biases)
    assert abs(_count(plain) - hyper.num_trainable) <= 0.05 * hyper.num_trainable
    fit(plain, signal, cfg["pretrain"] + cfg["finetune"], progress=False, seed=seed)
    rep = hyper.distill_report
    return {"seed": seed, "projected": rep.metrics_projected["psnr"],
            "distilled": rep.metrics_finetuned["psnr"], "plain": signal.evaluate(plain)["psnr"]}


@pytest.fixture(scope="module")
def small_distill_runs():
    from _data import astronaut_crop

    signal = astronaut_crop(_SMALL["size"])
    # One thread: the numbers are step-based (threads change only the speed), and on a busy
    # 2-core machine two threads ran these three seeds in 351 s, one thread in 28 s (14 s of CPU).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [_small_run(signal, seed) for seed in (0, 1, 2)]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_distill_finetune_recovers_from_projection(small_distill_runs):
    # Projecting a trained SIREN onto half its dimensions wrecks it (observed 5.1 / 6.3 / 6.3 dB
    # for seeds 0 / 1 / 2); the 100 fine-tuning steps must then do real work (observed 22.2 /
    # 23.8 / 24.6 dB, +17 to +18 dB): fine-tuning that is a no-op or collapses fails here.
    for run in small_distill_runs:
        assert run["distilled"] > run["projected"] + 12, run


@pytest.mark.slow
def test_distill_gap_to_plain_half_size_is_bounded(small_distill_runs):
    # Observed: distill + fine-tune is 4.97 / 3.52 / 2.71 dB BELOW the plain half-size SIREN
    # trained the same 300 steps (22.20 vs 27.18, 23.81 vs 27.34, 24.55 vs 27.26 dB). This pins
    # the gap so that it cannot silently grow; see the strict xfail below for the claim itself.
    for run in small_distill_runs:
        assert run["distilled"] > run["plain"] - 6.5, run


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "measured: distill at 50 % + 100 fine-tuning steps stays 2.7-5.0 dB below a plain half-size SIREN "
    "trained the same total steps (benchmarks/distill.py part 3: 3-9 dB on Kodak crops); if this "
    "passes, distill got better: drop the xfail"))
def test_distill_not_below_plain_half_size(small_distill_runs):
    for run in small_distill_runs:
        assert run["distilled"] >= run["plain"] - 0.1, run
