"""Tests of ``projection="fastfood"`` (hyperproj/_fastfood.py).

Statistical tolerances (variance test): for ``m`` generated weights of one layer the ratio
``rms(W_l) / (scale_l ‖z‖)`` has standard deviation ``≈ 1/√(2m)`` for i.i.d. Gaussian entries;
Fastfood entries are slightly heavier-tailed, and over 800 random layers (sizes 200–3000, n 1–3000,
three distributions, Gaussian / constant / one-hot z) the largest observed ``|ratio − 1|·√(2m)``
was 4.3 and the largest ``|mean|·√m / (scale ‖z‖)`` 3.5. The tests allow 7 for both: a failure
means a real bias, not bad luck. Hypothesis runs derandomized, so the examples are fixed.
"""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperproj import rng
from hyperproj._errors import HyperprojError
from hyperproj._fastfood import STREAM_BASE, FastfoodProjection, _sylvester, hadamard_transform
from hyperproj.projection import make_projection, projection_kinds

SETTINGS = settings(derandomize=True, max_examples=25, deadline=None, database=None)
DISTS = st.sampled_from(["uniform", "normal", "rademacher"])


def _latent(n: int, kind: int, seed: int) -> torch.Tensor:
    if kind == 0:
        return torch.randn(n, generator=torch.Generator().manual_seed(seed))
    if kind == 1:
        return torch.full((n,), 0.3)
    z = torch.zeros(n)
    z[seed % n] = -2.0
    return z


def _explicit(p: FastfoodProjection) -> torch.Tensor:
    """The operator as a dense float64 matrix, built from the definition S H G Π H D."""
    d = p.dim
    h = _sylvester(p.log2d).double()
    blocks = []
    for k in range(p.num_blocks):
        perm = p.perm[k * d : (k + 1) * d] - k * d
        pi = torch.eye(d, dtype=torch.float64)[perm]
        g = p.gdiag[k].double()
        v = h @ torch.diag(g) @ pi @ h @ torch.diag(p.signs[k].double()) / g.norm()
        blocks.append(v)
    scales = torch.repeat_interleave(torch.tensor(p.layer_scales, dtype=torch.float64),
                                     torch.tensor(p.layer_sizes))
    return torch.cat(blocks)[: p.num_outputs, : p.latent_dim] * scales[:, None]


# ------------------------------------------------------------------------------- structure


def test_registered_and_buildable_by_name():
    assert "fastfood" in projection_kinds()
    p = make_projection("fastfood", 10, [5, 6], [1.0, 2.0], seed=0)
    assert isinstance(p, FastfoodProjection) and p.kind == "fastfood"


@SETTINGS
@given(n=st.integers(1, 40), sizes=st.lists(st.integers(0, 70), min_size=1, max_size=3),
       seed=st.integers(0, 2**62), dist=DISTS)
def test_matches_explicit_definition(n, sizes, seed, dist):
    scales = [0.5 + i for i in range(len(sizes))]
    p = FastfoodProjection(n, sizes, scales, seed=seed, distribution=dist)
    v = _explicit(p)
    z = torch.randn(n, dtype=torch.float64)
    assert torch.allclose(p(z.float()).double(), v @ z, rtol=1e-5, atol=1e-5 * float(z.norm()))


def test_block_count_and_padding():
    p = FastfoodProjection(100, [300, 13], [1.0, 1.0], seed=0)
    assert (p.dim, p.num_blocks) == (128, 3)
    assert FastfoodProjection(1, [4], [1.0], seed=0).dim == 1
    assert FastfoodProjection(64, [64], [1.0], seed=0).num_blocks == 1


def test_rows_have_squared_norm_d():
    # n = d (no padding) and whole blocks: every row of V_k has squared norm exactly d.
    p = FastfoodProjection(64, [192], [1.0], seed=5, distribution="normal")
    norms = p.rows(0, 192).double().pow(2).sum(1)
    assert torch.allclose(norms, torch.full_like(norms, 64.0), rtol=1e-5)


def test_rademacher_blocks_are_scaled_orthogonal():
    p = FastfoodProjection(32, [32], [1.0], seed=1, distribution="rademacher")
    v = p.rows(0, 32).double()
    assert torch.allclose(v @ v.T, 32 * torch.eye(32, dtype=torch.float64), atol=1e-4)


def test_streams_documented():
    # D_k is rademacher on stream STREAM_BASE + 4k, G_k from `distribution` on + 2.
    p = FastfoodProjection(20, [70], [1.0], seed=11, distribution="normal")
    for k in range(p.num_blocks):
        assert torch.equal(p.signs[k], rng.rademacher(11, STREAM_BASE + 4 * k, 0, p.dim))
        assert torch.equal(p.gdiag[k], rng.normal(11, STREAM_BASE + 4 * k + 2, 0, p.dim))
        perm = p.perm[k * p.dim : (k + 1) * p.dim] - k * p.dim
        assert torch.equal(torch.sort(perm).values, torch.arange(p.dim))


