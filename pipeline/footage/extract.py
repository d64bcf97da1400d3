"""Stage 1: frames out of a video with ffmpeg, at a working height and a constant frame rate.

JPEG at quality 2 is the default: on the demo clip ffmpeg wrote 512-px JPEG at ~256 frames/s
against ~44 for PNG, at a fifth of the disk, and the GAN never sees the difference.
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.footage.audio import first_pts_time, probe_audio
from pipeline.footage.commands import FRAME_HEIGHT, FRAME_RATE
from pipeline.footage.media import (VideoInfo, child_process_options, ffmpeg_cause, ffmpeg_exe, ffmpeg_file,
                                    ffmpeg_sequence, probe_video, read_header)
from pipeline.footage.timespan import check_span, check_span_frames
from pipeline.provenance import atomic_dir, provenance, write_json

log = logging.getLogger(__name__)
FRAME_FILES = r"\d{6}\.(jpg|png)|meta\.json"  # everything extract_frames writes

# Stand-ins for the source and the frames in the graph ffmpeg-python builds; the real paths replace them in
# its command line (ffmpeg-python encodes its arguments as UTF-8, and a file name need not be).
_SOURCE, _FRAMES = "<source>", "<frames>"

# Clockwise rotation -> ffmpeg transpose filters.
_ROTATE_FILTERS = {0: [], 90: [("transpose", "clock")], 180: [("hflip", None), ("vflip", None)],
                   270: [("transpose", "cclock")]}


def displayed_size(info: VideoInfo, rotation: int | None) -> tuple[int, int]:
    """Width and height of the frame as extraction sees it before cropping: ``rotation`` (clockwise degrees)
    replaces the file's own rotation when given."""
    if rotation is None:
        return info.width, info.height
    stored_w, stored_h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
    return (stored_h, stored_w) if rotation in (90, 270) else (stored_w, stored_h)


def check_crop(info: VideoInfo, rotation: int | None, crop: tuple[int, int, int, int]) -> None:
    """Fail when the x, y, w, h ``crop`` box is not inside the frame as displayed after ``rotation``.

    The workflow calls this for every sheet row at start, before any stage runs.
    """
    disp_w, disp_h = displayed_size(info, rotation)
    x, y, w, h = crop
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > disp_w or y + h > disp_h:
        raise ValueError(f"{info.path}: crop box {tuple(crop)} lies outside the {disp_w}x{disp_h} frame")


def _decoding(info: Any, out_fps: float, height: int, rotation: int | None, crop: tuple[int, int, int, int] | None,
              start: float | None, end: float | None) -> tuple[Any, Any]:
    """The ffmpeg input (trimmed to the span, the file's rotation replaced when ``rotation`` is given) and
    its video stream resampled to ``out_fps``, rotated, cropped and scaled to ``height``."""
    import ffmpeg

    input_args: dict[str, Any] = {}
    if start:
        input_args["ss"] = f"{start:.6f}"  # an input seek, then decoding: the first frame at or after start
    if end is not None:
        input_args["t"] = f"{end - (start or 0.0):.6f}"
    if rotation is not None:
        if rotation not in _ROTATE_FILTERS:
            raise ValueError(f"extract: rotation must be 0, 90, 180 or 270, got {rotation}")
        input_args["noautorotate"] = None
    source = ffmpeg.input(_SOURCE, **input_args)
    stream = source.video
    # The fps filter resamples to a constant rate, so frame i is at time i / fps.
    stream = stream.filter("fps", fps=out_fps)
    if rotation is not None:
        for name, arg in _ROTATE_FILTERS[rotation]:
            stream = stream.filter(name, arg) if arg else stream.filter(name)
    if crop is not None:
        check_crop(info, rotation, crop)
        stream = stream.crop(*crop)
    stream = stream.filter("scale", -2, height, flags="area")
    return source, stream


