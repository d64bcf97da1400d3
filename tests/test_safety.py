"""Stages replace only what they wrote; bad inputs fail with the file named."""

from __future__ import annotations

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
    from pipeline.footage.extract import extract_frames

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
    from pipeline.footage.extract import extract_frames
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


def _truncated_faststart(clip_path: Path, out: Path, fraction: float) -> Path:
    import subprocess

    from pipeline.footage.media import ffmpeg_exe

    whole = out.with_suffix(".whole.mp4")
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clip_path), "-c", "copy",
                    "-movflags", "+faststart", str(whole)], check=True)
    data = whole.read_bytes()
    out.write_bytes(data[:int(len(data) * fraction)])
    return out


def test_truncated_mp4_fails_with_the_frame_counts(tmp_path, clip_path, capsys):
    video = _truncated_faststart(clip_path, tmp_path / "cut.mp4", 0.8)  # decodes about half the frames
    out = tmp_path / "frames"
    assert main(["extract", str(video), str(out), "--height", "64"]) == 2
    err = capsys.readouterr().err
    assert str(video) in err and "of the 24 frames" in err and "truncated" in err
    assert not out.exists()


def test_whole_mp4_at_another_rate_passes_the_count_check(tmp_path, clip_path):
    from pipeline.footage.extract import extract_frames

    assert extract_frames(clip_path, tmp_path / "f", height=64, fps=30)["frame_count"] == 12


def test_truncated_jpeg_frame_is_an_error_naming_it(writable_frames):
    from pipeline.pose.detect import _read_images

    frame = writable_frames / "000003.jpg"
    frame.write_bytes(frame.read_bytes()[:2000])
    paths = sorted(writable_frames.glob("*.jpg"))
    with pytest.raises(ValueError, match="000003.jpg: truncated frame image"):
        list(_read_images(paths, None))


def test_missing_frame_file_against_meta_is_an_error(writable_frames):
    pytest.importorskip("mediapipe")
    from pipeline.pose.detect import detect_mediapipe

    (writable_frames / "000005.jpg").unlink()
    with pytest.raises(ValueError, match="23 frame images but meta.json says 24"):
        detect_mediapipe(writable_frames)


def _write_parquet(path: Path, meta: bytes | None, frame_values, confidence=0.5) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(frame_values)
    table = pa.table({"frame": pa.array(frame_values), "joint": pa.array(np.zeros(n, np.int16)),
                      "x": pa.array(np.ones(n, np.float32)), "y": pa.array(np.ones(n, np.float32)),
                      "confidence": pa.array(np.full(n, confidence, np.float32))})
    if meta is not None:
        table = table.replace_schema_metadata({b"edn": meta})
    pq.write_table(table, path)
    return path


GOOD_META = b'{"width": 64, "height": 128, "fps": 30}'


@pytest.mark.parametrize("meta, frames, confidence, problem", [
    (GOOD_META, ["0", "1"], 0.5, "column 'frame' must hold integers"),
    (GOOD_META, [0.0, float("nan")], 0.5, "column 'frame' must hold integers"),
    (GOOD_META, [0, None], 0.5, "column 'frame' has 1 empty values"),
    (GOOD_META, [0, 0], 0.5, "more than once"),
    (GOOD_META, [0, 1], float("nan"), "confidence is NaN"),
    (None, [0, 1], 0.5, "no 'edn' metadata"),
    (b"{not json", [0, 1], 0.5, "not valid JSON"),
    (b'{"height": 128, "fps": 30}', [0, 1], 0.5, "lacks a positive 'width'"),
])
def test_broken_keypoint_files_are_named(tmp_path, meta, frames, confidence, problem):
    from pipeline.pose.keypoints import KeypointFileError, read_keypoints

    path = _write_parquet(tmp_path / "kp.parquet", meta, frames, confidence)
    with pytest.raises(KeypointFileError, match=problem) as info:
        read_keypoints(path)
    assert str(path) in str(info.value)


def test_render_of_keypoints_without_size_names_the_file(tmp_path, capsys):
    path = _write_parquet(tmp_path / "kp.parquet", b'{"fps": 30}', [0, 1])
    assert main(["render", str(path), str(tmp_path / "out")]) == 2
    assert f"{path}: 'edn' metadata lacks a positive 'width'" in capsys.readouterr().err


def test_pickled_lpips_weights_give_a_clear_error(tmp_path):
    import torch

    pytest.importorskip("lpips")
    from pipeline.evaluation.metrics import LPIPS

    weights = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": Path("not a tensor")}, weights)  # needs full unpickling
    with pytest.raises(ValueError, match=f"{weights}: unreadable AlexNet weight \\(LPIPS backbone\\) file"):
        LPIPS.load(weights)


def test_evaluate_refuses_a_foreign_folder_before_any_work(tmp_path):
    from pipeline.evaluation.evaluate import evaluate

    out = tmp_path / "evaluation"
    out.mkdir()
    (out / "paper.pdf").write_bytes(b"x")
    # The generator file does not exist: the refusal must come first.
    with pytest.raises(ValueError, match="paper.pdf"):
        evaluate(out, [(tmp_path / "f", tmp_path / "r", tmp_path / "k.parquet")], tmp_path / "missing.pt")
    assert (out / "paper.pdf").read_bytes() == b"x"
