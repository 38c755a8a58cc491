"""Signals: coordinates and target values for fitting, and the way back (image, wav, mesh).

Every signal has ``coords`` (N, d) float32, ``values`` (N, C) float32, a ``metric``
(:class:`MetricSpec`: main metric's name and whether higher is better), ``loss(pred, target)``,
``render(model)`` (chunked inference, ``chunk_size`` rows at a time — one huge pass is 2–3× slower
on a CPU) and ``evaluate(model) -> dict`` of metrics.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._errors import HyperprojError
from . import _mesh
from .metrics import iou, psnr, quantize_8bit, ssim

__all__ = ["MetricSpec", "Signal", "ImageSignal", "AudioSignal", "OccupancySignal", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 16_384


class MetricSpec(NamedTuple):
    """The main metric of a signal: its key in ``evaluate()``'s dict and its direction."""

    name: str
    higher_is_better: bool = True

    def better(self, new: float, old: float | None) -> bool:
        """Whether ``new`` improves on ``old`` (``None`` = nothing yet).

        Examples:
            >>> MetricSpec("psnr").better(30.0, 29.0), MetricSpec("loss", False).better(1.0, 0.5)
            (True, False)
        """
        if old is None:
            return new == new  # not NaN
        return new > old if self.higher_is_better else new < old


