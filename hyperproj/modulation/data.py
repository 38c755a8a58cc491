"""Real photos cut into patches: training photos that are not Kodak, and Kodak for testing.

Training photos (nothing is downloaded at run time):

* scikit-image's bundled colour photos (:data:`SKIMAGE_PHOTOS`; always present with
  scikit-image);
* photos from two Debian packages, unpacked once into ``<data_dir>/photos/`` by
  :func:`install_photos` (``scripts/fetch_test_data.sh`` does it): ``opencv-doc`` (OpenCV's
  sample photos: fruits, baboon, building, butterfly, aerial views, ...) and
  ``libjxl-testdata`` (JPEG XL's test photos: the flower, 500px photos, camera raws). Only the
  photographs listed in :data:`DEB_PHOTOS` are kept: no charts, logos, renders or synthetic tests.

Photos are read with Pillow, converted to 8-bit RGB, and shrunk (Lanczos) so that their longer
side is at most ``max_side`` (default 768, Kodak's), then cut into a grid of non-overlapping
``size × size`` patches with einops.

Examples:
    >>> import numpy as np
    >>> cut_patches(np.zeros((70, 100, 3), np.uint8), 32).shape
    (6, 32, 32, 3)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from einops import rearrange

from .._errors import HyperprojError
from ..inr.data import data_dir

__all__ = [
    "SKIMAGE_PHOTOS",
    "DEB_PHOTOS",
    "install_photos",
    "photo_dir",
    "training_photos",
    "load_photo",
    "cut_patches",
    "patch_pool",
    "kodak_photos",
]

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")
"""scikit-image's bundled colour photographs used for training (``skimage.data.<name>()``;
``motorcycle`` is the left view of ``stereo_motorcycle()``)."""

DEB_PHOTOS: dict[str, tuple[str, ...]] = {
    "opencv-doc": tuple(
        f"usr/share/doc/opencv-doc/examples/data/{name}"
        for name in (
            "aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg",
            "fruits.jpg", "home.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg", "orange.jpg",
            "squirrel_cls.jpg", "aloeL.jpg", "graf1.png", "chicky_512.png", "basketball1.png",
            "rubberwhale1.png", "smarties.png",
        )
    )
    + ("usr/share/doc/opencv-doc/examples/alphamat/input_images/plant.jpg",),
    "libjxl-testdata": tuple(
        f"usr/share/libjxl-testdata/{name}"
        for name in (
            "jxl/flower/flower.png",
            "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png",
            "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png",
            "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png",
        )
    ),
}
"""Per Debian package, the photographs (paths inside the package) that :func:`install_photos` keeps.

Missing entries are skipped (package versions differ)."""


def photo_dir() -> Path:
    """Where :func:`install_photos` puts photos: ``<hyperproj.inr.data_dir()>/photos``.

    Examples:
        >>> photo_dir().name
        'photos'
    """
    return data_dir() / "photos"


def install_photos(*debs: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Unpack the photos of :data:`DEB_PHOTOS` from downloaded ``.deb`` files into ``dest``.

    ``dest`` defaults to :func:`photo_dir`. Files are named ``<package>__<file name>``. Debs of
    other packages are ignored. Needs ``dpkg-deb``. Returns the folder.

    Examples:
        >>> install_photos("/no/such.deb")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        hyperproj._errors.HyperprojError: ...
    """
    out = Path(dest) if dest is not None else photo_dir()
    for deb in map(Path, debs):
        if not deb.is_file():
            raise HyperprojError(f"hyperproj.modulation.install_photos: no such .deb file {str(deb)!r}")
        package = deb.name.split("_")[0]
        members = DEB_PHOTOS.get(package)
        if not members:
            continue
        if shutil.which("dpkg-deb") is None:
            raise HyperprojError("hyperproj.modulation.install_photos: needs dpkg-deb on PATH")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            out.mkdir(parents=True, exist_ok=True)
            for member in members:
                src = Path(tmp) / member
                if src.is_file():
                    shutil.copyfile(src, out / f"{package}__{src.name}")
    return out


