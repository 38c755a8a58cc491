"""Project a trained network into the latent (least squares), then optionally fine-tune.

This is the D'OH paper's Algorithm 1, made general: for a trained network with targeted weights
``W_l``, find

$$ z^* = \\arg\\min_z \\sum_l w_l \\, \\| B_l z - \\operatorname{vec}(W_l) \\|^2 $$

over all targeted layers at once, copy the biases and every untargeted parameter, and (given a
signal) fine-tune with :func:`hyperproj.fit`.

Solvers (``solver="auto"`` picks by the shape of ``B``; measured in ``benchmarks/distill.py``):

* ``n = P`` (square): ``"lu"``. The unique solution, by float32 LU of one ``n × n`` copy of
  ``B`` factored in place, then iterative refinement (a random square ``B`` has condition number
  ~n). Used for dense and streamed projections, and for others while ``B`` fits in 2 GiB.
* ``n ≤ 0.9 P`` (dense) or ``n ≤ 0.7 P`` (other projections): ``"cgls"``, conjugate gradients
  on the normal equations. With an explicit dense ``B`` it reads each cache-sized row block once
  an iteration for both ``B p`` and ``Bᵀ(B p)``; on structured operators (fastfood) it uses the
  operator and its adjoint only. It keeps the best iterate and stops on a stall.
* otherwise ``"gram"``: accumulate the ``n × n`` Gram matrix ``Σ w_l B_lᵀ B_l`` and
  ``Σ w_l B_lᵀ W_l`` block by block (``B`` is never held whole beyond what the projection itself
  holds), then Cholesky in place. An ill-conditioned system is re-accumulated in float64 and
  solved with a tiny ridge. When ``n > P`` the minimum-norm solution is returned. Structured
  operators are materialized for it while ``B`` is at most 256 MB, else CGLS runs.

Examples:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    >>> hyper = distill(net, latent_dim=40, seed=0)
    >>> sorted(hyper.distill_report.residuals)
    ['0.weight', '2.weight']
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._errors import HyperprojError
from .model import HyperModel, reparametrize
from .projection import projection_adjoint

__all__ = ["distill", "project_weights", "DistillReport", "WEIGHTINGS"]

WEIGHTINGS = ("relative", "none")

_CG_MAX_FRACTION = 0.7
_CG_MAX_FRACTION_DENSE = 0.9

# Structured operators (fastfood) are materialized for the exact Gram route up to this size;
# beyond it CGLS runs on the operator (slow to converge when n is close to P).
_MATERIALIZE_CAP_BYTES = 256 * 2**20


class _Materialized:
    """Dense rows of an operator without a cheap ``rows()``: ``B`` built once from unit vectors."""

    def __init__(self, proj) -> None:
        self.latent_dim, self.layer_sizes, self.offsets = proj.latent_dim, proj.layer_sizes, proj.offsets
        self.num_outputs = proj.num_outputs
        eye_chunk = 1024
        with torch.no_grad():
            cols = [
                proj(torch.eye(self.latent_dim)[a : a + eye_chunk].to(torch.float32))
                for a in range(0, self.latent_dim, eye_chunk)
            ]
        self.matrix = torch.cat(cols).T.contiguous()

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.matrix[start:stop]


# Rows of B per accumulation block: bounds the block to ~16M floats.
_BLOCK_ELEMENTS = 1 << 24


@dataclass
class DistillReport:
    """What :func:`distill` did: residuals per layer, the solve, and metrics when a signal is given."""

    residuals: dict[str, float]
    latent_norm: float
    solve_seconds: float
    solver: str
    weighting: str
    metrics_projected: dict[str, float] | None = None
    metrics_finetuned: dict[str, float] | None = None
    history: Any = None
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"distill: solver={self.solver}, weighting={self.weighting}, "
            f"solve {self.solve_seconds:.2f} s, |z| = {self.latent_norm:.4g}"
        ]
        lines += [f"  {name:40s} relative residual {r:.4f}" for name, r in self.residuals.items()]
        if self.metrics_projected is not None:
            lines.append(f"  after projection: {self.metrics_projected}")
        if self.metrics_finetuned is not None:
            lines.append(f"  after fine-tuning: {self.metrics_finetuned}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _layer_weights(targets: list[torch.Tensor], weighting: str) -> list[float]:
    if weighting == "none":
        return [1.0] * len(targets)
    if weighting == "relative":
        out = []
        for t in targets:
            sq = float(t.pow(2).sum())
            out.append(1.0 / sq if sq > 0 else 1.0)
        return out
    raise HyperprojError(f"hyperproj.distill: weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def _row_blocks(proj, block_rows: int):
    """(layer, global start, global stop) blocks that never cross a layer boundary."""
    for layer in range(len(proj.layer_sizes)):
        a, b = proj.offsets[layer], proj.offsets[layer + 1]
        for start in range(a, b, block_rows):
            yield layer, start, min(b, start + block_rows)


def _gram_solve(proj, targets, lw, block_rows, dtype, ridge):
    n = proj.latent_dim
    gram = torch.zeros(n, n, dtype=dtype)
    rhs = torch.zeros(n, dtype=dtype)
    for layer, a, b in _row_blocks(proj, block_rows):
        rows = proj.rows(a, b).to(dtype)
        local = targets[layer][a - proj.offsets[layer] : b - proj.offsets[layer]].to(dtype)
        gram.addmm_(rows.T, rows, alpha=lw[layer])
        rhs.add_(rows.T @ local, alpha=lw[layer])
        del rows  # else two blocks are alive while the next one is generated
    if ridge:
        gram.diagonal().add_(ridge * float(gram.diagonal().mean()))
    # Factored in place: the Gram matrix is the one n × n buffer. It is symmetric, so its
    # transposed view is the same matrix in LAPACK's column-major layout, which cholesky_ex writes
    # into directly (given the row-major tensor itself as ``out``, torch factors a column-major
    # copy and copies it back: 2n² floats at the peak). The solves are two triangular ones on
    # views of the factor (cholesky_solve would copy it too).
    chol = gram.mT
    info = torch.empty((), dtype=torch.int32)
    torch.linalg.cholesky_ex(chol, out=(chol, info))
    if int(info) != 0:
        return None, math.inf
    diag = chol.diagonal()
    cond = float((diag.max() / diag.min()) ** 2)
    y = torch.linalg.solve_triangular(chol, rhs[:, None], upper=False)
    return torch.linalg.solve_triangular(chol.mT, y, upper=True)[:, 0].double(), cond


def _min_norm_solve(proj, targets, lw, block_rows):
    """n >= P: z = (DB)ᵀ ((DB)(DB)ᵀ)⁻¹ D W, with D = diag(sqrt(w_l))."""
    rows = torch.cat(
        [proj.rows(a, b).double() * math.sqrt(lw[layer]) for layer, a, b in _row_blocks(proj, block_rows)]
    )
    rhs = torch.cat([t.double() * math.sqrt(w) for t, w in zip(targets, lw)])
    k = rows @ rows.T
    chol, info = torch.linalg.cholesky_ex(k)
    if int(info) == 0:
        sol = torch.cholesky_solve(rhs[:, None], chol)[:, 0]
    else:
        sol = torch.linalg.lstsq(k, rhs[:, None]).solution[:, 0]
    return rows.T @ sol


def _square_lu_solve(proj, targets, block_rows: int, refinements: int = 3):
    """n = P: the unique solution of B z = W by float32 LU and iterative refinement.

    The weighting does not change a square nonsingular system's solution. B is copied row-major,
    which is Bᵀ in LAPACK's column-major layout, and Bᵀ is factored in place (solves then use the
    adjoint): the only extra memory is that one n × n float32 copy. A random square B has
    condition number ~n, so float32 LU alone leaves a relative residual ~1e-2 (n = 6,000);
    refinement with residuals from the operator brings it to the float32 floor of the latent
    itself (~1e-4 relative at n = 14,600: z is stored in float32, and ‖z‖ is large).
    """
    n = proj.latent_dim
    if proj.kind == "dense":
        mat = proj.matrix.detach().to(torch.float32, copy=True)
    else:
        mat = torch.empty(n, n, dtype=torch.float32)
        for a in range(0, n, block_rows):
            b = min(n, a + block_rows)
            mat[a:b] = proj.rows(a, b)
    lu = mat.T  # Bᵀ, column-major
    piv = torch.empty(n, dtype=torch.int32)
    info = torch.empty((), dtype=torch.int32)
    torch.linalg.lu_factor_ex(lu, out=(lu, piv, info))
    if int(info) != 0:
        return None, 0

    def solve(rhs):
        return torch.linalg.lu_solve(lu, piv, rhs[:, None], adjoint=True)[:, 0]

    target = torch.cat(targets).to(torch.float32)
    z = solve(target)
    tnorm = float(target.norm()) or 1.0
    best, best_rel = z, math.inf
    with torch.no_grad():
        for _ in range(refinements + 1):
            res = target - proj(z)
            rel = float(res.norm()) / tnorm
            if not math.isfinite(rel) or rel >= best_rel:
                break
            best, best_rel = z, rel
            z = z + solve(res)
    return best, best_rel


# n = P with an operator lacking cheap rows: materialize B for the exact LU route up to this size.
_SQUARE_CAP_BYTES = 2 * 2**30

_CG_STALL_ITERS = 20  # CGLS stops after this many iterations without a new best residual


def _cgls(proj, targets, lw, iters: int, tol: float):
    """Conjugate gradients on the weighted normal equations with the operator and its adjoint."""
    # Runs in float32 on the operator as it is (no float64 copy of a dense B); used where B is
    # well conditioned (n well below P), where float32 CG reaches ~1e-6 relative accuracy.
    dtype = torch.float32
    sqrt_w = torch.cat(
        [torch.full((s,), math.sqrt(w), dtype=dtype) for s, w in zip(proj.layer_sizes, lw)]
    )
    target = torch.cat(targets).to(dtype) * sqrt_w
    matrix = getattr(proj, "matrix", None)
    if isinstance(matrix, torch.Tensor) and matrix.dtype == dtype:
        # Explicit B (dense): CG on the normal equations with s = Bᵀ W (t − B z) kept by
        # recurrence and (BᵀWB) p computed block by block, so each row block of B is read from
        # RAM once an iteration and reused from cache for its transpose product (the two
        # separate products of CGLS stream all of B twice: ~25 % slower at n = 30 %).
        w2 = sqrt_w.square()
        rows = max(1, (1 << 20) // max(1, proj.latent_dim))
        row_blocks = [(a, min(a + rows, matrix.shape[0])) for a in range(0, matrix.shape[0], rows)]

        def normal_op(v):
            out = torch.zeros(proj.latent_dim, dtype=dtype)
            for a, b in row_blocks:
                blk = matrix[a:b]
                out.addmv_(blk.T, (blk @ v) * w2[a:b])
            return out

        s = (target * sqrt_w) @ matrix
        state = {"s": s}

        def step(p):
            ap = normal_op(p)
            qq = float(p @ ap)

            def advance(alpha):
                state["s"] = state["s"] - alpha * ap
                return state["s"]

            return qq, advance
    else:
        work = proj if next(proj.buffers(), torch.empty(0)).dtype == dtype else copy.deepcopy(proj).to(dtype)

        def forward(v):
            with torch.no_grad():
                return work(v) * sqrt_w

        def adjoint(res):
            return projection_adjoint(work, res * sqrt_w)

        state = {"r": target.clone()}
        s = adjoint(state["r"])

        def step(p):
            q = forward(p)

            def advance(alpha):
                state["r"] = state["r"] - alpha * q
                return adjoint(state["r"])

            return float(q @ q), advance

    z = torch.zeros(proj.latent_dim, dtype=dtype)
    p = s.clone()
    gamma = float(s @ s)
    gamma0 = gamma
    # float32 CG stops improving once ‖Bᵀr‖ reaches rounding noise and may then wander off (the
    # 9x40 SIREN at n = 60 %, relative weighting, blew up to residual 2e12 after 500 iterations):
    # keep the iterate with the smallest normal-equation residual and stop when it stalls.
    best_z, best_gamma, stall = z.clone(), gamma, 0
    it = 0
    for it in range(1, iters + 1):  # noqa: B007 (the count is reported)
        qq, advance = step(p)
        if not (math.isfinite(qq) and qq > 0):
            break
        alpha = gamma / qq
        z += alpha * p
        s = advance(alpha)
        new_gamma = float(s @ s)
        if not math.isfinite(new_gamma):
            break
        if new_gamma < best_gamma:
            best_z, best_gamma, stall = z.clone(), new_gamma, 0
        else:
            stall += 1
        if new_gamma <= tol**2 * gamma0 or stall >= _CG_STALL_ITERS:
            break
        p = s + (new_gamma / gamma) * p
        gamma = new_gamma
    return best_z, it


def project_weights(
    hyper: HyperModel,
    weights: Mapping[str, torch.Tensor],
    *,
    weighting: str = "relative",
    solver: str = "auto",
    block_rows: int | None = None,
    cg_iters: int = 500,
    cg_tol: float = 1e-6,
) -> DistillReport:
    """Set ``hyper.latent`` to the least-squares fit of ``weights`` (``{target name: tensor}``).

    The core of :func:`distill`, for an existing HyperModel: e.g. to warm-start a smaller latent
    from a trained larger one (``project_weights(small, big.generate_weights())``). Untargeted
    parameters are left alone. Arguments as for :func:`distill`.

    Examples:
        >>> big = hyperproj.reparametrize(torch.nn.Linear(6, 5), latent_dim=30, seed=0)
        >>> small = hyperproj.reparametrize(torch.nn.Linear(6, 5), latent_dim=10, seed=0)
        >>> rep = project_weights(small, big.generate_weights())
        >>> 0 < rep.residuals["weight"] < 1
        True
    """
    if weighting not in WEIGHTINGS:
        raise HyperprojError(f"hyperproj.distill: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if solver not in ("auto", "lu", "gram", "cgls"):
        raise HyperprojError(
            f"hyperproj.distill: solver must be 'auto', 'lu', 'gram' or 'cgls', got {solver!r}"
        )
    missing = [n for n in hyper.target_names if n not in weights]
    if missing:
        raise HyperprojError(f"hyperproj.distill: no target weights given for {missing}")
    targets = []
    for name, shape in zip(hyper.target_names, hyper._shapes):
        w = weights[name].detach()
        if tuple(w.shape) != tuple(shape):
            raise HyperprojError(
                f"hyperproj.distill: weight {name!r} has shape {tuple(w.shape)}, expected {tuple(shape)}"
            )
        targets.append(w.flatten().cpu().float())
    proj = hyper.projection
    if hyper.offset_weights is not None:  # latent_scale="offset": W = W0 + gain_l · B_l z
        w0 = hyper.offset_weights.detach().cpu().float()
        targets = [
            (t - w0[proj.offsets[i] : proj.offsets[i + 1]]) / hyper._gains[i] for i, t in enumerate(targets)
        ]
    lw = _layer_weights(targets, weighting)
    n, total = proj.latent_dim, proj.num_outputs
    block = block_rows or max(1, _BLOCK_ELEMENTS // n)

    has_rows = proj.kind in ("dense", "streamed")
    orthonormal = bool(getattr(proj, "orthonormal", False))
    small = 4 * n * total <= _MATERIALIZE_CAP_BYTES
    if solver == "auto":
        # CG converges in tens of iterations while B is well conditioned (n <= 0.7 P: condition
        # number <= ~12); near n = P only the direct route is accurate.
        # A streamed B would be regenerated at every CG iteration: always direct there.
        # For an explicit dense B each CG iteration is two passes over B, and CG stays faster than
        # the 2·P·n² Gram product up to n ≈ 0.9 P (9x40 SIREN: 13 s vs ~36 s at 80 %, 29 s vs
        # 51 s at 90 %).
        # An orthonormal operator (projection="orthogonal") is well conditioned at every size: CG
        # then needs only as many iterations as the layers' weights spread, even at n = P.
        limit = _CG_MAX_FRACTION_DENSE if proj.kind == "dense" else _CG_MAX_FRACTION
        well_conditioned = (n <= limit * total or orthonormal) and proj.kind != "streamed"
        chosen = "cgls" if well_conditioned or not (has_rows or small) else "gram"
    else:
        chosen = solver
    if solver == "lu" and n != total:
        raise HyperprojError(
            f"hyperproj.distill: solver='lu' needs a square system (latent_dim = {total}, the "
            f"number of projected weights), got latent_dim = {n}"
        )
    square = n == total and (has_rows or solver == "lu" or 4 * n * n <= _SQUARE_CAP_BYTES)
    if solver == "auto" and square and not orthonormal:
        chosen = "lu"
    if chosen == "gram" and not has_rows and not square:
        proj = _Materialized(proj)
    notes: list[str] = []
    t0 = time.perf_counter()
    if chosen in ("lu", "gram") and square:
        z, rel = _square_lu_solve(proj, targets, block)
        if z is None:
            raise HyperprojError(
                "hyperproj.distill: B is singular at n = P (LU broke down); try solver='cgls'"
            )
        chosen = "lu"
        notes.append(f"square system: float32 LU + refinement, relative residual {rel:.1e}")
    elif chosen == "gram":
        if n >= total:
            z = _min_norm_solve(proj, targets, lw, block)
            chosen = "gram-min-norm"
        else:
            z, cond = _gram_solve(proj, targets, lw, block, torch.float32, ridge=0.0)
            if z is None or cond > 1e5:
                notes.append(
                    f"float32 Gram ill-conditioned (cond ≈ {cond:.2g}); re-accumulated in float64 "
                    "with ridge 1e-10"
                )
                z, cond = _gram_solve(proj, targets, lw, block, torch.float64, ridge=1e-10)
                chosen = "gram-float64"
                if z is None:
                    raise HyperprojError(
                        "hyperproj.distill: the Gram matrix is singular even with a ridge; "
                        "try solver='cgls'"
                    )
    else:
        z, it = _cgls(proj, targets, lw, cg_iters, cg_tol)
        notes.append(f"CGLS: {it} iterations")
    seconds = time.perf_counter() - t0

    with torch.no_grad():
        hyper.latent.copy_(z.to(hyper.latent.dtype))
        gen = hyper.generate_weights()
    residuals = {}
    for name, t in zip(hyper.target_names, (weights[n].detach().flatten().cpu().float() for n in hyper.target_names)):
        w = gen[name].detach().flatten().double().cpu()
        denom = float(t.double().norm())
        residuals[name] = float((w - t.double()).norm()) / (denom if denom > 0 else 1.0)
    return DistillReport(
        residuals=residuals, latent_norm=float(z.norm()), solve_seconds=seconds, solver=chosen,
        weighting=weighting, notes=notes,
    )


def distill(
    pretrained: nn.Module,
    latent_dim: int,
    seed: int = 0,
    *,
    weighting: str = "relative",
    init: Any = "match",
    solver: str = "auto",
    block_rows: int | None = None,
    cg_iters: int = 500,
    cg_tol: float = 1e-6,
    signal: Any = None,
    steps: int = 0,
    lr: float | None = None,
    progress: bool = False,
    fit_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> HyperModel:
    """Least-squares projection of ``pretrained`` into a latent of size ``latent_dim``.

    Args:
        pretrained: a trained module; it is not modified.
        latent_dim: size of the latent, as for :func:`hyperproj.reparametrize`.
        seed: as for :func:`hyperproj.reparametrize`.
        weighting: ``"relative"`` (default: each layer's residual is measured relative to its
            own norm, so small hidden SIREN weights are not drowned by a large first layer) or
            ``"none"`` (plain least squares, as in the D'OH paper).
        init: the init rule that sets ``B``'s per-layer scales; ``"match"`` (default) scales each
            layer's rows to the trained weights' own spread.
        solver: ``"auto"`` (LU at n = P, CGLS while B is well conditioned, the Gram route
            between; see the module docs), ``"lu"`` (n = P only), ``"gram"`` or ``"cgls"``.
        block_rows: rows of ``B`` per accumulation block (memory knob; the solution does not
            depend on it).
        signal: when given, its metrics are measured right after projection (and after
            fine-tuning).
        steps: fine-tuning steps with :func:`hyperproj.fit` (needs ``signal``); 0 = none.
        lr: fine-tuning learning rate (``fit``'s default when ``None``; ``fit`` keeps the best
            state, the projected starting point included, so fine-tuning never makes it worse).
        progress: show ``fit``'s progress bar.
        fit_options: further keyword arguments for ``fit``.
        **options: passed to :func:`hyperproj.reparametrize` (``targets``, ``projection``, ...).

    Returns:
        The :class:`HyperModel`; its ``distill_report`` is a :class:`DistillReport`.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> hyper = distill(net, latent_dim=48, seed=1)   # 48 = every weight: exact fit
        >>> hyper.distill_report.residuals["0.weight"] < 1e-4
        True
    """
    if not isinstance(pretrained, nn.Module) or isinstance(pretrained, HyperModel):
        raise HyperprojError(
            "hyperproj.distill: pretrained must be a plain trained nn.Module (not a HyperModel), "
            f"got {type(pretrained).__name__}"
        )
    if steps and signal is None:
        raise HyperprojError("hyperproj.distill: steps > 0 needs a signal to fine-tune on")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceeds the .* projected weights")
        hyper = reparametrize(pretrained, latent_dim, seed, init=init, **options)
    targets = {n: pretrained.get_parameter(n) for n in hyper.target_names}
    report = project_weights(
        hyper, targets, weighting=weighting, solver=solver, block_rows=block_rows,
        cg_iters=cg_iters, cg_tol=cg_tol,
    )
    if signal is not None:
        report.metrics_projected = signal.evaluate(hyper)
        if steps:
            from .inr.fit import fit

            report.history = fit(hyper, signal, steps, lr=lr, progress=progress, **dict(fit_options or {}))
            report.metrics_finetuned = signal.evaluate(hyper)
    hyper.distill_report = report
    return hyper
