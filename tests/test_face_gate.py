"""The Face GAN only where there is a face: too few face landmarks -> no face GAN, said everywhere."""

from __future__ import annotations

import json
import numpy as np
import pytest

from pipeline.evaluation.plots import plot_losses
from pipeline.gan.generate import load_models
from pipeline.gan.models.face import face_skipped
from pipeline.gan.train import TrainConfig, train
from pipeline.gan.train_face import FaceConfig, face_landmark_share, train_face
from pipeline.pose.keypoints import FACE, read_keypoints, write_keypoints
from pipeline.pose.render import render_track

TINY = dict(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0, vgg_loss=False,
            sample_every=0, deterministic=True, max_steps=2, device="cpu")
FACE_TINY = dict(face_ngf=4, face_n_blocks=1, ndf=4, workers=0, vgg_loss=False, sample_every=0, max_steps=2)


def faceless(clip, root, keep_frames=()):
    """A copy of the clip whose keypoints have no face landmarks except on ``keep_frames`` (positions)."""
    root.mkdir(parents=True)
    track = read_keypoints(clip[2])
    drop = np.ones(len(track.frames), bool)
    drop[list(keep_frames)] = False
    track.data[drop, FACE] = (np.nan, np.nan, 0.0)
    write_keypoints(root / "keypoints.parquet", track)
    render_track(read_keypoints(root / "keypoints.parquet"), root / "render")
    return clip[0], root / "render", root / "keypoints.parquet"


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    from conftest import make_synthetic_clip

    root = tmp_path_factory.mktemp("face_gate")
    clip = make_synthetic_clip(root / "clip", n_frames=10)
    train(root / "run", [clip], TrainConfig(**TINY))
    return clip, root / "run" / "generator.pt"


def test_landmark_share_counts_training_frames_only(tmp_path, generator) -> None:
    clip, _ = generator
    # 10 frames, the last 2 held out: faces on 3 of the 8 training frames and on both held-out ones.
    partial = faceless(clip, tmp_path / "partial", keep_frames=(0, 1, 2, 8, 9))
    assert face_landmark_share([partial], 0.2) == pytest.approx(3 / 8)
    assert face_landmark_share([clip], 0.2) == 1.0


def test_no_face_gan_without_faces_and_everyone_says_why(tmp_path, generator) -> None:
    clip, gen = generator
    partial = faceless(clip, tmp_path / "partial", keep_frames=(0, 1, 2))
    record = train_face(tmp_path / "face", gen, [partial], FaceConfig(**FACE_TINY))
    face_pt = tmp_path / "face" / "face.pt"
    reason = face_skipped(face_pt)
    assert reason and "38%" in reason and "min_landmarks" in reason and record["skipped"] == reason
    assert not (tmp_path / "face" / "checkpoint.pt").exists()  # nothing was trained
    assert json.loads((tmp_path / "face" / "run.json").read_text())["skipped"] == reason
    plot_losses([("pose GAN", gen.parent), ("face GAN", tmp_path / "face")], tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 5000
    with pytest.raises(FileNotFoundError, match="loss log not found"):  # a run that was not skipped still needs its log
        plot_losses([("pose GAN", tmp_path / "nothing")], tmp_path / "none.png")
    models = load_models(gen, face_pt, "cpu")
    assert models.face is None and models.records["face"]["skipped"] == reason
    # Enough faces (a lower bar): a real face GAN is trained and loaded.
    train_face(tmp_path / "face2", gen, [partial], FaceConfig(**FACE_TINY, face_min_landmarks=0.3))
    assert face_skipped(tmp_path / "face2" / "face.pt") is None
    assert load_models(gen, tmp_path / "face2" / "face.pt", "cpu").face is not None


@pytest.mark.slow
def test_evaluation_drops_the_face_row_and_says_why(tmp_path, generator, monkeypatch) -> None:
    from pipeline.evaluation.evaluate import evaluate

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    clip, gen = generator
    bare = faceless(clip, tmp_path / "bare")
    train_face(tmp_path / "face", gen, [bare], FaceConfig(**FACE_TINY))
    record = evaluate(tmp_path / "eval", [clip], gen, face=tmp_path / "face" / "face.pt",
                      rows=["temporal", "temporal_face"], device="cpu", samples=1)
    assert list(record["rows"]) == ["temporal"] and "0%" in record["no_face_gan"]
    assert "No Face GAN row: face landmarks on 0%" in (tmp_path / "eval" / "tables.md").read_text()