def test_golden_fingerprint():
    # Pins the operator: a change here breaks every file written before it.
    p = FastfoodProjection(37, [100, 50], [1.0, 0.5], seed=123)
    expected = [14.098259925842285, 4.181262969970703, -3.7989025115966797, 1.3264905214309692]
    assert p.fingerprint(4) == pytest.approx(expected, rel=1e-5)
    assert p.perm[:8].tolist() == [45, 30, 3, 22, 0, 5, 21, 57]


# ------------------------------------------------------------------------------- statistics


@SETTINGS
@given(
    n=st.integers(1, 3000),
    sizes=st.lists(st.integers(200, 3000), min_size=1, max_size=3),
    scales=st.lists(st.floats(1e-3, 10.0), min_size=3, max_size=3),
    seed=st.integers(0, 2**62),
    zkind=st.integers(0, 2),
    dist=DISTS,
)
def test_layer_variance_matches_target(n, sizes, scales, seed, zkind, dist):
    scales = scales[: len(sizes)]
    p = FastfoodProjection(n, sizes, scales, seed=seed, distribution=dist)
    z = _latent(n, zkind, seed)
    w = p(z).double()
    znorm = float(z.double().norm())
    for layer, (size, scale) in enumerate(zip(sizes, scales)):
        seg = w[p.offsets[layer] : p.offsets[layer + 1]]
        target = scale * znorm
        ratio = float(seg.pow(2).mean().sqrt()) / target
        assert abs(ratio - 1.0) * math.sqrt(2 * size) < 7.0, (layer, ratio)
        assert abs(float(seg.mean())) * math.sqrt(size) / target < 7.0
        std_ratio = float(seg.std()) / target
        assert abs(std_ratio - 1.0) * math.sqrt(2 * size) < 7.5, (layer, std_ratio)


def test_variance_tight_on_large_output():
    p = FastfoodProjection(5000, [200_000], [0.01], seed=3)
    z = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    w = p(z).double()
    assert abs(float(w.std()) / (0.01 * float(z.norm())) - 1) < 0.02
    assert abs(float(w.mean())) / (0.01 * float(z.norm())) < 0.01


# ------------------------------------------------------------------------------- algebra


@SETTINGS
@given(n=st.integers(1, 300), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=3),
       seed=st.integers(0, 2**62), dist=DISTS)
def test_adjoint_identity(n, sizes, seed, dist):
    p = FastfoodProjection(n, sizes, [1.0 + i for i in range(len(sizes))], seed, dist)
    gen = torch.Generator().manual_seed(seed % 2**31)
    z = torch.randn(3, n, generator=gen)
    g = torch.randn(3, p.num_outputs, generator=gen)
    vz, vtg = p(z), p.adjoint(g)
    assert vtg.shape == (3, n)
    lhs, rhs = (vz * g).sum(-1), (z * vtg).sum(-1)
    bound = 1e-5 * vz.norm(dim=-1) * g.norm(dim=-1) + 1e-6
    assert ((lhs - rhs).abs() <= bound).all()


@SETTINGS
@given(n=st.integers(1, 80), sizes=st.lists(st.integers(1, 200), min_size=1, max_size=3),
       seed=st.integers(0, 2**62), cut=st.floats(0, 1))
def test_rows_match_forward_and_any_split(n, sizes, seed, cut):
    p = FastfoodProjection(n, sizes, [2.0] * len(sizes), seed)
    full = p.rows(0, p.num_outputs)
    assert full.dtype == torch.float32 and full.shape == (p.num_outputs, n)
    assert torch.allclose(full, p(torch.eye(n)).T, atol=1e-5, rtol=1e-5)
    c = int(cut * p.num_outputs)
    assert torch.allclose(torch.cat([p.rows(0, c), p.rows(c, p.num_outputs)]), full, atol=1e-6)


def test_rows_chunked_internally(monkeypatch):
    from hyperproj import _fastfood

    p = FastfoodProjection(50, [300], [1.0], seed=2)
    full = p.rows(0, 300)
    monkeypatch.setattr(_fastfood, "_ROWS_CHUNK_ELEMENTS", 64 * 7)  # 7 rows per chunk
    assert torch.allclose(p.rows(0, 300), full, atol=1e-6)


