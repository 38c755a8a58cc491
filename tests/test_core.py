"""reparametrize / HyperModel contracts: wrapping, state, serialisation, compile, vmap, errors."""

import copy
import io
import math
import pickle
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import hyperproj
from hyperproj import HyperprojError


class SineLayer(nn.Module):
    def __init__(self, fan_in, fan_out, omega, role):
        super().__init__()
        self.omega = omega
        self.linear = nn.Linear(fan_in, fan_out)
        self.linear.hyperproj_init = {"rule": "siren", "role": role, "omega": omega}

    def forward(self, x):
        return torch.sin(self.omega * self.linear(x))


class TinySiren(nn.Module):
    """A SIREN written here, independent of hyperproj.inr."""

    def __init__(self, width=32, depth=3):
        super().__init__()
        layers = [SineLayer(2, width, 30.0, "first")]
        layers += [SineLayer(width, width, 30.0, "hidden") for _ in range(depth)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 3)
        self.head.hyperproj_init = {"rule": "siren", "role": "last", "omega": 30.0}

    def forward(self, x):
        return self.head(self.body(x))


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 5),
    )


class MultiOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 2)

    def forward(self, x, scale=1.0):
        return {"a": self.a(x) * scale, "pair": (self.b(x), [x.sum()])}


CASES = [
    ("siren", TinySiren, lambda: torch.rand(7, 2) * 2 - 1),
    ("cnn", small_cnn, lambda: torch.randn(4, 3, 6, 6)),
    ("transformer", lambda: nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True),
     lambda: torch.randn(2, 5, 16)),
]


@pytest.mark.parametrize("name,make,inputs", CASES, ids=[c[0] for c in CASES])
def test_two_lines_and_materialize(name, make, inputs):
    torch.manual_seed(0)
    net = make()
    hyper = hyperproj.reparametrize(net, latent_dim=300, seed=7)
    x = inputs()
    y = hyper(x)
    plain = hyper.materialize()
    assert type(plain) is type(net)
    hyper.eval()
    plain.eval()
    torch.testing.assert_close(plain(x), hyper(x), rtol=1e-5, atol=1e-5)
    assert y.shape == net(x).shape
    # the user's module is untouched
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())


def test_state_dict_holds_latent_once_and_no_matrix():
    hyper = hyperproj.reparametrize(TinySiren(), 200, seed=3)
    sd = hyper.state_dict()
    assert [k for k in sd if "latent" in k] == ["latent"]
    assert not any("matrix" in k for k in sd)
    assert "_extra_state" in sd and sd["_extra_state"]["format_version"] == 1
    weight_keys = [k for k in sd if k.endswith("weight")]
    assert weight_keys == []


def test_strict_load_into_fresh_model_restores_exactly():
    net = TinySiren()
    trained = hyperproj.reparametrize(net, 200, seed=3)
    with torch.no_grad():
        trained.latent.add_(torch.randn_like(trained.latent))
        trained.base.head.bias.add_(1.0)
    x = torch.rand(9, 2)
    fresh = hyperproj.reparametrize(net, 200, seed=3)  # the same call: loads exactly
    assert not torch.equal(fresh(x), trained(x))
    fresh.load_state_dict(trained.state_dict(), strict=True)
    assert fresh.seed == 3
    assert torch.equal(fresh(x), trained(x))