def _image_output(image_format: str, max_frames: int | None) -> dict[str, Any]:
    """ffmpeg's options for the numbered images of ``image_format``."""
    output_args: dict[str, Any] = {"start_number": 0}
    if image_format == "jpg":
        # Huffman tables: ffmpeg's default ones, not the per-image optimal ones (a second pass
        # over each image): the same pixels, ~5% less CPU, ~2% larger files.
        output_args["q:v"] = 2
        output_args["huffman"] = "default"
    elif image_format == "png":
        output_args["compression_level"] = 1
    else:
        raise ValueError(f"extract: unknown image format {image_format!r}")
    if max_frames is not None:
        output_args["frames:v"] = max_frames
    return output_args


def extract_frames(video: str | Path, out_dir: str | Path, *, fps: float | None = None,
                   height: int = 512, rotation: int | None = None,
                   crop: tuple[int, int, int, int] | None = None, image_format: str = "jpg",
                   max_frames: int | None = None, start: float | None = None,
                   end: float | None = None, damaged: str = "fail") -> dict[str, Any]:
    """Write ``out_dir/000000.jpg ...`` and ``out_dir/meta.json``; return the metadata.

    ``start`` and ``end`` (seconds of the source) trim it: frames, metadata and the soundtrack a
    transfer takes from ``meta.json`` follow the span.

    ``rotation`` (clockwise degrees) replaces the file's own rotation metadata when given;
    otherwise ffmpeg applies the display matrix. ``crop`` is x, y, w, h in displayed source
    pixels and is applied before scaling. The folder appears only when complete.
    A video whose decoder reports errors fails naming the first bad frame (``damaged="keep"``: a warning).
    """
    import ffmpeg

    video, out_dir = Path(video), Path(out_dir)
    header = read_header(video)  # one ffmpeg -i for the video's and the soundtrack's properties
    info = probe_video(video, count_frames=False, header=header)
    FRAME_HEIGHT.check(height, "extract: height")
    if fps is not None:
        FRAME_RATE.check(fps, "extract: fps")
    if max_frames is not None and max_frames <= 0:
        raise ValueError(f"extract: max_frames must be positive, got {max_frames}")
    if damaged not in DAMAGED_CHOICES:
        raise ValueError(f"extract: damaged must be one of {DAMAGED_CHOICES}, got {damaged!r}")
    out_fps = float(fps or info.fps)
    check_span(info.duration, start, end, str(video))
    check_span_frames(info, start, end, fps)

    source, stream = _decoding(info, out_fps, height, rotation, crop, start, end)

    with atomic_dir(out_dir, "extract", FRAME_FILES, inputs=(video,)) as tmp:
        cmd = stream.output(_FRAMES, **_image_output(image_format, max_frames))
        if not start:
            # Without a seek this run decodes the source's first frame anyway: a second output logs
            # its time (meta's video_start), sharing the decoder, instead of an ffmpeg run of its own.
            # The trim matters: without it showinfo checksums every frame (+25% CPU on the demo clips).
            first = source.video.filter("trim", end_frame=1).filter("showinfo")
            cmd = ffmpeg.merge_outputs(cmd, first.output("-", format="null", **{"frames:v": 1}))
        # level+verbose: showinfo (info), error levels (ffmpeg_cause), decoding and fps filter counts (verbose)
        cmd = cmd.global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+verbose")
        # Our own subprocess call (not ffmpeg-python's run): ffmpeg must die with this process.
        paths = {_SOURCE: ffmpeg_file(video), _FRAMES: ffmpeg_sequence(tmp, f"%06d.{image_format}")}
        args = [paths.get(arg, arg) for arg in cmd.compile(cmd=ffmpeg_exe())]
        done = subprocess.run(args, capture_output=True, **child_process_options())
        log_text = done.stderr.decode(errors="replace")
        if done.returncode != 0:
            raise ValueError(f"{video}: ffmpeg failed to extract frames: {ffmpeg_cause(log_text)}")
        frames = sorted(tmp.glob(f"*.{image_format}"))
        if not frames:
            raise ValueError(f"{video}: video has no frames (ffmpeg decoded none)")
        span = (end if end is not None else info.duration) - (start or 0.0)
        _check_frame_count(video, len(frames), span if info.duration > 0 or end is not None else 0.0, out_fps,
                           max_frames)
        decode_errors, resampling = _check_decoding(video, info, read_decoding(log_text), start, end, out_fps,
                                                    damaged)  # after the count: a cut-off file is named as such
        timing = probe_audio(video, header=header,
                             video_start=None if start else first_pts_time(log_text))
        out_w, out_h = image_size(frames[0])
        params = {"fps": fps, "height": height, "rotation": rotation, "crop": crop,
                  "format": image_format, "max_frames": max_frames, "start": start, "end": end,
                  "damaged": damaged}
        meta = {
            "source": str(video), "source_width": info.width, "source_height": info.height,
            "source_fps": info.fps, "source_rotation": info.rotation,
            "source_duration": info.duration, "width": out_w, "height": out_h, "fps": out_fps,
            "frame_count": len(frames), "format": image_format, "start": start, "end": end,
            # the source time of frame 0: frame i plays at first_frame_time + i / fps (pipeline.footage.audio). The
            # fps filter's grid starts at the seek point (the container's start without one), repeating
            # the first frame over any delay of the video stream (tested).
            "first_frame_time": start or 0.0, **timing,
            "decode_errors": decode_errors, "resampling": resampling,
            "provenance": provenance("extract", params),
        }
        write_json(tmp / "meta.json", meta)
    log.info("%s: %d frames at %.3g fps, %dx%d -> %s", video, meta["frame_count"], out_fps, out_w,
             out_h, out_dir)
    return meta


