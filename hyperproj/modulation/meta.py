"""Meta-learning: MAML outer loop, Meta-SGD inner loop, both batched over signals.

The inner loop fits one latent per signal in ``steps`` gradient steps from the learned start
``model.latent_init``, each step ``φ ← φ − α ⊙ ∇_φ L_i(φ)`` with the learned per-dimension
learning rates ``α = model.inner_lr`` (Meta-SGD, Li et al. 2017). ``L_i`` is signal ``i``'s own
mean squared error; the batch loss is their sum, so each signal's gradient is its own and a batch
of ``B`` signals is fitted in one forward/backward per step. The outer loop (MAML, Finn et al.
2017, second order by default) backpropagates the post-adaptation loss through the inner steps
into the base weights, the hypernetwork, ``latent_init`` and ``inner_lr``, with Adam.

Signals here are equally sized sets of (coordinate, value) pairs: ``values`` of shape
``(P, N, C)`` with one ``coords`` ``(N, in)`` for all of them (e.g. 32×32 image patches).

Examples:
    >>> from hyperproj.modulation import ShiftSiren
    >>> from hyperproj.inr import grid_coords
    >>> torch.manual_seed(0) is not None
    True
    >>> net = ShiftSiren(8, hidden_features=16, hidden_layers=1)
    >>> coords, values = grid_coords((4, 4)), torch.rand(6, 16, 3)
    >>> history = meta_train(net, coords, values, steps=3, batch_size=2, inner_steps=2, progress=False)
    >>> len(history.step), fit_latents(net, coords, values).shape
    (3, torch.Size([6, 8]))
"""

from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import _distributed
from .._errors import HyperprojError
from ..model import HyperModel
from .models import ModulatedSiren, modulated_of

__all__ = ["inner_loop", "calibrate_inner_lr", "fit_latents", "render_latents", "per_signal_mse", "meta_train", "MetaHistory"]


