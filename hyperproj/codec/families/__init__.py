"""Model families of the codec, one module each, registered by decorator (:mod:`.registry`).

* :mod:`hyperproj.codec.families.doh` — the SIREN/D'OH family (``"doh"``, the default): a
  registered :mod:`hyperproj.inr` model whose weights are ``B z``.

A new family is a :class:`Family` subclass decorated with :func:`register_family`; importing its
module registers it (``compress(..., family=NAME)``; ``decompress`` finds it from the file).
"""

from . import (
    doh,  # noqa: F401  (registers "doh")
    grid,  # noqa: F401  (registers "grid")
)
from .registry import (
    DEFAULT_FAMILY,
    Family,
    family_names,
    get_family,
    read_file,
    register_family,
    write_file,
)

__all__ = ["DEFAULT_FAMILY", "Family", "family_names", "get_family", "read_file", "register_family", "write_file"]
