"""Local-Global INRs: crop exactness, proportional parameter drop, grouped latents (D'OH),
cropped .hpz files, extend, and the errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import skimage.data
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperproj
from hyperproj import codec
from hyperproj.cli import main
from hyperproj.inr import (
    AudioSignal,
    ImageSignal,
    LocalGlobal,
    Siren,
    auto_partition_factors,
    build_model,
    crop,
    extend,
    fit,
    grid_coords,
    model_spec,
)

torch.set_num_threads(1)


def small_lg(**kw) -> LocalGlobal:
    args = dict(in_features=2, out_features=3, partition_factors=(4, 4), local_features=6,
                global_features=8, hidden_layers=1)
    args.update(kw)
    torch.manual_seed(0)
    return LocalGlobal(**args)


def points(n=500, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) * 2 - 1


def local_count(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith("local."))


def shared_count(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("local."))


# ------------------------------------------------------------------------------------ model


def test_shapes_and_paper_size():
    net = LocalGlobal(2, 3)
    assert net.num_partitions == 256
    assert net.local[0].weight.shape == (256, 2, 14)
    assert net.local[1].weight.shape == (256, 14, 14)
    assert net.local[-1].weight.shape == (256, 14, 3)
    total = sum(p.numel() for p in net.parameters())
    assert 190_000 < total < 230_000  # the paper's ~200k
    assert 0.05 < shared_count(net) / total < 0.15  # the global part is a small share
    assert net(points(7)).shape == (7, 3)
    assert net(points(12).view(3, 4, 2)).shape == (3, 4, 3)


def test_forward_is_per_point():
    net = small_lg()
    x = points(300)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(net(x)[perm], net(x[perm]), atol=1e-6)
    # every point depends on its own partition only: change another partition's weights
    y = net(x)
    with torch.no_grad():
        net.local[0].weight[5].add_(1.0)
    changed = (net(x) != y).any(dim=1)
    assert torch.equal(changed, net.cell_of(x) == net.partition_ids[5])


@pytest.mark.parametrize("activation", ["siren", "incode"])
@pytest.mark.parametrize(
    "d, factors, box",
    [
        (2, (4, 4), ((-1, -1), (0, 0))),
        (2, (4, 4), ((-0.3, -1), (1, 0.2))),  # not on cell boundaries: the kept cells cover it
        (1, (32,), ((-1.0,), (-0.5,))),
        (3, (2, 4, 4), ((-1, -1, -1), (0, 0.5, 1))),
    ],
)
def test_crop_is_exact_and_proportional(activation, d, factors, box):
    net = small_lg(in_features=d, partition_factors=factors, activation=activation)
    if activation == "incode":
        with torch.no_grad():
            net.coefficients.copy_(torch.linspace(-0.2, 0.3, 12))
    small = crop(net, box)
    x = points(2000, d)
    keep = torch.isin(net.cell_of(x), torch.tensor(small.partition_ids))
    lo, hi = torch.tensor(box[0], dtype=torch.float32), torch.tensor(box[1], dtype=torch.float32)
    in_box = ((x >= lo) & (x < hi)).all(1)
    assert bool(keep[in_box].all())  # the kept region covers the box
    assert torch.equal(small(x[keep]), net(x[keep]))
    frac = small.num_partitions / net.num_partitions
    assert local_count(small) == round(local_count(net) * frac)
    assert shared_count(small) == shared_count(net)
    with pytest.raises(hyperproj.HyperprojError, match="partitions this model does not hold"):
        small(x[~keep][:5])


def test_crop_of_full_render_equals_render_of_crop():
    net = small_lg(partition_factors=(4, 4))
    g = grid_coords((32, 32))
    full = net(g).view(32, 32, 3)
    small = crop(net, ((-1, 0), (0, 1)))  # rows in the top half, columns in the right half
    part = small(g.view(32, 32, 2)[:16, 16:].reshape(-1, 2)).view(16, 16, 3)
    assert torch.allclose(full[:16, 16:], part, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    fx=st.integers(1, 5), fy=st.integers(1, 5),
    corners=st.tuples(*[st.floats(-1, 1, allow_nan=False) for _ in range(4)]),
    seed=st.integers(0, 100),
)
def test_crop_property(fx, fy, corners, seed):
    a, b, c, e = corners
    lo, hi = (min(a, b), min(c, e)), (max(a, b), max(c, e))
    if hi[0] - lo[0] < 1e-3 or hi[1] - lo[1] < 1e-3:
        return
    torch.manual_seed(seed)
    net = LocalGlobal(2, 1, (fx, fy), local_features=3, global_features=4, hidden_layers=1)
    small = crop(net, (lo, hi))
    x = points(400, seed=seed)
    keep = torch.isin(net.cell_of(x), torch.tensor(small.partition_ids))
    assert torch.equal(small(x[keep]), net(x[keep]))
    assert local_count(small) * net.num_partitions == local_count(net) * small.num_partitions


def test_crop_twice_and_registry_round_trip():
    net = small_lg(partition_factors=(4, 4))
    small = crop(crop(net, ((-1, -1), (0.5, 0.5))), ((-0.5, -1), (1, 0)))
    assert small.partition_ids == [4, 5, 8, 9]
    spec = model_spec(small)
    assert spec["config"]["partitions"] == [[4, 6], [8, 10]]
    again = build_model(spec)
    assert again.partition_ids == small.partition_ids
    again.load_state_dict(small.state_dict())
    x = points(300)
    keep = torch.isin(net.cell_of(x), torch.tensor(small.partition_ids))
    assert torch.equal(again(x[keep]), net(x[keep]))


def test_auto_partition_factors_and_bounds():
    assert auto_partition_factors((512, 512), (32, 32)) == (16, 16)
    net = LocalGlobal(2, 1, "auto", 4, 4, partition_size=(32, 48), signal_shape=(100, 96))
    assert net.config["partition_factors"] == [4, 2]
    wide = LocalGlobal(2, 1, (2, 4), 4, 4, bounds=((-0.5, -1), (0.5, 1)))
    assert wide.cell_of(torch.tensor([[-0.4, -0.9], [0.4, 0.9]])).tolist() == [0, 7]


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"partition_factors": (4,)}, "partition_factors"),
        ({"partition_factors": (4, 0)}, "partition_factors"),
        ({"partition_factors": "auto"}, "partition_size"),
        ({"local_features": 0}, "local_features"),
        ({"activation": "relu"}, "activation"),
        ({"bounds": ((0, 0), (0, 1))}, "bounds"),
        ({"partitions": [[3, 2]]}, "partitions"),
        ({"first_omega": -1.0}, "first_omega"),
    ],
)
def test_constructor_errors_name_the_parameter(kwargs, param):
    with pytest.raises(hyperproj.HyperprojError, match=param):
        small_lg(**kwargs)


def test_crop_and_extend_errors():
    net = small_lg()
    with pytest.raises(hyperproj.HyperprojError, match="box must be"):
        crop(net, ((-1,), (0,)))
    with pytest.raises(hyperproj.HyperprojError, match="box must be"):
        crop(net, ((0, 0), (0, 1)))
    with pytest.raises(hyperproj.HyperprojError, match="overlaps none"):
        crop(crop(net, ((-1, -1), (0, 0))), ((0.5, 0.5), (1, 1)))
    with pytest.raises(hyperproj.HyperprojError, match="must be a hyperproj.inr.LocalGlobal"):
        crop(Siren(2, 8, 1, 1), ((-1, -1), (0, 0)))
    with pytest.raises(hyperproj.HyperprojError, match="adds no partition"):
        extend(net, ((-1, -1), (1, 1)))
    with pytest.raises(hyperproj.HyperprojError, match="coordinates in the last dimension"):
        net(torch.zeros(3, 3))


def test_groups_errors():
    with pytest.raises(hyperproj.HyperprojError, match="partitioned model"):
        hyperproj.reparametrize(Siren(2, 8, 1, 1), 20, groups="partition")
    with pytest.raises(hyperproj.HyperprojError, match="groups must be"):
        hyperproj.reparametrize(small_lg(), 200, groups="layer")
    with pytest.raises(hyperproj.HyperprojError, match="too small"):
        hyperproj.reparametrize(small_lg(), 10, groups="partition")
    with pytest.raises(hyperproj.HyperprojError, match="latent_scale"):
        hyperproj.reparametrize(small_lg(), 200, groups="partition", latent_scale="offset")
    with pytest.raises(hyperproj.HyperprojError, match="does not match groups"):
        hyperproj.reparametrize(small_lg(), 200, groups={"kind": "partition", "global_dim": 5, "partition_dim": 5})
    with pytest.raises(hyperproj.HyperprojError, match="not grouped by partition"):
        crop(hyperproj.reparametrize(small_lg(), 200), ((-1, -1), (0, 0)))


# ------------------------------------------------------------------------------------ D'OH groups


def test_grouped_latent_split_and_variance():
    net = small_lg()
    hyper = hyperproj.reparametrize(net, 1000, seed=5, groups="partition")
    g, m = hyper._groups.global_dim, hyper._groups.partition_dim
    assert hyper.latent.numel() == g + 16 * m
    p_local = sum(net.get_parameter(n).numel() for n in hyper.target_names if n.startswith("local."))
    p_all = hyper.num_projected
    assert abs(g / hyper.latent.numel() - (1 - p_local / p_all)) < 0.02  # split by share of weights
    weights = hyper.generate_weights()
    for name in ("local.1.weight", "merge.0.linear.weight"):  # std of the generated init
        target = math.sqrt(2.0 / (6 if name.startswith("local") else 14) / 900)
        assert abs(float(weights[name].detach().std()) / target - 1) < 0.25


@pytest.mark.parametrize("projection", ["dense", "fastfood"])
def test_grouped_crop_regenerates_identical_weights(projection):
    net = small_lg()
    hyper = hyperproj.reparametrize(net, 1000, seed=11, groups="partition", projection=projection)
    with torch.no_grad():
        hyper.latent.add_(0.1 * torch.randn(hyper.latent.shape, generator=torch.Generator().manual_seed(0)))
    small = crop(hyper, ((0, -1), (1, 0)))
    ids = small.base.partition_ids
    slots = [net.partition_ids.index(i) for i in ids]
    full_w, small_w = hyper.generate_weights(), small.generate_weights()
    for name, w in small_w.items():
        if name.startswith("local."):
            assert torch.equal(w, full_w[name][slots])
        else:
            assert torch.equal(w, full_w[name])
    x = points(1500)
    keep = torch.isin(net.cell_of(x), torch.tensor(ids))
    assert torch.equal(small(x[keep]), hyper(x[keep]))
    frac = len(ids) / net.num_partitions
    g, m = hyper._groups.global_dim, hyper._groups.partition_dim
    assert small.latent.numel() == g + round(16 * frac) * m
    # a fresh reparametrize of the cropped architecture with the stored split gives the same B
    again = hyperproj.reparametrize(build_model(model_spec(small)), small.latent_dim, 11,
                                    groups=small.config()["groups"], projection=projection)
    assert again.fingerprint() == small.fingerprint()


def test_grouped_state_dict_and_pickle():
    hyper = hyperproj.reparametrize(small_lg(), 600, seed=2, groups="partition")
    x = points(100)
    back = pickle.loads(pickle.dumps(hyper))
    assert torch.equal(back(x), hyper(x))
    other_seed = hyperproj.reparametrize(small_lg(), 600, seed=9, groups="partition")
    with pytest.raises(hyperproj.HyperprojError, match="seed: stored 2, this model 9"):
        other_seed.load_state_dict(hyper.state_dict())
    fresh = hyperproj.reparametrize(small_lg(), 600, seed=2, groups="partition")
    with torch.no_grad():
        fresh.latent.zero_()
    fresh.load_state_dict(hyper.state_dict())
    assert torch.equal(fresh(x), hyper(x))
    plain = hyperproj.reparametrize(small_lg(), 600, seed=2)
    with pytest.raises(hyperproj.HyperprojError, match="groups"):
        plain.load_state_dict(hyper.state_dict())


# ------------------------------------------------------------------------------------ files


@pytest.fixture(scope="module")
def image_file():
    sig = ImageSignal.from_array(skimage.data.astronaut()).resize(32)
    torch.manual_seed(0)
    net = LocalGlobal(2, 3, (4, 4), local_features=6, global_features=8, hidden_layers=1)
    hyper = hyperproj.reparametrize(net, 1200, seed=4, groups="partition")
    fit(hyper, sig, 15, progress=False)
    return sig, hyper, codec.encode(hyper, signal=sig)


def test_grouped_file_round_trip(image_file):
    sig, hyper, blob = image_file
    assert blob[3] == 2  # container version 2: grouped latents
    back = codec.decode(blob)
    assert torch.equal(back(sig.coords), codec.quantize(hyper)(sig.coords))
    assert codec.info(blob)["header"]["groups"] == [hyper._groups.global_dim, hyper._groups.partition_dim]
    plain = codec.encode(hyperproj.reparametrize(Siren(2, 8, 1, 1), 20, seed=0))
    assert plain[3] == 1  # ungrouped files keep version 1


def test_cropped_file_decodes_bit_identically(image_file):
    sig, _, blob = image_file
    full = codec.decode(blob)
    small_blob = codec.crop(blob, ((-1, -1), (0, 0)))
    small = codec.decode(small_blob)
    assert small.base.partition_ids == [0, 1, 4, 5]
    img_full, img_small = np.array(codec.render(full)), np.array(codec.render(small))
    assert img_small.shape == (16, 16, 3)
    assert np.array_equal(img_small, img_full[:16, :16])
    coords = sig.coords.view(32, 32, 2)[:16, :16].reshape(-1, 2)
    assert torch.equal(small(coords), full(coords))
    # the file shrinks in proportion: the per-partition payload drops to a quarter
    rep_full, rep_small = codec.info(blob), codec.info(small_blob)
    assert rep_small["latent_count"] == full._groups.global_dim + 4 * full._groups.partition_dim
    assert rep_small["param_count"] < rep_full["param_count"]
    assert len(small_blob) < 0.5 * len(blob)
    # crop again: a crop of a crop is a crop
    tiny = codec.decode(codec.crop(small_blob, ((-0.5, -0.5), (0, 0))))
    assert tiny.base.partition_ids == [5]
    assert np.array_equal(np.array(codec.render(tiny)), img_full[8:16, 8:16])


def test_crop_file_errors(image_file, tmp_path):
    plain = codec.encode(hyperproj.reparametrize(Siren(2, 8, 1, 1), 20, seed=0))
    with pytest.raises(hyperproj.HyperprojError, match="not grouped by partition"):
        codec.crop(plain, ((-1, -1), (0, 0)))
    with pytest.raises(hyperproj.HyperprojError, match="box must be"):
        codec.crop(image_file[2], ((-1, -1, -1), (0, 0, 0)))
    with pytest.raises(hyperproj.HyperprojError, match="CRC32"):
        codec.crop(image_file[2][:-1] + b"\x00", ((-1, -1), (0, 0)))


def test_cli_crop(image_file, tmp_path, capsys):
    path = tmp_path / "photo.hpz"
    path.write_bytes(image_file[2])
    out = tmp_path / "crop.hpz"
    assert main(["crop", str(path), "--box", "0", "0", "1", "1", "-o", str(out)]) == 0
    assert codec.decode(out.read_bytes()).base.partition_ids == [10, 11, 14, 15]
    assert "crop.hpz" in capsys.readouterr().out
    assert main(["crop", str(path), "--box", "0", "0", "1"]) == 2
    assert "even number" in capsys.readouterr().err
    assert main(["decompress", str(out), "-o", str(tmp_path / "crop.png")]) == 0


def test_cropped_audio_file():
    t = np.linspace(0, 1, 2048, dtype=np.float32)
    sig = AudioSignal(np.sin(2 * np.pi * 40 * t) * np.exp(-3 * t), sample_rate=8000)
    torch.manual_seed(0)
    net = LocalGlobal(1, 1, (32,), local_features=6, global_features=8, hidden_layers=1, first_omega=300.0)
    hyper = hyperproj.reparametrize(net, 900, seed=1, groups="partition")
    fit(hyper, sig, 20, progress=False)
    blob = codec.encode(hyper, signal=sig)
    small_blob = codec.crop(blob, ((-1.0,), (0.0,)))
    full, small = codec.render(codec.decode(blob)), codec.render(codec.decode(small_blob))
    assert small.shape == (1024, 1)
    assert torch.equal(small, full[:1024])


# ------------------------------------------------------------------------------------ extend


def test_extend_trains_only_new_partitions():
    sig = ImageSignal.from_array(skimage.data.astronaut()).resize(16)
    net = crop(small_lg(), ((-1, -1), (0, 1)))  # the top half
    big = extend(net, ((-1, -1), (1, 1)))
    assert big.num_partitions == 16 and big.trainable_partitions == list(range(8, 16))
    before = {n: p.detach().clone() for n, p in big.named_parameters()}
    old_x = sig.coords[sig.coords[:, 0] < 0]
    y_old = big(old_x)
    fit(big, sig, 10, progress=False, restore_best=False)
    for name, p in big.named_parameters():
        if name.startswith("local."):
            per = p.detach().view(16, -1)
            ref = before[name].view(16, -1)
            assert torch.equal(per[:8], ref[:8]), name
            assert not torch.equal(per[8:], ref[8:]), name
        else:
            assert torch.equal(p, before[name]), name
    assert torch.equal(big(old_x), y_old)
    big.unfreeze()
    assert big.trainable_partitions is None and all(p.requires_grad for p in big.parameters())


def test_extend_grouped_hyper_trains_only_new_latents():
    sig = ImageSignal.from_array(skimage.data.astronaut()).resize(16)
    hyper = hyperproj.reparametrize(small_lg(), 800, seed=3, groups="partition")
    half = crop(hyper, ((-1, -1), (1, 0)))  # the left half
    big = extend(half, ((-1, -1), (1, 1)))
    g, m = big._groups.global_dim, big._groups.partition_dim
    assert big.latent.numel() == g + 16 * m
    z_before = big.latent.detach().clone()
    old = [big.base.partition_ids.index(i) for i in half.base.partition_ids]
    old_x = sig.coords[sig.coords[:, 1] < 0]
    y_old = big(old_x)
    fit(big, sig, 8, progress=False, restore_best=False)
    groups_now, groups_before = big.latent.detach()[g:].view(16, m), z_before[g:].view(16, m)
    new = [s for s in range(16) if s not in old]
    assert torch.equal(big.latent.detach()[:g], z_before[:g])
    assert torch.equal(groups_now[old], groups_before[old])
    assert not torch.equal(groups_now[new], groups_before[new])
    assert torch.equal(big(old_x), y_old)


# ------------------------------------------------------------------------------------ fitting


def test_local_global_learns_an_image():
    sig = ImageSignal.from_array(skimage.data.astronaut()).resize(32)
    torch.manual_seed(0)
    net = LocalGlobal(2, 3, (4, 4), local_features=8, global_features=16, hidden_layers=1)
    hist = fit(net, sig, 60, lr=3e-3, progress=False, batch_size=400)
    assert hist.best[1] > hist.metric[0] + 5
