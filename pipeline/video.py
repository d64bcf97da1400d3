"""Writing frames to a browser-playable H.264 MP4 (yuv420p, constant frame rate)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.media import ffmpeg_exe
from pipeline.provenance import atomic_path


def write_video(frames: Iterable[np.ndarray], out: str | Path, fps: float, *, crf: int = 18) -> int:
    """Encode BGR uint8 frames of one size to ``out``; return the frame count.

    yuv420p needs even sizes, so odd widths or heights are padded by one black pixel.
    The file appears only when the encoder finished.
    """
    out = Path(out)
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError(f"{out}: no frames to write") from None
    height, width = first.shape[:2]
    pad_w, pad_h = width % 2, height % 2
    count = 0
    with atomic_path(out) as tmp:
        cmd = [ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{width}x{height}", "-r", f"{fps:.6g}", "-i", "-", "-an",
               "-vf", f"pad={width + pad_w}:{height + pad_h}", "-c:v", "libx264", "-preset", "medium",
               "-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for frame in _chain(first, iterator):
                if frame.shape[:2] != (height, width):
                    raise ValueError(f"{out}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"expected {width}x{height}")
                proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
                count += 1
        finally:
            proc.stdin.close()
            stderr = proc.stderr.read().decode(errors="replace")
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"{out}: ffmpeg failed to encode: {stderr.strip()[-500:]}")
    return count


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest


def side_by_side(*panels: np.ndarray, height: int | None = None) -> np.ndarray:
    """Panels scaled to one height and placed left to right (BGR uint8)."""
    import cv2

    height = height or max(p.shape[0] for p in panels)
    scaled = [p if p.shape[0] == height else
              cv2.resize(p, (max(1, round(p.shape[1] * height / p.shape[0])), height),
                         interpolation=cv2.INTER_AREA) for p in panels]
    return np.hstack(scaled)