DAMAGED_CHOICES = ("fail", "keep")
_DECODE_ERRORS = re.compile(r"Input stream #\d+:\d+ \(video\):.*?(\d+) decode errors")
_FPS_COUNTS = re.compile(r"\[Parsed_fps_\d+ @ [^\]]*\] \[verbose\] (\d+) frames in, (\d+) frames out; "
                         r"(\d+) frames dropped, (\d+) frames duplicated")
# An error-level line of a decoder ("[h264 @ 0x..] [error] error while decoding MB 4 2"), not of the demuxer,
# a filter or ffmpeg's own threads (those tags hold '/', '#' or ':', or have no '@').
_DECODER_ERROR = re.compile(r"^\[(?P<codec>[\w-]+) @ 0x[0-9a-f]+\] \[error\] (?P<message>.*\S)")


@dataclass(frozen=True)
class Decoding:
    """What ffmpeg's log of one extraction says about decoding and the constant-rate resampling."""

    errors: int  # decoder error lines and undecodable packets
    first_error: str | None
    frames_in: int | None  # into the fps filter (None: no counts in the log)
    frames_out: int | None
    dropped: int
    duplicated: int


def read_decoding(log_text: str) -> Decoding:
    """Decoder errors and the fps filter's counts out of a ``-loglevel level+verbose`` log."""
    lines = [line.strip() for line in log_text.splitlines()]
    decoder_errors = [m.group("message") for m in map(_DECODER_ERROR.match, lines) if m]
    undecodable = sum(int(m.group(1)) for m in map(_DECODE_ERRORS.search, lines) if m)
    # The fps filter logs its counts when each graph closes: an empty one at set-up, the real one last.
    counts = [tuple(map(int, m.groups())) for m in map(_FPS_COUNTS.search, lines) if m]
    frames_in, frames_out, dropped, duplicated = max(counts, default=(None, None, 0, 0),
                                                     key=lambda c: c[0] or 0)
    return Decoding(max(len(decoder_errors), undecodable), decoder_errors[0] if decoder_errors else None,
                    frames_in, frames_out, dropped, duplicated)


