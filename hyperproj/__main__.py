"""``python -m hyperproj ...`` runs the ``hyperproj`` command line (see :mod:`hyperproj.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
