"""TensorBoard: every loss term, the learning rate, step time and sample grids of the pose and face GANs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main
from pipeline.gan import tensorboard_log
from pipeline.gan.options import TrainConfig, config_from_args
from pipeline.gan.train import train
from pipeline.gan.train_face import FaceConfig, train_face

pytest.importorskip("tensorboard")
TINY = dict(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0, vgg_loss=False,
            deterministic=True, sample_every=2, max_steps=4)


def events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_pose_and_face_gan_runs_log_losses_lr_step_time_and_samples(tmp_path, synthetic_clip_factory):
    clip = synthetic_clip_factory(tmp_path / "clip", n_frames=8)
    train(tmp_path / "run", [clip], TrainConfig(**TINY, tensorboard=True))
    acc = events(tmp_path / "run")
    rows = csv_rows(tmp_path / "run")
    terms = [k for k in rows[0] if k not in ("step", "epoch", "lr")]
    assert set(acc.Tags()["scalars"]) == {f"loss/{k}" for k in terms} | {"lr", "step_time_s"}
    for term in terms:  # the same values as losses.csv, step for step
        logged = [(e.step, e.value) for e in acc.Scalars(f"loss/{term}")]
        assert logged == [(int(r["step"]), pytest.approx(float(r[term]), rel=1e-5)) for r in rows]
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([float(r["lr"]) for r in rows])
    assert all(e.value > 0 for e in acc.Scalars("step_time_s"))
    images = acc.Images("samples")
    assert [i.step for i in images] == [2, 4]  # every sample_every steps
    assert (images[0].width, images[0].height) == (3 * 64, 128)  # stick figure | generated | real
    import cv2
    import numpy as np

    logged = cv2.imdecode(np.frombuffer(images[0].encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(logged, cv2.imread(str(tmp_path / "run" / "samples" / "step_0000002.png")))

    train_face(tmp_path / "face", tmp_path / "run" / "generator.pt", [clip],
               FaceConfig(face_ngf=4, face_n_blocks=1, ndf=4, workers=0, vgg_loss=False, sample_every=2,
                          max_steps=2, tensorboard=True))
    acc = events(tmp_path / "face")
    assert "loss/G_GAN" in acc.Tags()["scalars"] and [i.step for i in acc.Images("samples")] == [2]


def test_off_writes_no_events_and_on_without_the_package_is_refused(tmp_path, synthetic_clip_factory, monkeypatch):
    clip = synthetic_clip_factory(tmp_path / "clip", n_frames=8)
    train(tmp_path / "off", [clip], TrainConfig(**{**TINY, "max_steps": 1}, tensorboard=False))
    assert not (tmp_path / "off" / "tensorboard").exists() and len(csv_rows(tmp_path / "off")) == 1

    monkeypatch.setattr(tensorboard_log, "tensorboard_installed", lambda: False)
    assert tensorboard_log.open_board(tmp_path / "auto", "auto") is None  # auto: silently without
    with pytest.raises(RuntimeError, match="pip install tensorboard==2.20.0"):
        tensorboard_log.open_board(tmp_path / "on", True)


def test_resumed_run_continues_its_events(tmp_path, synthetic_clip_factory):
    clip = synthetic_clip_factory(tmp_path / "clip", n_frames=8)
    cfg = {**TINY, "sample_every": 0, "checkpoint_every": 2}
    train(tmp_path / "run", [clip], TrainConfig(**{**cfg, "max_steps": 2}))
    train(tmp_path / "run", [clip], TrainConfig(**{**cfg, "max_steps": 4}))  # resumes at step 2
    assert [e.step for e in events(tmp_path / "run").Scalars("lr")] == [1, 2, 3, 4]


def test_cli_option():
    parser = build_parser()
    for flag, value in (("on", True), ("off", False), ("auto", "auto")):
        args = parser.parse_args(["train", "o", "--clip", "f", "r", "k", "--tensorboard", flag])
        assert config_from_args(TrainConfig, args).tensorboard == value
    with pytest.raises(ValueError, match="tensorboard='yes'"):
        TrainConfig(tensorboard="yes")


@pytest.mark.slow
def test_only_rank_0_writes_events_under_ddp(tmp_path, synthetic_clip_factory):
    import os
    import subprocess
    import sys

    clip = synthetic_clip_factory(tmp_path / "clip", n_frames=8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-m", "pipeline.gan.launch", "--cpu-procs", "2", "--", sys.executable, "-m",
                           "pipeline.cli", "train", str(tmp_path / "run"), "--clip", *map(str, clip), "--width", "64",
                           "--height", "128", "--ngf", "4", "--n-downsample", "2", "--n-blocks", "1", "--ndf", "4",
                           "--num-d", "1", "--workers", "0", "--no-vgg-loss", "--max-steps", "2",
                           "--sample-every", "1", "--tensorboard", "on"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    acc = events(tmp_path / "run")
    assert [e.step for e in acc.Scalars("lr")] == [1, 2] and [i.step for i in acc.Images("samples")] == [1, 2]
