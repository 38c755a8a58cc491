"""``python -m hyperproj.modulation DEB [DEB ...]``: unpack training photos from Debian packages."""

import sys

from .data import install_photos

if len(sys.argv) < 2:
    print("usage: python -m hyperproj.modulation DEB [DEB ...]", file=sys.stderr)
    raise SystemExit(2)
print(install_photos(*sys.argv[1:]))
