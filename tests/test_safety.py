"""Stages replace only what they wrote; bad inputs fail with the file named (issue 11)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main


def test_extract_into_the_videos_folder_is_refused(tmp_path, clip_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = videos / "clip.mp4"
    shutil.copy(clip_path, clip)
    (videos / "notes.txt").write_text("mine")
    assert main(["extract", str(clip), str(videos), "--height", "64"]) == 2
    err = capsys.readouterr().err
    assert str(videos) in err and "clip.mp4" in err
    assert clip.read_bytes() == clip_path.read_bytes() and (videos / "notes.txt").read_text() == "mine"


def test_extract_into_the_working_directory_is_refused(tmp_path, clip_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["extract", str(clip_path), ".", "--height", "64"]) == 2
    assert "working directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_extract_refuses_a_folder_with_foreign_files(tmp_path, clip_path, capsys):
    out = tmp_path / "frames"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"x")
    assert main(["extract", str(clip_path), str(out), "--height", "64"]) == 2
    assert "holiday.jpg" in capsys.readouterr().err
    assert (out / "holiday.jpg").read_bytes() == b"x"


def test_extract_rerun_replaces_its_own_output(tmp_path, clip_path):
    from pipeline.extract import extract_frames

    out = tmp_path / "frames"
    extract_frames(clip_path, out, height=64)
    extract_frames(clip_path, out, height=64, max_frames=5)
    assert len(list(out.glob("*.jpg"))) == 5
    # A foreign file dropped in later is never deleted by a rerun.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        extract_frames(clip_path, out, height=64)
    assert (out / "notes.txt").exists() and len(list(out.glob("*.jpg"))) == 5


def test_render_into_the_keypoints_folder_is_refused(tmp_path, synthetic_clip, capsys):
    kp_dir = tmp_path / "dir"
    kp_dir.mkdir()
    kp = kp_dir / "kp.parquet"
    shutil.copy(synthetic_clip[2], kp)
    before = kp.read_bytes()
    assert main(["render", str(kp), str(kp_dir)]) == 2
    assert "kp.parquet" in capsys.readouterr().err
    assert kp.read_bytes() == before


def test_render_rerun_replaces_its_own_output(tmp_path, synthetic_clip):
    out = tmp_path / "render"
    assert main(["render", str(synthetic_clip[2]), str(out)]) == 0
    (out / "000003.png").unlink()
    assert main(["render", str(synthetic_clip[2]), str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 8


def test_atomic_dir_owns_only_folders_whose_marker_names_the_stage(tmp_path):
    from pipeline.provenance import atomic_dir, write_json

    out = tmp_path / "evaluation"
    out.mkdir()
    write_json(out / "evaluation.json", {"provenance": {"stage": "render"}})  # another stage's folder
    with pytest.raises(ValueError, match="evaluation.json"):
        with atomic_dir(out, "evaluate", r"metrics\.parquet|evaluation\.json", marker="evaluation.json"):
            pass
    write_json(out / "evaluation.json", {"provenance": {"stage": "evaluate"}})
    with atomic_dir(out, "evaluate", r"metrics\.parquet|evaluation\.json", marker="evaluation.json") as tmp:
        (tmp / "metrics.parquet").write_bytes(b"new")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.parquet"]


def test_stale_temporaries_of_a_killed_run_are_cleaned(tmp_path, clip_path):
    from pipeline.extract import extract_frames
    from pipeline.provenance import write_json

    out = tmp_path / "frames"
    stale_dir = tmp_path / ".frames.abcd1234.tmp"
    stale_dir.mkdir()
    (stale_dir / "000000.jpg").write_bytes(b"half")
    stale_file = tmp_path / ".x.json.zz_9abcd.tmp.json"
    stale_file.write_text("{")
    other = tmp_path / ".frames2.abcd1234.tmp"  # another output's temporary: not ours to touch
    other.mkdir()
    extract_frames(clip_path, out, height=64, max_frames=2)
    write_json(tmp_path / "x.json", {"a": 1})
    assert not stale_dir.exists() and not stale_file.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".frames2.abcd1234.tmp", "frames", "x.json"]
