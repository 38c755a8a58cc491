"""Coordinate networks: :class:`Siren`, :class:`MLP` and the :class:`FourierFeatures` encoding.

Each ``nn.Linear`` inside declares how it was initialised in an attribute ``hyperproj_init``
(``{"rule": ..., "role": "first"|"hidden"|"last", ...}``); ``hyperproj.reparametrize(...,
init="auto")`` reads it so the projected weights start with the same variance.

Layer count convention (as in the SIREN reference code): one first layer, ``hidden_layers``
hidden layers, one last layer — ``hidden_layers + 2`` linear layers in all.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .. import _compiled
from .._errors import HyperprojError
from .registry import register_model

__all__ = ["FourierFeatures", "SineLayer", "Siren", "MLP", "sine_linear", "sine_lr", "warm_kernels"]


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HyperprojError(f"hyperproj.inr.{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_sizes(owner: str, in_features: Any, hidden_features: Any, hidden_layers: Any, out_features: Any) -> None:
    """The size arguments every MLP-shaped model takes."""
    _check_int(owner, "in_features", in_features, 1)
    _check_int(owner, "hidden_features", hidden_features, 1)
    _check_int(owner, "hidden_layers", hidden_layers, 0)
    _check_int(owner, "out_features", out_features, 1)


def _check_float(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise HyperprojError(f"hyperproj.inr.{owner}: {name} must be a positive number, got {value!r}")
    return float(value)


@register_model("fourier-features")
class FourierFeatures(nn.Module):
    """NeRF-style positional encoding ``[x, sin(2^k π x), cos(2^k π x)]`` for ``k < num_frequencies``.

    No trainable parameters. ``out_features = in_features * (include_input + 2 * num_frequencies)``.
    Output order: the input (if kept), then for each frequency ``sin`` of every coordinate followed
    by ``cos`` of every coordinate.

    Examples:
        >>> enc = FourierFeatures(2, num_frequencies=4)
        >>> enc.out_features, enc(torch.zeros(5, 2)).shape
        (18, torch.Size([5, 18]))
        >>> model = torch.nn.Sequential(enc, torch.nn.Linear(enc.out_features, 3))
    """

    def __init__(self, in_features: int, num_frequencies: int, include_input: bool = True):
        super().__init__()
        _check_int("FourierFeatures", "in_features", in_features, 1)
        _check_int("FourierFeatures", "num_frequencies", num_frequencies, 0)
        self.config = {
            "in_features": in_features,
            "num_frequencies": num_frequencies,
            "include_input": bool(include_input),
        }
        self.in_features = in_features
        self.num_frequencies = num_frequencies
        self.include_input = bool(include_input)
        self.out_features = in_features * (int(self.include_input) + 2 * num_frequencies)
        if self.out_features == 0:
            raise HyperprojError(
                "hyperproj.inr.FourierFeatures: num_frequencies=0 with include_input=False has no output"
            )
        freqs = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)
        self.register_buffer("frequencies", freqs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x] if self.include_input else []
        if self.num_frequencies:
            arg = (x.unsqueeze(-2) * self.frequencies.to(x.dtype).unsqueeze(-1)).flatten(-2)
            # arg: (..., L * in) in frequency-major order; interleave sin/cos per frequency.
            s, c = torch.sin(arg), torch.cos(arg)
            shape = (*x.shape[:-1], self.num_frequencies, self.in_features)
            parts.append(torch.stack([s.view(shape), c.view(shape)], dim=-2).flatten(-3))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_frequencies={self.num_frequencies}, include_input={self.include_input}"


# Training steps on a CPU run the layer's elementwise work through compiled kernels
# (hyperproj._compiled): eager torch.sin there is a high-accuracy library call, 3x slower than
# inductor's vectorized sine (8,192 x 48: 300 vs 90 us), and cos(pre) * grad fuses into one pass.
# Only while training (grad enabled, plain tensors, no double backward): evaluation and decoding
# keep the eager values bit for bit. Below this many elements a compiled call's overhead wins.
_COMPILED_MIN_ELEMENTS = 1 << 17


def _sin_kernel(pre: torch.Tensor) -> torch.Tensor:
    return torch.sin(pre)


def _cos_grad_kernel(pre: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return torch.cos(pre) * grad


def _compiled_ok(t: torch.Tensor) -> bool:
    return (
        t.device.type == "cpu"
        and t.numel() >= _COMPILED_MIN_ELEMENTS
        and t.dtype in (torch.float32, torch.float64)
        and not torch._C._functorch.is_functorch_wrapped_tensor(t)
    )


class _SineLinear(torch.autograd.Function):
    """``sin(pre)`` with ``pre = x (ωW)ᵀ + ωb``: one GEMM and one sine forward, one cosine and one
    multiply backward (autograd's composition of ``linear``, ``mul`` and ``sin`` makes two more
    passes over the activations each way). ``pre`` is a second, differentiable output, so higher
    derivatives stay exact (the backward is written in differentiable ops); ``vmap`` works through
    the generated rule. ``fast``: the sine and the first-order backward may use compiled kernels
    (the same function to float rounding)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, omega, fast=False):
        pre = torch.nn.functional.linear(x, weight * omega, None if bias is None else bias * omega)
        out = None
        if fast and _compiled_ok(pre):
            out = _compiled.run("inr.sin", _sin_kernel, pre)
        return (torch.sin(pre) if out is None else out), pre

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, omega, fast = inputs
        ctx.fast = fast
        ctx.save_for_backward(x, weight, output[1])
        ctx.save_for_forward(x, weight, output[1])
        ctx.omega = omega
        ctx.has_bias = bias is not None
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.set_materialize_grads(False)

    @staticmethod
    def jvp(ctx, x_t, weight_t, bias_t, _omega_t, _fast_t):  # forward mode (jacfwd, hessian)
        x, weight, pre = ctx.saved_tensors
        omega = ctx.omega
        pre_t = torch.zeros_like(pre)
        if x_t is not None:
            pre_t = pre_t + torch.nn.functional.linear(x_t, weight * omega)
        if weight_t is not None:
            pre_t = pre_t + torch.nn.functional.linear(x, weight_t * omega)
        if bias_t is not None:
            pre_t = pre_t + bias_t * omega
        return torch.cos(pre) * pre_t, pre_t

    @staticmethod
    def backward(ctx, grad_out, grad_pre):
        x, weight, pre = ctx.saved_tensors
        omega = ctx.omega
        gp = None
        if grad_out is not None:
            if ctx.fast and not torch.is_grad_enabled() and _compiled_ok(grad_out) and grad_out.shape == pre.shape:
                gp = _compiled.run("inr.cos_grad", _cos_grad_kernel, pre, grad_out)
            if gp is None:
                gp = torch.cos(pre) * grad_out
        if grad_pre is not None:
            gp = grad_pre if gp is None else gp + grad_pre
        if gp is None:
            return None, None, None, None, None
        gx = gw = gb = None
        dt = gp.dtype  # under autocast the activations may be lower precision than the weights
        if ctx.needs_input_grad[0]:
            gx = (gp @ (weight * omega).to(dt)).to(x.dtype)
        if ctx.needs_input_grad[1]:
            gw = (gp.reshape(-1, gp.shape[-1]).t() @ x.reshape(-1, x.shape[-1]).to(dt)).to(weight.dtype) * omega
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gp.reshape(-1, gp.shape[-1]).sum(0).to(ctx.bias_dtype) * omega
        return gx, gw, gb, None, None


