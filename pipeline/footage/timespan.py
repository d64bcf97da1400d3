"""Trimming: the part of a video to use, given as seconds or ``[hh:]mm:ss[.ms]``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.footage.media import VideoInfo

# Seconds ("12", "12.5") or [hh:]mm:ss[.ms] ("0:12", "01:40.5", "1:02:03"); the sheet's schema uses it too.
TIME_PATTERN = r"(\d+(\.\d+)?|(\d+:)?[0-5]?\d:[0-5]\d(\.\d+)?)"
_TIME = re.compile(rf"^{TIME_PATTERN}$")


def parse_time(text: str | float | int) -> float:
    """Seconds from ``12.5``, ``"12.5"``, ``"0:12.5"`` or ``"1:00:12.5"``; a clear error otherwise."""
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"time {text} is negative")
        return float(text)
    text = text.strip()
    if not _TIME.match(text):
        raise ValueError(f"time {text!r} is not seconds or [hh:]mm:ss[.ms]")
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def check_span(duration: float, start: float | None, end: float | None, where: str) -> None:
    """Fail, naming ``where``, unless start < end and both lie within the video's ``duration``.

    A duration of 0 means the container gave none; only start < end is checked then.
    """
    if end is not None and (start or 0.0) >= end:
        raise ValueError(f"{where}: start {start or 0.0:g} s must come before end {end:g} s")
    if duration <= 0:
        return
    if start is not None and start >= duration:
        raise ValueError(f"{where}: start {start:g} s is not before the video's end ({duration:.3f} s)")
    if end is not None and end > duration + 1e-3:
        raise ValueError(f"{where}: end {end:g} s lies past the video's end ({duration:.3f} s)")


def check_span_frames(info: VideoInfo, start: float | None, end: float | None, fps: float | None) -> int:
    """The number of frames extraction will write for a trim (``start``/``end`` in seconds, None: the video's
    own ends) at ``fps`` (None: the video's); an error naming the video and its duration when the span is
    shorter than one frame of the video, so that it may hold none (extraction's first frame is the first
    source frame inside the span)."""
    if info.duration <= 0:
        return 0  # no duration in the header: extraction counts what it decodes
    first, last = start or 0.0, min(end, info.duration) if end is not None else info.duration
    frame = 1.0 / info.fps
    if last - first < frame:
        raise ValueError(f"{info.path}: the trim from {first:g} s to {last:g} s is shorter than one frame: the video "
                         f"lasts {info.duration:.3f} s at {info.fps:.4g} fps (a frame every {frame:.4f} s), so it may "
                         f"hold none; give a span of at least {frame:.4f} s")
    return max(1, round((last - first) * (fps or info.fps)))
