"""Shared helpers for the INR tests: real data, or a clear skip reason when it cannot exist.

Real data (nothing is downloaded at run time):
- photos: scikit-image's bundled images (always present with scikit-image); Kodak PNGs in
  ../shared/data/kodak beside the checkout (optional; HYPERPROJ_KODAK overrides);
- meshes: CGAL's data set from Debian's libcgal-demo, voice clips from alsa-utils, found by
  ``hyperproj.inr.find_mesh`` / ``find_audio`` (``$HYPERPROJ_DATA``, ``~/.cache/hyperproj/data``
  or the installed Debian paths). ``.ci/run`` fills the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hyperproj.inr import ImageSignal, find_audio, find_mesh

# ../shared/data/kodak beside the checkout (as on CI); HYPERPROJ_KODAK overrides.
KODAK_DIR = Path(os.environ.get("HYPERPROJ_KODAK", Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"))

_INSTALL_HINT = (
    "cd /tmp && apt-get download libcgal-demo alsa-utils && "
    "python -m hyperproj.inr.data /tmp/libcgal-demo_*.deb /tmp/alsa-utils_*.deb"
)


def astronaut_crop(size: int = 64) -> ImageSignal:
    """A ``size``×``size`` crop of scikit-image's astronaut photo (face and helmet: real detail)."""
    import skimage.data

    return ImageSignal.from_array(skimage.data.astronaut()).crop(100, 180, size, size)


def kodak_path(name: str = "kodim01.png") -> Path | None:
    path = KODAK_DIR / name
    return path if path.is_file() else None


def mesh_path(name: str = "bunny00") -> Path:
    path = find_mesh(name)
    if path is None:
        pytest.skip(f"CGAL mesh {name!r} not installed (libcgal-demo data); to install: {_INSTALL_HINT}")
    return path


def audio_path(name: str = "Front_Center") -> Path:
    path = find_audio(name)
    if path is None:
        pytest.skip(f"alsa-utils clip {name!r} not installed; to install: {_INSTALL_HINT}")
    return path
