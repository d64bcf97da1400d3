import json
import logging
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.footage.extract import extract_frames, image_size, list_frames, read_frames_meta
from pipeline.footage.media import ffmpeg_exe, probe_video


def test_probe_reads_real_clip(clip_path):
    info = probe_video(clip_path)
    assert (info.width, info.height, info.fps, info.frame_count, info.rotation) == (288, 512, 60.0, 24, 0)


def test_extract_writes_numbered_frames_and_meta(clip_frames):
    frames = list_frames(clip_frames)
    assert [f.name for f in frames[:2]] == ["000000.jpg", "000001.jpg"]
    assert len(frames) == 24
    meta = read_frames_meta(clip_frames)
    assert (meta["width"], meta["height"], meta["fps"], meta["frame_count"]) == (144, 256, 60.0, 24)
    assert meta["source_fps"] == 60.0 and meta["source_rotation"] == 0
    assert meta["provenance"]["stage"] == "extract"
    assert meta["provenance"]["params"]["height"] == 256
    assert cv2.imread(str(frames[0])).shape == (256, 144, 3)


def test_extract_resamples_to_constant_rate_and_crops(tmp_path, clip_path):
    meta = extract_frames(clip_path, tmp_path / "f", fps=30, height=128, crop=(0, 0, 288, 256))
    # 24 frames at 60 fps last 0.4 s: 12 frames at 30 fps; a 288x256 crop scaled to height 128.
    assert meta["frame_count"] == 12
    assert (meta["width"], meta["height"]) == (144, 128)


def test_extract_honours_rotation_metadata(tmp_path, clip_path):
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-display_rotation", "90", "-i", str(clip_path),
                    "-c", "copy", str(rotated)], check=True)
    info = probe_video(rotated)
    assert info.rotation == 90 and (info.width, info.height) == (512, 288)
    meta = extract_frames(rotated, tmp_path / "auto", height=128, max_frames=2)
    assert (meta["width"], meta["height"]) == (228, 128)  # displayed landscape
    meta = extract_frames(rotated, tmp_path / "manual", height=128, rotation=0, max_frames=2)
    assert (meta["width"], meta["height"]) == (72, 128)  # stored portrait, metadata overridden


def test_extract_replaces_previous_output_completely(tmp_path, clip_path):
    out = tmp_path / "f"
    extract_frames(clip_path, out, height=64)
    extract_frames(clip_path, out, height=64, max_frames=3)
    assert len(list_frames(out)) == 3