def sine_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, omega: float) -> torch.Tensor:
    """``sin(omega * (x Wᵀ + b))`` as one fused op (the same values as the plain expression, to
    float rounding; about 1.25–1.9× faster to train on a CPU, ``benchmarks/fit_step.py``).

    Examples:
        >>> x, w, b = torch.rand(5, 3), torch.rand(4, 3), torch.rand(4)
        >>> torch.allclose(sine_linear(x, w, b, 30.0), torch.sin(30.0 * (x @ w.t() + b)), atol=1e-5)
        True
    """
    if torch.compiler.is_compiling():  # inductor fuses the plain expression itself
        return torch.sin(omega * torch.nn.functional.linear(x, weight, bias))
    # a training step (something here needs a gradient) may use the compiled elementwise kernels
    fast = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))
    return _SineLinear.apply(x, weight, bias, float(omega), bool(fast))[0]


def warm_kernels() -> bool:
    """Compile the sine layers' training kernels now (a few seconds once per process; 20 s and
    more the first time on a machine, before inductor's disk cache holds them).

    :func:`~hyperproj.inr.fit` compiles them on its first training step, except under a
    ``time_budget`` shorter than 120 s, where a first compilation would eat the budget: call this
    before such fits (outside their budget) to train them with the compiled kernels too. Returns
    whether the kernels are compiled (``False`` if compiling is off, ``HYPERPROJ_COMPILE=0``, or
    failed: training then runs eager, to the same values up to float rounding).

    Examples:
        >>> from hyperproj.inr import warm_kernels
        >>> warm_kernels() in (True, False)  # doctest: +SKIP
        True
    """
    x = torch.rand(_COMPILED_MIN_ELEMENTS // 16, 16)
    w = torch.rand(16, 16, requires_grad=True)
    sine_linear(x, w, None, 30.0).sum().backward()
    return _compiled.is_warm("inr.sin") and _compiled.is_warm("inr.cos_grad")


class SineLayer(nn.Module):
    """``sin(omega * (W x + b))`` with SIREN's initialisation for its ``role``.

    Weights: first layer U(±1/fan_in); hidden and last U(±sqrt(6/fan_in)/omega). The bias keeps
    ``nn.Linear``'s default U(±1/sqrt(fan_in)), as in the SIREN reference code. Runs as one fused
    op (:func:`sine_linear`). The output is periodic in the bias (period ``2π/omega``), declared as
    ``linear.hyperproj_bias_period``: the codec wraps the bias into ``[-π/omega, π/omega)`` before
    quantizing it, the same function at a finer quantization step.

    Examples:
        >>> layer = SineLayer(2, 8, omega=30.0, role="first")
        >>> layer.linear.hyperproj_init
        {'rule': 'siren', 'role': 'first', 'omega': 30.0}
    """

    def __init__(self, in_features: int, out_features: int, omega: float, role: str):
        super().__init__()
        self.omega = float(omega)
        self.linear = nn.Linear(in_features, out_features)
        siren_init_(self.linear, role, self.omega)
        # sin(ω(Wx + b)) is periodic in b: the codec wraps b into one period before rounding
        self.linear.hyperproj_bias_period = 2 * math.pi / self.omega

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sine_linear(x, self.linear.weight, self.linear.bias, self.omega)

    def extra_repr(self) -> str:
        return f"omega={self.omega}"


def siren_init_(linear: nn.Linear, role: str, omega: float) -> None:
    """Initialise ``linear.weight`` as SIREN does for ``role`` and declare it in ``hyperproj_init``.

    Examples:
        >>> lin = torch.nn.Linear(40, 40)
        >>> siren_init_(lin, "hidden", 30.0)
        >>> bool(lin.weight.abs().max() <= (6 / 40) ** 0.5 / 30)
        True
    """
    fan_in = linear.in_features
    bound = 1.0 / fan_in if role == "first" else math.sqrt(6.0 / fan_in) / omega
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)
    linear.hyperproj_init = {"rule": "siren", "role": role, "omega": float(omega)}