def test_layout_invariance():
    # The operator depends on (n, P, seed, distribution); layers only pick slices and scales.
    a = FastfoodProjection(30, [100], [1.0], seed=4)
    b = FastfoodProjection(30, [40, 60], [1.0, 3.0], seed=4)
    z = torch.randn(30)
    wa, wb = a(z), b(z)
    assert torch.equal(wa[:40], wb[:40])
    assert torch.allclose(3 * wa[40:], wb[40:], rtol=1e-6, atol=1e-6)


def test_batched_equals_per_sample_and_vmap():
    p = FastfoodProjection(70, [150, 90], [1.0, 0.1], seed=8)
    z = torch.randn(2, 3, 70)
    batched = p(z)
    assert batched.shape == (2, 3, 240)
    singles = torch.stack([torch.stack([p(z[i, j]) for j in range(3)]) for i in range(2)])
    assert torch.allclose(batched, singles, atol=1e-6, rtol=1e-6)
    vm = torch.func.vmap(p)(z.reshape(6, 70))
    assert torch.allclose(vm, batched.reshape(6, 240), atol=1e-6, rtol=1e-6)
    adj = torch.func.vmap(p.adjoint)(batched.reshape(6, 240))
    assert torch.allclose(adj, p.adjoint(batched).reshape(6, 70), atol=1e-5, rtol=1e-5)


