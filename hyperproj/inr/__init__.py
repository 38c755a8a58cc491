"""Implicit neural representations: models, signals, metrics and the fitting loop.

Examples:
    >>> import hyperproj, skimage.data
    >>> from hyperproj.inr import Siren, ImageSignal, fit
    >>> signal = ImageSignal.from_array(skimage.data.astronaut()).resize(32)
    >>> model = hyperproj.reparametrize(Siren(2, 32, 2, 3), latent_dim=500, seed=0)
    >>> history = fit(model, signal, steps=20, lr=1e-3, progress=False)
    >>> sorted(signal.evaluate(model))
    ['mse', 'psnr', 'ssim']
"""

from .data import data_dir, find_audio, find_mesh
from .fit import ErrorSampling, FitHistory, default_lr, fit, make_optimizer, optimizer_names
from .incode import Harmonizer, Incode, IncodeComposer
from .latent_grid import LatentGrid, fit_grid
from .local_global import LocalGlobal, auto_partition_factors, crop, extend
from .metrics import iou, psnr, ssim
from .models import MLP, FourierFeatures, SineLayer, Siren, sine_linear, sine_lr, warm_kernels
from .registry import build_model, model_names, model_spec, register_model
from .signals import AudioSignal, ImageSignal, MetricSpec, OccupancySignal, Signal, grid_coords

__all__ = [
    "AudioSignal",
    "ErrorSampling",
    "FitHistory",
    "FourierFeatures",
    "Harmonizer",
    "ImageSignal",
    "Incode",
    "IncodeComposer",
    "LatentGrid",
    "LocalGlobal",
    "MLP",
    "MetricSpec",
    "OccupancySignal",
    "Signal",
    "SineLayer",
    "sine_linear",
    "sine_lr",
    "Siren",
    "auto_partition_factors",
    "build_model",
    "crop",
    "data_dir",
    "default_lr",
    "extend",
    "find_audio",
    "find_mesh",
    "fit",
    "fit_grid",
    "grid_coords",
    "iou",
    "make_optimizer",
    "model_names",
    "model_spec",
    "optimizer_names",
    "psnr",
    "register_model",
    "ssim",
    "warm_kernels",
]
