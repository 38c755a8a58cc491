"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): results that must be bit-identical, and no
    oversubscription when pytest-xdist already runs 2 workers on 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
