"""Read-ahead for frame streams: decoding in a thread overlaps generation (``edn transfer``, ``edn evaluate``)."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator


def prefetch(items: Iterator[Any], depth: int = 4) -> Iterator[Any]:
    """``items`` produced ahead in a thread, at most ``depth`` waiting (decode overlaps generation)."""
    pending: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        pending.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pending.put(("end", done))
        except BaseException as exc:  # handed to the consumer, raised there
            pending.put(("error", exc))

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            kind, item = pending.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