@pytest.mark.parametrize(
    ("field", "options", "stored", "mine"),
    [
        ("seed", {"seed": 99}, "3", "99"),
        ("projection", {"projection": "fastfood"}, "'dense'", "'fastfood'"),
        ("latent_dim", {"latent_dim": 150}, "200", "150"),
        ("latent_scale", {"latent_scale": "paper"}, "'unit'", "'paper'"),
        ("distribution", {"distribution": "normal"}, "'uniform'", "'normal'"),
    ],
)
def test_load_state_dict_refuses_other_settings(field, options, stored, mine):
    net = TinySiren()
    trained = hyperproj.reparametrize(net, 200, seed=3, projection="dense")
    with torch.no_grad():
        trained.latent.add_(1.0)
    kwargs = {"latent_dim": 200, "seed": 3, "projection": "dense", **options}
    other = hyperproj.reparametrize(net, **kwargs)
    before = {k: v.clone() for k, v in other.state_dict().items() if isinstance(v, torch.Tensor)}
    x = torch.rand(5, 2)
    y = other(x)
    with pytest.raises(HyperprojError) as info:
        other.load_state_dict(trained.state_dict())
    msg = str(info.value)
    assert msg.startswith("hyperproj.HyperModel.load_state_dict: the state dict comes from a HyperModel built with other settings (")
    assert f"{field}: stored {stored}, this model {mine}" in msg
    assert msg.count("stored ") == 2  # only the differing field is listed (plus "stored settings")
    assert "size mismatch" not in msg
    extra = ", distribution='uniform'" if field == "distribution" else ""
    assert msg.endswith(
        "Build the model with the stored settings before loading: hyperproj.reparametrize(base, "
        f"latent_dim=200, seed=3, projection='dense', latent_scale='unit'{extra})"
    )
    # refused before anything was copied: the model is untouched
    after = {k: v for k, v in other.state_dict().items() if isinstance(v, torch.Tensor)}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(other(x), y)


def test_load_state_dict_lists_every_differing_field_in_one_error():
    net = TinySiren()
    sd = hyperproj.reparametrize(net, 200, seed=3, projection="dense").state_dict()
    other = hyperproj.reparametrize(net, 120, seed=4, projection="fastfood", latent_scale="paper")
    with pytest.raises(HyperprojError) as info:
        other.load_state_dict(sd, strict=False)
    msg = str(info.value)
    for part in ("latent_dim: stored 200, this model 120", "seed: stored 3, this model 4",
                 "projection: stored 'dense', this model 'fastfood'",
                 "latent_scale: stored 'unit', this model 'paper'"):
        assert part in msg
    assert "reparametrize(base, latent_dim=200, seed=3, projection='dense', latent_scale='unit')" in msg


def test_load_state_dict_refuses_other_groups():
    from hyperproj.inr import LocalGlobal

    torch.manual_seed(0)
    net = LocalGlobal(2, 3, (2, 2), local_features=6, global_features=8, hidden_layers=1)
    grouped = hyperproj.reparametrize(net, 300, seed=2, groups="partition")
    spec = grouped.config()["groups"]
    with pytest.raises(HyperprojError, match=r"groups: stored \{'kind': 'partition'.*, this model None"):
        hyperproj.reparametrize(net, 300, seed=2).load_state_dict(grouped.state_dict())
    fresh = hyperproj.reparametrize(net, 300, seed=2, groups=spec)  # the call the message names
    fresh.load_state_dict(grouped.state_dict())
    x = torch.rand(7, 2) * 2 - 1
    assert torch.equal(fresh(x), grouped(x))


def test_load_config_still_adopts_seed_projection_and_scale():
    net = TinySiren()
    trained = hyperproj.reparametrize(net, 200, seed=3, projection="dense")
    other = hyperproj.reparametrize(net, 200, seed=99, projection="fastfood", latent_scale="paper")
    other.load_config(trained.config())
    assert (other.seed, other.projection.kind, other.latent_scale) == (3, "dense", "unit")
    assert other.fingerprint() == trained.fingerprint()
    with torch.no_grad():
        other.latent.copy_(trained.latent)
    x = torch.rand(5, 2)
    assert torch.equal(other(x), trained(x))
    # latent_dim cannot be adopted: refused with the same kind of message
    with pytest.raises(HyperprojError, match=r"load_config: the config .*latent_dim: stored 200, this model 50"):
        hyperproj.reparametrize(net, 50, seed=3).load_config(trained.config())