def test_not_a_video_names_the_file(tmp_path, capsys):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video")
    assert main(["extract", str(bogus), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bogus) in err and "not a readable video" in err
    assert not (tmp_path / "out").exists()


def test_video_without_frames_names_the_file(tmp_path, capsys):
    audio_only = tmp_path / "silence.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
                    "-t", "0.2", str(audio_only)], check=True)
    assert main(["extract", str(audio_only), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(audio_only) in err


def test_missing_video_and_bad_crop(tmp_path, clip_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        extract_frames(tmp_path / "missing.mp4", tmp_path / "o")
    with pytest.raises(ValueError, match="outside"):
        extract_frames(clip_path, tmp_path / "o", crop=(200, 0, 200, 100))


def test_failed_extraction_keeps_existing_output(tmp_path, clip_path):
    out = tmp_path / "f"
    extract_frames(clip_path, out, height=64, max_frames=2)
    with pytest.raises(ValueError):
        extract_frames(clip_path, out, crop=(500, 0, 10, 10))
    assert len(list_frames(out)) == 2
    assert json.loads((out / "meta.json").read_text())["frame_count"] == 2


def plain_extract(video: Path, out: Path, vf: str, *, start: float | None = None, end: float | None = None) -> list:
    """The frames of the straightforward one-process command, decoded: what extract_frames must reproduce."""
    out.mkdir()
    seek = (["-ss", f"{start:.6f}"] if start else []) + (["-t", f"{end - (start or 0):.6f}"] if end else [])
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *seek, "-i", str(video), "-vf", vf,
                    "-q:v", "2", "-start_number", "0", str(out / "%06d.jpg")], check=True)
    return [cv2.imread(str(p)) for p in sorted(out.glob("*.jpg"))]


@pytest.mark.parametrize("kwargs, vf", [
    ({"height": 256}, "fps=60,scale=-2:256:flags=area"),
    ({"height": 128, "fps": 30, "crop": (0, 0, 288, 256)}, "fps=30,crop=288:256:0:0,scale=-2:128:flags=area"),
    ({"height": 128, "start": 0.1, "end": 0.3}, "fps=60,scale=-2:128:flags=area"),
])
def test_extract_gives_the_pixels_of_a_plain_ffmpeg_run(tmp_path, clip_path, kwargs, vf):
    """Same frame count and the same decoded pixels (first, middle, last) as one plain ffmpeg command:
    the speed-ups (first-frame time read off the extraction run, default Huffman tables, the size
    read from the header) change no pixel and no frame."""
    meta = extract_frames(clip_path, tmp_path / "f", **kwargs)
    plain = plain_extract(clip_path, tmp_path / "plain", vf, start=kwargs.get("start"), end=kwargs.get("end"))
    ours = [cv2.imread(str(p)) for p in list_frames(tmp_path / "f")]
    assert meta["frame_count"] == len(ours) == len(plain) > 0
    for i in (0, len(ours) // 2, len(ours) - 1):
        assert np.array_equal(ours[i], plain[i]), f"frame {i} differs"
    assert (meta["height"], meta["width"]) == ours[0].shape[:2]
    if kwargs.get("start"):
        assert len(ours) == round((kwargs["end"] - kwargs["start"]) * 60)  # the trim stays exact


def test_video_start_comes_from_the_extraction_run_without_a_seek(tmp_path, clip_path, monkeypatch):
    """No separate ffmpeg run for the first frame's time unless a seek hides that frame from extraction."""
    from pipeline.footage import audio

    probed = []
    real = audio._first_pts
    monkeypatch.setattr(audio, "_first_pts", lambda path, stream: probed.append(stream) or real(path, stream))
    untrimmed = extract_frames(clip_path, tmp_path / "a", height=64)
    assert probed == [] and untrimmed["video_start"] == 0.0
    trimmed = extract_frames(clip_path, tmp_path / "b", height=64, start=0.1)
    assert probed == ["v"] and trimmed["video_start"] == untrimmed["video_start"]


def test_image_size_reads_jpeg_and_png_headers(tmp_path, clip_path, clip_frames):
    """meta.json's width and height come from the first frame's header, not from decoding it."""
    image = cv2.imread(str(list_frames(clip_frames)[0]))
    written = {"ffmpeg.jpg": list_frames(clip_frames)[0]}
    for name, params in (("cv2.jpg", []), ("progressive.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), ("cv2.png", [])):
        written[name] = tmp_path / name
        cv2.imwrite(str(written[name]), image[:, :100], params)
    png = extract_frames(clip_path, tmp_path / "p", height=64, image_format="png", max_frames=1)
    written["ffmpeg.png"] = list_frames(tmp_path / "p")[0]
    for name, path in written.items():
        assert image_size(path) == cv2.imread(str(path)).shape[1::-1], name
    assert (png["width"], png["height"]) == (36, 64)


def test_ffmpeg_failure_names_the_video(tmp_path, clip_path, monkeypatch):
    from pipeline.footage import extract

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Conversion failed!' >&2\nexit 1\n")
    fake.chmod(0o755)
    real = ffmpeg_exe()
    monkeypatch.setattr("pipeline.footage.media.ffmpeg_exe", lambda: real)  # probing still works
    monkeypatch.setattr(extract, "ffmpeg_exe", lambda: str(fake))
    with pytest.raises(ValueError, match=rf"{clip_path.name}: ffmpeg failed to extract frames: Conversion failed!"):
        extract_frames(clip_path, tmp_path / "out", height=64)
    assert not (tmp_path / "out").exists()


def _synthetic_h264(path: Path, rate_filter: str = "", seconds: float = 2.0) -> Path:
    """A small H.264 clip of ffmpeg's test pattern (25 fps, a key frame every 10 frames), through ``rate_filter``."""
    vf = ["-vf", rate_filter, "-fps_mode", "vfr"] if rate_filter else []
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size=160x120:rate=25:duration={seconds}", *vf, "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-g", "10", "-y", str(path)], check=True)
    return path


def _zero_middle(clip: Path, out: Path, count: int = 3000) -> Path:
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(count)
    out.write_bytes(bytes(data))
    return out


def test_a_clip_with_zeroed_bytes_fails_naming_the_file_the_frame_and_ffmpegs_message(tmp_path, capsys):
    damaged = _zero_middle(_synthetic_h264(tmp_path / "whole.mp4"), tmp_path / "damaged.mp4")
    assert main(["extract", str(damaged), str(tmp_path / "out"), "--height", "64"]) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: damaged video:" in err and "decoding errors" in err
    found = re.search(r"the first at source frame (\d+) \(([\d.]+) s\): (.*?);", err)
    assert found, err
    frame, seconds = int(found.group(1)), float(found.group(2))
    assert 10 < frame < 40 and seconds == pytest.approx(frame / 25)  # in the middle, where the bytes were zeroed
    assert "Invalid NAL unit size" in found.group(3) or "error while decoding" in found.group(3)
    assert "--damaged keep" in err
    assert not (tmp_path / "out").exists()
    # the clean clip it was made from extracts with no error, every frame kept
    meta = extract_frames(tmp_path / "whole.mp4", tmp_path / "whole", height=64)
    assert meta["decode_errors"] == 0 and meta["frame_count"] == 50
    assert meta["resampling"] == {"frames_in": 50, "frames_out": 50, "dropped": 0, "duplicated": 0}


def test_a_damaged_clip_kept_on_request_records_the_errors_and_warns(tmp_path, caplog):
    damaged = _zero_middle(_synthetic_h264(tmp_path / "whole.mp4"), tmp_path / "damaged.mp4")
    with caplog.at_level(logging.WARNING, logger="pipeline.footage.extract"):
        meta = extract_frames(damaged, tmp_path / "out", height=64, damaged="keep")
    assert meta["decode_errors"] > 0 and read_frames_meta(tmp_path / "out")["decode_errors"] == meta["decode_errors"]
    assert meta["provenance"]["params"]["damaged"] == "keep"
    assert "damaged video" in caplog.text and "extracted anyway" in caplog.text


def test_a_variable_frame_rate_says_how_many_frames_were_dropped_and_repeated(tmp_path, caplog):
    """One second at 50 fps, then one at 25: held at its average rate, extraction drops frames of the fast
    part and repeats frames of the slow part, and says so with the cause."""
    vfr = _synthetic_h264(tmp_path / "vfr.mp4", "fps=50,setpts='if(lt(N,50),N/50,1+(N-50)/25)/TB'", seconds=1.5)
    info = probe_video(vfr, count_frames=False)
    with caplog.at_level(logging.INFO, logger="pipeline.footage.extract"):
        meta = extract_frames(vfr, tmp_path / "out", height=64)
    counts = meta["resampling"]
    assert counts["dropped"] > 0 and counts["duplicated"] > 0, counts
    assert counts["frames_out"] == meta["frame_count"]
    assert counts["frames_in"] - counts["dropped"] + counts["duplicated"] == counts["frames_out"]
    assert (f"{counts['dropped']} of {counts['frames_in']} frames dropped and {counts['duplicated']} repeated to hold "
            f"a constant {info.fps:.4g} fps, because of uneven frame times: a variable frame rate") in caplog.text
    # a constant-rate clip resampled to another rate is told in one line, not warned about
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.footage.extract"):
        meta = extract_frames(_synthetic_h264(tmp_path / "cfr.mp4"), tmp_path / "half", height=64, fps=12.5)
    assert meta["resampling"]["dropped"] == 25 and meta["resampling"]["duplicated"] == 0
    assert "25 of 50 frames dropped and 0 repeated to go from 25 to 12.5 fps" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_lost_frame_image_is_named_with_what_to_do(writable_frames):
    from pipeline.footage.extract import check_frames_complete, missing_frames

    assert missing_frames(writable_frames) == []
    check_frames_complete(writable_frames)
    (writable_frames / "000007.jpg").unlink()
    assert missing_frames(writable_frames) == [writable_frames / "000007.jpg"]
    with pytest.raises(ValueError, match=rf"{writable_frames}/000007.jpg: missing from the extracted frames; "
                                         rf"delete {writable_frames} and extract it again"):
        check_frames_complete(writable_frames)
    (writable_frames / "meta.json").unlink()
    assert missing_frames(writable_frames) == [writable_frames / "meta.json"]
