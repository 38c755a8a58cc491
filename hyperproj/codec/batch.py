"""Many same-shaped signals trained at once in one process: one base model, a batch of latents.

Signals of one shape compressed at one rate with one seed get the same model plan — the same
architecture, latent size and projection ``B`` (regenerated from the seed) — and differ only in
their latents and biases. :class:`LatentBatch` stacks those (``(K, n)`` latents, ``(K, ...)``
biases), generates all ``K`` weight sets with **one** projection call (a matrix–matrix product
instead of ``K`` matrix–vector ones) and runs the base over them with :func:`torch.func.vmap`;
:class:`StackedSignal` puts the ``K`` targets side by side as channels, so the ordinary
:func:`~hyperproj.inr.fit` trains all of them in one loop: its mean squared error is the mean of
the signals' own, whose gradients are independent, and Adam's step (elementwise) is unchanged by
the common ``1/K`` factor. :class:`~hyperproj.WeightSpaceAdam` works on the batch as on one
HyperModel. Minibatch rows are drawn for all signals together (error sampling sums their errors)
and the best state is kept by the mean PSNR.

Examples:
    >>> import hyperproj
    >>> from hyperproj.inr import Siren
    >>> nets = [hyperproj.reparametrize(Siren(2, 8, 1, 3), 30, seed=0, latent_scale="offset") for _ in range(3)]
    >>> batch = LatentBatch(nets)
    >>> batch(torch.zeros(5, 2)).shape   # 3 signals x 3 channels side by side
    torch.Size([5, 9])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..inr.metrics import psnr
from ..inr.signals import ImageSignal, Signal
from ..model import HyperModel
from .format import error

__all__ = ["LatentBatch", "StackedSignal", "fit_together"]


class LatentBatch(nn.Module):
    """``K`` HyperModels of one plan (same base architecture, seed, projection, latent scale) as one
    module: ``forward(x)`` is ``(N, K * C)``, signal ``k``'s outputs in columns ``k*C:(k+1)*C``.

    :meth:`write_back` copies the trained latents and biases into the HyperModels.
    """

    def __init__(self, hypers: Sequence[HyperModel]):
        super().__init__()
        if not hypers or not all(isinstance(h, HyperModel) for h in hypers):
            raise error("LatentBatch: expected a non-empty list of HyperModels")
        first = hypers[0]
        for k, h in enumerate(hypers[1:], 1):
            if h.config() != first.config() or h._groups is not None:
                raise error(f"LatentBatch: HyperModel {k} has another plan than HyperModel 0 (architecture, "
                            "latent size, seed, projection or latent scale); only one plan trains as a batch")
        # plain lists: not submodules, so the batch's parameters are only the stacked ones
        self.hypers = list(hypers)
        self._template = [first]  # its projection, offset and base (biases replaced by the stacked ones)
        self.latent = nn.Parameter(torch.stack([h.latent.detach() for h in hypers]))
        self.names = [n for n, _ in first.base.named_parameters()]
        self.stacked = nn.ParameterList(
            [nn.Parameter(torch.stack([h.base.get_parameter(n).detach() for h in hypers])) for n in self.names])
        self.latent_scale = first.latent_scale
        self.latent_lr_scale = first.latent_lr_scale
        self.weight_grad: torch.Tensor | None = None
        self._weight_grad_capture = False
        self._weight_grad_owner = None

    def __len__(self) -> int:
        return len(self.hypers)

    @property
    def template(self) -> HyperModel:
        """The first HyperModel: its projection, offset weights and base serve every signal."""
        return self._template[0]

    # the weight-space protocol of hyperproj.WeightSpaceAdam (as HyperModel has it)
    def capture_weight_grads(self, enabled: bool = True) -> None:
        """Collect ``dL/dW`` (``(K, P)``) in :attr:`weight_grad` instead of back-propagating into the latents."""
        self._weight_grad_capture = bool(enabled)
        self.weight_grad = None

    def latent_vjp(self, grad_weights: torch.Tensor) -> torch.Tensor:
        """``Jᵀ g`` for every signal: ``(K, P)`` weight gradients to ``(K, n)`` latent gradients."""
        return self.template.latent_vjp(grad_weights)

    def _collect(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        self.weight_grad = g.clone() if self.weight_grad is None else self.weight_grad.add_(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hyper = self.template
        if self._weight_grad_capture and torch.is_grad_enabled():
            with torch.no_grad():
                flat = hyper._flat_weights(self.latent)
            flat.requires_grad_(True)
            flat.register_hook(self._collect)
        else:
            flat = hyper._flat_weights(self.latent)  # (K, P): one projection for every signal
        weights = hyper._alias_dict(hyper._split_flat(flat))
        params = dict(zip(self.names, self.stacked))

        def one(w: dict[str, torch.Tensor], p: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.func.functional_call(hyper.base, {**w, **p}, (x,))

        out = torch.func.vmap(one)(weights, params)  # (K, N, C)
        return out.permute(1, 0, 2).reshape(x.shape[0], -1)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the trained latents and biases into the HyperModels the batch was made of."""
        for k, h in enumerate(self.hypers):
            h.latent.copy_(self.latent[k])
            for name, stacked in zip(self.names, self.stacked):
                h.base.get_parameter(name).copy_(stacked[k])


