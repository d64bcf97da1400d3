"""Finding ffmpeg and reading a video's properties.

A system ffmpeg on PATH wins (users and clusters pick their build); otherwise the binary
that ships inside the ``imageio-ffmpeg`` wheel, so a fresh machine needs no system package.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to use."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a pinned dependency
        raise RuntimeError("no ffmpeg on PATH and imageio-ffmpeg is not installed") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_file(path: str | Path) -> str:
    """``path`` as ffmpeg must be given it to read it as a literal file: ``file:`` and absolute.

    Without the prefix ffmpeg reads ``name:`` as a protocol; an absolute path also keeps a
    leading ``-`` from reading as an option. Non-UTF-8 bytes pass through (subprocess encodes
    the surrogate-escaped name back to its bytes).
    """
    return "file:" + os.path.abspath(os.fspath(path))


def ffmpeg_sequence(folder: str | Path, name: str) -> str:
    """An image-sequence output of ffmpeg (``name`` holds the pattern, e.g. ``%06d.jpg``) in ``folder``,
    with any ``%`` of the folder's own name escaped so that only ``name`` is read as a pattern."""
    return ffmpeg_file(folder).replace("%", "%%") + "/" + name


# ``-loglevel level+...`` prefixes each line with its level ("[tag @ 0x..] [error] message"), so that
# ffmpeg_cause finds the first error among other lines; errors only, where nothing else is read.
FFMPEG_LOG = "level+error"
_LEVEL_LINE = re.compile(r"^(?:\[[^\]]*\] )*\[(?:error|fatal|panic)\] (?P<message>.*\S)")


def ffmpeg_cause(stderr: str) -> str:
    """The line of ffmpeg's log that says why it failed: the first error-level line of a log written with
    level prefixes (``-loglevel level+...``), the last line of one without; a full disk always reads as such."""
    if "No space left on device" in stderr:
        return "No space left on device"
    return _first_error(stderr) or _last_line(stderr)


def _first_error(log: str) -> str | None:
    found = next(filter(None, (_LEVEL_LINE.match(line.strip()) for line in log.splitlines())), None)
    return found.group("message") if found else None


def _prctl() -> Any:
    """libc's prctl, looked up in the parent: a forked child must not import or load libraries."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(parent: int | None = None, prctl: Any = None) -> None:
    """Have the kernel SIGKILL this process when its parent dies, even by SIGKILL (Linux).

    Called in a child: as ``preexec_fn`` of a subprocess (see :func:`child_process_options`) or
    at the start of a data-loading worker. ``parent``, the pid that started us, closes the race
    of a parent that died before the request was made. Elsewhere than on Linux it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    (prctl or _prctl())(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def child_process_options() -> dict[str, Any]:
    """Keyword arguments for ``subprocess.run``/``Popen`` so the child (ffmpeg) ends with this process."""
    if not sys.platform.startswith("linux"):
        return {}
    return {"preexec_fn": partial(die_with_parent, os.getpid(), _prctl())}


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself; width and height as displayed (after rotation)."""

    path: str
    width: int
    height: int
    fps: float
    rotation: int
    frame_count: int | None  # None when not counted (see probe_video)
    duration: float
    codec: str
    pix_fmt: str

    def as_dict(self) -> dict:
        return asdict(self)


def read_header(path: str | Path) -> str:
    """What ``ffmpeg -i`` says about a file (its stderr); errors name a missing file or a folder.

    One call serves :func:`probe_video` and :func:`pipeline.footage.audio.probe_audio` alike
    (pass it as their ``header``): each ffmpeg start costs tens of milliseconds.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a video file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "level+info", "-i", ffmpeg_file(path)]
    return subprocess.run(command, capture_output=True, text=True, errors="replace", **child_process_options()).stderr


def probe_video(path: str | Path, count_frames: bool = True, *, header: str | None = None) -> VideoInfo:
    """Read size, frame rate, rotation and frame count; errors name the file and the problem.

    Counting reads the whole file once more (no decoding); extraction skips it and counts the
    frames it wrote instead.

    Parses ``ffmpeg -i`` (ffprobe is not shipped by imageio-ffmpeg). ``rotation`` is the
    display-matrix angle ffmpeg reports (counter-clockwise degrees); width and height are
    the displayed ones, which is what ffmpeg's autorotation hands us when decoding. ``header``:
    :func:`read_header`'s text of this file, when the caller already has it.
    """
    path = Path(path)
    if header is None:
        header = read_header(path)
    stream = _VIDEO_STREAM.search(header)
    if stream is None:
        # without an output ffmpeg -i always ends in an error that says so: not the file's fault
        reason = _first_error("\n".join(line for line in header.splitlines() if _NO_OUTPUT not in line))
        reason = reason or "no video stream"
        raise ValueError(f"{path}: not a readable video ({reason})")
    codec, width, height = stream.group("codec"), int(stream.group("w")), int(stream.group("h"))
    rate = _FPS.search(stream.group(0)) or _TBR.search(stream.group(0))
    if rate is None:
        raise ValueError(f"{path}: video stream has no frame rate")
    rotation_match = _ROTATION.search(header)
    rotation = int(round(float(rotation_match.group(1)))) % 360 if rotation_match else 0
    if rotation in (90, 270):
        width, height = height, width
    duration_match = _DURATION.search(header)
    duration = 0.0
    if duration_match:
        h, m, sec = duration_match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(sec)
    if not count_frames:
        return VideoInfo(str(path), width, height, float(rate.group(1)), rotation, None, duration, codec,
                         stream.group("pix"))
    counted = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_file(path), "-map", "0:v:0",
                              "-c", "copy", "-f", "null", "-"], capture_output=True, text=True, errors="replace",
                             **child_process_options())
    frames = _FRAME_COUNT.findall(counted.stderr)
    frame_count = int(frames[-1]) if frames else 0
    if frame_count == 0:
        raise ValueError(f"{path}: video has no frames")
    return VideoInfo(str(path), width, height, float(rate.group(1)), rotation, frame_count, duration, codec,
                     stream.group("pix"))


_VIDEO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+)[^,\n]*, (?P<pix>\w+)"
                           r".*?, (?P<w>\d{2,5})x(?P<h>\d{2,5})[^\n]*")
_FPS = re.compile(r"([\d.]+) fps")
_TBR = re.compile(r"([\d.]+) tbr")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_FRAME_COUNT = re.compile(r"frame=\s*(\d+)")
_NO_OUTPUT = "At least one output file must be specified"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