def test_gradcheck_float64():
    p = FastfoodProjection(9, [20, 7], [1.0, 0.3], seed=6).to(torch.float64)
    z = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(p, (z,))
    g = torch.randn(27, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(p.adjoint, (g,))


def test_gradient_is_adjoint():
    p = FastfoodProjection(33, [100], [1.5], seed=1)
    z = torch.randn(33, requires_grad=True)
    g = torch.randn(100)
    (p(z) * g).sum().backward()
    assert torch.allclose(z.grad, p.adjoint(g), atol=1e-5, rtol=1e-5)


def test_hadamard_transform():
    for d in (1, 2, 8, 64, 2048):
        x = torch.randn(3, d, dtype=torch.float64)
        h = hadamard_transform(x)
        assert torch.allclose(h, x @ _sylvester(d.bit_length() - 1).double(), atol=1e-9)
        assert torch.allclose(hadamard_transform(h), d * x, atol=1e-9)
    with pytest.raises(HyperprojError, match="power of two"):
        hadamard_transform(torch.ones(6))


# ------------------------------------------------------------------------------- determinism


def test_determinism_and_seed_sensitivity():
    z = torch.randn(40)
    a = FastfoodProjection(40, [500], [1.0], seed=10)(z)
    b = FastfoodProjection(40, [500], [1.0], seed=10)(z)
    c = FastfoodProjection(40, [500], [1.0], seed=11)(z)
    d = FastfoodProjection(40, [500], [1.0], seed=10, distribution="normal")(z)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    assert not torch.allclose(a, d, atol=1e-3)


def test_global_rng_untouched():
    state = torch.get_rng_state()
    FastfoodProjection(100, [1000], [1.0], seed=0)
    assert torch.equal(state, torch.get_rng_state())


# ------------------------------------------------------------------------------- module life


def test_state_small_and_not_in_state_dict():
    p = FastfoodProjection(13_363, [13_000], [1.0], seed=0)
    assert p.state_bytes() <= 1_000_000
    assert p.state_dict() == {}


def test_pickle_deepcopy_and_dtype():
    p = FastfoodProjection(25, [60, 11], [1.0, 2.0], seed=3)
    z = torch.randn(25)
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
        assert torch.equal(q(z), p(z))
    p64 = copy.deepcopy(p).to(torch.float64)
    out = p64(z.double())
    assert out.dtype == torch.float64
    assert torch.allclose(out.float(), p(z), atol=1e-5)
    assert p64.perm.dtype == torch.int64


def test_compile_fullgraph_as_submodule():
    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.z = torch.nn.Parameter(torch.randn(12))
            self.proj = FastfoodProjection(12, [30], [1.0], seed=0)

        def forward(self, x):
            return x @ self.proj(self.z).view(6, 5)

    m = Holder()
    x = torch.randn(4, 6)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    assert torch.allclose(out, m(x), atol=1e-5)
    out.sum().backward()
    assert m.z.grad is not None


def test_errors():
    p = FastfoodProjection(8, [10], [1.0], seed=0)
    with pytest.raises(HyperprojError, match=r"z must have shape \(\.\.\., 8\)"):
        p(torch.ones(7))
    with pytest.raises(HyperprojError, match=r"g must have shape \(\.\.\., 10\)"):
        p.adjoint(torch.ones(8))
    with pytest.raises(HyperprojError, match="rows need"):
        p.rows(3, 11)
    with pytest.raises(HyperprojError, match="latent_dim must be >= 1"):
        FastfoodProjection(0, [10], [1.0], seed=0)
    with pytest.raises(HyperprojError, match="distribution"):
        FastfoodProjection(4, [10], [1.0], seed=0, distribution="cauchy")
    with pytest.raises(HyperprojError, match="seed"):
        FastfoodProjection(4, [10], [1.0], seed=-1)


def test_operator_node_higher_order_and_forward_mode():
    # forward/adjoint are single autograd nodes; check double backward, jvp and vmap-of-grad
    # against the operator's own dense rows.
    p = FastfoodProjection(9, [20, 7], [1.0, 0.5], seed=3).double()
    with torch.no_grad():
        dense = p(torch.eye(9, dtype=torch.float64)).T  # (27, 9)
    z = torch.randn(9, dtype=torch.float64, requires_grad=True)
    a = torch.randn(27, dtype=torch.float64)
    loss = (p(z) ** 2 * a).sum()  # z^T V^T diag(a) V z: Hessian 2 V^T diag(a) V
    (g,) = torch.autograd.grad(loss, z, create_graph=True)
    hess = torch.stack([torch.autograd.grad(g[i], z, retain_graph=True)[0] for i in range(9)])
    assert torch.allclose(hess, 2 * dense.T @ (a[:, None] * dense), atol=1e-8)
    dz = torch.randn(9, dtype=torch.float64)
    _, tangent = torch.func.jvp(p, (z.detach(),), (dz,))
    assert torch.allclose(tangent, dense @ dz, atol=1e-10)
    _, tangent = torch.func.jvp(p.adjoint, (a,), (a,))
    assert torch.allclose(tangent, dense.T @ a, atol=1e-10)
    grads = torch.func.vmap(torch.func.grad(lambda v: (p(v) * a).sum()))(torch.randn(4, 9, dtype=torch.float64))
    assert torch.allclose(grads, (dense.T @ a).expand(4, 9), atol=1e-10)
    assert torch.autograd.gradgradcheck(p, (z,))


@pytest.mark.parametrize("latent_scale", ["unit", "offset"])
def test_hypermodel_single_node_path_matches_generic(latent_scale):
    # A fastfood HyperModel generates its own latent's weights through one autograd node
    # (hyperproj.model._GeneratedWeights). Gradients, double backward, jvp and vmap must equal
    # the generic path (an explicit latent goes projection -> split -> views).
    import hyperproj

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                              torch.nn.Tanh(), torch.nn.Linear(16, 2))
    hyper = hyperproj.reparametrize(net, latent_dim=40, seed=1, projection="fastfood",
                                    latent_scale=latent_scale).double()
    with torch.no_grad():
        hyper.latent.add_(0.1 * torch.randn_like(hyper.latent))
    x = torch.randn(11, 3, dtype=torch.float64)

    def loss_of(out):
        return (out.sin() ** 2).sum()

    # which path runs: the single node (hyperproj.model._GeneratedWeights) for the own latent,
    # the generic one for an explicit latent
    assert type(hyper.generate_weights()["0.weight"].grad_fn).__name__ == "_GeneratedWeightsBackward"
    assert type(hyper.generate_weights(hyper.latent)["0.weight"].grad_fn).__name__ != "_GeneratedWeightsBackward"

    (g_fused,) = torch.autograd.grad(loss_of(hyper(x)), hyper.latent, create_graph=True)
    (g_generic,) = torch.autograd.grad(loss_of(hyper.call_with_latent(hyper.latent, x)), hyper.latent,
                                       create_graph=True)
    assert torch.allclose(g_fused, g_generic, rtol=1e-10, atol=1e-12)
    v = torch.randn_like(g_fused)
    (hv_fused,) = torch.autograd.grad(g_fused @ v, hyper.latent)
    (hv_generic,) = torch.autograd.grad(g_generic @ v, hyper.latent)
    assert torch.allclose(hv_fused, hv_generic, rtol=1e-8, atol=1e-10)
    assert hv_fused.abs().max() > 0

    z = hyper.latent.detach().clone()
    dz = torch.randn_like(z)
    _, t_fused = torch.func.jvp(lambda w: torch.func.functional_call(hyper, {"latent": w}, (x,)), (z,), (dz,))
    _, t_generic = torch.func.jvp(lambda w: hyper.call_with_latent(w, x), (z,), (dz,))
    assert torch.allclose(t_fused, t_generic, rtol=1e-10, atol=1e-12)

    zs = z + 0.1 * torch.randn(4, z.numel(), dtype=torch.float64)
    grads = torch.func.vmap(torch.func.grad(
        lambda w: loss_of(torch.func.functional_call(hyper, {"latent": w}, (x,)))))(zs)
    for zi, gi in zip(zs, grads):
        zi = zi.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(loss_of(hyper.call_with_latent(zi, x)), zi)
        assert torch.allclose(gi, ref, rtol=1e-9, atol=1e-11)