def test_load_refuses_other_generator_or_tampered_fingerprint():
    hyper = hyperproj.reparametrize(TinySiren(), 50, seed=1)
    sd = hyper.state_dict()
    bad = copy.deepcopy(sd)
    bad["_extra_state"]["generator_version"] = 999
    with pytest.raises(HyperprojError, match="generator_version"):
        hyperproj.reparametrize(TinySiren(), 50, seed=1).load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["_extra_state"]["fingerprint"][0] += 1e-3
    with pytest.raises(HyperprojError, match="fingerprint"):
        hyperproj.reparametrize(TinySiren(), 50, seed=1).load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["_extra_state"]["format_version"] = 2
    with pytest.raises(HyperprojError, match="format_version"):
        hyperproj.reparametrize(TinySiren(), 50, seed=1).load_state_dict(bad)
    with pytest.raises(HyperprojError, match="targets differ"):
        hyperproj.reparametrize(TinySiren(width=16), 50, seed=1).load_state_dict(sd, strict=False)


def test_pickle_save_deepcopy_and_dtype():
    hyper = hyperproj.reparametrize(TinySiren(), 120, seed=5)
    x = torch.rand(6, 2)
    y = hyper(x)
    assert torch.equal(pickle.loads(pickle.dumps(hyper))(x), y)
    buf = io.BytesIO()
    torch.save(hyper, buf)
    assert buf.tell() < 200_000  # B (120 × 3,296 floats = 1.6 MB) is not in the pickle
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y)
    dup = copy.deepcopy(hyper)
    assert torch.equal(dup(x), y)
    assert dup.latent is not hyper.latent
    h64 = copy.deepcopy(hyper).to(torch.float64)
    assert h64.latent.dtype == torch.float64 and h64.projection.matrix.dtype == torch.float64
    torch.testing.assert_close(h64(x.double()).float(), y, rtol=1e-4, atol=1e-5)


def test_torch_compile_fullgraph_matches_eager():
    hyper = hyperproj.reparametrize(TinySiren(width=16, depth=2), 80, seed=2)
    x = torch.rand(10, 2)
    compiled = torch.compile(hyper, fullgraph=True)
    torch.testing.assert_close(compiled(x), hyper(x), rtol=1e-5, atol=1e-5)


def test_vmap_over_latents_runs_several_signals():
    hyper = hyperproj.reparametrize(TinySiren(width=16, depth=1), 40, seed=2)
    x = torch.rand(8, 2)
    zs = torch.randn(3, 40)
    batched = torch.func.vmap(lambda z: hyper.call_with_latent(z, x))(zs)
    for i in range(3):
        torch.testing.assert_close(batched[i], hyper.call_with_latent(zs[i], x))
    via_functional = torch.func.vmap(
        lambda z: torch.func.functional_call(hyper, {"latent": z}, (x,))
    )(zs)
    torch.testing.assert_close(via_functional, batched)


