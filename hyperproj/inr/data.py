"""Find the real test data (meshes, voice clips) on this machine; nothing is ever downloaded.

Meshes come from Debian's ``libcgal-demo`` (``data.tar.gz`` with ``data/meshes/*.off``), voice
clips from ``alsa-utils`` (``/usr/share/sounds/alsa/*.wav``). Search order for a file:

1. ``$HYPERPROJ_DATA`` (a folder with ``meshes/`` and ``audio/``),
2. ``~/.cache/hyperproj/data`` (:func:`data_dir`),
3. the installed Debian locations (``/usr/share/sounds/alsa``; the CGAL ``data.tar.gz`` under
   ``/usr/share/doc/libcgal-dev`` is unpacked into the cache on first use).

To fill the cache from the ``.deb`` files without installing them::

    cd /tmp && apt-get download libcgal-demo alsa-utils
    python -m hyperproj.inr.data /tmp/libcgal-demo_*.deb /tmp/alsa-utils_*.deb

Examples:
    >>> p = find_mesh("bunny00")  # doctest: +SKIP
    >>> p.name  # doctest: +SKIP
    'bunny00.off'
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["data_dir", "find_mesh", "find_audio", "install_from_debs"]

_CGAL_TARBALLS = ("/usr/share/doc/libcgal-dev/data.tar.gz", "/usr/share/doc/libcgal-demo/data.tar.gz")
_ALSA_DIRS = ("/usr/share/sounds/alsa",)


def data_dir() -> Path:
    """The data folder: ``$HYPERPROJ_DATA`` if set, else ``~/.cache/hyperproj/data``.

    Examples:
        >>> data_dir().name in ("data", os.environ.get("HYPERPROJ_DATA", "data").rstrip("/").split("/")[-1])
        True
    """
    env = os.environ.get("HYPERPROJ_DATA")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hyperproj" / "data"


def _roots() -> list[Path]:
    roots = [data_dir()]
    default = Path.home() / ".cache" / "hyperproj" / "data"
    if default not in roots:
        roots.append(default)
    return roots


def _extract_meshes(tarball: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if member.isfile() and "/meshes/" in member.name and member.name.endswith(".off"):
                src = tar.extractfile(member)
                if src is not None:
                    (dest / Path(member.name).name).write_bytes(src.read())


def find_mesh(name: str) -> Path | None:
    """Path of CGAL's ``<name>.off`` (e.g. ``"bunny00"``, ``"armadillo"``), or ``None`` if absent.

    Examples:
        >>> find_mesh("no-such-mesh") is None
        True
    """
    filename = name if name.endswith(".off") else f"{name}.off"
    for root in _roots():
        if (root / "meshes" / filename).is_file():
            return root / "meshes" / filename
    for tarball in map(Path, _CGAL_TARBALLS):
        if tarball.is_file():
            try:
                _extract_meshes(tarball, data_dir() / "meshes")
            except OSError:
                return None
            path = data_dir() / "meshes" / filename
            return path if path.is_file() else None
    return None


def find_audio(name: str) -> Path | None:
    """Path of alsa-utils' ``<name>.wav`` (e.g. ``"Front_Center"``), or ``None`` if absent.

    Examples:
        >>> find_audio("no-such-clip") is None
        True
    """
    filename = name if name.endswith(".wav") else f"{name}.wav"
    for root in [*(r / "audio" for r in _roots()), *map(Path, _ALSA_DIRS)]:
        if (root / filename).is_file():
            return root / filename
    return None


def install_from_debs(*debs: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Unpack meshes and wav clips from downloaded ``.deb`` files into ``dest`` (default :func:`data_dir`).

    Needs ``dpkg-deb``. Returns the folder.
    """
    out = Path(dest) if dest is not None else data_dir()
    for deb in map(Path, debs):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            for tarball in Path(tmp).rglob("data.tar.gz"):
                if "cgal" in str(tarball):
                    _extract_meshes(tarball, out / "meshes")
            for wav in Path(tmp).rglob("*.wav"):
                (out / "audio").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(wav, out / "audio" / wav.name)
    return out


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) < 2:
        print("usage: python -m hyperproj.inr.data DEB [DEB ...]", file=sys.stderr)
        raise SystemExit(2)
    print(install_from_debs(*sys.argv[1:]))
