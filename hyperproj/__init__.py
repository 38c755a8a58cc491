"""hyperproj: any network's weights as the seeded random projection of one small latent.

Examples:
    >>> import torch, hyperproj
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    >>> hyper = hyperproj.reparametrize(net, latent_dim=100, seed=7)
    >>> hyper(torch.zeros(1, 2)).shape
    torch.Size([1, 3])
"""

from . import (
    _fastfood,  # noqa: F401  (registers projection='fastfood')
    _orthogonal,  # noqa: F401  (registers projection="orthogonal")
)
from ._errors import HyperprojError
from .codec import CollectionResult, CompressResult, compress, compress_many, decompress
from .distill import DistillReport, distill
from .init_rules import init_rule_names, register_init_rule
from .inr import FitHistory, fit
from .model import HyperModel, reparametrize
from .optim import WeightSpaceAdam
from .projection import projection_kinds, register_projection

__version__ = "0.1.0"

__all__ = [
    "CollectionResult",
    "CompressResult",
    "DistillReport",
    "FitHistory",
    "HyperModel",
    "HyperprojError",
    "WeightSpaceAdam",
    "compress",
    "compress_many",
    "decompress",
    "distill",
    "fit",
    "init_rule_names",
    "projection_kinds",
    "register_init_rule",
    "register_projection",
    "reparametrize",
]