def test_optimizer_sees_latent_plus_untargeted():
    net = small_cnn()
    hyper = hyperproj.reparametrize(net, 64, seed=0)
    names = sorted(n for n, _ in hyper.named_parameters())
    assert names == sorted(["latent", "base.0.bias", "base.1.weight", "base.1.bias", "base.4.bias"])
    opt = torch.optim.Adam(hyper.parameters(), lr=1e-2)
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(hyper.latent) in params and len(params) == 5
    x, t = torch.randn(16, 3, 6, 6), torch.randn(16, 5)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss = nn.functional.mse_loss(hyper(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses[::10]
    assert hyper.num_trainable == 64 + 8 + 8 + 8 + 5


def test_buffers_train_eval_and_structured_outputs():
    hyper = hyperproj.reparametrize(small_cnn(), 50, seed=0)
    before = hyper.base[1].running_mean.clone()
    hyper(torch.randn(4, 3, 6, 6) + 3.0)
    assert not torch.equal(before, hyper.base[1].running_mean)
    hyper.eval()
    assert not hyper.base.training and not hyper.base[1].training
    frozen = hyper.base[1].running_mean.clone()
    hyper(torch.randn(4, 3, 6, 6))
    assert torch.equal(frozen, hyper.base[1].running_mean)

    multi = hyperproj.reparametrize(MultiOut(), 10, seed=0)
    out = multi(torch.ones(2, 4), scale=2.0)
    assert set(out) == {"a", "pair"} and isinstance(out["pair"], tuple)
    assert isinstance(out["pair"][1], list) and out["a"].shape == (2, 3)


def test_streamed_equals_dense_forward_and_backward():
    net = TinySiren(width=24, depth=2)
    dense = hyperproj.reparametrize(net, 90, seed=4, projection="dense")
    streamed = hyperproj.reparametrize(net, 90, seed=4, projection="streamed")
    assert streamed.projection.state_bytes() == 0
    x = torch.rand(12, 2)
    yd, ys = dense(x), streamed(x)
    torch.testing.assert_close(ys, yd, rtol=1e-5, atol=1e-5)
    gd = torch.autograd.grad(yd.square().sum(), dense.latent)[0]
    gs = torch.autograd.grad(ys.square().sum(), streamed.latent)[0]
    torch.testing.assert_close(gs, gd, rtol=1e-4, atol=1e-5)


def test_auto_switches_to_fastfood_above_cap():
    net = nn.Linear(100, 100)
    hyper = hyperproj.reparametrize(net, 1000, seed=0, dense_cap_bytes=1000)
    assert hyper.projection.kind == "fastfood"
    assert "projection=fastfood" in repr(hyper)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hyperproj.reparametrize(net, 10, seed=0).projection.kind == "dense"


def test_targets_exclude_types_and_regex():
    net = small_cnn()
    assert hyperproj.reparametrize(net, 20, targets=[nn.Conv2d]).target_names == ["0.weight"]
    assert hyperproj.reparametrize(net, 20, exclude=["4.weight"]).target_names == ["0.weight"]
    assert hyperproj.reparametrize(net, 20, targets=[r"[04]\.weight"]).target_names == [
        "0.weight", "4.weight"]
    with pytest.raises(HyperprojError, match=r"'torch' cannot handle 1.weight \(BatchNorm2d, shape \(8,\)\)"):
        hyperproj.reparametrize(net, 20, targets=[r"\d\.weight"])
    # a model can narrow its own defaults
    siren = TinySiren()
    siren.hyperproj_targets = ("body",)
    names = hyperproj.reparametrize(siren, 20).target_names
    assert names and all(n.startswith("body.") for n in names)


def test_tied_weights_share_one_generated_tensor():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 6)
            self.out = nn.Linear(6, 10, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, idx):
            return self.out(self.emb(idx))

    hyper = hyperproj.reparametrize(Tied(), 30, seed=0)
    assert hyper.target_names == ["emb.weight"]
    assert [n for n, _ in hyper.named_parameters()] == ["latent"]
    out = hyper(torch.tensor([1, 2]))
    plain = hyper.materialize()
    assert plain.out.weight is plain.emb.weight
    torch.testing.assert_close(plain(torch.tensor([1, 2])), out)


def test_init_dict_callable_and_declared_rules():
    net = nn.Sequential(nn.Linear(30, 30), nn.Linear(30, 30))
    hyper = hyperproj.reparametrize(net, 50, init={"0.weight": "xavier", "1.weight": lambda ctx: 0.25})
    scales = hyper.projection.layer_scales
    z = float(hyper.latent.detach().norm())
    assert math.isclose((scales[0] * z) ** 2, 2 / 60, rel_tol=1e-6)
    assert math.isclose((scales[1] * z) ** 2, 0.25, rel_tol=1e-6)
    siren = hyperproj.reparametrize(TinySiren(width=20, depth=1), 50)  # init="auto": declared
    assert [t["rule"] for t in siren.config()["targets"]] == ["siren"] * 3


def test_repr_is_readable():
    text = repr(hyperproj.reparametrize(TinySiren(), 100, seed=7))
    for piece in ("latent_dim=100", "seed=7", "projection=dense", "compression ×", "body.0.linear.weight"):
        assert piece in text


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"latent_dim": 0}, "latent_dim must be an int >= 1, got 0"),
        ({"latent_dim": 2.5}, "latent_dim must be an int >= 1, got float 2.5"),
        ({"latent_dim": True}, "latent_dim"),
        ({"latent_dim": 5, "seed": -1}, r"seed must be an int in \[0, 9223372036854775808\), got -1"),
        ({"latent_dim": 5, "seed": 2**63}, "seed"),
        ({"latent_dim": 5, "seed": "7"}, "seed must be an int"),
        ({"latent_dim": 5, "init": "lecun"}, r"unknown init rule 'lecun'; known rules: \["),
        ({"latent_dim": 5, "init": ("he", {"mode": "sideways"})}, "mode for 0.weight"),
        ({"latent_dim": 5, "init": lambda ctx: -1.0}, "expected a finite positive number"),
        ({"latent_dim": 5, "init": lambda ctx: 1 / 0}, "cannot handle 0.weight"),
        ({"latent_dim": 5, "targets": ["conv.weight"]}, "target 'conv.weight' matches no parameter.*candidates: 0.weight"),
        ({"latent_dim": 5, "exclude": ["nope"]}, "exclude pattern 'nope'"),
        ({"latent_dim": 5, "projection": "sparse-magic"}, "projection must be"),
        ({"latent_dim": 5, "latent_scale": "big"}, "latent_scale must be .auto. or one of"),
    ],
)
def test_bad_input_names_the_problem(kwargs, match):
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(HyperprojError, match=match):
        hyperproj.reparametrize(net, **kwargs)


