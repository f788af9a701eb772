"""Loading the next batches in a thread while the network works on the current one.

With ``run.workers = 0`` a DataLoader decodes in the main process, so decoding and the
network take turns. :func:`prefetched` runs the loader in a background thread instead: PIL
decodes and torch computes with the GIL released, so the two overlap without the start-up
cost and the extra memory of worker processes. Every random choice a loader makes comes
from a per-sample seed (:class:`~dcframe.data.transforms.TrainingView`), never from torch's
global generator, so results do not depend on the thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` in order, produced up to ``depth`` ahead by a background thread.

    An exception in the thread is raised here, at the item where it happened. Leaving the
    loop early stops the thread after the item it is producing.
    """
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
        except BaseException as error:  # handed to the consumer, which raises it
            slots.put(_Failure(error))
            return
        slots.put(_DONE)

    thread = threading.Thread(target=produce, name="dcframe-prefetch", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting for a free slot
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.1)
        thread.join()