def load_photo(path: str | os.PathLike, max_side: int | None = 768) -> np.ndarray:
    """An 8-bit RGB ``(H, W, 3)`` array, shrunk with Lanczos so ``max(H, W) <= max_side``.

    Examples:
        >>> load_photo("/no/such.png")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        hyperproj._errors.HyperprojError: ...
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise HyperprojError(f"hyperproj.modulation.load_photo: no such file {str(path)!r}")
    with Image.open(path) as img:
        return _shrink(np.asarray(img.convert("RGB")), max_side)


def _shrink(arr: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None or max(arr.shape[:2]) <= max_side:
        return np.ascontiguousarray(arr)
    from PIL import Image

    h, w = arr.shape[:2]
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(arr).resize(size, Image.LANCZOS))


def training_photos(max_side: int | None = 768, include_debs: bool = True) -> dict[str, np.ndarray]:
    """Training photos by name: scikit-image's, then any installed in :func:`photo_dir`.

    Examples:
        >>> photos = training_photos(max_side=256, include_debs=False)
        >>> sorted(photos)[:2], photos["astronaut"].shape
        (['astronaut', 'chelsea'], (256, 256, 3))
    """
    import skimage.data

    out: dict[str, np.ndarray] = {}
    for name in SKIMAGE_PHOTOS:
        img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
        out[name] = _shrink(np.asarray(img)[..., :3], max_side)
    folder = photo_dir()
    if include_debs and folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"):
                out[path.stem] = load_photo(path, max_side)
    return out


def kodak_photos(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """The Kodak PNGs (``kodim*.png``) in ``directory`` by name, full size; ``{}`` if none.

    Examples:
        >>> kodak_photos("/no/such/dir")
        {}
    """
    folder = Path(directory)
    if not folder.is_dir():
        return {}
    return {p.stem: load_photo(p, None) for p in sorted(folder.glob("kodim*.png"))}


def cut_patches(image: np.ndarray, size: int = 32) -> np.ndarray:
    """All non-overlapping ``size × size`` patches of an ``(H, W, C)`` image, row-major: ``(n, size, size, C)``.

    The right and bottom remainders (``H mod size``, ``W mod size``) are dropped.

    Examples:
        >>> cut_patches(np.arange(16).reshape(4, 4, 1), 2)[1, :, :, 0].tolist()
        [[2, 3], [6, 7]]
    """
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise HyperprojError(f"hyperproj.modulation.cut_patches: image must be (H, W, C), got shape {arr.shape}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise HyperprojError(f"hyperproj.modulation.cut_patches: size must be a positive int, got {size!r}")
    h, w = arr.shape[0] // size * size, arr.shape[1] // size * size
    if h == 0 or w == 0:
        raise HyperprojError(
            f"hyperproj.modulation.cut_patches: a {arr.shape[0]}×{arr.shape[1]} image holds no {size}×{size} patch"
        )
    return rearrange(arr[:h, :w], "(nh p1) (nw p2) c -> (nh nw) p1 p2 c", p1=size, p2=size)


def patch_pool(
    images: dict[str, np.ndarray] | list[np.ndarray], size: int = 32, count: int | None = None, seed: int = 0
) -> np.ndarray:
    """Grid patches of every image, optionally a seeded random subset of ``count``: ``(P, size, size, 3)`` float32 in [0, 1].

    Examples:
        >>> pool = patch_pool([np.zeros((64, 64, 3), np.uint8)], 32, count=3)
        >>> pool.shape, pool.dtype
        ((3, 32, 32, 3), dtype('float32'))
    """
    arrays = list(images.values()) if isinstance(images, dict) else list(images)
    if not arrays:
        raise HyperprojError("hyperproj.modulation.patch_pool: no images given")
    patches = np.concatenate([cut_patches(a, size) for a in arrays])
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise HyperprojError(f"hyperproj.modulation.patch_pool: count must be a positive int, got {count!r}")
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(patches), size=min(count, len(patches)), replace=False)
        patches = patches[np.sort(idx)]
    return patches.astype(np.float32) / 255.0

