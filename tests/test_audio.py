"""Soundtrack and trimming: a synthetic clip whose picture turns white and whose tone starts at one known frame."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.footage.audio import add_soundtrack, frame_span, probe_audio
from pipeline.footage.extract import extract_frames, list_frames, read_frames_meta
from pipeline.footage.media import ffmpeg_exe, probe_video
from pipeline.footage.timespan import check_span, parse_time
from pipeline.footage.video import write_video

FPS = 25.0
EVENT_FRAME = 60  # at 2.4 s the picture turns from black to white and a 440 Hz tone starts
RATE = 16000


def make_tone_clip(path: Path, *, audio: bool = True, seconds: float = 4.0) -> Path:
    """A 64x48 H.264 clip at 25 fps: black, then white from EVENT_FRAME on; silence, then a tone from there."""
    event = EVENT_FRAME / FPS
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           f"nullsrc=s=64x48:r={FPS:g}:d={seconds},geq=lum='if(lt(T,{event}),16,235)':cb=128:cr=128"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"aevalsrc='if(lt(t,{event}),0,0.5*sin(2*PI*440*t))':s={RATE}:d={seconds}",
                "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture(scope="module")
def tone_clip(tmp_path_factory) -> Path:
    return make_tone_clip(tmp_path_factory.mktemp("tone") / "tone.mp4")


def decoded_audio(video: Path) -> np.ndarray:
    """The video's first audio stream as mono float samples at RATE (playback order, edit lists applied)."""
    raw = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video), "-map", "0:a:0",
                          "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.int16).astype(np.float32) / 32768


def tone_onset(samples: np.ndarray) -> float:
    """Seconds from the first sample to the first loud one (the tone's start)."""
    loud = np.flatnonzero(np.abs(samples) > 0.25)
    assert loud.size, "no tone in the audio"
    return loud[0] / RATE


def first_white_frame(frames_dir: Path) -> int:
    import cv2

    bright = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).mean() for p in list_frames(frames_dir)]
    return int(np.argmax(np.array(bright) > 128))


def test_parse_time_reads_seconds_and_clock_times():
    assert parse_time("12") == 12.0 and parse_time("12.5") == 12.5 and parse_time(3) == 3.0
    assert parse_time("0:12") == 12.0 and parse_time("01:40.5") == 100.5 and parse_time("1:00:02") == 3602.0
    for bad in ("", "1:2:3:4", "abc", "1:75", "-3"):
        with pytest.raises(ValueError, match="not seconds"):
            parse_time(bad)


def test_check_span_names_the_problem():
    check_span(10.0, 1.0, 9.0, "v.mp4")
    check_span(10.0, None, None, "v.mp4")
    with pytest.raises(ValueError, match="v.mp4: start 5 s must come before end 4 s"):
        check_span(10.0, 5.0, 4.0, "v.mp4")
    with pytest.raises(ValueError, match="v.mp4: end 11 s lies past the video's end"):
        check_span(10.0, None, 11.0, "v.mp4")
    with pytest.raises(ValueError, match="v.mp4: start 10 s is not before"):
        check_span(10.0, 10.0, None, "v.mp4")
    with pytest.raises(ValueError, match="v.mp4: start 0 s must come before end 0 s"):
        check_span(0.0, None, 0.0, "v.mp4")  # no duration known: the order is still checked


def test_extraction_records_the_soundtrack_and_time_base(tmp_path, tone_clip):
    meta = extract_frames(tone_clip, tmp_path / "frames", height=48)
    assert meta["audio"]["codec"] == "aac" and meta["audio"]["sample_rate"] == RATE
    assert meta["audio"]["start"] == pytest.approx(0.0, abs=1e-3)
    assert meta["time_base"] == "1/12800"  # libx264 in MP4 at 25 fps
    assert meta["first_frame_time"] == pytest.approx(0.0) and meta["start"] is None
    assert read_frames_meta(tmp_path / "frames") == json.loads((tmp_path / "frames" / "meta.json").read_text())
    assert first_white_frame(tmp_path / "frames") == EVENT_FRAME


