"""INCODE (Kazerouni et al., WACV 2024): a SIREN "composer" whose sine activations are tuned by a
"harmonizer" that looks at the signal itself.

Every composer sine layer computes ``a * sin(b * omega * (W x + beta) + c) + d``. The harmonizer —
a small randomly initialised ResNet-like convolutional stem, global average pooling and an MLP
64→64→32→4 (SiLU) — maps the signal image to raw values ``(a', b', c, d)`` with ``a = exp(a')``
and ``b = exp(b')``, as in the reference code. The reference regulariser
``λa·relu(-a') + λb·relu(-b') + λc·relu(-c) + λd·relu(-d)`` (λ = 0.1993, 0.0196, 0.0588, 0.0269
for images) is returned by :meth:`Incode.regularization_loss`, which :func:`hyperproj.fit` adds.

Differences from the reference, on purpose: no pretrained ResNet-34 (the stem here is trained from
scratch with the composer), GroupNorm instead of BatchNorm (one image per batch, and no train/eval
mismatch), and the signal image is resized to at most ``harmonizer_resolution`` pixels on its
longer side before the stem (CPU cost).

Decoding needs only the composer and four numbers: after fitting call
:meth:`Incode.freeze_harmonizer`; ``model.composer.coefficients`` then holds ``(a, b, c, d)`` and
``model.composer`` alone reproduces the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import HyperprojError
from .models import _check_float, _check_int, _encoding, sine_lr, siren_init_
from .registry import register_model

__all__ = ["Incode", "IncodeComposer", "Harmonizer"]

REFERENCE_REG_WEIGHTS = (0.1993, 0.0196, 0.0588, 0.0269)


class _ModulatedSine(nn.Module):
    def __init__(self, in_features: int, out_features: int, omega: float, role: str):
        super().__init__()
        self.omega = float(omega)
        self.linear = nn.Linear(in_features, out_features)
        siren_init_(self.linear, role, self.omega)

    def forward(self, x: torch.Tensor, abcd: torch.Tensor) -> torch.Tensor:
        a, b, c, d = abcd.unbind(-1)
        return a * torch.sin((b * self.omega) * self.linear(x) + c) + d


class IncodeComposer(nn.Module):
    """The SIREN-like composer of :class:`Incode`; runs alone from its ``coefficients`` buffer.

    ``forward(x, abcd=None)``: ``abcd`` is the tensor ``(a, b, c, d)`` (already exponentiated);
    ``None`` uses the persistent buffer ``coefficients`` (set by ``Incode.freeze_harmonizer``).

    Examples:
        >>> comp = IncodeComposer(2, 16, 1, 3)
        >>> comp(torch.zeros(4, 2)).shape, comp.coefficients.tolist()
        (torch.Size([4, 3]), [1.0, 1.0, 0.0, 0.0])
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
        self.encoding, width = _encoding("Incode", in_features, fourier_features)
        self.layers = nn.ModuleList([_ModulatedSine(width, hidden_features, first_omega, "first")])
        for _ in range(hidden_layers):
            self.layers.append(_ModulatedSine(hidden_features, hidden_features, hidden_omega, "hidden"))
        if outermost_linear:
            self.last: nn.Module = nn.Linear(hidden_features, out_features)
            siren_init_(self.last, "last", hidden_omega)
        else:
            self.last = _ModulatedSine(hidden_features, out_features, hidden_omega, "last")
        self.register_buffer("coefficients", torch.tensor([1.0, 1.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor, abcd: torch.Tensor | None = None) -> torch.Tensor:
        if abcd is None:
            abcd = self.coefficients
        if self.encoding is not None:
            x = self.encoding(x)
        for layer in self.layers:
            x = layer(x, abcd)
        if isinstance(self.last, _ModulatedSine):
            return self.last(x, abcd)
        return self.last(x)


class _BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(8, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(x + self.norm2(self.conv2(y)))


class Harmonizer(nn.Module):
    """Signal image ``(1, C, H, W)`` → raw ``(a', b', c, d)``.

    ResNet-like stem (7×7 stride-2 conv, GroupNorm, ReLU, 3×3 max-pool, ``blocks`` basic blocks of
    ``width`` channels), global average pooling, MLP ``width→64→32→4`` with SiLU. As in the
    reference, the MLP weights start at N(0, 0.001²) (truncated) and its biases at ``bias_init``
    (0.3120), so the output starts near ``(0.312,)*4``.

    Examples:
        >>> h = Harmonizer(3)
        >>> h(torch.rand(1, 3, 32, 32)).shape
        torch.Size([4])
    """

    def __init__(self, channels: int, width: int = 64, blocks: int = 2, bias_init: float = 0.3120):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 7, stride=2, padding=3, bias=False),
            nn.GroupNorm(8, width),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            *[_BasicBlock(width) for _ in range(blocks)],
        )
        self.mlp = nn.Sequential(nn.Linear(width, 64), nn.SiLU(), nn.Linear(64, 32), nn.SiLU(), nn.Linear(32, 4))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.001)
                nn.init.constant_(m.bias, bias_init)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.stem(image).mean(dim=(-2, -1))
        return self.mlp(features)[0]


