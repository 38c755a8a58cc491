"""``projection="orthogonal"``: exact orthogonality, the common contract, autograd, and its use.

The kind exists for one property (columns — or rows when ``n > P`` — exactly orthonormal up to
``√N``), so that is tested as a property over sizes and seeds, together with everything every
projection kind promises (variance per layer, adjoint, rows, nesting, determinism).
"""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperproj
from hyperproj import rng
from hyperproj._errors import HyperprojError
from hyperproj._orthogonal import ORTHO_STREAM_BASE, ROUNDS, OrthogonalProjection
from hyperproj.projection import make_projection, projection_kinds

SETTINGS = settings(derandomize=True, max_examples=25, deadline=None, database=None)


def _dense(p: OrthogonalProjection) -> torch.Tensor:
    with torch.no_grad():
        return p.double()(torch.eye(p.latent_dim, dtype=torch.float64)).T  # (P, n)


def test_registered_and_buildable_by_name():
    assert "orthogonal" in projection_kinds()
    p = make_projection("orthogonal", 7, [5, 9], [1.0, 2.0], seed=3)
    assert isinstance(p, OrthogonalProjection) and p.num_outputs == 14


@SETTINGS
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=3).filter(lambda s: sum(s) > 0),
       share=st.floats(0.01, 2.0), seed=st.integers(0, 2**62))
def test_exactly_orthogonal(sizes, share, seed):
    P = sum(sizes)
    n = max(1, round(share * P))
    p = OrthogonalProjection(n, sizes, [1.0] * len(sizes), seed=seed)
    B = _dense(p) / math.sqrt(p.dim)
    if n <= P:  # orthonormal columns: every latent direction moves the weights alike
        gram, eye = B.T @ B, torch.eye(n, dtype=torch.float64)
    else:  # more latent values than weights: orthonormal rows
        gram, eye = B @ B.T, torch.eye(P, dtype=torch.float64)
    assert float((gram - eye).abs().max()) < 1e-5


def test_iid_operators_are_not_orthogonal():
    # what the kind is for: at n = P an i.i.d. operator's Gram matrix has near-zero eigenvalues
    for kind in ("dense", "fastfood"):
        B = make_projection(kind, 400, [400], [1.0], seed=0).rows(0, 400).double()
        ev = torch.linalg.eigvalsh(B.T @ B / 400)
        assert float(ev.min()) < 0.01 and float(ev.max()) > 2.5, kind
    ev = torch.linalg.eigvalsh(_dense(OrthogonalProjection(400, [400], [1.0], seed=0)).T.matmul(
        _dense(OrthogonalProjection(400, [400], [1.0], seed=0))) / 400)
    assert float(ev.min()) > 0.9999 and float(ev.max()) < 1.0001


def test_entries_look_gaussian():
    B = OrthogonalProjection(700, [1000], [1.0], seed=5).rows(0, 1000).double()
    assert abs(float(B.pow(2).mean()) - 1) < 0.02
    assert abs(float(B.pow(4).mean()) - 3) < 0.1  # kurtosis of a Gaussian
    assert abs(float(B.mean())) < 0.01


@SETTINGS
@given(
    n=st.integers(1, 2000),
    sizes=st.lists(st.integers(200, 2000), min_size=1, max_size=3),
    scales=st.lists(st.floats(1e-3, 10.0), min_size=3, max_size=3),
    seed=st.integers(0, 2**62),
    onehot=st.booleans(),
)
def test_layer_variance_matches_target(n, sizes, scales, seed, onehot):
    scales = scales[: len(sizes)]
    p = OrthogonalProjection(n, sizes, scales, seed=seed)
    if onehot:
        z = torch.zeros(n)
        z[seed % n] = -2.0
    else:
        z = torch.randn(n, generator=torch.Generator().manual_seed(seed % 2**31))
    w = p(z).double()
    znorm = float(z.double().norm())
    for layer, (size, scale) in enumerate(zip(sizes, scales)):
        seg = w[p.offsets[layer] : p.offsets[layer + 1]]
        ratio = float(seg.pow(2).mean().sqrt()) / (scale * znorm)
        assert abs(ratio - 1.0) * math.sqrt(2 * size) < 7.0, (layer, ratio)


@SETTINGS
@given(n=st.integers(1, 300), sizes=st.lists(st.integers(1, 400), min_size=1, max_size=3),
       seed=st.integers(0, 2**62))
def test_adjoint_rows_and_forward_agree(n, sizes, seed):
    p = OrthogonalProjection(n, sizes, [0.5 + i for i in range(len(sizes))], seed=seed)
    z = torch.randn(n, dtype=torch.float64)
    g = torch.randn(p.num_outputs, dtype=torch.float64)
    q = p.double()
    assert abs(float(q(z) @ g) - float(z @ q.adjoint(g))) < 1e-9 * (1 + float(z.norm() * g.norm()) * p.dim)
    rows = OrthogonalProjection(n, sizes, [0.5 + i for i in range(len(sizes))], seed=seed).rows(0, p.num_outputs)
    assert torch.allclose(rows.double(), _dense(p), atol=1e-4)
    cut = p.num_outputs // 2
    assert torch.equal(torch.cat([p.rows(0, cut), p.rows(cut, p.num_outputs)]), p.float().rows(0, p.num_outputs))


def test_nested_latent_sizes():
    # n <= P: the operator for m is the first m columns of the one for n (N = P for both)
    small = OrthogonalProjection(30, [120, 80], [1.0, 0.3], seed=11).rows(0, 200)
    large = OrthogonalProjection(150, [120, 80], [1.0, 0.3], seed=11).rows(0, 200)
    assert torch.allclose(small, large[:, :30], atol=1e-5)


