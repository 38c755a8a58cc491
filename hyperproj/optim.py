"""``WeightSpaceAdam``: Adam's per-weight step, projected onto the latent.

Plain Adam on a latent ``z`` normalises each *latent* coordinate by its own gradient history.
Every coordinate of ``z`` mixes all layers' weights, so that is close to normalised gradient
descent on the weights: the per-weight adaptivity that makes Adam train a SIREN well is lost, and
a HyperModel learns slower per step than the plain network, even at 100 % latent (where it is
the same function class). ``WeightSpaceAdam`` keeps Adam's moments per *generated weight* —
``m``, ``v`` of ``g = dL/dW`` — and moves the latent along the back-projection of Adam's step:

    d = m̂ / (√v̂ + ε)            (Adam's direction for W, shape (P,))
    z ← z − lr · step_scale · Jᵀ d   (J = dW/dz, the projection with the offset's gains)

so ``ΔW = −lr · step_scale · J Jᵀ d``: Adam's step for the weights, restricted to the directions
the latent can reach. The gradient of the generated weights is collected by the HyperModel
(:meth:`~hyperproj.HyperModel.capture_weight_grads`), so nothing is back-propagated through the
projection; the step costs one ``Jᵀ`` product, what autograd's backward would have cost. Its
extra memory is two float32 vectors of ``P`` (Adam's moments of the weights it generates).

**The metric of the projection** (``metric=``). Below 100 % the latent cannot follow ``d`` exactly;
``J Jᵀ d`` is its *Euclidean* best approximation, which spreads the error evenly over all weights,
so the weights Adam moves carefully (large ``√v̂``: steep, noisy) get as much cross-talk from the
other layers' steps as the rest. ``metric="adam"`` (the default below 100 %) projects in Adam's own
metric instead — the latent step ``x`` minimises ``‖J x − c d‖²_V`` with ``V = diag(√v̂ + ε)``, i.e.
solves ``(Jᵀ V J) x = c Jᵀ m̂`` (``c`` the scale of ``JᵀJ``, so that a uniform ``V`` gives the
Euclidean step back), by ``cg_iters`` conjugate-gradient iterations warm-started from the last
step's solution (two projections each). At 100 % (``J`` invertible) both metrics give the same step,
so the solve is skipped. Measured (``benchmarks/two_line_wrap.py``-style, ``Siren(2, 64, 3, 3)`` at
50 % of its weights, 128 px crops, 600 steps, seeds 0 and 1): astronaut / coffee / chelsea
27.36 → 28.20, 31.02 → 31.48, 32.44 → 32.96 (seed 0) and 27.35 → 28.18, 31.23 → 31.57,
32.17 → 33.18 (seed 1): +0.67 dB on average at equal steps, for 40–70 % more time per step; 3
iterations gave nothing (27.37), 20 (fully converged) 27.98 on astronaut. This implementation
(equal to that prototype to 1e-8 after 5 steps) gave 27.69 and 27.66 on astronaut seed 0: at this
edge of stability rounding alone moves a 600-step run by ~0.5 dB, so read single runs as ±0.3.

Only for ``latent_scale="offset"``, where ``J`` has the same scale for every layer (a unit or
paper latent scales each layer's rows by its init std, so one step size cannot suit every
layer). Every other parameter (biases, INCODE's harmonizer, ...) gets plain Adam in the same
optimizer, so LR schedulers and ``state_dict`` work as usual.

Measured (``docs/concepts.md``, Siren(2, 64, 3, 3) on a 64 × 64 photo crop, 200 full-batch steps
at lr 1e-3, seeds 0/1/2): at 100 % latent plain Adam on ``z`` trails the plain SIREN by
1.28 / 2.98 / 2.25 dB, ``WeightSpaceAdam(step_scale=2)`` by −1.81 / 0.81 / 0.22 dB.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import nn

from ._errors import HyperprojError
from .model import HyperModel

__all__ = ["WeightSpaceAdam", "find_hypermodel"]

#: Multiplier of the back-projected step. ``J Jᵀ`` has mean eigenvalue 1 for the offset latent, so
#: 1 moves the weights as far per step as plain Adam at the same lr. Measured (docs/concepts.md):
#: 2 is best on a 3-hidden-layer SIREN (it closes the 100 %-latent gap), but the codec's
#: 10-layer SIREN collapses at 1.5 and 2, as plain Adam does at twice its lr; 1 is the safe default.
DEFAULT_STEP_SCALE = 1.0

#: Conjugate-gradient iterations of the ``metric="adam"`` projection per step (measured above: 3
#: gave nothing, 8 the gain, 20 no more).
DEFAULT_CG_ITERS = 8

METRICS = ("auto", "adam", "euclidean")


def find_hypermodel(model: nn.Module) -> HyperModel | None:
    """The first :class:`~hyperproj.HyperModel` in ``model`` (itself or a submodule), else ``None``.

    Examples:
        >>> import hyperproj
        >>> hyper = hyperproj.reparametrize(torch.nn.Linear(3, 2), latent_dim=4, seed=0)
        >>> find_hypermodel(torch.nn.Sequential(hyper)) is hyper
        True
    """
    return next((m for m in model.modules() if isinstance(m, HyperModel) or _batched_latents(m)), None)


def _batched_latents(module: nn.Module) -> bool:
    """A batch of HyperModels trained together (:class:`hyperproj.codec.batch.LatentBatch`): it has
    the latent, the capture of weight gradients and ``latent_vjp`` that this optimizer uses."""
    return all(callable(getattr(module, a, None)) for a in ("capture_weight_grads", "latent_vjp")) and \
        isinstance(getattr(module, "latent", None), nn.Parameter)


class WeightSpaceAdam(torch.optim.Adam):
    """Adam whose moments live on the generated weights; the latent follows their projected step.

    Args:
        model: a :class:`~hyperproj.HyperModel` with ``latent_scale="offset"``, or a module that
            contains one (the first found is used; every other trainable parameter of ``model``
            gets plain Adam).
        lr: learning rate of every parameter (the latent's is ``lr × latent_lr_scale``).
        betas: Adam's moment decay rates.
        eps: Adam's denominator term.
        step_scale: multiplier of the latent's back-projected step (default 1: the weights move
            as far per step as under plain Adam at ``lr``; 2 trains shallow SIRENs faster, see
            docs/concepts.md, and makes a 10-layer one collapse).
        metric: how Adam's weight step is projected onto what the latent can reach: ``"adam"``
            (in Adam's metric ``diag(√v̂)``, by ``cg_iters`` conjugate-gradient iterations),
            ``"euclidean"`` (``J Jᵀ``, one product), or ``"auto"`` (default: ``"adam"`` while the
            latent is smaller than the weights, where the two differ, else ``"euclidean"``).
        cg_iters: conjugate-gradient iterations per step for ``metric="adam"`` (default 8).

    While the optimizer is alive the HyperModel collects ``dL/dW`` instead of back-propagating
    into ``latent`` (so ``latent.grad`` stays ``None``); :meth:`release` (or deleting the
    optimizer) switches it back. One optimizer per HyperModel at a time.

    Examples:
        >>> import hyperproj
        >>> from hyperproj.inr import Siren
        >>> hyper = hyperproj.reparametrize(Siren(2, 16, 1, 1), latent_dim=200, seed=0,
        ...                                 latent_scale="offset")
        >>> opt = WeightSpaceAdam(hyper, lr=1e-3)
        >>> x, y = torch.rand(64, 2) * 2 - 1, torch.rand(64, 1)
        >>> before = float(((hyper(x) - y) ** 2).mean())
        >>> for _ in range(20):
        ...     opt.zero_grad()
        ...     ((hyper(x) - y) ** 2).mean().backward()
        ...     opt.step()
        >>> float(((hyper(x) - y) ** 2).mean()) < before
        True
        >>> opt.release()
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        step_scale: float = DEFAULT_STEP_SCALE,
        metric: str = "auto",
        cg_iters: int = DEFAULT_CG_ITERS,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise HyperprojError(f"hyperproj.WeightSpaceAdam: model must be an nn.Module, got {type(model).__name__}")
        hyper = find_hypermodel(model)
        if hyper is None:
            raise HyperprojError(
                "hyperproj.WeightSpaceAdam: model contains no HyperModel (wrap it with "
                "hyperproj.reparametrize(..., latent_scale='offset') first)"
            )
        if hyper.latent_scale != "offset":
            raise HyperprojError(
                f"hyperproj.WeightSpaceAdam: needs latent_scale='offset', the HyperModel has "
                f"latent_scale={hyper.latent_scale!r} (its rows are scaled per layer, so one step size "
                "cannot suit every layer); use torch.optim.Adam for it"
            )
        if not (isinstance(step_scale, (int, float)) and step_scale > 0 and math.isfinite(step_scale)):
            raise HyperprojError(f"hyperproj.WeightSpaceAdam: step_scale must be a positive number, got {step_scale!r}")
        if metric not in METRICS:
            raise HyperprojError(f"hyperproj.WeightSpaceAdam: metric must be one of {METRICS}, got {metric!r}")
        if isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 1:
            raise HyperprojError(f"hyperproj.WeightSpaceAdam: cg_iters must be an int >= 1, got {cg_iters!r}")
        solvable = callable(getattr(hyper, "latent_jvp", None))
        if metric == "adam" and not solvable:
            raise HyperprojError(f"hyperproj.WeightSpaceAdam: metric='adam' needs latent_jvp, which "
                                 f"{type(hyper).__name__} does not have; use metric='euclidean'")
        if metric == "auto":
            metric = "adam" if solvable and hyper.latent.shape[-1] < hyper.num_projected else "euclidean"
        if not hyper.latent.requires_grad:
            raise HyperprojError("hyperproj.WeightSpaceAdam: the HyperModel's latent is frozen (requires_grad=False)")
        owner = getattr(hyper, "_weight_grad_owner", None)
        if owner is not None and owner() is not None:
            raise HyperprojError(
                "hyperproj.WeightSpaceAdam: this HyperModel already has a live WeightSpaceAdam; "
                "call its release() first"
            )
        latent = hyper.latent
        others = [p for p in model.parameters() if p.requires_grad and p is not latent]
        groups: list[dict[str, Any]] = [{"params": [latent], "lr": lr * hyper.latent_lr_scale, "weight_space": True}]
        if others:
            groups.append({"params": others, "lr": lr})
        super().__init__(groups, lr=lr, betas=betas, eps=eps)
        self.hyper = hyper
        self.step_scale = float(step_scale)
        self.metric, self.cg_iters = metric, int(cg_iters)
        self._jtj_scale: float | None = None
        hyper.capture_weight_grads(True)
        hyper._weight_grad_owner = weakref.ref(self)

    def release(self) -> None:
        """Give the HyperModel back its ordinary autograd path into ``latent``.

        Examples:
            >>> import hyperproj
            >>> hyper = hyperproj.reparametrize(torch.nn.Linear(3, 2), 4, seed=0, latent_scale="offset")
            >>> WeightSpaceAdam(hyper).release()
            >>> hyper(torch.ones(3)).sum().backward(); hyper.latent.grad is not None
            True
        """
        owner = getattr(self.hyper, "_weight_grad_owner", None)
        if owner is not None and owner() is self:
            self.hyper.capture_weight_grads(False)
            self.hyper._weight_grad_owner = None

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        self.hyper.weight_grad = None

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        super().step()  # every parameter with a gradient; the latent has none in this mode
        g = self.hyper.weight_grad
        if g is None:
            return loss
        for group in self.param_groups:
            if not group.get("weight_space"):
                continue
            latent = group["params"][0]
            beta1, beta2 = group["betas"]
            state = self.state[latent]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg_w"] = torch.zeros_like(g)
                state["exp_avg_sq_w"] = torch.zeros_like(g)
            state["step"] = state["step"] + 1  # not in place: a loaded state_dict may share it
            t = float(state["step"])
            m, v = state["exp_avg_w"], state["exp_avg_sq_w"]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v / (1 - beta2**t)).sqrt_().add_(group["eps"])
            if self.metric == "adam":
                step = self._metric_step(state, m / (1 - beta1**t), denom)
            else:
                step = self.hyper.latent_vjp((m / (1 - beta1**t)).div_(denom))
            latent.add_(step, alpha=-group["lr"] * self.step_scale)
        return loss

    def _metric_step(self, state: dict[str, Any], m_hat: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
        """``x`` with ``(Jᵀ V J) x = c Jᵀ m̂`` (V = ``denom``), by warm-started conjugate gradients."""
        hyper = self.hyper
        if self._jtj_scale is None:  # c: JᵀJ's scale (exact for the orthogonal kind), from one probe
            gen = torch.Generator().manual_seed(0)
            u = (torch.randint(0, 2, hyper.latent.shape[-1:], generator=gen) * 2 - 1).to(m_hat)
            self._jtj_scale = float(hyper.latent_jvp(u).square().sum()) / u.numel()
        b = hyper.latent_vjp(m_hat).mul_(self._jtj_scale)
        x = state.get("metric_x")
        x = torch.zeros_like(b) if x is None else x.clone()
        r = b - hyper.latent_vjp(denom * hyper.latent_jvp(x))
        p, rs, tol = r.clone(), float(r @ r), 1e-12 * float(b @ b)
        for _ in range(self.cg_iters):
            if rs <= tol:
                break
            ap = hyper.latent_vjp(denom * hyper.latent_jvp(p))
            pap = float(p @ ap)
            if not pap > 0:
                break
            alpha = rs / pap
            x.add_(p, alpha=alpha)
            r.sub_(ap, alpha=alpha)
            rs, rs_old = float(r @ r), rs
            p.mul_(rs / rs_old).add_(r)
        state["metric_x"] = x
        return x
