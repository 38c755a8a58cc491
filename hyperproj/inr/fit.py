"""The fitting loop: one signal, one model (plain module or ``HyperModel``), Adam by default.

Hooks a model may offer (looked up on the model itself first, then on its submodules, so a
wrapper such as ``HyperModel`` around an :class:`~hyperproj.inr.Incode` still finds them):

- ``optimizer_param_groups(lr) -> list[dict]`` (root model only): parameter groups for the
  optimizer instead of ``model.parameters()``; ``HyperModel`` uses it to give the latent its own
  learning rate.
- ``regularization_loss() -> Tensor``: added to the loss every step (INCODE's coefficient penalty).
- ``set_signal(signal)`` with ``has_signal``: called before training when no signal is set yet
  (INCODE's harmonizer input).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import _compiled
from .._errors import HyperprojError
from .signals import DEFAULT_CHUNK, MetricSpec, Signal

__all__ = ["fit", "FitHistory", "ErrorSampling", "default_lr", "make_optimizer", "optimizer_names"]


@dataclass
class FitHistory:
    """What :func:`fit` saw, one entry per evaluation.

    ``step`` (1-based step count), ``loss`` (mean training loss since the previous evaluation;
    ``nan`` if a roll-back emptied that window),
    ``metric`` (the signal's main metric), ``seconds`` (training time so far, evaluations excluded),
    ``metrics`` (every metric ``evaluate`` returned). ``best`` is ``(step, metric)`` of the state
    ``fit`` restored. ``recoveries`` lists ``(step, lr factor)`` for every divergence ``fit`` rolled
    back (see ``recover`` in :func:`fit`).

    Examples:
        >>> h = FitHistory("psnr", True)
        >>> _ = h.record(10, 0.01, {"psnr": 20.0}, 1.5); _ = h.record(20, 0.005, {"psnr": 23.0}, 3.0)
        >>> h.best, h.final
        ((20, 23.0), 23.0)
    """

    metric_name: str
    higher_is_better: bool
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    best_index: int | None = None
    stopped_early: bool = False
    recoveries: list[tuple[int, float]] = field(default_factory=list)
    gave_up: int | None = None
    """With ``on_divergence="stop"``: the step at which a divergence past ``recover`` ended training."""

    def record(self, step: int, loss: float, metrics: dict[str, float], seconds: float) -> bool:
        """Append one evaluation; returns whether it is the best so far."""
        value = float(metrics[self.metric_name])
        self.step.append(step)
        self.loss.append(loss)
        self.metric.append(value)
        self.seconds.append(seconds)
        self.metrics.append(dict(metrics))
        spec = MetricSpec(self.metric_name, self.higher_is_better)
        old = None if self.best_index is None else self.metric[self.best_index]
        if spec.better(value, old):
            self.best_index = len(self.metric) - 1
            return True
        return False

    @property
    def best(self) -> tuple[int, float] | None:
        """``(step, metric)`` of the best evaluation (``None`` before any)."""
        if self.best_index is None:
            return None
        return self.step[self.best_index], self.metric[self.best_index]

    @property
    def final(self) -> float | None:
        """Metric at the last evaluation."""
        return self.metric[-1] if self.metric else None


def _torch_optimizers() -> dict[str, type]:
    found = {}
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            found[name.lower()] = obj
    return found


def _extra_optimizers() -> dict[str, type]:
    try:
        import torch_optimizer
    except ImportError:
        return {}
    found = {}
    for name in dir(torch_optimizer):
        obj = getattr(torch_optimizer, name)
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer):
            found.setdefault(name.lower(), obj)
    return found


def optimizer_names() -> list[str]:
    """Optimizer names :func:`fit` accepts (``torch.optim`` first, then ``torch_optimizer``).

    Examples:
        >>> {"adam", "sgd", "lamb"} <= set(optimizer_names())
        True
    """
    return sorted({**_extra_optimizers(), **_torch_optimizers()})


def make_optimizer(name: str, params: Any, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Optimizer by (case-insensitive) name from ``torch.optim`` or ``torch_optimizer``.

    Examples:
        >>> opt = make_optimizer("AdamW", [torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
        >>> type(opt).__name__
        'AdamW'
    """
    key = str(name).lower()
    table = {**_extra_optimizers(), **_torch_optimizers()}
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.6)
        hint = f"; close matches: {close}" if close else ""
        raise HyperprojError(
            f"hyperproj.fit: unknown optimizer {name!r}{hint}. Expected a name from torch.optim or "
            "torch_optimizer (see hyperproj.inr.optimizer_names()) or a torch.optim.Optimizer instance"
        )
    try:
        return table[key](params, lr=lr, **kwargs)
    except (TypeError, ValueError) as err:
        raise HyperprojError(f"hyperproj.fit: cannot build optimizer {name!r}: {err}") from None


_WEIGHT_SPACE_NAMES = ("weight_space_adam", "weight-space-adam", "weightspaceadam")


