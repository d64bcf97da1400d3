"""The source's soundtrack: what extraction records about it, and carrying it into transfer's MP4s.

Extraction records, in ``meta.json``, whether the source has an audio stream, when its first
audio sample and its first video frame play (seconds after the container's start, the timeline
that ffmpeg's ``-ss`` seeks in), the video's time base and the source time of the first
extracted frame. Frame ``i`` of the extracted folder then plays at ``first_frame_time + i / fps``,
so the audio of any run of extracted frames is a span of the source: transfer cuts it and muxes
it (AAC, ``+faststart``) beside the video it encoded, frame for frame.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from pipeline.footage.media import (FFMPEG_LOG, child_process_options, ffmpeg_cause, ffmpeg_exe, ffmpeg_file,
                                    read_header)
from pipeline.provenance import atomic_path

_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Audio: (?P<codec>\w+)[^,\n]*, (?P<rate>\d+) Hz, (?P<layout>[^,\n]+)")
_CONTAINER_START = re.compile(r"Duration: [^,\n]+, start: (-?[\d.]+)")
_TIME_BASE = re.compile(r"Stream #\d+:\d+.*?: Video: .*?([\d.]+k?) tbn")
_PTS_TIME = re.compile(r"pts_time:\s*(-?[\d.]+)")


def _first_pts(path: Path, stream: str) -> float | None:
    """Seconds after the container's start at which the first decoded frame of ``stream`` (v or a) plays."""
    show = "showinfo" if stream == "v" else "ashowinfo"
    flag = "-vf" if stream == "v" else "-af"
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_file(path), "-map",
                             f"0:{stream}:0", f"-frames:{stream}", "1", flag, show, "-f", "null", "-"],
                            capture_output=True, text=True, errors="replace", **child_process_options())
    return first_pts_time(result.stderr)


def first_pts_time(log: str) -> float | None:
    """The time of the first frame an ffmpeg (a)showinfo filter logged in ``log``, if any."""
    found = _PTS_TIME.search(log)
    return float(found.group(1)) if found else None


def probe_audio(path: str | Path, *, header: str | None = None, video_start: float | None = None) -> dict[str, Any]:
    """What extraction records about a video's timing and soundtrack (see the module's docstring).

    ``audio`` is None when the file has no audio stream; otherwise its codec, sample rate, channel
    layout and ``start`` (seconds after the container's start). ``header`` (``media.read_header``'s
    text) and ``video_start`` (when the first video frame plays) spare the ffmpeg runs that would
    read them, for a caller that has them already: extraction reads the second off its own decoding.
    """
    path = Path(path)
    if header is None:
        header = read_header(path)
    start = _CONTAINER_START.search(header)
    time_base = _TIME_BASE.search(header)
    tbn = time_base.group(1) if time_base else None
    if tbn is not None and tbn.endswith("k"):
        tbn = str(int(float(tbn[:-1]) * 1000))
    if video_start is None:
        video_start = _first_pts(path, "v")
    audio_match = _AUDIO_STREAM.search(header)
    audio = None
    if audio_match:
        audio = {"codec": audio_match.group("codec"), "sample_rate": int(audio_match.group("rate")),
                 "channels": audio_match.group("layout").strip(), "start": _first_pts(path, "a")}
        if audio["start"] is None:  # an audio stream that decodes to nothing is no soundtrack
            audio = None
    return {"container_start": float(start.group(1)) if start else 0.0,
            "time_base": f"1/{tbn}" if tbn else None,
            "video_start": video_start or 0.0, "audio": audio}


def frame_span(meta: dict[str, Any], first_frame: int, n_frames: int) -> tuple[float, float]:
    """(start, duration) in the source's timeline of ``n_frames`` extracted frames from ``first_frame`` on."""
    fps = float(meta["fps"])
    return float(meta.get("first_frame_time", 0.0)) + first_frame / fps, n_frames / fps


def add_soundtrack(video: str | Path, meta: dict[str, Any], first_frame: int, n_frames: int,
                   *, bitrate: str = "192k") -> bool:
    """Mux the source's audio under ``n_frames`` extracted frames from ``first_frame`` into ``video``, in place.

    ``meta`` is the source frames' ``meta.json`` (``edn extract``). The audio is cut from the
    source at the frames' span and starts with the video's first frame; where the source has no
    sound for part of the span, silence fills it, so the audio lasts as long as the video. Returns
    False (and leaves ``video`` silent) when the source has no audio stream. The video stream is
    copied, not re-encoded.
    """
    video = Path(video)
    if not meta.get("audio"):
        return False
    source = Path(meta["source"])
    if not source.is_file():
        raise FileNotFoundError(f"{source}: source video not found (named by its frames' meta.json), "
                                "needed for the soundtrack; pass --no-audio for a silent video")
    start, duration = frame_span(meta, first_frame, n_frames)
    with atomic_path(video) as tmp:
        # Input -ss with decoding is sample-exact; aresample's first_pts=0 pads with silence when
        # the audio starts after the span does, apad when it ends before; -t ends it with the video.
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", FFMPEG_LOG, "-y", "-i", ffmpeg_file(video),
               "-ss", f"{start:.6f}", "-i", ffmpeg_file(source), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
               "-af", "aresample=async=1:first_pts=0,apad", "-t", f"{duration:.6f}", "-c:a", "aac",
               "-b:a", bitrate, "-movflags", "+faststart", "-f", "mp4", ffmpeg_file(tmp)]
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **child_process_options())
        if result.returncode != 0:
            raise RuntimeError(f"{video}: ffmpeg failed to add the soundtrack of {source}: "
                               f"{ffmpeg_cause(result.stderr)}")
    return True
