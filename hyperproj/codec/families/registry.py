"""The registry of model families: :class:`Family`, :func:`register_family` and file dispatch.

A family is how the codec turns a signal into a model and the model into a file: how it builds
its model for a signal and a byte budget, trains it, which parts it stores and how it rebuilds
them. ``compress`` runs the same steps for every family (build, train, encode; over budget, a
coarser code or a smaller model) and never branches on which one it drives, so a family is added
by subclassing :class:`Family` and decorating it with :func:`register_family` — from inside
hyperproj or from outside it.

A file names its family in the header field ``F`` (the default family, the SIREN/D'OH one,
writes none, so its files are the ones earlier releases wrote).

Examples:
    >>> "doh" in family_names()
    True
    >>> get_family("nope")
    Traceback (most recent call last):
    ...
    hyperproj._errors.HyperprojError: hyperproj.codec: unknown model family 'nope' (known: [...])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from torch import nn

from ..format import error, family_of, read_container, write_container

__all__ = ["DEFAULT_FAMILY", "Family", "register_family", "get_family", "family_names", "write_file", "read_file"]

DEFAULT_FAMILY = "doh"
"""The family ``compress`` uses by default and the one a file without header ``F`` belongs to."""

_FAMILIES: dict[str, type[Family]] = {}


class Family:
    """Base class of a model family. ``compress`` makes one instance per call and runs::

        coder = Family(job, model, **options)   # plan the model for the signal and job.budget
        net = None
        while True:
            net = coder.build(previous=net)      # the planned model, warm-started from the last attempt
            coder.train(net)
            data = coder.encode(net)             # store(): header fields and sections -> container
            job.attempts.append(coder.attempt(net, data))
            if len(data) <= job.budget: break
            # over budget: coder.coarser(net, budget) when short of time, else coder.shrink(net, data)

    ``decompress`` calls the class method :meth:`rebuild` on the header and sections of a file
    naming the family; ``info`` calls :meth:`describe`.

    Subclasses implement :meth:`build`, :meth:`store` and :meth:`rebuild`; the rest have defaults
    (no training, no coarser code, no smaller model: a file over budget is an error).
    """

    name: ClassVar[str] = ""
    """The registered name (set by :func:`register_family`; written to header ``F``)."""

    ignores: ClassVar[frozenset[str]] = frozenset()
    """``compress`` arguments this family has no use for (``bits``, ``fit_options``, ...): given
    with other than their defaults they are refused, never silently dropped."""

    def __init__(self, job: Any, model: nn.Module | None = None, **options: Any):
        self.job = job
        self.model = model
        self.options = options

    # ------------------------------------------------------------------ compress, per call
    def build(self, previous: nn.Module | None = None) -> nn.Module:
        """The model at the planned size, warm-started from ``previous`` (the last attempt) if given."""
        raise NotImplementedError

    def train(self, net: nn.Module) -> None:
        """Train ``net`` on ``self.job.signal`` within the job's clock (default: nothing to train)."""

    def store(self, net: nn.Module) -> tuple[dict[str, Any], dict[str, bytes], int]:
        """The JSON header, the named sections and the container version of ``net``'s file."""
        raise NotImplementedError

    def encode(self, net: nn.Module) -> bytes:
        """``net``'s file: :meth:`store` written by :func:`write_file`."""
        header, sections, version = self.store(net)
        return write_file(self.name, header, sections, version)

    def attempt(self, net: nn.Module, data: bytes) -> dict[str, Any]:
        """What the report's ``attempts`` list records of one encoded attempt."""
        return {"bytes": len(data)}

    def coarser(self, net: nn.Module, budget: int) -> bytes | None:
        """A coarser file of the trained ``net`` if it fits ``budget`` (default: none)."""
        return None

    def shrink(self, net: nn.Module, data: bytes) -> None:
        """Plan a smaller model after ``data`` came out over budget (default: refuse)."""
        raise error(f"compress: the {self.name!r} family's file is {len(data)} bytes, over the budget of "
                    f"{self.job.budget} bytes, and the family has no smaller model; raise bpp")

    def report(self, net: nn.Module, data: bytes) -> dict[str, Any]:
        """The family's entries of compress's report (model size, bits, ...)."""
        return {}

    # ------------------------------------------------------------------ decompress / info
    @classmethod
    def rebuild(cls, header: Mapping[str, Any], sections: Mapping[str, bytes]) -> nn.Module:
        """The model a file of this family describes (the header and sections as read)."""
        raise NotImplementedError

    @classmethod
    def describe(cls, header: Mapping[str, Any], sections: Mapping[str, bytes], data: bytes) -> dict[str, Any]:
        """``info``'s report of a file of this family (default: sizes and the header)."""
        sizes = {k: len(v) for k, v in sections.items()}
        return {"bytes": len(data), "header_bytes": len(data) - sum(sizes.values()), "section_bytes": sizes,
                "family": cls.name, "header": dict(header)}


def register_family(name: str, *, replace: bool = False) -> Callable[[type[Family]], type[Family]]:
    """Class decorator: register a :class:`Family` subclass under ``name`` (``compress(family=name)``).

    Registering a taken name raises unless ``replace=True``. ``docs/architecture.md`` shows a
    whole family (one that stores a constant image).
    """
    if not isinstance(name, str) or not name:
        raise error(f"register_family: name must be a non-empty string, got {name!r}")

    def decorate(cls: type[Family]) -> type[Family]:
        if not (isinstance(cls, type) and issubclass(cls, Family)):
            raise error(f"register_family({name!r}): expected a subclass of hyperproj.codec.Family, got {cls!r}")
        if name in _FAMILIES and _FAMILIES[name] is not cls and not replace:
            raise error(f"register_family: the name {name!r} is taken by {_FAMILIES[name].__qualname__}; "
                        "pass replace=True to replace it")
        cls.name = name
        _FAMILIES[name] = cls
        return cls

    return decorate


def get_family(name: str) -> type[Family]:
    """The family registered under ``name``."""
    if name not in _FAMILIES:
        raise error(f"unknown model family {name!r} (known: {family_names()})")
    return _FAMILIES[name]


def family_names() -> list[str]:
    """The registered family names, sorted."""
    return sorted(_FAMILIES)


def write_file(family: str, header: Mapping[str, Any], sections: Mapping[str, bytes], version: int) -> bytes:
    """The container of a file of ``family``: ``header`` gains ``F`` unless it is the default family
    (and such a file is at least format version 2: version-1 readers know no families)."""
    if family != DEFAULT_FAMILY:
        header = {**header, "F": family}
        version = max(version, 2)
    return write_container(header, sections, version=version)


def read_file(data: bytes) -> tuple[type[Family], dict[str, Any], dict[str, bytes]]:
    """The family, header and sections of a signal file (refused: a foreign kind, an unknown family)."""
    header, sections = read_container(data)
    family = family_of(header)
    if family is not None and family not in _FAMILIES:
        raise error(f"the file was written by the model family {family!r}, which this hyperproj does not "
                    f"have (known: {family_names()}); register it or upgrade hyperproj")
    return get_family(family or DEFAULT_FAMILY), header, sections
