"""A collection's inputs: files, folders and glob patterns expanded, read as signals, named for output.

Examples:
    >>> expand_inputs(["no-such-dir/*.png"])
    Traceback (most recent call last):
    ...
    hyperproj._errors.HyperprojError: hyperproj.compress_many: input 'no-such-dir/*.png' matches no file
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .._errors import HyperprojError
from ..inr.signals import AudioSignal, ImageSignal, Signal

__all__ = ["expand_inputs", "read_signal", "output_paths", "IMAGE_SUFFIXES", "AUDIO_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
AUDIO_SUFFIXES = (".wav",)
_WHERE = "hyperproj.compress_many"


def _error(message: str) -> HyperprojError:
    return HyperprojError(f"{_WHERE}: {message}")


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The input files named by ``inputs``: files as given, folders by their images and ``.wav``
    files (not recursing), glob patterns by their matches (``**`` recurses); sorted, each once.

    A name that is none of these raises, as does an empty result.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("b.png", "a.png", "notes.txt"):
        ...     _ = (d / name).write_bytes(b"")
        >>> [p.name for p in expand_inputs([d])]
        ['a.png', 'b.png']
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += [p for p in sorted(path.iterdir())
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + AUDIO_SUFFIXES]
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(str(item)):
            matches = [Path(p) for p in sorted(glob.glob(str(item), recursive=True)) if Path(p).is_file()]
            if not matches:
                raise _error(f"input {str(item)!r} matches no file")
            found += matches
        else:
            raise _error(f"input {str(item)!r} is not a file, a folder or a glob pattern that matches")
    unique = sorted({p.resolve(): p for p in found}.values(), key=lambda p: str(p.resolve()))
    if not unique:
        raise _error(f"no image or .wav file in {[str(i) for i in inputs]!r}")
    return unique


def read_signal(path: str | os.PathLike, resize: int | None = None, where: str = _WHERE) -> Signal:
    """The signal in the file at ``path``: an image (Pillow), or audio (``.wav``); ``resize`` makes an
    image's longer side that many pixels. Errors name ``where``, the file and what was expected.

    Examples:
        >>> read_signal("missing.png")
        Traceback (most recent call last):
        ...
        hyperproj._errors.HyperprojError: hyperproj.compress_many: no such file 'missing.png'
    """
    path = Path(path)
    if not path.is_file():
        raise HyperprojError(f"{where}: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        try:
            return AudioSignal.from_file(path)
        except HyperprojError:
            raise
        except Exception as err:  # noqa: BLE001 - wave raises several types
            raise HyperprojError(f"{where}: cannot read audio {str(path)!r}: {err}") from None
    try:
        signal = ImageSignal.from_file(path)
    except HyperprojError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many types
        kinds = ", ".join(IMAGE_SUFFIXES + AUDIO_SUFFIXES)
        raise HyperprojError(f"{where}: cannot read {str(path)!r} as an image ({type(err).__name__}: {err}); "
                     f"expected an image or audio file ({kinds})") from None
    return signal.resize(resize) if resize else signal


def output_paths(paths: Sequence[Path], out_dir: Path) -> list[Path]:
    """``OUT/<stem>.hpz`` per input; two inputs with one stem are refused before any work.

    Examples:
        >>> [str(p) for p in output_paths([Path("a/x.png"), Path("y.wav")], Path("out"))]
        ['out/x.hpz', 'out/y.hpz']
    """
    outs: dict[Path, Path] = {}
    for p in paths:
        out = out_dir / (p.stem + ".hpz")
        if out in outs:
            raise _error(f"inputs {str(outs[out])!r} and {str(p)!r} would both be written to {str(out)!r}; "
                         "rename one or compress them into different folders")
        outs[out] = p
    return list(outs)
