"""Root conftest: makes ``torch`` and ``hyperproj`` available to docstring examples."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    import hyperproj

    doctest_namespace["torch"] = torch
    doctest_namespace["hyperproj"] = hyperproj
