"""The one error type hyperproj raises for bad input."""

from __future__ import annotations

__all__ = ["HyperprojError"]


class HyperprojError(ValueError):
    """Raised for invalid input anywhere in hyperproj.

    Messages name the module, parameter or field that was wrong, what was expected and what was
    found. It subclasses :class:`ValueError`, so ``except ValueError`` also catches it.

    Examples:
        >>> import hyperproj
        >>> try:
        ...     hyperproj.reparametrize(torch.nn.Linear(2, 2), latent_dim=0, seed=0)
        ... except hyperproj.HyperprojError as err:
        ...     print("latent_dim" in str(err))
        True
    """
