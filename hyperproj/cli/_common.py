"""What every command of the ``hyperproj`` command line shares: the one-line error, the parser
that raises it instead of printing usage, the output-folder check, a file's kind."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import HyperprojError
from ..codec.format import read_container


class CliError(Exception):
    """An error the command line prints as one line (exit status 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise CliError(f"{message} (see 'hyperproj {self.prog.split()[-1]} --help')" if " " in self.prog else message)


def bits(text: str):
    """A ``--bits`` value: an int, or ``float16``."""
    return "float16" if text == "float16" else int(text)


def check_output_folder(out: Path) -> None:
    """Refuse an output path whose folder is missing, before any work (one-line message)."""
    folder = out.parent
    if not folder.exists():
        raise CliError(f"output folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise CliError(f"output folder {str(folder)!r} is not a folder")


def file_kind(path: str) -> str | None:
    """The header's ``"K"`` (None for signal files); the codec reports unreadable files."""
    try:
        header, _ = read_container(Path(path).read_bytes())
    except (HyperprojError, OSError):
        return None
    kind = header.get("K")
    return kind if isinstance(kind, str) else None