class StackedSignal(Signal):
    """``K`` signals of one kind and shape side by side: shared coordinates, values ``(N, K * C)``.

    ``evaluate`` reports the mean over the signals of their PSNR (images) or MSE, and each one's
    under ``"each"``.

    Examples:
        >>> a, b = ImageSignal(torch.rand(4, 4, 3)), ImageSignal(torch.rand(4, 4, 3))
        >>> StackedSignal([a, b]).values.shape
        torch.Size([16, 6])
    """

    def __init__(self, signals: Sequence[Signal]):
        if not signals:
            raise error("StackedSignal: expected at least one signal")
        first = signals[0]
        for k, s in enumerate(signals):
            if type(s) is not type(first) or s.values.shape != first.values.shape or not torch.equal(s.coords, first.coords):
                raise error(f"StackedSignal: signal {k} differs from signal 0 in kind, shape or coordinates; "
                            "only same-shaped signals train as a batch")
        super().__init__(first.coords, torch.cat([s.values for s in signals], dim=1))
        self.signals = list(signals)
        self.channels = first.values.shape[1]
        self.metric = first.metric

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        pred = self.render(model)
        each = []
        for k, s in enumerate(self.signals):
            part = pred[:, k * self.channels:(k + 1) * self.channels]
            mse = float(torch.mean((part - s.values) ** 2))
            each.append({"mse": mse, **({"psnr": psnr(part, s.values)} if isinstance(s, ImageSignal) else {})})
        out: dict[str, Any] = {key: sum(e[key] for e in each) / len(each) for key in each[0]}
        return out


def fit_together(hypers: Sequence[HyperModel], signals: Sequence[Signal], steps: int, lr: float,
                 **fit_options: Any) -> Any:
    """Train ``hypers[k]`` on ``signals[k]`` for every ``k`` in one :func:`~hyperproj.inr.fit` loop
    of :class:`LatentBatch` over :class:`StackedSignal`; returns fit's history (mean metrics).

    Examples:
        >>> import hyperproj
        >>> from hyperproj.inr import Siren
        >>> sigs = [ImageSignal(torch.rand(8, 8, 3)) for _ in range(2)]
        >>> nets = [hyperproj.reparametrize(Siren(2, 8, 1, 3), 30, seed=0, latent_scale="offset") for _ in sigs]
        >>> hist = fit_together(nets, sigs, steps=5, lr=1e-3, progress=False)
        >>> len(hist.step) > 0
        True
    """
    from ..inr.fit import fit

    if len(hypers) != len(signals):
        raise error(f"fit_together: {len(hypers)} models for {len(signals)} signals")
    batch = LatentBatch(hypers)
    history = fit(batch, StackedSignal(signals), steps, lr=lr, **fit_options)
    batch.write_back()
    return history
