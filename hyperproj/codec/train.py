"""Training inside ``compress``: :func:`hyperproj.inr.fit` under one clock for every attempt.

* :func:`fit_defaults` — compress's recipe on top of ``fit``'s: cosine decay, minibatches of
  8,192 rows for signals over 16,384 rows, for images drawn where the error is
  (:class:`~hyperproj.inr.ErrorSampling`; measured on Kodak at 0.3 bpp, docs/codec.md);
* :func:`clock_latent_cap` — under a time budget, the largest latent whose network still gets
  :data:`MIN_CLOCK_STEPS` training steps on this machine now (a network widened for a high rate
  and trained for a few hundred steps decodes worse than a narrower one: kodim01, 120 s on a busy
  machine, 24.19 dB at 1 bpp and 21.05 at 2 bpp after 231 steps);
* :class:`Training` — fits one model after another (a re-planned attempt starts warm) within a
  time budget that reserves wall time for every full-signal evaluation still to come, refuses a
  budget too small to train, optionally fine-tunes with rounding in the loop, and keeps what the
  report needs (steps, recoveries, the float model's metrics).

Examples:
    >>> from hyperproj.inr import ImageSignal
    >>> fit_defaults(ImageSignal(torch.rand(200, 200, 3)), None)["batch_size"]
    8192
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..inr.fit import ErrorSampling, _auto_optimizer, _resolve_optimizer_name, fit, num_threads
from ..inr.signals import ImageSignal, Signal
from .format import error
from .signals import samples

__all__ = ["fit_defaults", "codec_fit_options", "default_steps", "clock_latent_cap", "MIN_CLOCK_STEPS", "Training"]

_BATCH_ROWS = 8192  # compress's minibatch for signals with more than 2x this many rows
_STEP_CAP = 10**7  # steps when only a time budget bounds training
_MIN_TRAIN_SECONDS = 1.0  # a time budget leaving less than this for training is refused
_PROBE_ROWS = 8192  # rows of the forward pass timed to choose the evaluations' thread count
_PROBE_ROUNDS = 3

#: Under a time budget, the fewest training steps a network widened for a high rate should get:
#: a wider one is planned smaller (the file then stays under its target). Measured with the
#: 9-hidden-layer SIRENs on full-size Kodak, 120 s, 1 thread (docs/codec.md): width 112 after 231
#: steps fell 3.1 dB under width 80 after 959 (kodim01, 2 vs 1 bpp); with a floor of 500 steps 2 bpp
#: still ended 1.5 / 1.0 dB under 1 bpp (kodim23 / kodim01), with 1,000 at 33.76 / 24.69 dB, level
#: with 1 bpp (33.60-33.88 / 24.63-24.83), at a cost of 0.28 dB on kodim23 at 1 bpp.
MIN_CLOCK_STEPS = 1000
#: A training step's cost over the plain forward + backward pass of its minibatch (the projection,
#: the optimizers, error sampling; measured 1.2-1.7x at widths 40-112 on one thread).
_STEP_OVERHEAD = 1.5
#: Share of the time left that the main training run gets (the rest: evaluations, encoding).
_TRAIN_SHARE = 0.8


def _median_seconds(run: Callable[[], Any], thread_counts: list[int]) -> dict[int, float]:
    """Median wall time of ``run()`` over ``_PROBE_ROUNDS`` rounds, per torch thread count."""
    times: dict[int, list[float]] = {t: [] for t in thread_counts}
    for _ in range(_PROBE_ROUNDS):
        for threads in thread_counts:
            with num_threads(threads):
                tic = time.perf_counter()
                run()
                times[threads].append(time.perf_counter() - tic)
    return {t: sorted(v)[len(v) // 2] for t, v in times.items()}


def faster_threads(net: nn.Module, signal: Signal) -> int:
    """Whichever of torch's thread count and 1 thread runs a no-grad forward pass of ``net`` over
    ``_PROBE_ROWS`` of the signal's coordinates faster now (median of ``_PROBE_ROUNDS``). With a busy
    core on a 2-core machine two OpenMP threads wait on each other at every operation: a full-size
    Kodak evaluation took 10.4 s with 2 threads against ~3 s with 1 (2026-12-07)."""
    base = torch.get_num_threads()
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    if base <= 1 or device.type != "cpu":
        return base
    x = signal.coords[:_PROBE_ROWS]
    with torch.no_grad():
        medians = _median_seconds(lambda: net(x), [base, 1])
    return min(medians, key=medians.__getitem__)


def step_seconds(net: nn.Module, signal: Signal) -> float:
    """Seconds of one plain forward + backward pass of ``net`` over a training minibatch of
    ``signal`` (:data:`_BATCH_ROWS` rows, or every row of a small signal), with whichever of torch's
    thread count and 1 thread is faster now (the thread count ``fit`` would pick; median of rounds).

    Examples:
        >>> from hyperproj.inr import ImageSignal, Siren
        >>> step_seconds(Siren(2, 8, 1, 3), ImageSignal(torch.rand(16, 16, 3))) > 0
        True
    """
    rows = samples(signal) if samples(signal) <= 2 * _BATCH_ROWS else _BATCH_ROWS
    device = next((q.device for q in net.parameters()), torch.device("cpu"))
    x, y = signal.coords[:rows].to(device), signal.values[:rows].to(device)
    base = torch.get_num_threads()
    medians = _median_seconds(lambda: ((net(x) - y) ** 2).mean().backward(),
                              [base, 1] if device.type == "cpu" and base > 1 else [base])
    net.zero_grad(set_to_none=True)
    return min(medians.values())


def clock_latent_cap(make_net: Callable[[int], nn.Module], n: int, floor: int, signal: Signal,
                     seconds: float | None) -> tuple[int, float | None]:
    """The latent size to plan for ``seconds`` of training: ``n``, or — when the network
    ``make_net(n)`` would get fewer than :data:`MIN_CLOCK_STEPS` steps in that time (its step timed
    now, :func:`step_seconds`) — a smaller one, not under ``floor`` (the base network's weights),
    whose network gets about that many. Returns ``(latent, estimated steps of the planned
    network)``; ``(n, None)`` when nothing was timed (no clock, or ``n <= floor``).

    Examples:
        >>> from hyperproj.inr import ImageSignal, Siren
        >>> sig = ImageSignal(torch.rand(16, 16, 3))
        >>> clock_latent_cap(lambda n: Siren(2, 8, 1, 3), 500, 100, sig, None)
        (500, None)
        >>> clock_latent_cap(lambda n: Siren(2, max(8, n // 20), 1, 3), 4000, 100, sig, 1e-6)[0]
        100
    """
    if seconds is None or n <= floor:
        return n, None
    steps = 0.0
    for _ in range(3):  # the step cost is not quite proportional to the weights: re-time
        with torch.random.fork_rng(devices=[]):
            net = make_net(n)
        steps = _TRAIN_SHARE * max(seconds, 0.0) / (_STEP_OVERHEAD * step_seconds(net, signal))
        if steps >= 0.9 * MIN_CLOCK_STEPS or n <= floor:
            break
        n = max(floor, int(n * steps / MIN_CLOCK_STEPS))
    return n, steps


def fit_defaults(signal: Signal, fit_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``fit_options`` completed with compress's training recipe (given entries win)."""
    fit_options = dict(fit_options or {})
    fit_options.setdefault("scheduler", "cosine")
    # a codec must deliver a file: a divergence past every roll-back ends training at the last
    # healthy state instead of raising (the report's "gave_up" says at which step)
    fit_options.setdefault("on_divergence", "stop")
    # fixed steps too: on a busy 2-core machine two threads ran a step ~20x slower than one
    fit_options.setdefault("adapt_threads", "always")
    if samples(signal) > 2 * _BATCH_ROWS:  # minibatches learn far more per pixel visited than full passes
        fit_options.setdefault("batch_size", _BATCH_ROWS)
        if isinstance(signal, ImageSignal) and fit_options["batch_size"] is not None:
            # rows drawn where the error is (measured on Kodak at 0.3 bpp, docs/codec.md)
            fit_options.setdefault("sampling", ErrorSampling())
    return fit_options


def codec_fit_options(net: nn.Module, fit_options: Mapping[str, Any]) -> dict[str, Any]:
    """``fit_options`` for training ``net`` in the codec: when ``fit`` will build a
    :class:`~hyperproj.WeightSpaceAdam` and no ``optimizer_kwargs`` are given, its Euclidean
    projection (``metric="euclidean"``). The Adam-metric projection (the library's default below
    100 %) learns more per step but costs 40-70 % more per step, and the codec trains against a
    clock: 120 s, 1 thread, 2026-12-07, Euclidean against Adam metric: kodim23 at 0.3 bpp 32.08 dB
    (2,400 steps) against 31.26 (1,591); kodim05 at 0.5 bpp 22.96 (1,482) against 22.26 (932).

    Examples:
        >>> import hyperproj
        >>> from hyperproj.inr import Siren
        >>> hyper = hyperproj.reparametrize(Siren(2, 16, 1, 3), 200, latent_scale="offset")
        >>> codec_fit_options(hyper, {})["optimizer_kwargs"]
        {'metric': 'euclidean'}
        >>> codec_fit_options(Siren(2, 16, 1, 3), {})
        {}
    """
    options = dict(fit_options)
    name = _resolve_optimizer_name(options.get("optimizer", "auto"))
    if name == "auto":
        name = _auto_optimizer(net)
    if name == "weight_space_adam" and options.get("optimizer_kwargs") is None:
        options["optimizer_kwargs"] = {"metric": "euclidean"}
    return options


def default_steps(steps: int | None, time_budget: float | None) -> int:
    """2000, or with a time budget a cap it never reaches (the clock ends training)."""
    if steps is None:
        return _STEP_CAP if time_budget is not None else 2000
    return steps


class Training:
    """The training of every attempt of one ``compress`` call (``job``: its clock, signal, options)."""

    def __init__(self, job: Any):
        self.job = job
        self.eval_seconds: float | None = None
        # under a time budget, the thread count the full-signal evaluations run with (fit's
        # thread governor chooses the training's own)
        self.eval_threads: int | None = None
        self.unquantized: dict[str, float] = {}
        self.recoveries: list[tuple[int, float]] = []
        self.gave_up: int | None = None
        self.steps = 0

    def fit(self, net: nn.Module, steps: int, lr: float, first: bool) -> None:
        """Train ``net`` for ``steps`` (bounded by what the clock leaves after reserving the
        evaluations still to come); ``first``: no model was trained before, so a budget that
        leaves under a second to train is refused."""
        job = self.job
        if job.time_budget is not None and self.eval_seconds is None:
            # fit's budget excludes its evaluations; reserve wall time for every full-signal pass
            # torch.optim's first optimizer imports torch._dynamo (3-5 s in a fresh process, e.g.
            # the CLI's): paid here, before the clock is read, not inside fit's share of it
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
            if job.fit_options.get("adapt_threads", True):
                self.eval_threads = faster_threads(net, job.signal)
            tic = time.perf_counter()
            self.evaluate(net)
            self.eval_seconds = time.perf_counter() - tic
        left = job.left()
        # passes still to come: 2 in this fit, 4 around fine-tuning, 1 for the report
        reserve = 0.0 if self.eval_seconds is None else (3 + 4 * bool(job.qat_steps)) * self.eval_seconds + 1.0
        main_budget = None if left is None else (left - reserve) * (1 - 0.2 * bool(job.qat_steps))
        if main_budget is not None and main_budget < _MIN_TRAIN_SECONDS and first:
            spent = job.elapsed()
            raise error(
                f"compress: time_budget={job.time_budget:g} s is too small to train this model: setting up "
                f"took {spent:.1f} s and the full-signal evaluations still to come take about "
                f"{reserve:.1f} s, which leaves {max(main_budget, 0.0):.1f} s for training (at least "
                f"{_MIN_TRAIN_SECONDS:g} s needed); give at least {spent + reserve + 10 * _MIN_TRAIN_SECONDS:.0f} s "
                "for a useful result, or pass steps= without a time budget"
            )
        if steps > 0 and (main_budget is None or main_budget > 0):
            history = fit(net, job.signal, steps, lr=lr, progress=job.progress, time_budget=main_budget,
                          **codec_fit_options(net, job.fit_options))
            self.unquantized = history.metrics[history.best_index] if history.best_index is not None else {}
            self.recoveries += history.recoveries
            self.gave_up = history.gave_up if history.gave_up is not None else self.gave_up
            self.steps += history.step[-1] if history.step else 0

    def fine_tune(self, net: nn.Module, lr: float, rounded: Callable[[nn.Module], nn.Module],
                  fake: Callable[[nn.Module], nn.Module]) -> None:
        """``job.qat_steps`` steps of fine-tuning ``fake(net)`` (rounding in the loop) at ``lr / 10``,
        kept only if ``rounded(net)`` (the model the file holds) got better."""
        job = self.job
        if job.qat_steps <= 0:
            return
        left = None if job.time_budget is None else max(
            job.time_budget - job.elapsed() - 5 * (self.eval_seconds or 0.0) - 1.0, 0.5)
        options = dict(job.fit_options)
        options["scheduler"] = None
        metric = job.signal.metric
        before = self.evaluate(rounded(net))[metric.name]
        saved = [p.detach().clone() for p in net.parameters()]
        fit(fake(net), job.signal, job.qat_steps, lr=lr * 0.1, progress=job.progress, time_budget=left, **options)
        after = self.evaluate(rounded(net))[metric.name]
        if not metric.better(after, before):  # fine-tuning did not help: keep the trained state
            with torch.no_grad():
                for p, v in zip(net.parameters(), saved):
                    p.copy_(v)

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """``job.signal.evaluate(net)`` with the thread count chosen for evaluations."""
        with num_threads(self.eval_threads):
            return self.job.signal.evaluate(net)

    def report(self) -> dict[str, Any]:
        """``recoveries`` (divergences fit rolled back), ``gave_up`` (the step a divergence past every
        roll-back ended training at, or None), ``steps`` (over every attempt) and ``sampling``."""
        return {"recoveries": self.recoveries, "gave_up": self.gave_up, "steps": self.steps,
                "sampling": str(self.job.fit_options.get("sampling", "uniform"))}
