"""Frame streams: read-ahead (decoding in a thread overlaps generation in ``edn transfer`` and ``edn evaluate``),
and the differences between consecutive frames (temporal stability, of a transfer video and of held-out clips)."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

import numpy as np


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


class ConsecutiveDifferences:
    """Running mean absolute difference (0-255 scale) between consecutive frames of one or more sequences.

    ``add(frame, sequence)`` compares a frame with the previous frame of the same sequence only (never
    across a clip boundary) and holds one frame per open sequence, so memory does not grow with length.
    """

    def __init__(self) -> None:
        self._previous: dict[Any, np.ndarray] = {}
        self.total, self.count = 0.0, 0

    def add(self, frame: np.ndarray, sequence: Any = 0) -> float | None:
        """The difference to the sequence's previous frame (None for its first frame)."""
        frame = np.asarray(frame, dtype=np.float32)
        previous = self._previous.get(sequence)
        self._previous[sequence] = frame
        if previous is None:
            return None
        diff = float(np.abs(frame - previous).mean())
        self.total += diff
        self.count += 1
        return diff

    def end(self, sequence: Any = 0) -> None:
        """Sequence ``sequence`` is over: forget its last frame."""
        self._previous.pop(sequence, None)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


def consecutive_differences(frames: Iterable[np.ndarray]) -> list[float]:
    """Mean absolute difference (0-255 scale) between each frame and the next; holds two frames at a time."""
    running = ConsecutiveDifferences()
    return [d for d in map(running.add, frames) if d is not None]