def test_streams_documented():
    p = OrthogonalProjection(10, [50], [1.0], seed=7)
    for r in range(ROUNDS):
        assert torch.equal(p.signs[r], rng.rademacher(7, ORTHO_STREAM_BASE + 4 * r, 0, 50))
        assert torch.equal(p.mid_signs[r], rng.rademacher(7, ORTHO_STREAM_BASE + 4 * r + 2, 0, 50))


def test_golden_fingerprint():
    # Pins the operator: a change here breaks every file written with it.
    p = OrthogonalProjection(37, [100, 50], [1.0, 0.5], seed=123)
    assert p.fingerprint(4) == pytest.approx(
        [0.3579038977622986, 0.5069667100906372, 2.032498598098755, -3.763047456741333], rel=1e-5)


def test_determinism_seed_sensitivity_and_global_rng():
    state = torch.random.get_rng_state()
    a = OrthogonalProjection(20, [64], [1.0], seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    z = torch.randn(20)
    assert torch.equal(a(z), OrthogonalProjection(20, [64], [1.0], seed=1)(z))
    assert not torch.allclose(a(z), OrthogonalProjection(20, [64], [1.0], seed=2)(z))


def test_batched_vmap_pickle_dtype_and_state():
    p = OrthogonalProjection(12, [40, 9], [1.0, 2.0], seed=0)
    zs = torch.randn(5, 12)
    each = torch.stack([p(z) for z in zs])
    assert torch.allclose(p(zs), each, atol=1e-5)
    assert torch.allclose(torch.func.vmap(p)(zs), each, atol=1e-5)
    for clone in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
        assert torch.equal(clone(zs), p(zs))
    assert p.double()(zs.double()).dtype == torch.float64
    assert len(p.state_dict()) == 0


def test_gradients_higher_order_and_compile():
    p = OrthogonalProjection(9, [20, 7], [1.0, 0.5], seed=3).double()
    dense = _dense(p)
    z = torch.randn(9, dtype=torch.float64, requires_grad=True)
    a = torch.randn(27, dtype=torch.float64)
    (g,) = torch.autograd.grad((p(z) ** 2 * a).sum(), z, create_graph=True)
    hess = torch.stack([torch.autograd.grad(g[i], z, retain_graph=True)[0] for i in range(9)])
    assert torch.allclose(hess, 2 * dense.T @ (a[:, None] * dense), atol=1e-8)
    _, tangent = torch.func.jvp(p, (z.detach(),), (a[:9],))
    assert torch.allclose(tangent, dense @ a[:9], atol=1e-10)
    assert torch.autograd.gradgradcheck(p, (z,))

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.z = torch.nn.Parameter(torch.randn(12))
            self.proj = OrthogonalProjection(12, [30], [1.0], seed=0)

        def forward(self, x):
            return x @ self.proj(self.z).view(6, 5)

    m, x = Holder(), torch.randn(4, 6)
    out = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    assert torch.allclose(out, m(x), atol=1e-5)


def test_errors_name_the_kind_and_parameter():
    p = OrthogonalProjection(8, [10], [1.0], seed=0)
    with pytest.raises(HyperprojError, match=r"orthogonal.*z must have shape \(\.\.\., 8\)"):
        p(torch.ones(7))
    with pytest.raises(HyperprojError, match=r"orthogonal.*g must have shape \(\.\.\., 10\)"):
        p.adjoint(torch.ones(8))
    with pytest.raises(HyperprojError, match="rows need"):
        p.rows(3, 11)
    with pytest.raises(HyperprojError, match="latent_dim must be >= 1"):
        OrthogonalProjection(0, [10], [1.0], seed=0)
    with pytest.raises(HyperprojError, match="distribution must be 'uniform'"):
        OrthogonalProjection(4, [10], [1.0], seed=0, distribution="normal")
    with pytest.raises(HyperprojError, match="seed"):
        OrthogonalProjection(4, [10], [1.0], seed=-1)


def test_full_latent_step_is_the_plain_gradient_step():
    # At n = P with the offset latent, a gradient step on z moves the weights exactly as the same
    # step on the weights would (B Bᵀ = N·I / n = I): the two-line wrap at 100 % is the plain model.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    P = 2 * 16 + 16 * 3
    hyper = hyperproj.reparametrize(net, P, seed=0, projection="orthogonal", latent_scale="offset",
                                    targets=["0.weight", "2.weight"])
    x, y = torch.randn(64, 2), torch.randn(64, 3)
    w_before = torch.cat([w.flatten() for w in hyper.generate_weights().values()]).detach()
    plain = copy.deepcopy(net)
    with torch.no_grad():
        plain[0].weight.copy_(hyper.generate_weights()["0.weight"])
        plain[2].weight.copy_(hyper.generate_weights()["2.weight"])
        plain[0].bias.copy_(hyper.base[0].bias)
        plain[2].bias.copy_(hyper.base[2].bias)
    ((hyper(x) - y) ** 2).mean().backward()
    ((plain(x) - y) ** 2).mean().backward()
    with torch.no_grad():
        hyper.latent.sub_(0.1 * hyper.latent.grad)
    w_after = torch.cat([w.flatten() for w in hyper.generate_weights().values()]).detach()
    step = torch.cat([plain[0].weight.grad.flatten(), plain[2].weight.grad.flatten()])
    assert torch.allclose(w_after - w_before, -0.1 * step, atol=1e-5)
