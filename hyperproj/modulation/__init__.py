"""Meta-learned modulations: one shared base network per dataset, one small latent per signal.

This is the encoder–decoder side of hypernetworks for implicit neural representations, the
counterpart of :func:`hyperproj.reparametrize`'s decoder-only side (D'OH). It lives in its own
package rather than in :mod:`hyperproj.inr` because it works at a different level: ``hyperproj.inr``
holds per-signal networks and a per-signal fitting loop, whereas a modulated network is *shared
by a dataset* — it is meta-learned once on many signals (:func:`meta_train`), shipped once
(:func:`save_base`), and each signal is then only a latent found in a few gradient steps
(:func:`fit_latents`) and entropy-coded against the base (:func:`encode_latents`).

* Models: :class:`ShiftSiren` (Functa shift modulations) and :class:`GatedSiren` (VC-INR
  low-rank soft gating, ``G_l = σ(U_l V_lᵀ)``).
* Meta-learning: :func:`meta_train` (MAML outer loop, Meta-SGD inner loop, batched over signals,
  checkpoints and resume), :func:`inner_loop`, :func:`fit_latents`, :func:`render_latents`.
* Coding: :func:`fit_entropy_model`, :func:`save_base` / :func:`load_base`, :func:`base_hash`,
  :func:`encode_latents` / :func:`decode_latents`, :func:`render_file` (file + base -> patches),
  :func:`latents_file_info`.
* A D'OH base: ``hyperproj.reparametrize(net, n, seed)`` makes every weight matrix of the shared
  base (SIREN layers and modulation network) ``B_l z``; every function here accepts the
  wrapped model, and its base file holds only ``z``, the biases and the per-dimension vectors
  (:func:`modulated_of` returns the modulated SIREN inside).
* Data: :func:`training_photos`, :func:`kodak_photos`, :func:`cut_patches`, :func:`patch_pool`,
  :func:`install_photos`.

Examples:
    >>> from hyperproj.modulation import GatedSiren, fit_latents, render_latents
    >>> from hyperproj.inr import grid_coords
    >>> net = GatedSiren(16, hidden_features=16, hidden_layers=2, rank=2)
    >>> coords, patches = grid_coords((8, 8)), torch.rand(3, 64, 3)
    >>> latents = fit_latents(net, coords, patches, steps=2)
    >>> render_latents(net, coords, latents).shape
    torch.Size([3, 64, 3])
"""

from .coding import (
    base_hash,
    decode_latents,
    encode_latents,
    fit_entropy_model,
    latents_file_info,
    load_base,
    quantize_latents,
    render_file,
    save_base,
)
from .data import cut_patches, install_photos, kodak_photos, patch_pool, training_photos
from .meta import (
    MetaHistory,
    calibrate_inner_lr,
    fit_latents,
    inner_loop,
    meta_train,
    per_signal_mse,
    render_latents,
)
from .models import (
    GatedSiren,
    GateHypernet,
    ModulatedSiren,
    ResidualBlock,
    ShiftSiren,
    build_modulated,
    modulated_of,
)

__all__ = [
    "GateHypernet",
    "GatedSiren",
    "MetaHistory",
    "ModulatedSiren",
    "ResidualBlock",
    "ShiftSiren",
    "base_hash",
    "build_modulated",
    "calibrate_inner_lr",
    "cut_patches",
    "decode_latents",
    "encode_latents",
    "fit_entropy_model",
    "fit_latents",
    "inner_loop",
    "install_photos",
    "kodak_photos",
    "latents_file_info",
    "load_base",
    "meta_train",
    "modulated_of",
    "patch_pool",
    "per_signal_mse",
    "quantize_latents",
    "render_file",
    "render_latents",
    "save_base",
    "training_photos",
]
