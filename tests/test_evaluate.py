"""``edn evaluate``: held-out frames only, the ablation rows, the tables; the frame-by-frame model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.evaluation.evaluate import evaluate
from pipeline.evaluation.metrics import missed_detections, pose_distance
from pipeline.evaluation.tables import ROWS, result_tables, tables_markdown
from pipeline.gan.train import TrainConfig, train
from pipeline.gan.train_face import FaceConfig, train_face
from pipeline.pose.keypoints import LEFT_HAND, RIGHT_HAND, empty_track

TINY = dict(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0, vgg_loss=False,
            sample_every=0, deterministic=True, max_steps=3, device="cpu")
ALL_ROWS = ["frame_by_frame", "temporal", "temporal_face"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """10 frames (the last 2 held out), the temporal generator, its face GAN and the frame-by-frame model."""
    from conftest import make_synthetic_clip

    root = tmp_path_factory.mktemp("evaluate")
    clip = make_synthetic_clip(root / "clip", n_frames=10)
    train(root / "run", [clip], TrainConfig(**TINY))
    train(root / "fbf", [clip], TrainConfig(**TINY, temporal=False))
    train_face(root / "run" / "face", root / "run" / "generator.pt", [clip],
               FaceConfig(face_ngf=4, face_n_blocks=1, ndf=4, workers=0, vgg_loss=False, sample_every=0, max_steps=3))
    return {"clip": clip, "generator": root / "run" / "generator.pt", "face": root / "run" / "face" / "face.pt",
            "frame_by_frame": root / "fbf" / "generator.pt"}


def poisoned_copy(tmp_path, clip, frames):
    """A copy of the clip whose images of ``frames`` are garbage: reading one is an error naming it."""
    root = tmp_path / "poisoned"
    copies = [root / "frames", root / "render", root / "keypoints.parquet"]
    shutil.copytree(clip[0], copies[0])
    shutil.copytree(clip[1], copies[1])
    shutil.copy(clip[2], copies[2])
    for f in frames:
        (copies[0] / f"{f:06d}.jpg").write_bytes(b"training frame: must not be read")
        (copies[1] / f"{f:06d}.png").write_bytes(b"training stick figure: must not be read")
    return tuple(copies)


@pytest.mark.slow
def test_evaluation_reads_only_held_out_frames(tmp_path, trained, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no AlexNet weights: LPIPS unavailable
    held = json.loads((trained["generator"].parent / "run.json").read_text())["clips"][0]["held_out_frames"]
    assert held == [8, 9]
    clip = poisoned_copy(tmp_path, trained["clip"], range(8))  # every training frame
    record = evaluate(tmp_path / "eval", [clip], trained["generator"], face=trained["face"],
                      frame_by_frame=trained["frame_by_frame"], rows=ALL_ROWS, device="cpu")
    assert record["held_out"][0]["frames"] == [8, 9] and record["n_frames"] == 2 and record["lpips"] is False
    assert record["provenance"]["params"]["precision"] == "fp32" and "no native bf16" in record["precision_reason"]
    out = tmp_path / "eval"
    frames = pd.read_parquet(out / "frames.parquet")
    assert sorted(set(frames["frame"])) == [8, 9] and set(frames["ablation"]) == set(ALL_ROWS)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert {"body", "face", "pose_distance", "missed_detections", "bodies_found",
            "temporal_instability", "chroma_noise"} == set(metrics["table"])
    chroma = metrics[metrics["table"] == "chroma_noise"]
    assert set(chroma["metric"]) == {"generated", "real", "ratio"} and (chroma["value"] > 0).all()
    assert {"chroma_body", "chroma_body_real"} <= set(frames.columns)
    ssim_body = metrics[(metrics["table"] == "body") & (metrics["metric"] == "ssim")]
    assert len(ssim_body) == 3 and ssim_body["value"].between(-1, 1).all()
    assert metrics[metrics["metric"] == "lpips"]["value"].isna().all()
    markdown = (out / "tables.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", *ROWS.values()):
        assert title in markdown
    assert "| unavailable |" in markdown and "unavailable" in (out / "tables.html").read_text()
    import cv2

    grid = cv2.imread(str(out / "samples.png"))
    assert grid.shape[1] == 5 * 64 and grid.std() > 10  # pose | three rows | real
    # The poison works: a held-out frame made unreadable stops the evaluation, naming the file.
    (clip[0] / "000009.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="000009.jpg: cannot read image"):
        evaluate(tmp_path / "eval2", [clip], trained["generator"], rows=["temporal"], device="cpu")


@pytest.mark.slow
def test_evaluation_refuses_other_clips_and_missing_models(tmp_path, trained, synthetic_clip_factory):
    other = synthetic_clip_factory(tmp_path / "other", n_frames=10, width=64, height=128, fps=24.0)
    # Same length: only the recorded keypoint fingerprint tells that training never split this clip.
    from pipeline.pose.keypoints import read_keypoints, write_keypoints

    keypoints = read_keypoints(other[2])  # keeps the edn metadata, which pandas would drop
    keypoints.data[..., 0] += 1.0
    write_keypoints(other[2], keypoints)
    from pipeline.pose.render import render_track

    render_track(keypoints, other[1], keypoints_path=other[2])  # one chain again: only the model record differs
    with pytest.raises(ValueError, match="is not the clip this model was trained on"):
        evaluate(tmp_path / "e", [other], trained["generator"], rows=["temporal"], device="cpu")
    with pytest.raises(ValueError, match="temporal_face needs the face GAN"):
        evaluate(tmp_path / "e", [trained["clip"]], trained["generator"], rows=["temporal_face"])
    with pytest.raises(ValueError, match="needs one trained with `edn train --no-temporal`"):
        evaluate(tmp_path / "e", [trained["clip"]], trained["generator"], frame_by_frame=trained["generator"],
                 rows=["frame_by_frame"])
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_frame_by_frame_model_ignores_the_previous_frame(trained):
    from pipeline.gan.generate import generate_frames, load_models, model_pose

    poses = [model_pose(p, (64, 128)) for p in sorted(trained["clip"][1].glob("*.png"))[:3]]
    fbf = load_models(trained["frame_by_frame"], device="cpu")
    temporal = load_models(trained["generator"], device="cpu")
    assert not fbf.temporal and temporal.temporal
    assert fbf.config["input_nc"] == 3 and temporal.config["input_nc"] == 6
    alone = next(generate_frames(fbf, poses[2:]))
    assert np.array_equal(list(generate_frames(fbf, poses))[2], alone)  # no memory of frames 0 and 1
    assert not np.array_equal(list(generate_frames(temporal, poses))[2], next(generate_frames(temporal, poses[2:])))
    state = torch.load(trained["frame_by_frame"].parent / "checkpoint.pt", weights_only=True)
    assert state["config"]["temporal"] is False
    assert state["models"]["D"]["discriminators.0.blocks.0.0.weight"].shape[1] == 6  # D sees (x_t, frame_t)


def test_hands_pool_both_hands():
    real = empty_track(2)
    real[:, LEFT_HAND] = (10.0, 10.0, 1.0)
    real[:, RIGHT_HAND] = (50.0, 50.0, 1.0)
    generated = real.copy()
    generated[:, LEFT_HAND, :2] += (3.0, 4.0)  # 5 px
    generated[:, RIGHT_HAND, :2] += (6.0, 8.0)  # 10 px
    assert pose_distance(real, generated)["hands"] == pytest.approx(7.5)
    generated[0, RIGHT_HAND.start:RIGHT_HAND.start + 4, 2] = 0.0  # 4 missed in frame 0, none in frame 1
    assert missed_detections(real, generated)["hands"] == pytest.approx(2.0)


def test_tables_show_the_values_and_say_what_is_missing():
    metrics = pd.DataFrame([
        {"table": "body", "ablation": "temporal", "metric": "ssim", "value": 0.81234},
        {"table": "face", "ablation": "temporal", "metric": "ssim", "value": math.nan},
        {"table": "pose_distance", "ablation": "temporal", "metric": "hands", "value": 7.5},
        {"table": "missed_detections", "ablation": "temporal", "metric": "overall", "value": 2.0},
    ])
    text = tables_markdown(result_tables(metrics, ["temporal"], lpips=False), ["intro line"])
    assert "| Temporal smoothing | 0.8123 | unavailable |" in text
    assert "| Temporal smoothing | n/a | unavailable |" in text  # no face box: n/a, not 0
    assert "| Temporal smoothing (in model pixels) | n/a | n/a | 7.50 | n/a |" in text
    assert "| Temporal smoothing | n/a | n/a | n/a | 2.00 |" in text
    assert "colour noise" in text and "| Temporal smoothing | n/a | n/a | n/a |" in text  # no chroma rows: n/a
    with_lpips = tables_markdown(result_tables(pd.concat([metrics, pd.DataFrame([
        {"table": "body", "ablation": "temporal", "metric": "lpips", "value": 0.1}])]), ["temporal"], lpips=True), [])
    assert "| Temporal smoothing | 0.8123 | 0.1000 |" in with_lpips


def test_tables_put_the_papers_numbers_beside_ours_with_our_resolution_and_joint_counts():
    from pipeline.evaluation.tables import JOINT_NOTE, intro_lines

    metrics = pd.DataFrame([
        {"table": "pose_distance", "ablation": r, "metric": "body", "value": 3.0} for r in ROWS] + [
        {"table": "body", "ablation": "temporal", "metric": "ssim", "value": 0.5}])
    text = tables_markdown(result_tables(metrics, list(ROWS), lpips=True, size=(128, 256)), ["intro"])
    # Table 1-4: the paper's rows, exact numbers, for the three rows it has
    assert "| paper (their data, 1024x512): pix2pixHD | 0.89564 | 0.03189 |" in text
    assert "| paper (their data, 1024x512): T.S. + Face | 0.83046 | 0.03304 |" in text
    assert "| paper (their data, 1024x512): T.S. | 2.63446 | 1.14348 | 3.76056 | 2.06884 |" in text
    assert "| paper (their data, 1024x512): T.S. + Face | 0.15578 | 0.47392 | 1.66366 | 2.29336 |" in text
    # ours at the resolution measured and scaled to 512 px height
    assert "| Temporal smoothing (at 128x256) | 3.00 | n/a | n/a | n/a |" in text
    assert "| Temporal smoothing (scaled to 512 px height, x2) | 6.00 | n/a | n/a | n/a |" in text
    only_ours = tables_markdown(result_tables(metrics, ["temporal"], lpips=True, size=(128, 256)), [])
    assert "pix2pixHD" not in only_ours and only_ours.count("paper (their data") == 4
    record = {"held_out": [{"frames_dir": "x/c", "frames": [3, 4]}], "n_frames": 2, "size": [128, 256],
              "lpips": True, "real_faces_detected": 1}
    assert JOINT_NOTE in intro_lines(record, ["temporal"]) and "LSmallToe and RSmallToe" in JOINT_NOTE


@pytest.mark.slow
def test_face_row_is_the_face_gan_on_the_temporal_rows_frames_from_one_pass(tmp_path, trained, monkeypatch):
    import pipeline.gan.generate as generate
    from pipeline.evaluation.evaluate import load_held_out, held_out_frames
    from pipeline.gan.generate import face_boxes, generate_frames, load_models

    models = load_models(trained["generator"], trained["face"], "cpu")
    held, run_path = held_out_frames(trained["generator"], [trained["clip"]])
    h = load_held_out([trained["clip"]], held, run_path, models.size)[0]
    boxes = face_boxes(h.keypoints, models.size, models)
    poses = [h.pose(i) for i in range(len(h.frames))]
    plain = list(generate_frames(models, poses, boxes, use_face=False))
    refined = list(generate_frames(models, poses, boxes, use_face=True))
    pairs = list(generate_frames(models, poses, boxes, with_plain=True))
    assert len(plain) == len(refined) == len(pairs) == len(poses) > 0
    assert all(np.array_equal(a, p) and np.array_equal(b, r) for (a, b), p, r in zip(pairs, plain, refined))
    assert any(not np.array_equal(p, r) for p, r in zip(plain, refined))  # the face GAN changes something

    steps = []
    original = generate.SequenceBatch.step
    monkeypatch.setattr(generate.SequenceBatch, "step", lambda self, *a, **k: steps.append(1) or original(self, *a, **k))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    evaluate(tmp_path / "eval", [trained["clip"]], trained["generator"], face=trained["face"],
             rows=["temporal", "temporal_face"], device="cpu")
    assert len(steps) == 2  # one generator pass over the 2 held-out frames makes both rows
    frames = pd.read_parquet(tmp_path / "eval" / "frames.parquet")
    assert list(frames["ablation"]) == ["temporal"] * 2 + ["temporal_face"] * 2


@pytest.mark.slow
def test_clips_stream_in_batches_with_ablation_rows_and_no_temporary_files(tmp_path, monkeypatch,
                                                                            synthetic_clip_factory):
    """Two clips, a generator and an ablation trained with another L1 weight: batching the clips gives
    the per-clip results, the ablation is a row labelled with what differs, nothing lands in the temp dir."""
    import tempfile

    clips = [synthetic_clip_factory(tmp_path / f"clip{i}", n_frames=(10, 15)[i]) for i in range(2)]
    train(tmp_path / "run", clips, TrainConfig(**TINY))
    train(tmp_path / "l1", clips, TrainConfig(**TINY, lambda_l1=1.0))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    results = {}
    for batch in (1, 2):
        record = evaluate(tmp_path / f"eval{batch}", clips, tmp_path / "run" / "generator.pt",
                          ablations={"more_l1": tmp_path / "l1" / "generator.pt"}, rows=["temporal"],
                          device="cpu", clip_batch=batch, samples=3)
        results[batch] = pd.read_parquet(tmp_path / f"eval{batch}" / "frames.parquet")
        assert record["provenance"]["params"]["clip_batch"] == batch
    assert list(temp.iterdir()) == []  # re-detection reads the frames in memory: no PNGs written
    assert record["n_frames"] == 2 + 3 and list(record["rows"]) == ["temporal", "more_l1"]
    assert record["rows"]["more_l1"] == "Temporal smoothing, ablation more_l1: lambda_l1 1.0 (not 0.0)"
    one, two = results[1], results[2]
    assert list(one["ablation"]) == ["temporal"] * 5 + ["more_l1"] * 5 == list(two["ablation"])
    assert list(one["frame"]) == [8, 9, 12, 13, 14] * 2
    assert np.allclose(one["ssim_body"], two["ssim_body"], atol=1e-3, equal_nan=True)
    assert not np.allclose(one["ssim_body"][:5], one["ssim_body"][5:], atol=1e-6)  # another model's frames
    markdown = (tmp_path / "eval2" / "tables.md").read_text()
    assert record["rows"]["more_l1"] in markdown and "frames where MediaPipe finds a body" in markdown
    import cv2

    assert cv2.imread(str(tmp_path / "eval2" / "samples.png")).shape[:2] == (28 + 3 * 128, 4 * 64)
    with pytest.raises(ValueError, match="lower-case identifiers other than"):
        evaluate(tmp_path / "e", clips, tmp_path / "run" / "generator.pt",
                 ablations={"temporal": tmp_path / "l1" / "generator.pt"}, rows=["temporal"], device="cpu")

    # Each sequence's detections land in its own row and frame: a stand-in tracker finds a body on every
    # frame but those of the ablation's sequences (trackers are made per clip: real, then each row).
    import pipeline.pose.detect

    made = []

    class Tracker:
        def __init__(self, size):
            self.blind = len(made) % 3 == 2  # real, temporal, more_l1
            made.append(self)

        def __call__(self, image):
            if self.blind:
                return None
            joints = empty_track(1)[0]
            joints[:25] = (float(image.mean()), 5.0, 1.0)
            return joints

        def close(self):
            pass

    monkeypatch.setattr(pipeline.pose.detect, "HolisticTracker", Tracker)
    evaluate(tmp_path / "eval3", clips, tmp_path / "run" / "generator.pt",
             ablations={"more_l1": tmp_path / "l1" / "generator.pt"}, rows=["temporal"], device="cpu", clip_batch=2)
    assert len(made) == 6
    frames = pd.read_parquet(tmp_path / "eval3" / "frames.parquet")
    assert list(frames["body_found"]) == [True] * 5 + [False] * 5
    metrics = pd.read_parquet(tmp_path / "eval3" / "metrics.parquet").set_index(["table", "ablation", "metric"])
    assert metrics.loc[("bodies_found", "temporal", "generated"), "value"] == 100.0
    assert metrics.loc[("bodies_found", "more_l1", "generated"), "value"] == 0.0
    assert metrics.loc[("missed_detections", "more_l1", "body"), "value"] == 25.0
    assert metrics.loc[("missed_detections", "temporal", "body"), "value"] == 0.0
    assert metrics.loc[("pose_distance", "temporal", "body"), "value"] > 0  # real and generated frames differ


def test_bodies_found_counts_generated_frames_among_those_with_a_real_body():
    from pipeline.evaluation.evaluate import Row, StreamScores, _metric_rows
    from pipeline.pose.keypoints import BODY

    real, fake = empty_track(5), empty_track(5)
    real[:4, BODY.start] = (10.0, 10.0, 1.0)  # a body in real frames 0-3
    fake[[0, 2, 4], BODY.start + 1] = (12.0, 12.0, 1.0)  # found in generated 0, 2 and 4 (4 has no real body)
    frames = [{"ablation": "temporal", "ssim_body": 0.5, "lpips_body": math.nan, "ssim_face": 0.5,
               "lpips_face": math.nan, "chroma_body": 4.0, "chroma_body_real": 2.0}] * 5
    scores = StreamScores(frames, real, {"temporal": fake}, {"temporal": 1.0, "real": 2.0}, [])
    metrics = pd.DataFrame(_metric_rows(scores, [Row("temporal", ROWS["temporal"], "temporal")], lpips=False))
    found = metrics[metrics["table"] == "bodies_found"].set_index("metric")["value"]
    assert found["generated"] == pytest.approx(50.0) and found["real"] == pytest.approx(80.0)
    chroma = metrics[metrics["table"] == "chroma_noise"].set_index("metric")["value"]
    assert (chroma["generated"], chroma["real"], chroma["ratio"]) == pytest.approx((4.0, 2.0, 2.0))


def test_ablation_arguments_are_checked(tmp_path):
    from pipeline.evaluation.evaluate import parse_ablations

    with pytest.raises(ValueError, match="clip_batch must be at least 1, got 0"):
        evaluate(tmp_path / "e", [], tmp_path / "generator.pt", rows=["temporal"], clip_batch=0)

    assert parse_ablations(["a=x/generator.pt"]) == {"a": Path("x/generator.pt")}
    with pytest.raises(ValueError, match="expected NAME=GENERATOR_PT"):
        parse_ablations(["x/generator.pt"])
    with pytest.raises(ValueError, match="given twice"):
        parse_ablations(["a=x", "a=y"])


def test_a_frames_lpips_values_come_to_the_host_together(monkeypatch):
    import types

    from pipeline.evaluation.evaluate import Row, _ScoreCollector
    from pipeline.evaluation.metrics import LPIPS

    keypoints = np.zeros((1, 137, 3))
    keypoints[0, :25] = [[4 + i, 4 + 2 * i, 1.0] for i in range(25)]  # a body: its box (with margin) 57 px high
    data = [types.SimpleNamespace(frames=[7], keypoints=keypoints)]
    specs = [Row("temporal", "T", "temporal"), Row("temporal_face", "TF", "temporal", face=True)]
    collector = _ScoreCollector(data, specs, samples=0)

    class Metric:  # a distance per crop, left on the "device" as LPIPS leaves it
        def __call__(self, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
            return torch.tensor(float(a.shape[0]))

    transfers = []
    real_floats = LPIPS.floats
    monkeypatch.setattr(LPIPS, "floats", staticmethod(lambda values: transfers.append(len(values))
                                                      or real_floats(values)))
    rng = np.random.default_rng(0)
    real, fake = (rng.integers(0, 256, (128, 64, 3), dtype=np.uint8) for _ in range(2))
    entries = collector.score(0, 0, real, real, {"temporal": fake, "temporal_face": real}, (0, 0, 16, 16), Metric())
    assert transfers == [4]  # body and face crops of both rows: one copy to the host
    for entry in entries.values():
        assert entry["lpips_face"] == 16.0 and entry["lpips_body"] == 57.0 and type(entry["lpips_body"]) is float
    assert collector.frame_rows["temporal"][0] is entries["temporal"]


def test_chroma_ratio_is_one_for_the_same_frames_and_ignores_frames_without_a_crop():
    from pipeline.evaluation.evaluate import chroma_ratio

    assert chroma_ratio([2.0, 4.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert chroma_ratio([6.0, math.nan], [3.0, 100.0]) == pytest.approx(2.0)
    assert math.isnan(chroma_ratio([math.nan], [1.0]))