def first_bad_frame(video: Path, start: float | None, end: float | None) -> tuple[int, float] | None:
    """The first source frame (index, seconds) between ``start`` and ``end`` that does not decode: a second
    decode, one thread and ``-err_detect explode`` (a damaged frame is dropped, not concealed), lists each
    frame's time in order (``framecrc``); the first gap in them is the frame. None when that decode loses
    no frame."""
    seek = (["-ss", f"{start:.6f}"] if start else []) + (["-t", f"{end - (start or 0.0):.6f}"] if end else [])
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "quiet", "-threads", "1", "-err_detect",
               "explode", *seek, "-i", ffmpeg_file(video), "-map", "0:v:0", "-f", "framecrc", "-"]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", **child_process_options())
    time_base, expected, duration = 0.0, None, 1
    for line in done.stdout.splitlines():
        if line.startswith("#tb 0:"):
            numerator, denominator = line.split(":", 1)[1].split("/")
            time_base = int(numerator) / int(denominator)
        elif line and not line.startswith("#"):
            _, _, pts, duration = (int(v) for v in line.split(",")[:4])
            if expected is not None and pts > expected + duration / 2:
                break  # the frame at `expected` did not decode
            expected = pts + duration
    else:
        return None
    seconds = (start or 0.0) + expected * time_base
    return round(seconds / (max(duration, 1) * time_base)), seconds


def _check_decoding(video: Path, info: VideoInfo, decoding: Decoding, start: float | None, end: float | None,
                    out_fps: float, damaged: str) -> tuple[int, dict[str, Any] | None]:
    """Fail on a damaged video (``damaged="fail"``), naming it, where the damage starts and ffmpeg's
    message; with ``"keep"`` warn instead. Returns the error count and the resampling counts for meta.json."""
    if decoding.errors:
        where = first_bad_frame(video, start, end)
        at = f"the first at source frame {where[0]} ({where[1]:.3f} s)" if where else "none lost a whole frame"
        what = (f"{video}: damaged video: {decoding.errors} decoding errors, {at}: "
                f"{(decoding.first_error or 'undecodable packets').rstrip('.')}")
        if damaged == "fail":
            raise ValueError(f"{what}; the frames ffmpeg would conceal or repeat there are not the footage: "
                             "re-download or re-encode the file, trim the damaged part away (start/end), or "
                             "extract it anyway with --damaged keep (config extract: damaged: keep)")
        log.warning("%s; extracted anyway (--damaged keep): the frames there are concealed or repeated", what)
    return decoding.errors, _report_resampling(video, decoding, info, out_fps)


def _report_resampling(video: Path, decoding: Decoding, info: VideoInfo, out_fps: float) -> dict[str, Any] | None:
    """Say how many frames the constant-rate resampling dropped and repeated, and why; the counts go to
    meta.json. At the source's own rate a clean constant-rate video loses and repeats none: any there
    come from uneven frame times (a variable frame rate, e.g. a phone's) or from frames that did not decode."""
    if decoding.frames_in is None:
        return None
    counts = {"frames_in": decoding.frames_in, "frames_out": decoding.frames_out,
              "dropped": decoding.dropped, "duplicated": decoding.duplicated}
    if not (decoding.dropped or decoding.duplicated):
        return counts
    changes = f"{decoding.dropped} of {decoding.frames_in} frames dropped and {decoding.duplicated} repeated"
    if abs(out_fps - info.fps) > 1e-3 * info.fps and not (decoding.dropped and decoding.duplicated):
        log.info("%s: %s to go from %.4g to %.4g fps", video, changes, info.fps, out_fps)
        return counts
    cause = ("frames that did not decode" if decoding.errors else
             f"uneven frame times: a variable frame rate ({info.fps:.4g} fps on average)")
    log.warning("%s: %s to hold a constant %.4g fps, because of %s; to keep every frame, give the sheet's fps "
                "the rate the camera filmed at", video, changes, out_fps, cause)
    return counts