def test_nothing_to_target_and_non_floating():
    with pytest.raises(HyperprojError, match="ReLU has nothing to target"):
        hyperproj.reparametrize(nn.ReLU(), 5)
    with pytest.raises(HyperprojError, match="matches no parameter"):
        hyperproj.reparametrize(nn.Linear(3, 3), 5, targets=["weight", "scale"])

    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.table = nn.Parameter(torch.ones(3, 3, dtype=torch.int64), requires_grad=False)

    with pytest.raises(HyperprojError, match=r"non-floating targets: table \(torch.int64\)"):
        hyperproj.reparametrize(Counter(), 5, targets=["table", "lin.weight"])
    with pytest.raises(HyperprojError, match="must be an nn.Module"):
        hyperproj.reparametrize(lambda x: x, 5)


def test_latent_larger_than_weights_warns():
    with pytest.warns(UserWarning, match="exceeds the 12 projected weights"):
        hyperproj.reparametrize(nn.Linear(3, 4), 50)


def test_import_stays_light():
    code = (
        "import sys, hyperproj; heavy = [m for m in ('matplotlib', 'skimage', 'PIL', 'scipy', "
        "'trimesh') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_offset_parameterisation_starts_at_the_unit_weights_and_round_trips():
    net = TinySiren(width=24, depth=2)
    unit = hyperproj.reparametrize(net, 150, seed=4)
    off = hyperproj.reparametrize(net, 150, seed=4, latent_scale="offset")
    assert torch.count_nonzero(off.latent) == 0 and off.latent_lr_scale == 1.0
    for name, w in unit.generate_weights().items():  # W0 = B z0 of the unit parameterisation
        torch.testing.assert_close(off.generate_weights()[name], w, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        off.latent.normal_()
    x = torch.rand(9, 2)
    fresh = hyperproj.reparametrize(net, 150, seed=4, latent_scale="offset")
    fresh.load_state_dict(off.state_dict(), strict=True)
    assert torch.equal(fresh(x), off(x))
    assert torch.equal(pickle.loads(pickle.dumps(off))(x), off(x))
    torch.testing.assert_close(off.materialize()(x), off(x), rtol=1e-5, atol=1e-5)
    assert "offset_weights" not in off.state_dict()