@register_model("incode")
class Incode(nn.Module):
    """INCODE: a :class:`IncodeComposer` (SIREN) conditioned by a :class:`Harmonizer`.

    Same first arguments as :class:`Siren`; ``signal_channels`` is the number of image channels the
    harmonizer sees, ``harmonizer_width``/``harmonizer_blocks`` size its stem,
    ``harmonizer_resolution`` caps the longer side of the image it sees, ``reg_weights`` are the
    λ's of :meth:`regularization_loss`.

    Only the composer is meant to be projected/compressed: the class attribute
    ``hyperproj_targets = ("composer",)`` makes ``hyperproj.reparametrize`` target its weights by
    default.

    The harmonizer needs the signal: :func:`hyperproj.fit` calls ``set_signal(signal)``
    automatically when the model has none; or call ``model.set_signal(image_signal_or_tensor)``
    yourself. Until a signal is set (or after :meth:`freeze_harmonizer`), the model runs the
    composer with the stored ``composer.coefficients``.

    Examples:
        >>> import hyperproj
        >>> from hyperproj.inr import ImageSignal
        >>> sig = ImageSignal.from_array(torch.rand(16, 16, 3).numpy())
        >>> net = Incode(2, 32, 2, 3)
        >>> net.set_signal(sig)
        >>> net(sig.coords).shape
        torch.Size([256, 3])
        >>> net.freeze_harmonizer()        # now decoding needs net.composer + 4 numbers
        >>> bool(torch.allclose(net(sig.coords), net.composer(sig.coords)))
        True
    """

    hyperproj_targets = ("composer",)

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
        signal_channels: int = 3,
        harmonizer_width: int = 64,
        harmonizer_blocks: int = 2,
        harmonizer_resolution: int = 256,
        reg_weights: Sequence[float] = REFERENCE_REG_WEIGHTS,
    ):
        super().__init__()
        _check_int("Incode", "in_features", in_features, 1)
        _check_int("Incode", "hidden_features", hidden_features, 1)
        _check_int("Incode", "hidden_layers", hidden_layers, 0)
        _check_int("Incode", "out_features", out_features, 1)
        _check_int("Incode", "signal_channels", signal_channels, 1)
        _check_int("Incode", "harmonizer_width", harmonizer_width, 8)
        if harmonizer_width % 8:
            raise HyperprojError(f"hyperproj.inr.Incode: harmonizer_width must be a multiple of 8, got {harmonizer_width}")
        _check_int("Incode", "harmonizer_blocks", harmonizer_blocks, 0)
        _check_int("Incode", "harmonizer_resolution", harmonizer_resolution, 8)
        first_omega = _check_float("Incode", "first_omega", first_omega)
        hidden_omega = _check_float("Incode", "hidden_omega", hidden_omega)
        reg = [float(w) for w in reg_weights]
        if len(reg) != 4 or any(w < 0 for w in reg):
            raise HyperprojError(f"hyperproj.inr.Incode: reg_weights must be 4 non-negative numbers, got {reg_weights!r}")
        self.config: dict[str, Any] = {
            "in_features": in_features,
            "hidden_features": hidden_features,
            "hidden_layers": hidden_layers,
            "out_features": out_features,
            "first_omega": first_omega,
            "hidden_omega": hidden_omega,
            "outermost_linear": bool(outermost_linear),
            "fourier_features": fourier_features,
            "signal_channels": signal_channels,
            "harmonizer_width": harmonizer_width,
            "harmonizer_blocks": harmonizer_blocks,
            "harmonizer_resolution": harmonizer_resolution,
            "reg_weights": reg,
        }
        self.composer = IncodeComposer(
            in_features, hidden_features, hidden_layers, out_features,
            first_omega, hidden_omega, outermost_linear, fourier_features,
        )
        self.harmonizer = Harmonizer(signal_channels, harmonizer_width, harmonizer_blocks)
        self.register_buffer("reg_weights", torch.tensor(reg), persistent=False)
        self.register_buffer("frozen", torch.tensor(False))
        self.register_buffer("signal_image", None, persistent=False)
        self._scratch = _Scratch()

    def default_lr(self) -> float:
        """The Adam learning rate :func:`~hyperproj.inr.fit` uses when given none: the composer's
        :func:`~hyperproj.inr.models.sine_lr`, as for a :class:`~hyperproj.inr.Siren` of its size.

        Examples:
            >>> Incode(2, 40, 9, 3).default_lr()
            0.001
        """
        c = self.config
        sine_layers = 1 + c["hidden_layers"] + (0 if c["outermost_linear"] else 1)
        return sine_lr(c["hidden_features"], sine_layers, c["hidden_omega"])

    # -- signal ---------------------------------------------------------------------------------
    @property
    def has_signal(self) -> bool:
        """Whether :meth:`set_signal` has given the harmonizer an image."""
        return self.signal_image is not None

    def set_signal(self, signal: Any) -> None:
        """Give the harmonizer its input: an ``ImageSignal``, or an image tensor (H, W, C) / (1, C, H, W).

        Examples:
            >>> net = Incode(2, 16, 1, 3)
            >>> net.set_signal(torch.rand(20, 30, 3))
            >>> net.has_signal
            True
        """
        image = signal.image if hasattr(signal, "image") else signal
        image = torch.as_tensor(image, dtype=torch.float32)
        if image.dim() == 2:
            image = image[..., None]
        if image.dim() == 3:
            image = image.permute(2, 0, 1)[None]
        if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != self.config["signal_channels"]:
            raise HyperprojError(
                f"hyperproj.inr.Incode.set_signal: expected an image (H, W, {self.config['signal_channels']}) "
                f"or (1, {self.config['signal_channels']}, H, W); got shape {tuple(image.shape)}"
            )
        limit = self.config["harmonizer_resolution"]
        h, w = image.shape[-2:]
        if max(h, w) > limit:
            scale = limit / max(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            image = F.interpolate(image, size=size, mode="area")
        device = self.composer.coefficients.device
        self.signal_image = image.to(device)

    # -- coefficients ---------------------------------------------------------------------------
    def raw_coefficients(self) -> torch.Tensor:
        """Harmonizer output ``(a', b', c, d)`` for the current signal (differentiable)."""
        if self.signal_image is None:
            raise HyperprojError(
                "hyperproj.inr.Incode: no signal set; call model.set_signal(image) or fit(...) first"
            )
        return self.harmonizer(self.signal_image)

    def coefficients(self) -> torch.Tensor:
        """The ``(a, b, c, d)`` the composer uses now (frozen buffer, or harmonizer output).

        Examples:
            >>> Incode(2, 8, 1, 1).coefficients().tolist()
            [1.0, 1.0, 0.0, 0.0]
        """
        if bool(self.frozen) or self.signal_image is None:
            return self.composer.coefficients
        return _activate(self.raw_coefficients())

    @torch.no_grad()
    def freeze_harmonizer(self, coefficients: Sequence[float] | torch.Tensor | None = None) -> None:
        """Store ``(a, b, c, d)`` in ``composer.coefficients`` and stop using the harmonizer.

        ``coefficients=None`` computes them from the current signal; pass four numbers to restore
        decoded ones. The harmonizer's parameters stop requiring gradients.
        """
        if coefficients is None:
            value = _activate(self.raw_coefficients())
        else:
            value = torch.as_tensor(coefficients, dtype=self.composer.coefficients.dtype).flatten()
            if value.numel() != 4:
                raise HyperprojError(
                    f"hyperproj.inr.Incode.freeze_harmonizer: coefficients must be 4 numbers, got {value.numel()}"
                )
        self.composer.coefficients.copy_(value)
        self.frozen.fill_(True)
        for p in self.harmonizer.parameters():
            p.requires_grad_(False)

    def regularization_loss(self) -> torch.Tensor:
        """INCODE's penalty keeping ``a', b', c, d`` non-negative (0 when frozen/no signal).

        Uses the coefficients of the latest forward pass, so call it after ``forward``.
        """
        raw = self._scratch.raw
        if raw is None:
            return self.reg_weights.new_zeros(())
        return (self.reg_weights * torch.relu(-raw)).sum()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if bool(self.frozen) or self.signal_image is None:
            self._scratch.raw = None
            return self.composer(coords)
        raw = self.harmonizer(self.signal_image)
        self._scratch.raw = raw
        return self.composer(coords, _activate(raw))


class _Scratch:
    """Holds the last forward's harmonizer output; empty again when copied or pickled."""

    def __init__(self) -> None:
        self.raw: torch.Tensor | None = None

    def __deepcopy__(self, memo: dict) -> _Scratch:
        return _Scratch()

    def __reduce__(self) -> tuple:
        return (_Scratch, ())


def _activate(raw: torch.Tensor) -> torch.Tensor:
    a, b, c, d = raw.unbind(-1)
    return torch.stack([torch.exp(a), torch.exp(b), c, d], dim=-1)
