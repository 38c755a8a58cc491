"""Where the benchmarks find the shared data: beside the checkout, never at an absolute path.

The shared folder is ``<repo>/../shared``, ``<repo>`` being this checkout (the parent of
``benchmarks/``); the environment variable ``HYPERPROJ_SHARED`` overrides it, and
``HYPERPROJ_KODAK`` overrides the Kodak folder alone (as in ``tests/_data.py``). A benchmark's
``--data`` flag overrides both. The benchmarks import it as ``from _paths import ...``: running
``python benchmarks/NAME.py`` puts ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO", "shared_dir", "kodak_dir", "anchors_path", "HINT"]

#: The checkout that holds this file.
REPO = Path(__file__).resolve().parents[1]

#: How to point a benchmark at the data, for its "not found" messages.
HINT = "pass --data DIR, or set HYPERPROJ_SHARED to the folder that holds data/kodak"


def shared_dir() -> Path:
    """``$HYPERPROJ_SHARED`` if set, else ``<repo>/../shared``."""
    env = os.environ.get("HYPERPROJ_SHARED")
    return Path(env).expanduser() if env else REPO.parent / "shared"


def kodak_dir() -> Path:
    """The Kodak PNGs: ``$HYPERPROJ_KODAK`` if set, else ``shared_dir() / "data" / "kodak"``."""
    env = os.environ.get("HYPERPROJ_KODAK")
    return Path(env).expanduser() if env else shared_dir() / "data" / "kodak"


def anchors_path() -> Path:
    """Published Kodak rate-distortion curves: ``shared_dir() / "reference" / "kodak_anchors.json"``."""
    return shared_dir() / "reference" / "kodak_anchors.json"