def _check_frame_count(video: Path, decoded: int, duration: float, fps: float, max_frames: int | None) -> None:
    """Fail when far fewer frames decode than the container's duration promises (a cut-off file).

    A few frames short is normal (audio longer than video, rounding of the fps filter) and only
    logged; more than 5% (at least 3 frames) short is an error naming both numbers.
    """
    if duration <= 0:
        return  # the container gives no duration to compare with
    expected = round(duration * fps)
    if max_frames is not None:
        expected = min(expected, max_frames)
    short = expected - decoded
    if short > max(2, round(0.05 * expected)):
        raise ValueError(f"{video}: only {decoded} of the {expected} frames its duration ({duration:.2f} s at "
                         f"{fps:.3g} fps) promises could be decoded; the file is truncated or damaged")
    if short > 0:
        log.warning("%s: %d frames decoded, %d expected from the duration", video, decoded, expected)


def image_size(path: Path) -> tuple[int, int]:
    """Width and height of a JPEG or PNG from its header, without decoding it (or importing cv2)."""
    with open(path, "rb") as f:
        data = f.read(65536)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    pos = 2 if data[:2] == b"\xff\xd8" else len(data)
    while pos + 9 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            return int.from_bytes(data[pos + 7:pos + 9], "big"), int.from_bytes(data[pos + 5:pos + 7], "big")
        pos += 2 + length
    from pipeline.footage.images import read_image  # not a header we know: decode it

    image = read_image(path)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image.shape[1], image.shape[0]


def list_frames(frames_dir: str | Path) -> list[Path]:
    """The frame images of an extracted folder in order; errors name the folder."""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"{frames_dir}: frames folder not found")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix in (".jpg", ".png") and p.stem.isdigit())
    if not frames:
        raise ValueError(f"{frames_dir}: no frame images (000000.jpg ...) in folder")
    return frames


def read_frames_meta(frames_dir: str | Path) -> dict[str, Any]:
    """The ``meta.json`` written by :func:`extract_frames`."""
    import json

    path = Path(frames_dir) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: frames metadata not found (run `edn extract` first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from exc


def missing_frames(frames_dir: str | Path) -> list[Path]:
    """The frame images that a folder written by :func:`extract_frames` lacks: its ``meta.json`` records
    ``frame_count`` images numbered from 0; ``[meta.json]`` when that file is missing or unreadable."""
    frames_dir = Path(frames_dir)
    try:
        meta = read_frames_meta(frames_dir)
        count, image_format = int(meta["frame_count"]), str(meta["format"])
    except (OSError, ValueError, KeyError, TypeError):
        return [frames_dir / "meta.json"]
    return [frames_dir / f"{i:06d}.{image_format}" for i in range(count)
            if not (frames_dir / f"{i:06d}.{image_format}").is_file()]


def check_frames_complete(frames_dir: str | Path) -> None:
    """Fail, naming the first missing file, when a folder written by :func:`extract_frames` (its ``meta.json``
    names the stage) lacks a frame its ``meta.json`` records; folders made otherwise are not checked."""
    try:
        made_by = read_frames_meta(frames_dir).get("provenance", {}).get("stage")
    except (OSError, ValueError, AttributeError):
        made_by = None  # the caller reports an unreadable meta.json its own way
    if made_by != "extract":
        return
    missing = missing_frames(frames_dir)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ValueError(f"{missing[0]}: missing from the extracted frames{more}; delete {frames_dir} and extract "
                         "it again (a rerun of the workflow does so by itself)")


def cli(args: argparse.Namespace) -> int:
    extract_frames(args.video, args.out_dir, fps=args.fps, height=args.height, rotation=args.rotation,
                   crop=args.crop, image_format=args.format, max_frames=args.max_frames,
                   start=args.start, end=args.end, damaged=args.damaged)
    return 0