def test_trimmed_frames_and_soundtrack_follow_the_span(tmp_path, tone_clip):
    """Frames from 1 s to 3.5 s; a video of them gets the audio of exactly that span."""
    assert main(["extract", str(tone_clip), str(tmp_path / "frames"), "--height", "48",
                 "--start", "0:01", "--end", "3.5"]) == 0
    meta = read_frames_meta(tmp_path / "frames")
    assert (meta["start"], meta["end"], meta["first_frame_time"]) == (1.0, 3.5, 1.0)
    assert abs(meta["frame_count"] - 2.5 * FPS) <= 1
    assert first_white_frame(tmp_path / "frames") == EVENT_FRAME - 25  # the picture follows the trim

    import cv2

    # a run of frames from the middle: frames 5.. of the trimmed folder, like a transfer of them
    first, frames = 5, list_frames(tmp_path / "frames")[5:]
    video = tmp_path / "out.mp4"
    write_video((cv2.imread(str(p)) for p in frames), video, FPS)
    assert frame_span(meta, first, len(frames)) == pytest.approx((1.2, len(frames) / FPS))
    assert add_soundtrack(video, meta, first, len(frames)) is True

    samples = decoded_audio(video)
    # the tone starts where the picture turns white: within one frame
    assert tone_onset(samples) * FPS == pytest.approx(EVENT_FRAME - 25 - first, abs=1.0)
    assert len(samples) / RATE * FPS == pytest.approx(len(frames), abs=1.0)  # durations within one frame
    timing = probe_audio(video)
    assert timing["audio"]["codec"] == "aac"
    assert abs(timing["audio"]["start"] - timing["video_start"]) < 1 / FPS
    info = probe_video(video)
    assert (info.frame_count, info.codec, info.fps) == (len(frames), "h264", FPS)  # the video stream copied
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True).stderr
    moov, mdat = (subprocess.run(["grep", "-boa", box, str(video)], capture_output=True, text=True).stdout
                  for box in ("moov", "mdat"))
    assert int(moov.split(":")[0]) < int(mdat.split(":")[0]), header  # +faststart: the index comes first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out.mp4"]  # no temporary left


def test_a_source_without_audio_gives_a_silent_video(tmp_path):
    clip = make_tone_clip(tmp_path / "silent.mp4", audio=False, seconds=1.0)
    meta = extract_frames(clip, tmp_path / "frames", height=48)
    assert meta["audio"] is None
    video = tmp_path / "out.mp4"
    write_video([np.zeros((48, 64, 3), np.uint8)] * 5, video, FPS)
    assert add_soundtrack(video, meta, 0, 5) is False
    assert probe_audio(video)["audio"] is None


def test_bad_trims_are_refused_naming_the_file(tmp_path, tone_clip, capsys):
    with pytest.raises(ValueError, match="tone.mp4: end 9 s lies past the video's end"):
        extract_frames(tone_clip, tmp_path / "a", height=48, end=9.0)
    with pytest.raises(ValueError, match="tone.mp4: start 3 s must come before end 2 s"):
        extract_frames(tone_clip, tmp_path / "b", height=48, start=3.0, end=2.0)
    with pytest.raises(SystemExit):
        main(["extract", str(tone_clip), str(tmp_path / "c"), "--start", "1:2:3:4"])
    assert "not seconds or [hh:]mm:ss[.ms]" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_missing_source_video_is_named(tmp_path):
    video = tmp_path / "out.mp4"
    write_video([np.zeros((48, 64, 3), np.uint8)] * 3, video, FPS)
    meta = {"source": str(tmp_path / "gone.mp4"), "fps": FPS, "first_frame_time": 0.0, "audio": {"start": 0.0}}
    with pytest.raises(FileNotFoundError, match="gone.mp4: source video not found"):
        add_soundtrack(video, meta, 0, 3)