def _auto_optimizer(model: nn.Module) -> str:
    """``optimizer="auto"``: :class:`~hyperproj.WeightSpaceAdam` for a HyperModel with the offset
    latent (the parameterisation ``reparametrize`` picks for latents of 30 % of the weights and
    more), Adam for everything else (plain networks, unit/paper latents, wrappers around a
    HyperModel)."""
    from ..model import HyperModel
    from ..optim import _batched_latents

    if ((isinstance(model, HyperModel) or _batched_latents(model)) and model.latent_scale == "offset"
            and model.latent.requires_grad):
        return "weight_space_adam"
    return "adam"


def _resolve_optimizer_name(name: Any) -> str:
    key = str(name).lower()
    return "weight_space_adam" if key in _WEIGHT_SPACE_NAMES else key


def default_lr(model: nn.Module) -> float:
    """The learning rate :func:`fit` uses when ``lr`` is not given: the model's own
    ``default_lr()`` if it (or a submodule, e.g. the network a HyperModel wraps) defines one —
    :class:`~hyperproj.inr.Siren` and :class:`~hyperproj.inr.Incode` tie it to their width and
    depth (:func:`~hyperproj.inr.models.sine_lr`) — else 1e-3.

    Examples:
        >>> import hyperproj
        >>> from hyperproj.inr import Siren
        >>> default_lr(Siren(2, 40, 9, 3)), default_lr(hyperproj.reparametrize(Siren(2, 80, 9, 3), 5000))
        (0.001, 0.0005)
        >>> default_lr(torch.nn.Linear(2, 3))
        0.001
    """
    found = _find_hook(model, "default_lr")
    if found is None:
        return _FALLBACK_LR
    value = found[1]()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise HyperprojError(
            f"hyperproj.fit: {type(found[0]).__name__}.default_lr() must return a positive number, got {value!r}")
    return float(value)


_FALLBACK_LR = 1e-3  # Adam's usual rate, for models that declare no default_lr()


def _find_hook(model: nn.Module, name: str) -> tuple[nn.Module, Callable] | None:
    for mod in model.modules():
        fn = getattr(mod, name, None)
        if callable(fn):
            return mod, fn
    return None


def _make_scheduler(
    scheduler: Any, optimizer: torch.optim.Optimizer, steps: int, final_lr_ratio: float,
    clock: Callable[[], float] | None = None,
) -> Any:
    """``clock()`` (if given) is the share of the time budget spent; a named schedule follows
    whichever of steps or time is further along, so a time-bounded fit still decays fully."""
    if scheduler is None:
        return None
    if isinstance(scheduler, str):

        def progress(t: int) -> float:
            return min(max(t / steps, clock() if clock is not None else 0.0), 1.0)

        if scheduler == "exponential":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: final_lr_ratio ** progress(t))
        if scheduler == "cosine":
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda t: final_lr_ratio + (1 - final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress(t))),
            )
        close = difflib.get_close_matches(scheduler, ["exponential", "cosine"], n=2)
        raise HyperprojError(
            f"hyperproj.fit: scheduler must be None, 'exponential', 'cosine', a torch LR scheduler or "
            f"a callable(optimizer) -> scheduler; got {scheduler!r}" + (f" (did you mean {close}?)" if close else "")
        )
    if hasattr(scheduler, "step") and hasattr(scheduler, "optimizer"):
        if scheduler.optimizer is not optimizer:
            raise HyperprojError(
                "hyperproj.fit: the scheduler instance was built for a different optimizer; pass "
                "optimizer= the same instance, or a callable(optimizer) -> scheduler"
            )
        return scheduler
    if callable(scheduler):
        return scheduler(optimizer)
    raise HyperprojError(f"hyperproj.fit: unsupported scheduler {scheduler!r}")


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HyperprojError(f"hyperproj.fit: {name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")


@dataclass(frozen=True)
class ErrorSampling:
    """Minibatches drawn where the model is wrong: a discrete form of *soft mining*.

    Kheradmand et al. (CVPR 2024, "Accelerating Neural Field Training via Soft Mining") sample
    training points in proportion to their error and correct the loss with importance weights.
    Here every row ``i`` keeps the loss it had the last time it was drawn, ``e_i`` (rows not drawn
    yet start at twice the first batch's mean), and a step draws its rows with probability

        p_i = uniform / N + (1 − uniform) · e_i / Σ e

    and weights row ``i``'s loss by ``(1 / (N p_i)) ** alpha`` (normalised to mean 1 in the
    batch). ``alpha = 1`` is plain importance sampling (the same expected gradient as uniform
    draws, less noise); ``alpha = 0`` is hard mining (hard rows count more); in between, as the
    paper recommends, leans towards the hard rows while still correcting most of the bias. The
    ``uniform`` share keeps every row drawn now and then, so stale errors get refreshed.

    Cost: a draw from the cumulative distribution over the ``N`` rows each step, rebuilt every 4
    steps from the newest errors: 0.94 ms for a Kodak image's 393k rows and 8,192-row batches at
    2 threads (rebuilt every step: 1.31 ms; a uniform draw: 0.02 ms; the SIREN step ~20 ms;
    ``benchmarks/error_sampling_screen.py --cost``).
    Measured with ``compress(..., bpp=0.3, time_budget=300)`` on the 16 full-size Kodak images
    (see the codec docs): mean 26.94 dB against 26.24 dB with uniform draws.

    Args:
        uniform: share of each draw that is uniform, in ``(0, 1]``.
        alpha: exponent of the importance weights, in ``[0, 1]``.
        refresh_every: steps between rebuilds of the draw distribution from the newest errors
            (1: every step). The importance weights always use the distribution a row was drawn
            from.

    Examples:
        >>> from hyperproj.inr import ErrorSampling, ImageSignal, Siren, fit
        >>> import skimage.data
        >>> sig = ImageSignal.from_array(skimage.data.camera()).resize(32)
        >>> h = fit(Siren(2, 32, 2, 1), sig, steps=50, batch_size=256, sampling=ErrorSampling(alpha=0.6),
        ...         progress=False)
        >>> h.best[1] > 12
        True
    """

    uniform: float = 0.5
    alpha: float = 0.6
    refresh_every: int = 4

    def __post_init__(self) -> None:
        r = self.refresh_every
        if not (isinstance(r, int) and not isinstance(r, bool) and r >= 1):
            raise HyperprojError(
                f"hyperproj.inr.ErrorSampling: refresh_every must be an integer >= 1, got {r!r}")
        for name, lo, hi, lo_open in (("uniform", 0.0, 1.0, True), ("alpha", 0.0, 1.0, False)):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (lo < v if lo_open else lo <= v) and v <= hi
            if not ok:
                interval = f"({lo:g}, {hi:g}]" if lo_open else f"[{lo:g}, {hi:g}]"
                raise HyperprojError(f"hyperproj.inr.ErrorSampling: {name} must be a number in {interval}, got {v!r}")


