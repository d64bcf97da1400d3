"""Detection in chunks (edn detect --start/--stop/--warmup, edn gather-keypoints) equals one pass."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.pose.keypoints import read_keypoints

pytest.importorskip("mediapipe")

# Measured on tests/data/clip.mp4 at 144x256 with chunks of 10 and a warm-up of 5 (see README).
MAX_JOINT_DIFFERENCE_PX = 3.0


def _chunks(n_frames: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n_frames)) for s in range(0, n_frames, size)]


def test_gathered_chunks_equal_one_pass(tmp_path, clip_frames):
    from pipeline.pose.detect import detect, gather_keypoints

    whole = detect(clip_frames, tmp_path / "whole.parquet")
    paths = []
    for i, (start, stop) in enumerate(_chunks(24, 10)):
        paths.append(tmp_path / f"chunk{i}.parquet")
        detect(clip_frames, paths[-1], start=start, stop=stop, warmup=5)
        assert read_keypoints(paths[-1]).frames.tolist() == list(range(start, stop))
    gathered = gather_keypoints(paths[::-1], clip_frames, tmp_path / "raw.parquet")
    assert gathered.frames.tolist() == list(range(24))
    assert (gathered.present == whole.present).all()
    ok = whole.present
    diff = np.abs(gathered.xy[ok] - whole.xy[ok]).max()
    print(f"max joint difference chunked vs one pass: {diff:.3f} px")
    assert diff <= MAX_JOINT_DIFFERENCE_PX
    assert read_keypoints(tmp_path / "raw.parquet").meta["provenance"]["stage"] == "gather-keypoints"


def test_gather_refuses_gaps_and_foreign_chunks(tmp_path, clip_frames):
    from pipeline.pose.detect import detect, gather_keypoints

    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    detect(clip_frames, a, start=0, stop=4)
    detect(clip_frames, b, start=6, stop=24)
    with pytest.raises(ValueError, match="do not continue at frame 4"):
        gather_keypoints([a, b], clip_frames, tmp_path / "raw.parquet")
    detect(clip_frames, b, start=4, stop=20)
    with pytest.raises(ValueError, match="chunks cover frames 0..20, the folder has 24"):
        gather_keypoints([a, b], clip_frames, tmp_path / "raw.parquet")
    assert not (tmp_path / "raw.parquet").exists()


@pytest.mark.slow
def test_workflow_detects_in_chunks_and_gathers(tmp_path, clip_path, clip_frames):
    from test_workflow import snakemake, write_config

    write_config(tmp_path, clip_path, detect={"chunk_frames": 10, "chunk_overlap": 5})
    snakemake(tmp_path, "results/keypoints/clip_target/raw.parquet")
    logs = sorted(p.name for p in (tmp_path / "results/logs/detect").glob("clip_target_chunk*.log"))
    assert logs == ["clip_target_chunk0.log", "clip_target_chunk1.log", "clip_target_chunk2.log"]
    track = read_keypoints(tmp_path / "results/keypoints/clip_target/raw.parquet")
    assert track.frames.tolist() == list(range(24))
    assert track.meta["provenance"]["stage"] == "gather-keypoints"
    assert not (tmp_path / "results/keypoints/clip_target/chunks").exists() or not any(
        (tmp_path / "results/keypoints/clip_target/chunks").iterdir())  # chunks are temporary
