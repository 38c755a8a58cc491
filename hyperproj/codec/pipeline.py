"""``compress`` and ``decompress``: the steps of the codec in order, for every model family.

``compress``: check the request (:class:`~hyperproj.codec.job.Job`) → the family plans its model
for the signal and the byte budget → build → train → store and write the file → over budget: a
coarser code or a smaller model (:mod:`hyperproj.codec.rate`), again → decode the file and
measure it. ``decompress``: read the container → the family named in the header rebuilds its
model → :func:`~hyperproj.codec.render` draws it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .._errors import HyperprojError
from ._auto import (
    auto_coder,
    auto_family,
    declared,
    is_grid,
)
from .families import DEFAULT_FAMILY, read_file
from .families import get_family as _get_family
from .format import error, read_input
from .job import Job
from .quant import DEFAULT_BIAS_BITS, DEFAULT_BITS, Bits
from .rate import over_budget
from .signals import as_signal

__all__ = ["CompressResult", "compress", "compress_together", "decompress", "decode", "load", "info"]


@dataclass
class CompressResult:
    """What :func:`compress` returns: the decoded ``model``, the file ``data`` and a ``report``.

    ``report`` keys: ``family`` (the model family that coded it: ``"doh"``, ``"grid"``),
    ``budget_bytes``, ``file_bytes``, ``bpp`` (the file, header included), the decoded model's
    metrics (``psnr``, ``ssim`` for images), ``seconds``, ``attempts``; the D'OH family adds
    ``latent_dim``, ``bits``, ``bias_bits``, ``est_bpp`` (stored values × bits / pixels, the
    paper's estimate), the grid family ``latent_bytes``, ``network_bytes``, ``lam`` and more.

    Examples:
        >>> r = CompressResult(model=None, data=b"xyz", report={"bpp": 0.1})
        >>> r.bytes, len(r)
        (b'xyz', 3)
    """

    model: Any
    data: bytes
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> bytes:  # noqa: A003 - the brief's name for the file
        """The file's bytes (alias of ``data``)."""
        return self.data

    def __len__(self) -> int:
        return len(self.data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the file; returns the path."""
        path = Path(path)
        path.write_bytes(self.data)
        return path


def compress(
    signal: Any,
    bpp: float = 0.3,
    model: nn.Module | None = None,
    *,
    bits: Bits = DEFAULT_BITS,
    bias_bits: Bits = DEFAULT_BIAS_BITS,
    steps: int | None = None,
    lr: float | None = None,
    qat_steps: int | None = None,
    time_budget: float | None = None,
    projection: str = "auto",
    seed: int = 0,
    method: str = "rans",
    max_bytes: int | None = None,
    latent_dim: int | None = None,
    progress: bool = True,
    fit_options: dict[str, Any] | None = None,
    family: str = "auto",
    **options: Any,
) -> CompressResult:
    """Compress ``signal`` into a ``.hpz`` file of at most ``bpp`` bits per pixel (header included).

    Which model codes it is ``family``'s choice: by default (``"auto"``) the latent-grid family
    (:class:`~hyperproj.inr.LatentGrid`) for images of at least 256×256 pixels at 0.3–2 bpp, the
    SIREN/D'OH family described here for everything else and whenever the arguments are D'OH's
    (a model, ``latent_dim``, ``bits``, reparametrize options, ...).

    The latent size comes straight from the bit budget (no architecture search): the largest
    ``n`` whose file — header, ranges, biases at ``bias_bits``, latent entropy-coded at an
    estimated bits/symbol — fits ``bpp × pixels`` bits. The model is reparametrized with
    ``latent_scale="offset"`` (``W = W0 + R z``, z from 0: it learns several dB faster per step
    than the paper's or the unit parameterisation, see the Codec docs) when ``n`` is at least
    30 % of the weights, else with the unit latent, trained (``steps`` Adam
    steps at ``lr``, minibatches of 8,192 rows for signals over 16,384 rows — for images drawn
    where the error is, :class:`~hyperproj.inr.ErrorSampling` — cosine decay, best state kept),
    optionally fine-tuned with straight-through fake quantization of latent and biases (``qat_steps``; off by default: measured to cost more training time than it wins
    back), quantized and encoded. With ``time_budget`` the clock bounds training (``steps``
    defaults to a cap it never reaches, the cosine decay follows the clock, and fine-tuning, if
    asked for, gets the last 20 %). If the real file is over budget, the latent shrinks to the size the measured
    bits/symbol allow (warm-started by a least-squares fit of the trained weights, then
    fine-tuned) until it fits — unless a time budget leaves under a quarter of itself for that
    fine-tuning, in which case the trained latent is coded with one bit less instead (a warm start
    without fine-tuning is far worse); raw bit packing bounds the coded size, so the loop always
    ends under budget. ``max_bytes`` sets the budget in bytes instead (needed for occupancy signals).

    Args:
        signal: ``ImageSignal`` (or an image path / array), ``AudioSignal`` (bpp = bits per
            sample) or ``OccupancySignal`` (with ``max_bytes``).
        model: a registered :mod:`hyperproj.inr` model (default: :func:`default_model`).
        steps: training steps (default 2000, or time-bounded when ``time_budget`` is given).
        lr: Adam learning rate (default 1e-3 for the offset latent, the edge of stability for
            SIREN and offset D'OH alike; 3e-3 with latent × 10 for the unit latent).
        time_budget: seconds for the whole call (training gets what encoding does not need).
        projection: ``"auto"`` (see :func:`hyperproj.projection.resolve_kind`), ``"orthogonal"``,
            ``"dense"``, ``"streamed"``, ``"fastfood"``.
        latent_dim: force ``n`` (the guarantee still holds: it shrinks if the file is over).
        fit_options: extra arguments for :func:`hyperproj.inr.fit`.
        model: also the name of a model family (``"grid"``, ``"doh"``): the same as ``family=``;
            ``"auto"``: the same as ``family="auto"``.
        family: the model family (:func:`~hyperproj.codec.family_names`: ``"doh"``, the
            SIREN/D'OH family described above, or ``"grid"``), or ``"auto"`` (default): the family
            measured better for the signal and rate, unless the arguments name one (a model, a
            ``latent_dim``, a ``projection``, options or settings only one family takes).
            ``model``, ``projection``, ``latent_dim`` and ``**options`` go to the family.
        **options: passed to :func:`hyperproj.reparametrize` (``init``, ``latent_scale``, ...).

    Returns:
        :class:`CompressResult` with the *decoded* model and its metrics; ``report`` also holds
        ``unquantized`` (the trained float model's metrics: the gap is what rounding cost),
        ``latent_bits_per_symbol`` (the coded latent's real cost), ``gave_up`` (the training step at which
        a divergence past every roll-back ended training at the last healthy state; ``None``
        normally) and ``recoveries`` (divergences
        that :func:`~hyperproj.inr.fit` rolled back, ``(step, lr factor)``) and ``steps`` (training
        steps taken, over every attempt; fine-tuning with rounding not counted).

    Examples:
        >>> import skimage.data
        >>> from hyperproj.inr import ImageSignal
        >>> sig = ImageSignal.from_array(skimage.data.astronaut()).resize(64)
        >>> res = compress(sig, bpp=0.5, steps=300, progress=False)  # doctest: +SKIP
        >>> res.report["bpp"] <= 0.5  # doctest: +SKIP
        True
    """
    if isinstance(model, str):  # a family by name: compress(img, model="grid"), or "auto"
        family, model = model, None
    job = Job.create(signal, bpp, max_bytes=max_bytes, bits=bits, bias_bits=bias_bits, method=method,
                     time_budget=time_budget, steps=steps, lr=lr, qat_steps=qat_steps, seed=seed,
                     progress=progress, fit_options=fit_options)
    given = {k for k, v, default in (("bits", bits, DEFAULT_BITS), ("bias_bits", bias_bits, DEFAULT_BIAS_BITS),
                                     ("method", method, "rans"), ("qat_steps", qat_steps or None, None),
                                     ("fit_options", fit_options, None)) if v != default}

    def make(name: str) -> Any:
        cls = _get_family(name)
        if given & cls.ignores:
            raise error(f"compress: the {name!r} family does not use {sorted(given & cls.ignores)} "
                        "(settings of the SIREN/D'OH family); leave them out or pick family='doh'")
        return cls(job, model, projection=projection, latent_dim=latent_dim, **options)

    if family != "auto":
        coder = make(family)
    else:  # the rate asked for (with max_bytes: the budget's), header included
        coder = auto_coder(job, model, latent_dim, projection,
                           job.bpp if max_bytes is None else 8.0 * job.budget / job.samples, set(options), given,
                           make)
    return _finish(job, coder, coder.build(), trained=False)


def _finish(job: Job, coder: Any, net: nn.Module, trained: bool) -> CompressResult:
    """compress from a built model on: train it (unless ``trained``), encode, over budget a coarser
    file or a smaller model again; then decode the file and measure it."""
    while True:
        if not trained:
            coder.train(net)
        trained = False
        data = coder.encode(net)
        job.attempts.append(coder.attempt(net, data))
        if len(data) <= job.budget:
            break
        fitted = over_budget(coder, net, data, job)  # a coarser file, or None: a smaller model, again
        if fitted is not None:
            data = fitted
            break
        net = coder.build(previous=net)  # warm-started from the last attempt
    decoded = decode(data)
    report = {"family": coder.name, **coder.report(net, data), "budget_bytes": job.budget, "file_bytes": len(data),
              "attempts": job.attempts, **job.training.report()}
    if job.samples:
        report["target_bpp"] = 8 * job.budget / job.samples if job.max_bytes is not None else job.bpp
        report["bpp"] = 8 * len(data) / job.samples
    report.update(job.training.evaluate(decoded))
    report["seconds"] = job.elapsed()  # the whole call, the report's own evaluation included
    # the trained float model before rounding (the state fit kept): what quantization cost
    report["unquantized"] = {k: v for k, v in job.training.unquantized.items() if k in report}
    return CompressResult(model=decoded, data=data, report=report)


def compress_together(signals: Any, bpp: float = 0.3, *, progress: bool = True, **options: Any) -> list[CompressResult]:
    """:func:`compress` each of ``signals`` — the same files, the same guarantees — training
    same-planned models together in one loop (:mod:`hyperproj.codec.batch`: one projection for all
    latents, the base run under ``vmap``).

    Signals whose models share one plan (same shape, rate, seed and options, the default family,
    fixed ``steps``: no ``time_budget``, no ``qat_steps``) train as one batch; otherwise each is
    compressed on its own. A file over budget takes compress's usual path, alone. ``report["seconds"]``
    of a batch member is its share: the batch's training time over its size plus its own encoding.
    Measured on a 2-core CPU (docs/collections.md): no faster than one at a time (0.74x at 64 px,
    1.01x at 256 px with 4 signals) — compiled sine kernels do not run under ``vmap`` — so
    :func:`~hyperproj.codec.compress_many` uses it only when asked (``batch=``).

    Examples:
        >>> from hyperproj.inr import ImageSignal
        >>> sigs = [ImageSignal(torch.rand(32, 32, 3)) for _ in range(2)]
        >>> [r.report["bpp"] <= 8 for r in compress_together(sigs, 8.0, steps=5, progress=False)]
        [True, True]
    """
    import time

    from .batch import LatentBatch, fit_together

    signals = [as_signal(s) for s in signals]  # read once: the family choice and the jobs share them
    family = options.get("family", "auto")
    grid_only = declared(_get_family("grid")) - declared(_get_family(DEFAULT_FAMILY))
    if (family == "auto" and "max_bytes" not in options and not set(options) & grid_only
            and not is_grid(options.get("model")) and all(auto_family(s, bpp) == DEFAULT_FAMILY for s in signals)):
        family = DEFAULT_FAMILY  # every signal goes to the default family: they may train as one batch
    if len(signals) < 2 or family != DEFAULT_FAMILY or options.get("time_budget") is not None or options.get("qat_steps"):
        return [compress(s, bpp, progress=progress, **options) for s in signals]
    family_keys = ("model", "projection", "latent_dim")
    job_keys = ("max_bytes", "bits", "bias_bits", "method", "steps", "lr", "seed", "fit_options")
    unknown = set(options) - set(family_keys) - set(job_keys) - {"family", "time_budget", "qat_steps"}
    job_args = {k: options[k] for k in job_keys if k in options}
    family_args = {k: options.get(k) for k in family_keys}
    jobs = [Job.create(s, bpp, progress=progress, **job_args) for s in signals]
    model = family_args.pop("model")
    coders = [_get_family(DEFAULT_FAMILY)(job, model, projection=family_args["projection"] or "auto",
                                  latent_dim=family_args["latent_dim"], **{k: options[k] for k in unknown})
              for job in jobs]
    nets = [coder.build() for coder in coders]
    try:
        LatentBatch(nets)
    except HyperprojError:  # different plans: one at a time
        return [_finish(job, coder, net, trained=False) for job, coder, net in zip(jobs, coders, nets)]
    tic = time.perf_counter()
    history = fit_together(nets, [job.signal for job in jobs], jobs[0].steps, coders[0].lr, progress=progress,
                           **jobs[0].fit_options)
    spent = time.perf_counter() - tic
    results = []
    for job, net in zip(jobs, nets):
        job.t0 += spent * (1 - 1 / len(jobs))  # its share of the batch's training
        training = job.training
        training.steps, training.recoveries = (history.step[-1] if history.step else 0), list(history.recoveries)
        training.gave_up = history.gave_up
        training.unquantized = job.signal.evaluate(net)
    for job, coder, net in zip(jobs, coders, nets):
        coder.first = False
        results.append(_finish(job, coder, net, trained=True))
    return results


def decode(data: bytes) -> nn.Module:
    """Rebuild the model of a ``.hpz`` file (bytes or a path): for the SIREN/D'OH family the
    quantized :class:`~hyperproj.HyperModel`.

    Raises :class:`~hyperproj.HyperprojError` (and nothing else) for any malformed or foreign
    input: a wrong CRC, a different generator version, a projection kind this hyperproj lacks, a
    fingerprint of ``B`` that the regenerated projection does not reproduce, a family this
    hyperproj does not have. The decoded model carries ``hpz_signal`` (the signal metadata) and
    ``hpz_header``.

    Examples:
        >>> from hyperproj.inr import Siren
        >>> from hyperproj.codec import encode
        >>> blob = encode(hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=4))
        >>> decode(blob).seed
        4
        >>> decode(blob[:-1])
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: read_container: CRC32 mismatch ...
    """
    data = read_input(data)
    try:
        family, header, sections = read_file(data)
        model = family.rebuild(header, sections)
    except HyperprojError:
        raise
    except Exception as err:  # noqa: BLE001 - a file must never raise anything else
        raise error(f"malformed file: {type(err).__name__}: {err}") from None
    model.hpz_signal = header.get("x")
    model.hpz_header = dict(header)
    return model


def load(path: str | os.PathLike) -> nn.Module:
    """:func:`decode` the file at ``path``.

    Examples:
        >>> load("missing.hpz")
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: hyperproj.codec: no such file 'missing.hpz'
    """
    return decode(read_input(path))


def decompress(path_or_bytes: Any) -> nn.Module:
    """Decode a compressed signal (a path or bytes) into its model; :func:`~hyperproj.codec.render` shows it.

    Examples:
        >>> decompress(b"HPZ")
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: read_container: ...
    """
    return decode(read_input(path_or_bytes))


def info(data_or_path: Any) -> dict[str, Any]:
    """Header fields and the rate breakdown of a ``.hpz`` file (no projection is built).

    For the SIREN/D'OH family, keys: ``bytes`` (file size), ``header_bytes`` (container + JSON
    header), ``range_bytes``, ``latent_bytes``, ``param_bytes`` (biases and other untargeted
    parameters), ``other_bytes``, ``latent_count``, ``param_count``, ``entropy_bytes`` and
    ``bzip2_bytes`` (per stream: the symbols' empirical entropy and bzip2's size, for comparison),
    ``bpp`` (images), ``header`` (the decoded fields). Other families: ``bytes``,
    ``header_bytes``, ``section_bytes``, ``family``, ``header`` unless they say more.

    Examples:
        >>> from hyperproj.inr import Siren
        >>> from hyperproj.codec import encode
        >>> rep = info(encode(hyperproj.reparametrize(Siren(2, 8, 1, 1), latent_dim=20, seed=0)))
        >>> rep["latent_count"], rep["param_count"]
        (20, 17)
    """
    data = read_input(data_or_path)
    try:
        family, header, sections = read_file(data)
        return family.describe(header, sections, data)
    except HyperprojError:
        raise
    except Exception as err:  # noqa: BLE001
        raise error(f"malformed file: {type(err).__name__}: {err}") from None
