"""The ``hyperproj`` command line: ``compress``, ``decompress``, ``info``, ``crop`` and ``demo``.

One module per command, as the codec has one per step: :mod:`._compress`
(:func:`hyperproj.codec.compress`), :mod:`._decompress` (``decompress`` + ``render``, or a
modulation latents file), :mod:`._info`, :mod:`._crop`, :mod:`._demo`; :mod:`._common` holds the
one-line errors and the output-folder check. Errors print one line ``hyperproj: error: ...`` on
stderr and exit with status 2 (no traceback).

Examples:
    >>> main(["info", "no-such-file.hpz"])
    2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _compress, _crop, _decompress, _demo, _info
from ._common import CliError, Parser
from ._demo import demo

__all__ = ["main", "demo"]

_COMMANDS = (_compress, _decompress, _info, _crop, _demo)


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="hyperproj", description="Signals as seeded random projections of one small latent (D'OH).")
    sub = p.add_subparsers(dest="command", parser_class=Parser,
                           help="what to do; 'hyperproj COMMAND --help' lists its options")
    for command in _COMMANDS:
        command.add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hyperproj`` console script; returns the exit status.

    Examples:
        >>> main(["decompress", "missing.hpz"])
        2
    """
    from .._errors import HyperprojError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        a = _parser().parse_args(argv)
        if a.command is None:
            _parser().print_help()
            return 2
        return {command.NAME: command.run for command in _COMMANDS}[a.command](a)
    except (HyperprojError, CliError, OSError) as err:
        msg = str(err).replace("\n", " ")
        print(f"hyperproj: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hyperproj: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