def _resolve_sampling(sampling: Any, signal: Signal) -> ErrorSampling | None:
    """``None`` for uniform draws, else the :class:`ErrorSampling` to use (checked against ``signal``)."""
    if sampling == "uniform":
        return None
    if sampling == "error":
        sampling = ErrorSampling()
    if not isinstance(sampling, ErrorSampling):
        raise HyperprojError(
            f"hyperproj.fit: sampling must be 'uniform', 'error' or an ErrorSampling, got {sampling!r}"
        )
    cls = type(signal)
    if cls.loss is not Signal.loss and cls.loss_per_sample is Signal.loss_per_sample:
        raise HyperprojError(
            f"hyperproj.fit: sampling={sampling!r} needs the loss of every row, but "
            f"{cls.__name__} overrides loss() without loss_per_sample(); define loss_per_sample"
        )
    return sampling


def fit(
    model: nn.Module,
    signal: Signal,
    steps: int,
    lr: float | None = None,
    batch_size: int | None = None,
    optimizer: str | torch.optim.Optimizer = "auto",
    scheduler: Any = None,
    final_lr_ratio: float = 0.1,
    progress: bool = True,
    eval_every: int | None = None,
    callback: Callable[[int, dict[str, float], nn.Module], Any] | None = None,
    seed: int = 0,
    time_budget: float | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    optimizer_kwargs: dict[str, Any] | None = None,
    restore_best: bool = True,
    recover: int = 5,
    sampling: str | ErrorSampling = "uniform",
    warmup: int | None = None,
    adapt_threads: bool | str = True,
    on_divergence: str = "raise",
) -> FitHistory:
    """Fit ``model`` to ``signal`` for ``steps`` optimizer steps; keep and restore the best state.

    Args:
        model: any ``nn.Module`` mapping ``signal.coords`` rows to ``signal.values`` rows, e.g. a
            :class:`Siren` or ``hyperproj.reparametrize(Siren(...), ...)``.
        signal: an :class:`ImageSignal`, :class:`AudioSignal`, :class:`OccupancySignal`, ...
        steps: optimizer steps.
        lr: learning rate; default :func:`default_lr` — for a SIREN or INCODE (wrapped or not)
            one tied to its width and depth, ``12 / (ω · width · sine layers)`` (1e-3 for
            compress's 10 × 40 SIREN, 5e-4 at width 80), else 1e-3. A HyperModel's latent gets
            ``latent_lr_scale`` × this.
        batch_size: rows per step drawn without replacement (reshuffled each epoch by a private
            ``torch.Generator`` seeded with ``seed``); ``None`` = the whole signal every step,
            computed in chunks of ``chunk_size`` rows whose gradients are accumulated (the same
            gradient as one big pass, and faster on a CPU).
        optimizer: ``"auto"`` (default: ``"weight_space_adam"`` when ``model`` is a HyperModel
            with the offset latent — ``reparametrize``'s choice for latents of 30 % of the weights
            and more — else ``"adam"``), a name from ``torch.optim``/``torch_optimizer``
            (case-insensitive), ``"weight_space_adam"`` (:class:`hyperproj.WeightSpaceAdam`, for
            offset-latent HyperModels — below 100 % latent it projects Adam's step in Adam's own
            metric, ``optimizer_kwargs={"metric": "euclidean"}`` for the cheaper plain projection
            that ``compress`` uses; fit releases it at the end) or an optimizer instance (then
            ``lr`` and ``optimizer_kwargs`` are ignored).
        scheduler: ``None``, ``"exponential"`` (lr × ``final_lr_ratio`` ** (t/steps)),
            ``"cosine"`` (from lr down to lr × ``final_lr_ratio``), a torch LR scheduler built on
            the given optimizer instance, or ``callable(optimizer) -> scheduler``. Stepped once
            per step. With ``time_budget``, the named schedules follow whichever of steps or
            seconds is further along, so ``steps`` may be a generous cap.
        progress: show a tqdm bar with the live metric.
        eval_every: evaluate (``signal.evaluate``) every this many steps and at the end; default
            ``max(1, steps // 20)``.
        callback: ``callback(step, metrics, model)`` after each evaluation; return ``True`` to stop.
        seed: seeds the minibatch order (the global RNG is never touched).
        time_budget: stop after this many seconds of training (evaluations not counted). Under
            120 s no compiled kernel is compiled for the first time inside it (that alone can
            take 5–40 s); kernels already compiled in this process, e.g. by
            :func:`~hyperproj.inr.warm_kernels`, are used.
        restore_best: load the best evaluated state at the end (default ``True``).
        recover: how many divergences to roll back. Every ``10`` steps ``fit`` compares the mean
            training loss with the lowest seen so far; a non-finite loss or one over 4× the lowest
            (with the loss over the signal's own variance / 4, so ordinary noise near the optimum
            never triggers it) restores the last healthy state — parameters and optimizer state,
            kept every 100 steps while the loss is within 2× the lowest — halves every learning
            rate and goes on (SIREN at lr 1e-3 sits at the edge of stability: in 300 s compresses
            of the 16 Kodak images, kodim02 once blew up and kodim13 once collapsed to a flat
            image). After ``recover`` roll-backs the next divergence raises, or with
            ``on_divergence="stop"`` rolls back once more and ends training there.
        on_divergence: ``"raise"`` (default) or ``"stop"``: what a divergence past ``recover``
            does. ``"stop"`` (what :func:`~hyperproj.codec.compress` uses: a codec must deliver a
            file) keeps the last healthy state, evaluates it, sets ``history.gave_up`` and returns.
        sampling: how minibatch rows are drawn: ``"uniform"`` (every row once per epoch) or
            ``"error"`` / an :class:`ErrorSampling` (rows drawn more often where their last seen
            loss is high, the loss importance-weighted; measured faster to a given PSNR on images,
            see :class:`ErrorSampling`). Needs ``batch_size``.
        warmup: steps over which every learning rate ramps up linearly from ``lr / warmup`` to
            its value (on top of any scheduler); default ``min(100, steps // 10)``, ``0`` for none.
            Adam's first steps move every weight by a full ``lr`` before its second-moment
            estimate means anything; the ramp keeps a SIREN near its edge of stability from being
            thrown off at the start.
        adapt_threads: with ``time_budget`` on a CPU, keep whichever of torch's thread count and
            1 thread trains faster, re-measured every ~15 s (:class:`_ThreadGovernor`): when
            another process keeps a core busy, two OpenMP threads wait on each other at every
            operation and a step took 2.5–15× longer than with one thread (measured on this
            2-core machine). Results then depend on the load anyway; without a time budget the
            thread count is not changed, so a fixed number of steps gives the same numbers on
            a busy and an idle machine — unless ``adapt_threads="always"`` (what
            :func:`~hyperproj.codec.compress` uses): then fixed steps adapt too, trading bit-equal
            results across loads (the thread count changes float rounding only) for not running
            10× slower: the demo's 1,500 steps took ~1 s each at 2 threads with another job on
            one of the 2 cores (2026-12-07), against ~0.05 s idle.

    Returns:
        :class:`FitHistory`.

    Examples:
        >>> from hyperproj.inr import Siren, ImageSignal, fit
        >>> import skimage.data
        >>> sig = ImageSignal.from_array(skimage.data.camera()).resize(32)
        >>> hist = fit(Siren(2, 32, 2, 1), sig, steps=50, lr=1e-3, progress=False)
        >>> hist.best[1] > 15
        True
    """
    if not isinstance(model, nn.Module):
        raise HyperprojError(f"hyperproj.fit: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(signal, Signal):
        raise HyperprojError(
            f"hyperproj.fit: signal must be a hyperproj.inr Signal (ImageSignal, AudioSignal, "
            f"OccupancySignal, ...), got {type(signal).__name__}"
        )
    _check_positive_int("steps", steps)
    if adapt_threads not in (True, False, "always"):
        raise HyperprojError(f"hyperproj.fit: adapt_threads must be True, False or 'always', got {adapt_threads!r}")
    if on_divergence not in ("raise", "stop"):
        raise HyperprojError(f"hyperproj.fit: on_divergence must be 'raise' or 'stop', got {on_divergence!r}")
    if isinstance(recover, bool) or not isinstance(recover, int) or recover < 0:
        raise HyperprojError(f"hyperproj.fit: recover must be an int >= 0, got {recover!r}")
    _check_positive_int("batch_size", batch_size, allow_none=True)
    _check_positive_int("eval_every", eval_every, allow_none=True)
    _check_positive_int("chunk_size", chunk_size)
    if lr is None:
        lr = default_lr(model)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise HyperprojError(f"hyperproj.fit: lr must be a positive number, got {lr!r}")
    if not (isinstance(final_lr_ratio, (int, float)) and 0 < final_lr_ratio <= 1):
        raise HyperprojError(f"hyperproj.fit: final_lr_ratio must be in (0, 1], got {final_lr_ratio!r}")
    if time_budget is not None and not (isinstance(time_budget, (int, float)) and time_budget > 0):
        raise HyperprojError(f"hyperproj.fit: time_budget must be a positive number of seconds or None, got {time_budget!r}")
    if callback is not None and not callable(callback):
        raise HyperprojError(f"hyperproj.fit: callback must be callable, got {callback!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise HyperprojError(f"hyperproj.fit: seed must be an int, got {seed!r}")
    eval_every = eval_every or max(1, steps // 20)
    if warmup is None:
        warmup = min(_WARMUP_STEPS, steps // 10)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise HyperprojError(f"hyperproj.fit: warmup must be an int >= 0 (steps) or None, got {warmup!r}")
    spec_sampling = _resolve_sampling(sampling, signal)

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    coords, values = signal.coords.to(device), signal.values.to(device)
    n = len(coords)

    found = _find_hook(model, "set_signal")
    if found is not None and not getattr(found[0], "has_signal", True):
        found[1](signal)
    found = _find_hook(model, "regularization_loss")
    reg_fn = found[1] if found is not None else None

    owned_opt = None  # an optimizer fit built and must release (WeightSpaceAdam)
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        key = _resolve_optimizer_name(optimizer)
        if key == "auto":
            key = _auto_optimizer(model)
        if key == "weight_space_adam":
            from ..optim import WeightSpaceAdam

            try:
                opt = owned_opt = WeightSpaceAdam(model, lr, **(optimizer_kwargs or {}))
            except TypeError as err:
                raise HyperprojError(f"hyperproj.fit: cannot build optimizer {optimizer!r}: {err}") from None
        else:
            groups_fn = getattr(model, "optimizer_param_groups", None)
            params = groups_fn(lr) if callable(groups_fn) else [p for p in model.parameters() if p.requires_grad]
            opt = make_optimizer(key, params, lr, **(optimizer_kwargs or {}))
    timer = {"spent": 0.0}  # training seconds so far, for a time-based schedule
    clock = (lambda: timer["spent"] / time_budget) if time_budget is not None else None
    sched = _make_scheduler(scheduler, opt, steps, float(final_lr_ratio), clock)

    history = FitHistory(signal.metric.name, signal.metric.higher_is_better)
    gen = torch.Generator().manual_seed(seed)
    perm: torch.Tensor | None = None
    cursor = n
    best_state: dict[str, Any] | None = None
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    train_seconds = 0.0
    full_batch = batch_size is None or batch_size >= n
    single_pass = full_batch and n <= chunk_size

    miner = None
    if spec_sampling is not None:
        if full_batch:
            raise HyperprojError(
                f"hyperproj.fit: sampling={sampling!r} draws minibatches; it needs a batch_size smaller "
                f"than the signal's {n} rows (got batch_size={batch_size})"
            )
        miner = _ErrorSampler(spec_sampling, n, int(batch_size), gen, device)  # type: ignore[arg-type]
    guard = _DivergenceGuard(model, opt, sched, int(recover), float(values.float().var()), _constant_loss(signal))
    guard_sum, guard_count = torch.zeros((), device=device), 0  # running sums at the last check

    bar = None
    if progress:
        from tqdm.auto import tqdm

        if time_budget is not None:  # the clock ends training: the bar shows seconds, not a step cap
            bar = tqdm(total=float(time_budget), desc=f"fit {type(model).__name__}", leave=False, unit="s",
                       bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}")
        else:
            bar = tqdm(total=steps, desc=f"fit {type(model).__name__}", leave=False)

    if restore_best:
        # The starting point competes too: a warm start (e.g. after distill) is never made worse.
        if history.record(0, float("nan"), signal.evaluate(model), 0.0):
            best_state = _snapshot(model)
    model.train()
    step = 0
    kernels = contextlib.ExitStack()
    adapting = adapt_threads == "always" or (adapt_threads is True and time_budget is not None)
    governor = _ThreadGovernor() if (adapting and device.type == "cpu"
                                     and torch.get_num_threads() > 1) else None
    t0 = time.perf_counter()
    last_tick = t0
    try:
        # a first compilation of the sine kernels costs 5-40 s: not inside a budget that short
        kernels.enter_context(_compiled.warm_only(time_budget is not None and time_budget < _COMPILE_MIN_BUDGET))
        while step < steps:
            # ---- one optimizer step ----
            opt.zero_grad(set_to_none=True)
            if single_pass:
                loss = signal.loss(model(coords), values)
                if reg_fn is not None:
                    loss = loss + reg_fn()
                loss.backward()
            elif full_batch:
                loss = torch.zeros((), device=device)
                for s in range(0, n, chunk_size):
                    part = signal.loss(model(coords[s : s + chunk_size]), values[s : s + chunk_size])
                    part = part * (min(chunk_size, n - s) / n)
                    if s + chunk_size >= n and reg_fn is not None:
                        part = part + reg_fn()
                    part.backward()
                    loss = loss + part.detach()
            elif miner is not None:
                idx, weight, unbiased = miner.draw()
                per_row = signal.loss_per_sample(model(coords[idx]), values[idx])
                miner.update(idx, per_row.detach())
                train_loss = (per_row * weight).mean()
                if reg_fn is not None:
                    train_loss = train_loss + reg_fn()
                train_loss.backward()
                # what history and the divergence guard see: an unbiased estimate of the mean loss
                loss = (per_row.detach() * unbiased).mean()
            else:
                if cursor + batch_size > n:  # type: ignore[operator]
                    perm = torch.randperm(n, generator=gen).to(device)
                    cursor = 0
                idx = perm[cursor : cursor + batch_size]  # type: ignore[index, operator]
                cursor += batch_size  # type: ignore[operator]
                loss = signal.loss(model(coords[idx]), values[idx])
                if reg_fn is not None:
                    loss = loss + reg_fn()
                loss.backward()
            if step < warmup:  # linear ramp on top of whatever the scheduler set
                lrs = [group["lr"] for group in opt.param_groups]
                for group in opt.param_groups:
                    group["lr"] *= (step + 1) / warmup
                opt.step()
                for group, lr_now in zip(opt.param_groups, lrs):
                    group["lr"] = lr_now
            else:
                opt.step()
            if sched is not None:
                timer["spent"] = train_seconds + time.perf_counter() - t0
                sched.step()
            loss_sum += loss.detach()
            loss_count += 1
            step += 1
            if step % _GUARD_EVERY == 0:
                window = float(loss_sum - guard_sum) / max(loss_count - guard_count, 1)
                try:
                    rolled = guard.check(step, window)
                except _Exhausted:
                    if on_divergence == "raise":
                        raise
                    guard.restore()  # the last healthy state, measured and kept if best; no more training
                    history.gave_up = step
                    if history.record(step, math.nan, signal.evaluate(model), train_seconds) and restore_best:
                        best_state = _snapshot(model)
                    history.stopped_early = True
                    break
                if rolled:
                    history.recoveries.append((step, guard.factor))
                    loss_sum.zero_()
                    loss_count = 0
                guard_sum, guard_count = loss_sum.clone(), loss_count

            # ---- bookkeeping ----
            now = time.perf_counter()
            elapsed = train_seconds + now - t0
            out_of_time = time_budget is not None and elapsed >= time_budget
            if governor is not None:
                governor.after_step(now - last_tick)
            last_tick = now
            if step % eval_every == 0 or step == steps or out_of_time:
                train_seconds = elapsed
                # nan when a roll-back just emptied the window
                mean_loss = float(loss_sum) / loss_count if loss_count else math.nan
                if loss_count and not math.isfinite(mean_loss):
                    raise HyperprojError(
                        f"hyperproj.fit: the loss became {mean_loss} at step {step}; lower lr (now {lr})"
                    )
                if governor is not None:
                    governor.settle()
                metrics = signal.evaluate(model)
                model.train()
                if history.record(step, mean_loss, metrics, train_seconds) and restore_best:
                    best_state = _snapshot(model)
                loss_sum.zero_()
                loss_count = 0
                guard_sum, guard_count = loss_sum.clone(), 0
                if bar is not None:
                    bar.set_postfix({history.metric_name: f"{history.metric[-1]:.4g}", "loss": f"{mean_loss:.3g}"})
                stop = callback is not None and callback(step, metrics, model) is True
                if stop or out_of_time:
                    history.stopped_early = step < steps
                    break
                t0 = last_tick = time.perf_counter()
            if bar is not None:
                if time_budget is None:
                    bar.update(1)
                elif step % _GUARD_EVERY == 0:
                    bar.n = min(elapsed, float(time_budget))
                    bar.refresh()
    finally:
        if governor is not None:
            governor.close()
        kernels.close()
        if bar is not None:
            bar.close()
        if owned_opt is not None:
            owned_opt.release()
    if best_state is not None and history.best_index != len(history.metric) - 1:
        model.load_state_dict(best_state)
    return history


class _ErrorSampler:
    """Draws minibatch rows for :class:`ErrorSampling` and keeps each row's last seen loss.

    The distribution (``prob`` and its cumulative sum, O(N) each) is rebuilt from the current
    errors every ``spec.refresh_every`` draws (default 4), not every draw: on a Kodak image (393k rows,
    8,192-row batches) that cuts the sampler from 1.31 to 0.94 ms a step. Between rebuilds a row's
    draw probability lags its newest loss by at most that many steps (each row is drawn about
    every N / batch = 48 steps); the importance weights always use the probability the row was
    actually drawn with, so the loss estimate stays unbiased.
    """

    def __init__(self, spec: ErrorSampling, n: int, batch: int, gen: torch.Generator, device: torch.device):
        self.spec, self.n, self.batch, self.gen = spec, n, batch, gen
        self.refresh_every = spec.refresh_every
        self.err = torch.ones(n, device=device)
        self.seen = False
        self._prob: torch.Tensor | None = None
        self._cdf: torch.Tensor | None = None
        self._age = 0

    def _rebuild(self) -> None:
        n, u = self.n, self.spec.uniform
        # p_i = u/n + (1-u) e_i / sum(e): every row keeps at least u/n, so none is starved
        self._prob = self.err * ((1 - u) / float(self.err.sum())) + u / n
        self._cdf = torch.cumsum(self._prob, 0)
        self._age = 0

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, weights for the training loss, weights for an unbiased loss estimate)``."""
        if self._cdf is None or self._age >= self.refresh_every:
            self._rebuild()
        self._age += 1
        prob, cdf, n = self._prob, self._cdf, self.n
        pick = torch.rand(self.batch, generator=self.gen).to(cdf.device) * cdf[-1]
        idx = torch.searchsorted(cdf, pick).clamp_(max=n - 1)
        unbiased = 1.0 / (n * prob[idx])  # importance weights: E[w l] = mean loss over all rows
        weight = unbiased.pow(self.spec.alpha) if self.spec.alpha != 1.0 else unbiased
        return idx, weight / weight.mean(), unbiased

    def update(self, idx: torch.Tensor, per_row: torch.Tensor) -> None:
        if not self.seen:  # rows not seen yet count as twice the first batch's mean loss
            self.err.fill_(float(per_row.mean()) * 2 + 1e-12)
            self.seen = True
            self._cdf = None  # the first losses replace the flat start at once
        self.err[idx] = per_row.clamp_min(1e-12)


# Below this time budget (seconds) fit compiles no kernel that is not compiled yet: a first
# compilation took ~5 s with inductor's disk cache, ~20 s without, ~35 s on a busy machine (a 25 s
# budget once ran 39.8 s for one step), and saves ~17 % of a step (hyperproj.inr.warm_kernels()
# compiles them ahead, outside any budget).
_COMPILE_MIN_BUDGET = 120.0
_THREAD_WINDOW = 10  # steps per timing window of the thread governor
_THREAD_PROBE_SECONDS = 15.0  # training seconds between two probes of the other thread count


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` (``None``: unchanged) inside the block,
    where no kernel is compiled afresh (inductor's kernels are specialised to the thread count, so
    a switch must never stall on a compilation)."""
    base = torch.get_num_threads()
    if threads is None or threads == base:
        yield
        return
    torch.set_num_threads(threads)
    try:
        with _compiled.warm_only():
            yield
    finally:
        torch.set_num_threads(base)


class _ThreadGovernor:
    """Under a time budget on a CPU: trains with whichever of torch's thread count and 1 thread
    is faster right now. Each ``_THREAD_WINDOW`` steps are timed (median step time); every
    ``_THREAD_PROBE_SECONDS`` of training one window runs at the other count, and the faster
    count is kept. While at a count other than the starting one, no kernel is compiled afresh
    (inductor's kernels are specialised to the thread count), so a probe never stalls on a
    compilation. :meth:`close` restores the starting count."""

    def __init__(self) -> None:
        self.base = torch.get_num_threads()
        self.current = self.base
        self.window: list[float] = []
        self.rates: dict[int, float] = {}
        self.since_probe = 0.0
        self.probing = False
        self._kernels = contextlib.ExitStack()

    def _set(self, threads: int) -> None:
        if threads == self.current:
            return
        torch.set_num_threads(threads)
        self.current = threads
        self._kernels.close()
        if threads != self.base:
            self._kernels.enter_context(_compiled.warm_only())

    def after_step(self, seconds: float) -> None:
        self.window.append(seconds)
        if len(self.window) < _THREAD_WINDOW:
            return
        rate = sorted(self.window)[len(self.window) // 2]
        self.window = []
        self.rates[self.current] = rate
        if self.probing:
            self._set(min(self.rates, key=self.rates.__getitem__))
            self.probing = False
            self.since_probe = 0.0
            return
        self.since_probe += rate * _THREAD_WINDOW
        if len(self.rates) < 2 or self.since_probe >= _THREAD_PROBE_SECONDS:
            self._set(1 if self.current != 1 else self.base)
            self.probing = True

    def forget(self) -> None:
        """Drop the step times measured so far (the step itself changed, e.g. a new resolution)."""
        self.rates = {}
        self.window = []
        self.probing = False
        self.since_probe = 0.0

    def settle(self) -> None:
        """Switch to the fastest count measured so far and drop any probe in progress: before a
        full-signal evaluation (with a busy core, one evaluation of a full-size Kodak image took
        10.2 s at 2 threads against 2.4 s at 1)."""
        if self.rates:
            self._set(min(self.rates, key=self.rates.__getitem__))
        self.window = []
        self.probing = False

    def close(self) -> None:
        self._set(self.base)
        self._kernels.close()


_WARMUP_STEPS = 100  # default warm-up length (fewer for fits under 1,000 steps)
_GUARD_EVERY = 10  # steps between divergence checks (one host sync each)
_GUARD_SNAPSHOT_EVERY = 10  # checks between snapshots of a healthy state
# a window's mean loss this many times the lowest one (and above a quarter of the signal's variance)
# is a divergence; 8 missed a collapse to a flat image on kodim13 (20.6 dB -> 11.8 dB is 7.7x)
_GUARD_RATIO = 4.0
_GUARD_HEALTHY_RATIO = 2.0  # snapshots are taken only while the loss is within this of the lowest
# A collapse back towards the flat prediction: a window that has given back over half of the way
# from the constant prediction's loss to the lowest one (and risen 1.5x above the lowest, so noise
# early in training never counts). kodim05 at 0.5 bpp, lr 1e-3: 13.95 dB at step 50, then 10.7 dB
# for 950 steps, the flat image's level, never 4x the lowest loss.
_GUARD_LOST_SHARE = 0.5
_GUARD_MIN_RISE = 1.5
# A run that never learns: every window at >= 90 % of the flat prediction's loss and no new lowest
# loss (by 1 %) for 10 checks (100 steps). A 10 x 72 SIREN at lr 2e-3 on a 96 px photo sat at the
# flat image's 12.2 dB from step 25 to 300; slow but healthy training keeps setting new lows.
_GUARD_FLAT_LEVEL = 0.9
_GUARD_STALL_CHECKS = 10
_GUARD_PROGRESS = 0.01


class _Exhausted(HyperprojError):
    """A divergence after every allowed roll-back (``fit``'s ``recover``)."""


class _DivergenceGuard:
    """Rolls ``fit`` back to the last healthy state when the training loss blows up."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, budget: int, signal_var: float,
                 constant_loss: float = math.inf):
        self.model, self.opt, self.sched = model, opt, sched
        self.budget = max(0, budget)
        self.floor = signal_var / 4  # losses below this are never called a divergence
        self.constant = constant_loss  # the loss of the best flat prediction
        self.best = math.inf
        self.factor = 1.0
        self.rollbacks = 0
        self.checks = 0
        self.flat_run = 0  # consecutive windows at the flat prediction's level
        self.since_best = 0  # consecutive windows without a new lowest loss
        self.saved = self._save()  # the starting point is healthy by definition

    def _save(self) -> tuple[dict[str, Any], dict[str, Any]]:
        # the lowest loss seen when the snapshot was taken: after a roll-back the run is judged
        # against that, not against a lower loss reached after it (a roll-back to the starting
        # point would otherwise be called a divergence at once, and again, until none were left)
        self.saved_best = self.best
        return _snapshot(self.model), copy.deepcopy(self.opt.state_dict())

    def check(self, step: int, window: float) -> bool:
        """``window``: mean training loss of the last steps. Returns whether it rolled back."""
        best = self.best
        lost = (math.isfinite(self.constant) and best < self.constant and window > _GUARD_MIN_RISE * best
                and window > best + _GUARD_LOST_SHARE * (self.constant - best))
        diverged = not math.isfinite(window) or (window > self.floor and (window > _GUARD_RATIO * best or lost))
        at_flat = math.isfinite(self.constant) and window >= _GUARD_FLAT_LEVEL * self.constant
        if not diverged:
            self.since_best = 0 if window < (1 - _GUARD_PROGRESS) * best else self.since_best + 1
            self.best = min(best, window)
            self.flat_run = self.flat_run + 1 if at_flat else 0
            # never learned: stuck at the flat prediction's loss, no new lowest for as long
            diverged = (self.flat_run >= _GUARD_STALL_CHECKS and self.since_best >= _GUARD_STALL_CHECKS
                        and self.best >= _GUARD_FLAT_LEVEL * self.constant)
        if not diverged:
            self.checks += 1
            # a slow drift upwards (or a model stuck at the flat prediction) must not become the
            # state rolled back to
            if (self.checks % _GUARD_SNAPSHOT_EVERY == 0 and window <= _GUARD_HEALTHY_RATIO * self.best
                    and not at_flat):
                self.saved = self._save()
            return False
        if self.rollbacks >= self.budget:
            raise _Exhausted(
                f"hyperproj.fit: the loss became {window:.4g} at step {step} after {self.rollbacks} "
                f"roll-back(s); lower lr (now {self.opt.param_groups[0]['lr']:g})"
            )
        self.rollbacks += 1
        self.factor *= 0.5
        self.restore()
        for group in self.opt.param_groups:
            group["lr"] *= 0.5
        if self.sched is not None and hasattr(self.sched, "base_lrs"):  # LambdaLR & co. recompute from these
            self.sched.base_lrs = [b * 0.5 for b in self.sched.base_lrs]
        return True

    def restore(self) -> None:
        """Load the last healthy parameters and optimizer state (the current learning rates kept)."""
        self.flat_run = self.since_best = 0
        self.best = self.saved_best
        lrs = [group["lr"] for group in self.opt.param_groups]
        self.model.load_state_dict(self.saved[0])
        self.opt.load_state_dict(self.saved[1])
        for group, lr in zip(self.opt.param_groups, lrs):
            group["lr"] = lr


def _constant_loss(signal: Signal) -> float:
    """``signal.constant_loss()``, or ``inf`` (no collapse test) for a signal that cannot say."""
    fn = getattr(signal, "constant_loss", None)
    try:
        value = float(fn()) if callable(fn) else math.inf
    except Exception:  # noqa: BLE001 - a custom signal's loss may not accept a flat prediction
        return math.inf
    return value if math.isfinite(value) and value > 0 else math.inf


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        k: (v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v))
        for k, v in model.state_dict().items()
    }
