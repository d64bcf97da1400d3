import json
import subprocess
from pathlib import Path

import cv2
import pytest

from pipeline.cli import main
from pipeline.footage.extract import extract_frames, list_frames, read_frames_meta
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