def _network(model: ModulatedSiren | HyperModel, keep_graph: bool) -> Any:
    """``(coords, latents) -> outputs`` for ``model``; a D'OH base generates its weights once here.

    Within one outer step (or one encoding pass) the base weights do not change, so a D'OH base
    pays one projection ``B z`` per call of this function instead of one per forward pass. With
    ``keep_graph`` the generated weights stay differentiable in the D'OH latent (meta-training).
    """
    if not isinstance(model, HyperModel):
        return model
    with torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()):
        weights = model.generate_weights()

    def net(coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return model.call_with_weights(weights, coords, latents)

    return net


def _check_data(where: str, model: ModulatedSiren, coords: Any, values: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(coords, torch.Tensor) or coords.dim() != 2 or coords.shape[1] != model.in_features:
        shape = tuple(coords.shape) if isinstance(coords, torch.Tensor) else type(coords).__name__
        raise HyperprojError(
            f"hyperproj.modulation.{where}: coords must be a tensor (N, {model.in_features}), got {shape}"
        )
    if (
        not isinstance(values, torch.Tensor)
        or values.dim() != 3
        or values.shape[1] != coords.shape[0]
        or values.shape[2] != model.out_features
    ):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise HyperprojError(
            f"hyperproj.modulation.{where}: values must be a tensor (P, N={coords.shape[0]}, "
            f"C={model.out_features}), got {shape}"
        )
    if values.shape[0] == 0:
        raise HyperprojError(f"hyperproj.modulation.{where}: values holds no signals (P = 0)")
    return coords.float(), values.float()


def _check_steps(where: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HyperprojError(f"hyperproj.modulation.{where}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def per_signal_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each signal: ``(B, N, C), (B, N, C) -> (B,)``.

    Examples:
        >>> per_signal_mse(torch.zeros(2, 3, 1), torch.tensor([[[1.0]] * 3, [[2.0]] * 3])).tolist()
        [1.0, 4.0]
    """
    return (pred - target).pow(2).flatten(1).mean(1)


def inner_loop(
    model: ModulatedSiren,
    coords: torch.Tensor,
    values: torch.Tensor,
    steps: int,
    latents: torch.Tensor | None = None,
    create_graph: bool = False,
    first_order: bool = False,
) -> torch.Tensor:
    """Fit one latent per signal with ``steps`` Meta-SGD steps; returns latents ``(B, d)``.

    Starts from ``latents`` (default: ``model.latent_init`` for every signal). With
    ``create_graph=True`` the result stays differentiable with respect to the model's parameters
    (the MAML outer loop): second order, through every inner step, or with ``first_order=True``
    first order — the inner gradients ``g_k`` are taken as constants and the result is
    ``φ_0 − α ⊙ Σ_k g_k`` (the same value), differentiable in ``φ_0`` and ``α`` only (first-order
    Meta-SGD; several times cheaper). Without ``create_graph`` the result is detached and no graph
    is kept between steps.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> from hyperproj.inr import grid_coords
        >>> net = ShiftSiren(8, hidden_features=16, hidden_layers=1)
        >>> inner_loop(net, grid_coords((4, 4)), torch.rand(3, 16, 3), steps=2).shape
        torch.Size([3, 8])
    """
    spec = modulated_of(model, "inner_loop")
    _check_steps("inner_loop", "steps", steps, 0)
    net = _network(model, keep_graph=create_graph)
    return _adapt(net, spec, coords, values, steps, latents, create_graph, first_order)


def _adapt(
    net: Any,
    spec: ModulatedSiren,
    coords: torch.Tensor,
    values: torch.Tensor,
    steps: int,
    latents: torch.Tensor | None,
    create_graph: bool,
    first_order: bool,
) -> torch.Tensor:
    """:func:`inner_loop` on an already bound network ``net`` (see :func:`_network`)."""
    model = spec
    if values.dim() != 3:
        raise HyperprojError(
            f"hyperproj.modulation.inner_loop: values must have shape (B, N, C), got {tuple(values.shape)}"
        )
    batch = values.shape[0]
    if latents is None:
        phi = model.latent_init.unsqueeze(0).expand(batch, -1)
    else:
        if latents.shape != (batch, model.latent_dim):
            raise HyperprojError(
                f"hyperproj.modulation.inner_loop: latents must have shape ({batch}, {model.latent_dim}), "
                f"got {tuple(latents.shape)}"
            )
        phi = latents
    second_order = create_graph and not first_order
    start = phi
    total = torch.zeros_like(phi, memory_format=torch.contiguous_format)
    with torch.enable_grad():
        if not second_order:
            phi = phi.detach().requires_grad_(True)
        for _ in range(steps):
            loss = per_signal_mse(net(coords, phi), values).sum()
            (grad,) = torch.autograd.grad(loss, phi, create_graph=second_order)
            phi = phi - model.inner_lr * grad
            if not second_order:
                total = total + grad.detach()
                phi = phi.detach().requires_grad_(True)
    if second_order:
        return phi
    if create_graph:  # first order: same value, gradient to φ_0 and α only
        return start - model.inner_lr * total
    return phi.detach()


@torch.no_grad()
def calibrate_inner_lr(
    model: ModulatedSiren,
    coords: torch.Tensor,
    values: torch.Tensor,
    steps: int = 3,
    grid: tuple[float, ...] = tuple(10.0 ** (k / 2) for k in range(-6, 9)),
) -> float:
    """Set every inner learning rate to the best of ``grid`` for ``steps`` inner steps on ``values``.

    A line search over one shared value (default: 10^-3 to 10^4 in half decades), scored by the
    mean MSE after :func:`inner_loop`. The useful scale differs by orders of magnitude between
    models and changes as the base learns, so :func:`meta_train` calls it before its first step.
    Returns the chosen value.

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> from hyperproj.inr import grid_coords
        >>> net = ShiftSiren(8, hidden_features=16, hidden_layers=1)
        >>> lr = calibrate_inner_lr(net, grid_coords((4, 4)), torch.rand(4, 16, 3), steps=1)
        >>> bool(torch.allclose(net.inner_lr, torch.full((8,), lr)))
        True
    """
    spec = modulated_of(model, "calibrate_inner_lr")
    coords, values = _check_data("calibrate_inner_lr", spec, coords, values)
    _check_steps("calibrate_inner_lr", "steps", steps, 1)
    if not grid or any(not (isinstance(g, (int, float)) and g > 0 and math.isfinite(g)) for g in grid):
        raise HyperprojError(f"hyperproj.modulation.calibrate_inner_lr: grid must hold positive numbers, got {grid!r}")
    saved = spec.log_inner_lr.detach().clone()
    best = (math.inf, float(grid[0]))
    net = _network(model, keep_graph=False)
    for lr in grid:
        spec.log_inner_lr.fill_(math.log(lr))
        phi = _adapt(net, spec, coords, values, steps, None, False, False)
        loss = float(per_signal_mse(net(coords, phi), values).mean())
        if loss < best[0]:
            best = (loss, float(lr))
    if not math.isfinite(best[0]):
        spec.log_inner_lr.copy_(saved)
        raise HyperprojError("hyperproj.modulation.calibrate_inner_lr: every candidate gave a non-finite loss")
    spec.log_inner_lr.fill_(math.log(best[1]))
    return best[1]


def fit_latents(
    model: ModulatedSiren,
    coords: torch.Tensor,
    values: torch.Tensor,
    steps: int | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Latents ``(P, d)`` for all ``P`` signals in ``values`` (the encoder), ``batch_size`` at a time.

    ``steps`` defaults to the number of inner steps the model was meta-trained with
    (``model.meta_inner_steps``, set by :func:`meta_train`; 3 if never trained).

    Examples:
        >>> from hyperproj.modulation import ShiftSiren
        >>> from hyperproj.inr import grid_coords
        >>> net = ShiftSiren(4, hidden_features=8, hidden_layers=1)
        >>> fit_latents(net, grid_coords((2, 2)), torch.rand(5, 4, 3), batch_size=2).shape
        torch.Size([5, 4])
    """
    spec = modulated_of(model, "fit_latents")
    coords, values = _check_data("fit_latents", spec, coords, values)
    steps = getattr(spec, "meta_inner_steps", 3) if steps is None else steps
    _check_steps("fit_latents", "steps", steps, 0)
    _check_steps("fit_latents", "batch_size", batch_size, 1)
    net = _network(model, keep_graph=False)
    out = [
        _adapt(net, spec, coords, values[i : i + batch_size], steps, None, False, False)
        for i in range(0, len(values), batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def render_latents(model: ModulatedSiren, coords: torch.Tensor, latents: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The decoder: model outputs ``(P, N, C)`` for latents ``(P, d)``, ``batch_size`` at a time.

    Examples:
        >>> from hyperproj.modulation import GatedSiren
        >>> net = GatedSiren(4, hidden_features=8, hidden_layers=1, rank=2)
        >>> render_latents(net, torch.zeros(7, 2), torch.randn(3, 4)).shape
        torch.Size([3, 7, 3])
    """
    modulated_of(model, "render_latents")
    net = _network(model, keep_graph=False)
    if not isinstance(latents, torch.Tensor) or latents.dim() != 2:
        raise HyperprojError(
            f"hyperproj.modulation.render_latents: latents must be a tensor (P, d), got "
            f"{tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__}"
        )
    return torch.cat([net(coords, latents[i : i + batch_size]) for i in range(0, len(latents), batch_size)])


@dataclass
class MetaHistory:
    """What :func:`meta_train` saw: per outer step, the post-adaptation training PSNR.

    ``step`` (1-based), ``psnr`` (of the batch's mean MSE after the inner loop, in dB),
    ``seconds`` (training time so far, including time before a resume).

    Examples:
        >>> h = MetaHistory(); h.step += [1, 2]; h.psnr += [20.0, 22.0]
        >>> h.smoothed(2)
        21.0
    """

    step: list[int] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def smoothed(self, window: int = 50) -> float:
        """Mean PSNR of the last ``window`` steps (NaN before any step).

        Examples:
            >>> MetaHistory().smoothed()
            nan
        """
        tail = self.psnr[-window:]
        return float(np.mean(tail)) if tail else math.nan


def _doh_summary(model: Any) -> dict[str, Any] | None:
    """What identifies a D'OH base in a checkpoint (None for a plain base)."""
    if not isinstance(model, HyperModel):
        return None
    cfg = model.config()
    return {k: cfg[k] for k in ("latent_dim", "seed", "projection", "distribution", "latent_scale")}


def _batch_indices(seed: int, step: int, pool: int, batch_size: int) -> np.ndarray:
    rng = np.random.default_rng([seed, step])
    return rng.choice(pool, size=batch_size, replace=pool < batch_size)


class _MetaLoss(torch.nn.Module):
    """One outer step's post-adaptation loss as a module: the inner loop runs inside ``forward``.

    DistributedDataParallel wraps this module, so each outer step is one DDP forward and one
    ``backward``. The inner loop's ``torch.autograd.grad`` calls differentiate with respect to
    the latents only, so they do not reach the parameters' gradient accumulators where DDP's
    reducer hooks sit; the outer ``backward`` (through every inner step when second order) reaches
    each parameter's accumulator once, and DDP all-reduces (averages) those gradients.
    """

    def __init__(self, model: ModulatedSiren | HyperModel, spec: ModulatedSiren, inner_steps: int, first_order: bool):
        super().__init__()
        self.model = model
        self.__dict__["spec"] = spec  # part of ``model``, not registered a second time
        self.inner_steps = inner_steps
        self.first_order = first_order

    def forward(self, coords: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = _network(self.model, keep_graph=True)
        phi = _adapt(net, self.spec, coords, target, self.inner_steps, None, True, self.first_order)
        return per_signal_mse(net(coords, phi), target).mean()


def _setup_distributed(
    where: str, model: Any, coords: torch.Tensor, values: torch.Tensor, batch_size: int, distributed: bool | None
) -> tuple[bool, int, int]:
    """``(use DDP, rank, world size)`` for :func:`meta_train`; checks the batch and the data agree."""
    if distributed is not None and not isinstance(distributed, bool):
        raise HyperprojError(f"hyperproj.modulation.{where}: distributed must be None, True or False, got {distributed!r}")
    if distributed is False:
        return False, 0, 1
    if _distributed.launched_by_torchrun():
        _distributed.init_from_env(next(model.parameters()).device)
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed is None and not _distributed.is_distributed():
        return False, 0, 1
    if not initialized:
        raise HyperprojError(
            f"hyperproj.modulation.{where}: distributed=True needs torchrun (e.g. `torchrun "
            "--nproc-per-node=2 train.py`) or an initialised torch.distributed process group; found neither"
        )
    rank, world = _distributed.rank(), _distributed.world_size()
    if batch_size % world:
        raise HyperprojError(
            f"hyperproj.modulation.{where}: batch_size={batch_size} is not divisible by the number of "
            f"processes ({world}); each process takes batch_size / {world} signals of every global batch, "
            f"so pass a multiple of {world}"
        )
    # every rank must train on the same data, or the global batches would differ between ranks
    mine = (tuple(coords.shape), tuple(values.shape), float(coords.double().sum()), float(values.double().sum()))
    theirs: list[Any] = [None] * world
    torch.distributed.all_gather_object(theirs, mine)
    if any(t != theirs[0] for t in theirs):
        raise HyperprojError(
            f"hyperproj.modulation.{where}: every process must pass the same coords and values; "
            f"(coords shape, values shape, sums) per rank: {theirs}"
        )
    return True, rank, world


def meta_train(
    model: ModulatedSiren,
    coords: torch.Tensor,
    values: torch.Tensor,
    steps: int,
    batch_size: int = 16,
    inner_steps: int = 3,
    lr: float = 1e-4,
    inner_lr_lr: float = 1e-2,
    calibrate: bool = True,
    first_order: bool = False,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    progress: bool = True,
    grad_clip: float | None = 1.0,
    distributed: bool | None = None,
) -> MetaHistory:
    """Meta-learn ``model`` (weights, hypernetwork, ``latent_init``, ``inner_lr``) on ``values``.

    Each outer step draws ``batch_size`` signals (a seeded draw per step, so a resumed run sees
    the same batches), runs :func:`inner_loop` for ``inner_steps`` steps with the graph kept
    (``first_order=True``: first-order Meta-SGD, see :func:`inner_loop`), and takes one Adam step of ``lr`` on the
    post-adaptation MSE (gradient norm clipped to ``grad_clip`` unless ``None``). The inner
    learning rates are learned in log space with their own Adam rate ``inner_lr_lr``; with
    ``calibrate=True`` a fresh run first sets them by :func:`calibrate_inner_lr` on 64 signals.
    A fresh run also sets the last layer's bias to the mean of ``values`` per channel (SIREN's
    head starts with outputs near zero, and Adam would take hundreds of steps to find the mean).

    ``checkpoint``: a file path; every ``checkpoint_every`` steps and at the end, the model,
    optimizer and history are written there (``torch.save``, atomically). With ``resume=True`` an
    existing checkpoint for the same model kind and config is loaded and training continues from
    its step (a checkpoint for a different model raises). Shows a tqdm bar when ``progress``.

    ``distributed``: data-parallel training over the processes of ``torchrun`` with
    :class:`torch.nn.parallel.DistributedDataParallel`. ``None`` (default) uses it when this
    process was launched by ``torchrun`` (the default process group is then initialised from its
    environment, gloo for a CPU model, NCCL for a CUDA one, unless already initialised) or a
    process group of several processes is initialised; ``True`` requires it; ``False`` trains
    alone even then. Every rank passes the same ``coords``, ``values`` and arguments; every rank
    draws the same global batch of ``batch_size`` signals per step and takes its contiguous slice
    of ``batch_size / world_size`` signals (``batch_size`` must be divisible by the world size),
    runs the inner loop on it, and DDP averages the outer gradients, so the run follows the
    one-process run with the same ``batch_size`` (to float rounding). Only rank 0 shows progress
    and writes the checkpoint (on resume, rank 0 reads it and sends it to the others); the
    returned history's ``step`` and ``psnr`` (of the global batch) are the same on every rank,
    ``seconds`` is each rank's own clock. A script that calls ``meta_train`` runs on two processes
    as ``OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node=2 train.py``, unchanged.

    Examples:
        >>> from hyperproj.modulation import GatedSiren
        >>> from hyperproj.inr import grid_coords
        >>> net = GatedSiren(8, hidden_features=8, hidden_layers=1, rank=2, hyper_width=16)
        >>> h = meta_train(net, grid_coords((4, 4)), torch.rand(4, 16, 3), steps=2, batch_size=2, progress=False)
        >>> h.step
        [1, 2]
    """
    where = "meta_train"
    spec = modulated_of(model, where)
    coords, values = _check_data(where, spec, coords, values)
    _check_steps(where, "steps", steps, 0)
    _check_steps(where, "batch_size", batch_size, 1)
    _check_steps(where, "inner_steps", inner_steps, 1)
    _check_steps(where, "checkpoint_every", checkpoint_every, 1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise HyperprojError(f"hyperproj.modulation.meta_train: lr must be a positive number, got {lr!r}")
    if isinstance(inner_lr_lr, bool) or not isinstance(inner_lr_lr, (int, float)) or not inner_lr_lr >= 0:
        raise HyperprojError(
            f"hyperproj.modulation.meta_train: inner_lr_lr must be a number >= 0, got {inner_lr_lr!r}"
        )
    ddp, rank, world = _setup_distributed(where, model, coords, values, batch_size, distributed)
    doh = isinstance(model, HyperModel)
    special = [spec.log_inner_lr] + ([model.latent] if doh else [])
    others = [p for p in model.parameters() if p.requires_grad and not any(p is q for q in special)]
    groups: list[dict[str, Any]] = [{"params": others}, {"params": [spec.log_inner_lr], "lr": float(inner_lr_lr)}]
    if doh:  # the D'OH latent at its own rate, as hyperproj.fit does (HyperModel.optimizer_param_groups)
        groups.append({"params": [model.latent], "lr": float(lr) * model.latent_lr_scale})
    opt = torch.optim.Adam(groups, lr=float(lr))
    history = MetaHistory()
    start = 0
    path = Path(checkpoint) if checkpoint is not None else None
    state = None
    if path is not None and resume and rank == 0 and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
    if ddp:  # the checkpoint may exist on rank 0's machine only
        box = [state]
        torch.distributed.broadcast_object_list(box, src=0)
        state = box[0]
    if state is not None:
        theirs_doh = state.get("doh")
        mine_doh = _doh_summary(model)
        if state.get("kind") != spec.kind or state.get("config") != spec.config or theirs_doh != mine_doh:
            raise HyperprojError(
                f"hyperproj.modulation.meta_train: checkpoint {str(path)!r} holds a {state.get('kind')!r} "
                f"model with config {state.get('config')} and D'OH base {theirs_doh}, not this "
                f"{spec.kind!r} model with config {spec.config} and D'OH base {mine_doh}; pass "
                "resume=False or another checkpoint path"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = MetaHistory(**state["history"])
        start = int(state["step"])
    spec.meta_inner_steps = inner_steps
    model.train()
    if start == 0 and steps > 0:
        with torch.no_grad():  # start from the data's mean colour: the SIREN head's output is tiny
            spec.last.bias.copy_(values.mean(dim=(0, 1)))
    if calibrate and start == 0 and steps > 0:
        idx = torch.from_numpy(_batch_indices(seed, 1 << 40, len(values), min(64, len(values))))
        calibrate_inner_lr(model, coords, values[idx], inner_steps)

    step_loss = _MetaLoss(model, spec, inner_steps, first_order)
    if ddp:  # one forward (the whole inner loop) and one backward per outer step
        device = next(model.parameters()).device
        ddp_cls = torch.nn.parallel.DistributedDataParallel
        # buffers (a D'OH base's offsets) are set from the seed and never change: sync them once at
        # construction, not before every forward (the keyword was renamed in PyTorch 2.13)
        keyword = "forward_sync_buffers"
        if keyword not in inspect.signature(ddp_cls).parameters:
            keyword = "broadcast_buffers"
        ids = [device] if device.type == "cuda" else None
        step_loss = ddp_cls(step_loss, device_ids=ids, **{keyword: False})
    local = batch_size // world

    def save(step: int) -> None:
        if path is None or rank != 0:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "kind": spec.kind,
                "config": spec.config,
                "doh": _doh_summary(model),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "history": {"step": history.step, "psnr": history.psnr, "seconds": history.seconds},
                "step": step,
                "inner_steps": inner_steps,
            },
            tmp,
        )
        os.replace(tmp, path)

    bar = None
    if progress and start < steps and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc=f"meta-train {spec.kind} d={spec.latent_dim}", leave=False)
    elapsed = history.seconds[-1] if history.seconds else 0.0
    t0 = time.perf_counter()
    for step in range(start, steps):
        idx = torch.from_numpy(_batch_indices(seed, step, len(values), batch_size))
        target = values[idx[rank * local : (rank + 1) * local]]  # this rank's slice of the global batch
        # Each rank's loss is the mean over its slice; DDP averages the gradients over the equal
        # slices, which is the gradient of the mean over the global batch (the one-process loss).
        loss = step_loss(coords, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        shown = loss.detach()
        if ddp:  # the global batch's mean MSE, the same on every rank
            shown = shown.clone()
            torch.distributed.all_reduce(shown)
            shown = shown / world
        mse = float(shown)
        history.step.append(step + 1)
        history.psnr.append(10 * math.log10(1.0 / mse) if mse > 0 else math.inf)
        history.seconds.append(elapsed + time.perf_counter() - t0)
        if bar is not None:
            bar.update(1)
            if (step + 1) % 10 == 0:
                bar.set_postfix(psnr=f"{history.smoothed(20):.2f}")
        if (step + 1) % checkpoint_every == 0:
            save(step + 1)
    if bar is not None:
        bar.close()
    if start < steps or (path is not None and rank == 0 and not path.is_file()):
        save(max(steps, start))
    model.eval()
    return history
