"""Run the suite on one CPU thread.

The test data are tiny, so extra threads only add synchronisation; on a machine busy with
other work, every parallel region then waits for descheduled threads and the suite runs
several times slower. One thread keeps it fast and its timing steady.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        faiss_previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    if faiss is not None:
        faiss.omp_set_num_threads(faiss_previous)