def test_transfer_carries_the_sources_soundtrack_in_sync(tmp_path, tone_clip):
    """edn transfer of a trimmed tone source: both MP4s play its tone from the frame where it starts."""
    from conftest import make_synthetic_clip

    from pipeline.gan.train import TrainConfig, train

    source = tmp_path / "source_frames"
    meta = extract_frames(tone_clip, source, height=48, start=1.0, end=3.5)
    frames, render, keypoints = make_synthetic_clip(tmp_path / "clip", n_frames=meta["frame_count"], fps=FPS)
    train(tmp_path / "run", [(frames, render, keypoints)],
          TrainConfig(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0,
                      vgg_loss=False, sample_every=0, max_steps=1))
    out, side = tmp_path / "out" / "dancer.mp4", tmp_path / "out" / "sbs.mp4"
    args = ["transfer", str(keypoints), str(render), str(source), str(out), "--generator",
            str(tmp_path / "run" / "generator.pt"), "--side-by-side", str(side), "--device", "cpu"]
    assert main(args) == 0
    assert json.loads(out.with_suffix(".json").read_text())["audio"] is True
    for video in (out, side):
        samples = decoded_audio(video)
        assert tone_onset(samples) * FPS == pytest.approx(EVENT_FRAME - 25, abs=1.0)
        assert len(samples) / RATE * FPS == pytest.approx(meta["frame_count"], abs=1.0)
        assert probe_video(video).frame_count == meta["frame_count"]

    assert main(args + ["--no-audio"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["audio"] is False
    assert probe_audio(out)["audio"] is None and probe_audio(side)["audio"] is None


def test_a_video_stream_starting_after_the_audio_keeps_their_offset(tmp_path, tone_clip):
    """Video delayed 0.3 s in the container: the frames' grid still starts at the container's start (the first
    frame repeated over the delay), and each frame's audio is what played with it in the source."""
    import cv2

    delayed = tmp_path / "delayed.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-itsoffset", "0.3", "-i", str(tone_clip),
                    "-i", str(tone_clip), "-map", "0:v", "-map", "1:a", "-c", "copy", str(delayed)], check=True)
    meta = extract_frames(delayed, tmp_path / "frames", height=48)
    assert meta["video_start"] == pytest.approx(0.3, abs=1e-3) and meta["first_frame_time"] == 0.0
    white = first_white_frame(tmp_path / "frames")
    assert white == pytest.approx(EVENT_FRAME + 0.3 * FPS, abs=1)
    frames = list_frames(tmp_path / "frames")
    video = tmp_path / "out.mp4"
    write_video((cv2.imread(str(p)) for p in frames), video, FPS)
    assert add_soundtrack(video, meta, 0, len(frames))
    # the tone plays 0.3 s before the picture turns white, in the source and in the output alike
    assert tone_onset(decoded_audio(video)) * FPS == pytest.approx(white - 0.3 * FPS, abs=1)

    # trimmed from 1 s: the picture turns white at 2.7 - 1 s, the tone starts at 2.4 - 1 s
    meta = extract_frames(delayed, tmp_path / "trimmed", height=48, start=1.0)
    assert meta["video_start"] == pytest.approx(0.3, abs=1e-3)  # probed apart: extraction seeks past it
    assert first_white_frame(tmp_path / "trimmed") == pytest.approx((EVENT_FRAME / FPS + 0.3 - 1.0) * FPS, abs=1)
    frames = list_frames(tmp_path / "trimmed")
    write_video((cv2.imread(str(p)) for p in frames), video, FPS)
    assert add_soundtrack(video, meta, 0, len(frames))
    assert tone_onset(decoded_audio(video)) * FPS == pytest.approx((EVENT_FRAME / FPS - 1.0) * FPS, abs=1)
