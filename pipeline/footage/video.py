"""Writing frames to a browser-playable H.264 MP4 (yuv420p, constant frame rate)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pipeline.arguments import CRF
from pipeline.footage.media import FFMPEG_LOG, child_process_options, ffmpeg_cause, ffmpeg_exe, ffmpeg_file
from pipeline.provenance import MP4_COMMENT, atomic_path


class VideoEncoder:
    """An H.264 MP4 being written frame by frame (BGR uint8 of one size) through one ffmpeg process.

    Use as a context manager: the file appears only when every frame was written and the encoder
    finished; on an error nothing is left behind. yuv420p needs even sizes, so odd widths or
    heights are padded by one black pixel. Nothing but the frame being written is held.
    """

    def __init__(self, out: str | Path, fps: float, *, crf: int = 18, stage: str | None = None) -> None:
        CRF.check(crf, f"{out}: x264 crf")
        self.out, self.fps, self.crf, self.count, self.stage = Path(out), fps, crf, 0, stage
        self._proc: subprocess.Popen | None = None
        self._size: tuple[int, int] | None = None
        self._atomic: Any = None
        self._tmp: Path | None = None

    def __enter__(self) -> "VideoEncoder":
        self._atomic = atomic_path(self.out)
        self._tmp = self._atomic.__enter__()
        return self

    def _start(self, width: int, height: int) -> None:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", FFMPEG_LOG, "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{self.fps:.6g}",
               "-i", "-", "-an",
               "-vf", f"pad={width + width % 2}:{height + height % 2}", "-c:v", "libx264", "-preset", "medium",
               "-crf", str(self.crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
        if self.stage:  # the stage that wrote the video, read back by the output rule (provenance.py)
            cmd += ["-metadata", f"comment={MP4_COMMENT}{self.stage}"]
        cmd += ["-f", "mp4", ffmpeg_file(self._tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, **child_process_options())
        self._size = (width, height)

    def write(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if self._proc is None:
            self._start(width, height)
        if (width, height) != self._size:
            raise ValueError(f"{self.out}: frame {self.count} is {width}x{height}, "
                             f"expected {self._size[0]}x{self._size[1]}")
        self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        self.count += 1

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        stderr = ""
        if self._proc is not None:
            try:
                if exc_type is not None:  # the file is dropped anyway: do not wait for ffmpeg to finish it
                    self._proc.kill()
                with contextlib.suppress(BrokenPipeError):
                    self._proc.stdin.close()
                stderr = self._proc.stderr.read().decode(errors="replace")
                self._proc.wait()
            except BaseException as stopped:  # Ctrl-C while ffmpeg finishes the file: drop it, end ffmpeg
                self._proc.kill()
                self._proc.wait()
                self._atomic.__exit__(type(stopped), stopped, stopped.__traceback__)
                raise
        if exc_type is None and self._proc is None:
            exc = ValueError(f"{self.out}: no frames to write")
        elif (exc_type is None or issubclass(exc_type, BrokenPipeError)) and self._proc.returncode != 0:
            # a broken pipe is ffmpeg having quit: its own error says why
            exc_type, exc = None, RuntimeError(f"{self.out}: ffmpeg failed to encode: {ffmpeg_cause(stderr)}")
        if exc_type is None and exc is not None:
            self._atomic.__exit__(type(exc), exc, None)
            raise exc
        return bool(self._atomic.__exit__(exc_type, exc, tb))


def write_video(frames: Iterable[np.ndarray], out: str | Path, fps: float, *, crf: int = 18) -> int:
    """Encode BGR uint8 frames of one size to ``out`` (see :class:`VideoEncoder`); return the frame count."""
    with VideoEncoder(out, fps, crf=crf) as encoder:
        for frame in frames:
            encoder.write(frame)
    return encoder.count


def side_by_side(*panels: np.ndarray, height: int | None = None) -> np.ndarray:
    """Panels scaled to one height and placed left to right (BGR uint8)."""
    import cv2

    height = height or max(p.shape[0] for p in panels)
    scaled = [p if p.shape[0] == height else
              cv2.resize(p, (max(1, round(p.shape[1] * height / p.shape[0])), height),
                         interpolation=cv2.INTER_AREA) for p in panels]
    return np.hstack(scaled)