def _encoding(owner: str, in_features: int, fourier_features: int) -> tuple[nn.Module | None, int]:
    _check_int(owner, "fourier_features", fourier_features, 0)
    if fourier_features == 0:
        return None, in_features
    enc = FourierFeatures(in_features, fourier_features)
    return enc, enc.out_features


@register_model("siren")
class Siren(nn.Module):
    """SIREN (Sitzmann et al. 2020): sine layers with frequency ``omega``, linear output.

    Structure: first sine layer (``first_omega``), ``hidden_layers`` hidden sine layers
    (``hidden_omega``), then a last layer — linear if ``outermost_linear`` else a sine layer.
    Weight init as in the SIREN code (first U(±1/fan_in), others U(±sqrt(6/fan_in)/ω)); biases keep
    ``nn.Linear``'s default U(±1/sqrt(fan_in)). ``fourier_features=L > 0`` prepends a
    :class:`FourierFeatures` encoding with ``L`` frequencies.

    Examples:
        >>> import hyperproj
        >>> net = Siren(2, 40, 9, 3)               # D'OH's image target: 15,003 parameters
        >>> sum(p.numel() for p in net.parameters())
        15003
        >>> net(torch.zeros(4, 2)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        hidden_layers: int,
        out_features: int,
        first_omega: float = 30.0,
        hidden_omega: float = 30.0,
        outermost_linear: bool = True,
        fourier_features: int = 0,
    ):
        super().__init__()
        _check_sizes("Siren", in_features, hidden_features, hidden_layers, out_features)
        first_omega = _check_float("Siren", "first_omega", first_omega)
        hidden_omega = _check_float("Siren", "hidden_omega", hidden_omega)
        self.config = {
            "in_features": in_features,
            "hidden_features": hidden_features,
            "hidden_layers": hidden_layers,
            "out_features": out_features,
            "first_omega": first_omega,
            "hidden_omega": hidden_omega,
            "outermost_linear": bool(outermost_linear),
            "fourier_features": fourier_features,
        }
        self.encoding, width_in = _encoding("Siren", in_features, fourier_features)
        layers: list[nn.Module] = [SineLayer(width_in, hidden_features, first_omega, "first")]
        layers += [SineLayer(hidden_features, hidden_features, hidden_omega, "hidden") for _ in range(hidden_layers)]
        if outermost_linear:
            last = nn.Linear(hidden_features, out_features)
            siren_init_(last, "last", hidden_omega)
            layers.append(last)
        else:
            layers.append(SineLayer(hidden_features, out_features, hidden_omega, "last"))
        self.net = nn.Sequential(*layers)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if self.encoding is not None:
            coords = self.encoding(coords)
        return self.net(coords)

    def default_lr(self) -> float:
        """The Adam learning rate :func:`~hyperproj.inr.fit` uses for this SIREN when given none:
        :func:`sine_lr` of its width, sine-layer count and hidden ω.

        Examples:
            >>> Siren(2, 40, 9, 3).default_lr(), Siren(2, 80, 9, 3).default_lr()
            (0.001, 0.0005)
        """
        c = self.config
        sine_layers = 1 + c["hidden_layers"] + (0 if c["outermost_linear"] else 1)
        return sine_lr(c["hidden_features"], sine_layers, c["hidden_omega"])


#: ``sine_lr``'s constant: Adam's lr × ω × width × sine layers. Measured stability edges (full-size
#: kodim05, 8,192-row error-drawn minibatches, 400 steps, plain SIREN, 10 sine layers): width 40
#: and 56 train at lr 1e-3 and collapse to a flat image at 2e-3; widths 80 and 112 train at 5e-4
#: and collapse at 1e-3; a 4-sine-layer width-64 SIREN (128 px photo, full batch) trains at 1e-3
#: and 2e-3 alike (31.9 dB) and turns unstable at 4e-3. The edge falls like 1 / (width × depth)
#: (a weight step of lr moves a pre-activation by up to ω · lr · fan_in, and the layers compound);
#: D'OH's offset latent (Adam on z) sits lower still (1e-3 works at width 48, fails at 56). The
#: constant gives 1e-3 for compress's 10 × 40 target, half the plain network's edge at every
#: measured size.
SINE_LR_CONSTANT = 12.0
_SINE_LR_MAX = 2e-3


def sine_lr(width: int, sine_layers: int, omega: float = 30.0) -> float:
    """Adam learning rate for a sine network: ``SINE_LR_CONSTANT / (ω · width · sine_layers)``,
    at most 2e-3 (see :data:`SINE_LR_CONSTANT` for the measurements behind it).

    Examples:
        >>> sine_lr(40, 10), sine_lr(64, 4), sine_lr(112, 10)
        (0.001, 0.0015625, 0.00035714285714285714)
    """
    return min(_SINE_LR_MAX, SINE_LR_CONSTANT / (float(omega) * max(int(width), 1) * max(int(sine_layers), 1)))


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@register_model("mlp")
class MLP(nn.Module):
    """Baseline MLP with ReLU/GELU/SiLU/tanh activations and optional Fourier features.

    ``init="torch"`` keeps ``nn.Linear``'s default (declared as rule ``"torch"``); ``init="he"``
    draws Kaiming-uniform weights for the activation (declared as rule ``"he"``). Biases keep the
    ``nn.Linear`` default either way. Layer count as in :class:`Siren`.

    Examples:
        >>> net = MLP(2, 64, 2, 3, activation="relu", fourier_features=6)
        >>> net.net[0].hyperproj_init["rule"], net(torch.zeros(1, 2)).shape
        ('torch', torch.Size([1, 3]))
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        hidden_layers: int,
        out_features: int,
        activation: str = "relu",
        fourier_features: int = 0,
        init: str = "torch",
    ):
        super().__init__()
        _check_sizes("MLP", in_features, hidden_features, hidden_layers, out_features)
        if activation not in _ACTIVATIONS:
            raise HyperprojError(
                f"hyperproj.inr.MLP: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if init not in ("torch", "he"):
            raise HyperprojError(f"hyperproj.inr.MLP: init must be 'torch' or 'he', got {init!r}")
        self.config = {
            "in_features": in_features,
            "hidden_features": hidden_features,
            "hidden_layers": hidden_layers,
            "out_features": out_features,
            "activation": activation,
            "fourier_features": fourier_features,
            "init": init,
        }
        self.encoding, width = _encoding("MLP", in_features, fourier_features)
        widths = [width] + [hidden_features] * (hidden_layers + 1) + [out_features]
        layers: list[nn.Module] = []
        n = len(widths) - 1
        nonlinearity = activation if activation in ("relu", "tanh") else "relu"
        for i in range(n):
            lin = nn.Linear(widths[i], widths[i + 1])
            role = "first" if i == 0 else ("last" if i == n - 1 else "hidden")
            if init == "he":
                nn.init.kaiming_uniform_(lin.weight, nonlinearity=nonlinearity)
                lin.hyperproj_init = {"rule": "he", "role": role, "nonlinearity": nonlinearity}
            else:
                lin.hyperproj_init = {"rule": "torch", "role": role}
            layers.append(lin)
            if i < n - 1:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if self.encoding is not None:
            coords = self.encoding(coords)
        return self.net(coords)
