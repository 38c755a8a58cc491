"""Moved to :mod:`hyperproj.codec.baselines`; this name stays for existing imports."""

from .codec.baselines import CLASSIC_FORMATS, classic_at_rate, coin, coin_width  # noqa: F401