class Signal:
    """Base class: holds ``coords`` and ``values``; subclasses add metrics and conversions.

    Examples:
        >>> sig = Signal(torch.zeros(10, 1), torch.ones(10, 1))
        >>> sig.num_samples, sig.evaluate(lambda x: x + 1)["mse"]
        (10, 0.0)
    """

    metric = MetricSpec("mse", higher_is_better=False)

    def __init__(self, coords: torch.Tensor, values: torch.Tensor):
        self.coords = torch.as_tensor(coords, dtype=torch.float32).contiguous()
        self.values = torch.as_tensor(values, dtype=torch.float32).contiguous()
        if self.coords.dim() != 2 or self.values.dim() != 2 or len(self.coords) != len(self.values):
            raise HyperprojError(
                f"hyperproj.inr.Signal: coords (N, d) and values (N, C) must have the same N; got "
                f"{tuple(self.coords.shape)} and {tuple(self.values.shape)}"
            )

    @property
    def num_samples(self) -> int:
        """Number of (coordinate, value) rows."""
        return len(self.coords)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss (mean squared error here)."""
        return F.mse_loss(pred, target)

    def loss_per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of each row, ``(rows,)``; its mean is :meth:`loss` (used by error sampling).

        A subclass that overrides :meth:`loss` overrides this too.
        """
        return (pred - target).pow(2).flatten(1).mean(1)

    @torch.no_grad()
    def constant_loss(self) -> float:
        """Training loss of the best constant prediction (the mean of ``values``: a flat image,
        silence at the mean level); :func:`~hyperproj.inr.fit`'s divergence guard calls a model
        whose loss climbs back towards it collapsed. A subclass whose loss is not the MSE
        overrides this.

        Examples:
            >>> sig = Signal(torch.zeros(4, 1), torch.tensor([[0.0], [1.0], [0.0], [1.0]]))
            >>> sig.constant_loss()  # the variance of the values
            0.25
        """
        mean = self.values.mean(0, keepdim=True).expand_as(self.values)
        return float(self.loss(mean, self.values))

    @torch.no_grad()
    def render(self, model: nn.Module, coords: torch.Tensor | None = None, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
        """Model output at ``coords`` (default: all of the signal's), ``chunk_size`` rows at a time."""
        coords = self.coords if coords is None else coords
        device = _device_of(model, coords.device)
        was_training = getattr(model, "training", False)
        if isinstance(model, nn.Module):
            model.eval()
        try:
            outs = [model(coords[i : i + chunk_size].to(device)) for i in range(0, len(coords), chunk_size)]
        finally:
            if isinstance(model, nn.Module):
                model.train(was_training)
        return torch.cat(outs).float().cpu()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of ``model`` on this signal; the key ``self.metric.name`` is always present."""
        pred = self.render(model)
        return {"mse": float(F.mse_loss(pred, self.values))}


def _device_of(model: Any, default: torch.device) -> torch.device:
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return default


class ImageSignal(Signal):
    """An image as coordinates → colours.

    ``coords`` (H·W, 2) are (row, column) positions in row-major order; the longer image axis
    spans [−1, 1] and the shorter one proportionally less, so pixels are square in coordinate
    space. ``values`` (H·W, C) are in [0, 1]. ``evaluate`` reports ``psnr`` (on the output clamped
    and rounded to 8 bits, as the literature does) and ``ssim``.

    Examples:
        >>> import skimage.data
        >>> sig = ImageSignal.from_array(skimage.data.camera()).resize(64)
        >>> sig.shape, sig.num_pixels, sig.coords[:, 0].min().item()
        ((64, 64, 1), 4096, -1.0)
    """

    metric = MetricSpec("psnr", higher_is_better=True)

    def __init__(self, image: torch.Tensor):
        image = torch.as_tensor(image, dtype=torch.float32)
        if image.dim() == 2:
            image = image[..., None]
        if image.dim() != 3 or min(image.shape) < 1:
            raise HyperprojError(f"hyperproj.inr.ImageSignal: expected an image (H, W) or (H, W, C), got {tuple(image.shape)}")
        self.image = image.contiguous()
        h, w, c = image.shape
        super().__init__(grid_coords((h, w)), image.reshape(h * w, c))

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_array(cls, array: Any) -> ImageSignal:
        """From an (H, W) or (H, W, C) array: uint8 (scaled by 1/255) or float in [0, 1].

        Examples:
            >>> ImageSignal.from_array(np.full((2, 3), 255, np.uint8)).values.max().item()
            1.0
        """
        arr = np.asarray(array)
        if arr.dtype == np.uint8:
            data = arr.astype(np.float32) / 255.0
        elif arr.dtype == np.uint16:
            data = arr.astype(np.float32) / 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            data = arr.astype(np.float32)
            if data.size and (data.min() < 0 or data.max() > 1):
                raise HyperprojError(
                    f"hyperproj.inr.ImageSignal.from_array: float images must lie in [0, 1], found "
                    f"[{data.min():.3g}, {data.max():.3g}]"
                )
        else:
            raise HyperprojError(f"hyperproj.inr.ImageSignal.from_array: expected uint8 or float data, got {arr.dtype}")
        return cls(torch.from_numpy(np.ascontiguousarray(data)))

    @classmethod
    def from_file(cls, path: str | os.PathLike, mode: str | None = None) -> ImageSignal:
        """Load with Pillow; ``mode`` (e.g. ``"RGB"``, ``"L"``) converts first. Alpha is dropped.

        Examples:
            >>> ImageSignal.from_file("kodak/kodim01.png").shape  # doctest: +SKIP
            (512, 768, 3)
        """
        from PIL import Image

        path = Path(path)
        if not path.is_file():
            raise HyperprojError(f"hyperproj.inr.ImageSignal.from_file: no such file {str(path)!r}")
        with Image.open(path) as img:
            if mode is not None:
                img = img.convert(mode)
            elif img.mode not in ("L", "RGB", "I;16"):
                img = img.convert("RGB")
            return cls.from_array(np.array(img))

    # -- geometry -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(self.image.shape)  # type: ignore[return-value]

    @property
    def num_pixels(self) -> int:
        """H · W."""
        return self.image.shape[0] * self.image.shape[1]

    def crop(self, top: int, left: int, height: int, width: int) -> ImageSignal:
        """A new signal from the ``height × width`` window at (``top``, ``left``).

        Examples:
            >>> ImageSignal(torch.rand(10, 10, 3)).crop(2, 3, 4, 5).shape
            (4, 5, 3)
        """
        h, w, _ = self.shape
        if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= h and left + width <= w):
            raise HyperprojError(
                f"hyperproj.inr.ImageSignal.crop: window top={top}, left={left}, height={height}, "
                f"width={width} does not fit the {h}×{w} image"
            )
        return ImageSignal(self.image[top : top + height, left : left + width].clone())

    def center_crop(self, height: int, width: int | None = None) -> ImageSignal:
        """The central ``height × width`` window (square if ``width`` is omitted)."""
        width = height if width is None else width
        h, w, _ = self.shape
        return self.crop((h - height) // 2, (w - width) // 2, height, width)

    def resize(self, size: int | tuple[int, int]) -> ImageSignal:
        """Resized with Pillow's Lanczos filter; an int sets the longer side (aspect kept).

        Examples:
            >>> ImageSignal(torch.rand(40, 80, 3)).resize(20).shape
            (10, 20, 3)
        """
        from PIL import Image

        h, w, c = self.shape
        if isinstance(size, int):
            scale = size / max(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
        pil = self.to_image(self.values)
        out = np.array(pil.resize((size[1], size[0]), Image.LANCZOS))
        return ImageSignal.from_array(out)

    # -- output ---------------------------------------------------------------------------------
    def to_image(self, pred: torch.Tensor) -> Any:
        """(H·W, C) or (H, W, C) predictions → 8-bit PIL image (clamped, rounded).

        Examples:
            >>> sig = ImageSignal(torch.rand(4, 6, 3))
            >>> sig.to_image(sig.values).size
            (6, 4)
        """
        from PIL import Image

        h, w, c = self.shape
        arr = quantize_8bit(torch.as_tensor(pred).detach().float().cpu().reshape(h, w, c)).mul(255).round()
        arr = arr.to(torch.uint8).numpy()
        return Image.fromarray(arr[..., 0] if c == 1 else arr)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``{"psnr", "ssim", "mse"}`` of the 8-bit-rounded, clamped output."""
        pred = quantize_8bit(self.render(model)).reshape(self.image.shape)
        return {
            "psnr": psnr(pred, self.image),
            "ssim": ssim(pred, self.image),
            "mse": float(F.mse_loss(pred, self.image)),
        }


def grid_coords(shape: tuple[int, ...]) -> torch.Tensor:
    """Row-major pixel/voxel centres for ``shape``; the longest axis spans [−1, 1], the rest proportionally.

    Examples:
        >>> grid_coords((2, 3)).tolist()
        [[-0.5, -1.0], [-0.5, 0.0], [-0.5, 1.0], [0.5, -1.0], [0.5, 0.0], [0.5, 1.0]]
    """
    longest = max(shape)
    step = 2.0 / (longest - 1) if longest > 1 else 0.0
    axes = [(torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * step for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grids, dim=-1).reshape(-1, len(shape)).float()


class AudioSignal(Signal):
    """A PCM wav clip as time → amplitude.

    ``coords`` (N, 1) are times in [−1, 1]; ``values`` (N, channels) are the samples divided by
    their peak absolute value (``scale``), so they span [−1, 1]. ``evaluate`` reports ``psnr`` with
    a peak-to-peak range of 2 and ``snr`` in dB, on the unquantised output.

    Examples:
        >>> sig = AudioSignal(np.sin(np.linspace(0, 20, 1000))[:, None], sample_rate=8000)
        >>> sig.num_samples, sig.duration
        (1000, 0.125)
    """

    metric = MetricSpec("psnr", higher_is_better=True)

    def __init__(self, samples: Any, sample_rate: int, scale: float | None = None):
        data = torch.as_tensor(np.asarray(samples, dtype=np.float32))
        if data.dim() == 1:
            data = data[:, None]
        if data.dim() != 2 or len(data) < 2:
            raise HyperprojError(f"hyperproj.inr.AudioSignal: expected samples (N,) or (N, channels) with N >= 2, got {tuple(data.shape)}")
        if scale is None:
            scale = float(data.abs().max()) or 1.0
        self.scale = float(scale)
        self.sample_rate = int(sample_rate)
        super().__init__(torch.linspace(-1.0, 1.0, len(data))[:, None], data / self.scale)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> AudioSignal:
        """Read an 8/16/32-bit PCM wav with the standard library's :mod:`wave`.

        Examples:
            >>> AudioSignal.from_file("/usr/share/sounds/alsa/Front_Center.wav")  # doctest: +SKIP
        """
        path = Path(path)
        if not path.is_file():
            raise HyperprojError(f"hyperproj.inr.AudioSignal.from_file: no such file {str(path)!r}")
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
        if width == 1:
            data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
        elif width == 2:
            data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        elif width == 4:
            data = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
        else:
            raise HyperprojError(f"hyperproj.inr.AudioSignal.from_file: unsupported sample width {width} bytes in {path}")
        return cls(data.reshape(-1, channels), rate)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    def crop(self, start: int, length: int) -> AudioSignal:
        """Samples ``start:start+length`` as a new signal (same ``scale``, times re-spanning [−1, 1])."""
        if not (0 <= start and length >= 2 and start + length <= self.num_samples):
            raise HyperprojError(
                f"hyperproj.inr.AudioSignal.crop: start={start}, length={length} does not fit {self.num_samples} samples"
            )
        return AudioSignal(self.values[start : start + length] * self.scale, self.sample_rate, self.scale)

    def to_wav(self, pred: torch.Tensor, path: str | os.PathLike) -> Path:
        """Write predictions (N, channels) as 16-bit PCM at the original rate and scale."""
        path = Path(path)
        data = (torch.as_tensor(pred).detach().float().cpu() * self.scale).clamp(-1, 32767 / 32768)
        pcm = torch.round(data * 32768).to(torch.int16).numpy().astype("<i2")
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(pcm.shape[1] if pcm.ndim == 2 else 1)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
            wav.writeframes(pcm.tobytes())
        return path

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``{"psnr", "snr", "mse"}`` (values in [−1, 1], PSNR peak-to-peak range 2)."""
        pred = self.render(model)
        mse = float(F.mse_loss(pred, self.values))
        power = float(self.values.pow(2).mean())
        snr = 10 * np.log10(power / mse) if mse > 0 else float("inf")
        return {"psnr": psnr(pred, self.values, data_range=2.0), "snr": float(snr), "mse": mse}


class OccupancySignal(Signal):
    """Inside/outside of a closed mesh normalised into [−1, 1]³: points → occupancy logits.

    Training points: ``num_points`` in all, ``surface_fraction`` of them near the surface (area-
    uniform surface samples plus Gaussian noise of std ``surface_noise``) and the rest uniform in
    the cube; labels (``values``, 0/1) come from an exact ray-parity inside test. Sampling uses its
    own ``numpy`` generator seeded by ``seed``. The model outputs logits; ``loss`` is BCE with
    logits; ``evaluate`` reports ``iou`` on a dense ``grid_resolution``³ grid (logit > 0 = inside).

    Examples:
        >>> sig = OccupancySignal.from_mesh("bunny.off", num_points=50_000, grid_resolution=64)  # doctest: +SKIP
        >>> sig.coords.shape, sig.values.mean()  # doctest: +SKIP
    """

    metric = MetricSpec("iou", higher_is_better=True)

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        num_points: int = 100_000,
        surface_fraction: float = 0.5,
        surface_noise: float = 0.02,
        grid_resolution: int = 128,
        padding: float = 0.05,
        seed: int = 0,
    ):
        if not isinstance(num_points, int) or num_points < 1:
            raise HyperprojError(f"hyperproj.inr.OccupancySignal: num_points must be a positive int, got {num_points!r}")
        if not 0.0 <= surface_fraction <= 1.0:
            raise HyperprojError(f"hyperproj.inr.OccupancySignal: surface_fraction must be in [0, 1], got {surface_fraction!r}")
        if not isinstance(grid_resolution, int) or grid_resolution < 2:
            raise HyperprojError(f"hyperproj.inr.OccupancySignal: grid_resolution must be an int >= 2, got {grid_resolution!r}")
        if not 0.0 <= padding < 1.0:
            raise HyperprojError(f"hyperproj.inr.OccupancySignal: padding must be in [0, 1), got {padding!r}")
        faces = np.asarray(faces, dtype=np.int64)
        if not _mesh.is_watertight(faces):
            import warnings

            warnings.warn(
                "hyperproj.inr.OccupancySignal: the mesh is not watertight; inside/outside labels may be wrong",
                stacklevel=2,
            )
        self.vertices = _mesh.normalize(np.asarray(vertices, dtype=np.float64), padding)
        self.faces = faces
        self.grid_resolution = grid_resolution
        rng = np.random.default_rng(seed)
        n_surface = int(round(num_points * surface_fraction))
        near = _mesh.sample_surface(self.vertices, faces, n_surface, rng)
        near += rng.normal(scale=surface_noise, size=near.shape)
        uniform = rng.uniform(-1.0, 1.0, size=(num_points - n_surface, 3))
        points = np.clip(np.concatenate([uniform, near]), -1.0, 1.0)
        labels = _mesh.inside(self.vertices, faces, points)
        super().__init__(torch.from_numpy(points), torch.from_numpy(labels.astype(np.float32))[:, None])
        self._grid_truth: torch.Tensor | None = None

    @classmethod
    def from_mesh(cls, path: str | os.PathLike, **kwargs: Any) -> OccupancySignal:
        """Load ``.off`` (built in) or any trimesh-readable mesh, then sample (see the class doc)."""
        vertices, faces = _mesh.load_mesh(path)
        return cls(vertices, faces, **kwargs)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy with logits."""
        return F.binary_cross_entropy_with_logits(pred, target)

    def loss_per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy with logits of each row, ``(rows,)``."""
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none").flatten(1).mean(1)

    @torch.no_grad()
    def constant_loss(self) -> float:
        """Binary cross-entropy of the best constant logit, ``logit(mean occupancy)``."""
        p = self.values.mean(0, keepdim=True).clamp(1e-6, 1 - 1e-6)
        return float(self.loss(torch.logit(p).expand_as(self.values), self.values))

    def grid(self, resolution: int | None = None) -> torch.Tensor:
        """The dense evaluation grid (R³, 3), ``linspace(-1, 1, R)`` per axis, row-major."""
        r = resolution or self.grid_resolution
        return grid_coords((r, r, r))

    def grid_occupancy(self) -> torch.Tensor:
        """Ground-truth occupancy on the evaluation grid (R³,) bool; computed once."""
        if self._grid_truth is None:
            inside = _mesh.inside(self.vertices, self.faces, self.grid().double().numpy())
            self._grid_truth = torch.from_numpy(inside)
        return self._grid_truth

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``{"iou", "accuracy"}``: grid IoU and accuracy on the training points."""
        truth = self.grid_occupancy()
        pred = self.render(model, self.grid())[:, 0] > 0
        train_pred = self.render(model)[:, 0] > 0
        acc = float((train_pred == self.values[:, 0].bool()).float().mean())
        return {"iou": iou(pred, truth), "accuracy": acc}

    def to_mesh(self, model: nn.Module, path: str | os.PathLike | None = None, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Marching cubes (scikit-image) of the logit-0 level set; writes ``.ply``/``.obj`` if ``path``.

        Returns (vertices in [−1, 1]³, faces).
        """
        from skimage.measure import marching_cubes

        r = resolution or self.grid_resolution
        logits = self.render(model, self.grid(r))[:, 0].reshape(r, r, r).numpy()
        if not (logits.min() < 0 < logits.max()):
            raise HyperprojError(
                "hyperproj.inr.OccupancySignal.to_mesh: the model's logits never cross 0 on the grid; "
                "no surface to extract (fit the model first)"
            )
        verts, faces, _, _ = marching_cubes(logits, level=0.0, spacing=(2.0 / (r - 1),) * 3)
        verts = verts - 1.0
        if path is not None:
            _mesh.write_mesh(path, verts, faces)
        return verts, faces
