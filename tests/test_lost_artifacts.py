"""A lost artifact is made again by a rerun: a training whose loss log is gone starts over to the same
losses (unit level), and in the workflow each kind of output deleted in turn (loss log, figure, frame image,
keypoint file, the checkpoint beside a finished model) comes back, with a line for what Snakemake cannot see."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch

from pipeline.gan.checkpoint import load_checkpoint
from pipeline.gan.train import TrainConfig, train
from test_train import TINY, losses


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_a_finished_run_without_its_loss_log_is_trained_again_to_the_same_losses(tmp_path, synthetic_clip, caplog):
    cfg = TrainConfig(**TINY, epochs=1, niter_decay=0, checkpoint_every=2)
    run = tmp_path / "run"
    train(run, [synthetic_clip], cfg)
    whole, model = losses(run), _weights(run / "generator.pt")
    assert load_checkpoint(run / "checkpoint.pt")["step"] == len(whole) == 5

    (run / "losses.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.gan.train"):
        record = train(run, [synthetic_clip], cfg)
    assert f"{run / 'checkpoint.pt'}: its loss log {run / 'losses.csv'} is missing: starting over" in caplog.text
    assert record["resumed_from_step"] is None
    assert losses(run) == whole  # every digit
    assert all(torch.equal(model[k], v) for k, v in _weights(run / "generator.pt").items())

    # a log cut short (rows lost up to the checkpoint's step) is no record of the run either
    with (run / "losses.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    with (run / "losses.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows[:3])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.gan.train"):
        train(run, [synthetic_clip], cfg)
    assert f"its loss log {run / 'losses.csv'} ends at step 2, the checkpoint at step 5: starting over" in caplog.text
    assert losses(run) == whole

    # the checkpoint beside a finished model lost: a rerun trains from the start to the same model
    (run / "checkpoint.pt").unlink()
    train(run, [synthetic_clip], cfg)
    assert losses(run) == whole and load_checkpoint(run / "checkpoint.pt")["step"] == 5


@pytest.mark.slow
def test_each_lost_output_is_made_again_by_a_rerun(tmp_path, clip_path):
    """The tiny workflow run once; then a loss log, a frame image, and a figure, a keypoint file, a model and
    the checkpoint beside a finished model are deleted in turn, each followed by a rerun that restores it (the
    checkpoint: nothing needs it once the model is written, so nothing reruns)."""
    from test_rerun import BASE
    from test_workflow import snakemake, write_config

    work = tmp_path / "work"
    work.mkdir()
    write_config(work, clip_path, **BASE)
    snakemake(work)
    results = work / "results"
    run_log = results / "models/subj/losses.csv"
    logged = run_log.read_text()
    frames = results / "frames/clip_target"
    frame = frames / "000011.jpg"
    frame_bytes = frame.read_bytes()
    figure = results / "plots/tracks/clip_target.png"
    keypoints = results / "keypoints/clip_source/raw.parquet"

    run_log.unlink()
    done = snakemake(work)
    assert "results/models/subj/generator.pt: its loss log results/models/subj/losses.csv is missing" in done.stderr
    assert run_log.read_text() == logged  # trained again from the start: the same losses, every digit
    assert (results / "lost/models/subj/generator.pt.json").is_file()  # what was lost, and when
    done = snakemake(work, "-n")  # made again once: its lost record, now older than the model, reruns nothing
    assert "Nothing to be done" in done.stdout + done.stderr

    frame.unlink()
    done = snakemake(work)
    assert "results/frames/clip_target: results/frames/clip_target/000011.jpg is missing" in done.stderr
    assert frame.read_bytes() == frame_bytes
    assert run_log.read_text() == logged  # what follows the frames reran on the same frames

    # intermediate files (keypoints) and models are targets too, figures always were; the checkpoint beside a
    # finished model is needed by nothing, so nothing reruns for it
    checkpoint, face = results / "models/subj/checkpoint.pt", results / "models/subj/face.pt"
    for lost in (figure, keypoints, checkpoint, face):
        lost.unlink()
    snakemake(work)
    assert figure.is_file() and keypoints.is_file() and face.is_file() and not checkpoint.exists()
    done = snakemake(work, "-n")
    assert "Nothing to be done" in done.stdout + done.stderr
