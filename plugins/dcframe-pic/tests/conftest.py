"""Run the suite on one CPU thread.

The test inputs are tiny, so more threads only add synchronisation, which on a machine
busy with other work makes the suite several times slower and its timing erratic.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
