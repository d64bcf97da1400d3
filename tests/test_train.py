"""``edn train``: options, schedule, VGG decision, learning, batches, exact resume, DDP, workflow rules."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.checkpoint import load_checkpoint
from pipeline.cli import build_parser, main
from pipeline.models.generator import load_generator
from pipeline.models.losses import VGG19_FILE, VGGWeightsNotFound
from pipeline.train import TrainConfig, _decay_factor, config_from_args, resolve_vgg, train
from pipeline.train_face import FaceConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A tiny model on the 64x128 synthetic clip (5 training pairs): a step takes tens of milliseconds.
TINY = dict(width=64, height=128, ngf=8, n_downsample=2, n_blocks=1, ndf=8, n_layers_d=2, num_d=2, workers=0,
            vgg_loss=False, sample_every=0, deterministic=True)
TINY_FLAGS = ["--width", "64", "--height", "128", "--ngf", "8", "--n-downsample", "2", "--n-blocks", "1",
              "--ndf", "8", "--n-layers-d", "2", "--num-d", "2", "--workers", "0", "--sample-every", "0"]


def clip_flags(clip) -> list[str]:
    return ["--clip", *map(str, clip)]


def losses(run: Path) -> list[dict[str, str]]:
    with (run / "losses.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


# ------------------------------------------------------------------------------------ fast checks

def test_cli_options_are_the_config_fields_with_their_defaults():
    parser = build_parser()
    args = parser.parse_args(["train", "out", "--clip", "f", "r", "k"])
    assert config_from_args(TrainConfig, args) == TrainConfig()
    # every setting is reachable from the command line
    assert {f for f in TrainConfig.__dataclass_fields__} <= set(vars(args))
    face_args = parser.parse_args(["train-face", "out", "--generator", "g.pt", "--clip", "f", "r", "k"])
    assert config_from_args(FaceConfig, face_args) == FaceConfig()
    from_generator = {"width", "height", "ngf", "n_downsample", "n_blocks", "n_blocks_local", "local_enhancer",
                      "temporal"}
    assert set(FaceConfig.__dataclass_fields__) - from_generator <= set(vars(face_args))
    assert config_from_args(TrainConfig, parser.parse_args(
        ["train", "o", "--clip", "f", "r", "k", "--no-vgg-loss"])).vgg_loss is False
    assert config_from_args(TrainConfig, parser.parse_args(
        ["train", "o", "--clip", "f", "r", "k", "--vgg-loss", "auto"])).vgg_loss == "auto"


def test_invalid_settings_are_refused_with_their_names():
    for bad, match in [({"epochs": 0}, "epochs=0"), ({"niter_decay": 50}, "niter_decay=50"),
                       ({"vgg_loss": "maybe"}, "vgg_loss='maybe'"), ({"holdout": 1.0}, "holdout=1.0")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="face-size 20 must be a positive multiple of 8"):
        FaceConfig(face_size=20)


def test_learning_rate_schedule_is_pix2pixhds():
    # 4 epochs, the last 2 decaying: full rate for epochs 0-2, then minus half after each.
    factor = _decay_factor(4, 2)
    assert [factor(e) for e in range(5)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    assert _decay_factor(3, 0)(3) == 1.0


def test_vgg_auto_runs_without_weights_and_on_insists(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / VGG19_FILE
    cfg, why = resolve_vgg(TrainConfig(vgg_loss="auto"))
    assert cfg.vgg_loss is False and str(hub_file) in why
    with pytest.raises(VGGWeightsNotFound, match=str(hub_file)):
        resolve_vgg(TrainConfig())
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"")  # resolve_vgg only looks for the file; loading is tested in test_models
    for wanted in (True, "auto"):
        cfg, why = resolve_vgg(TrainConfig(vgg_loss=wanted))
        assert cfg.vgg_loss is True and cfg.vgg_weights == str(hub_file) and why is None
    assert resolve_vgg(TrainConfig(vgg_loss=False)) == (TrainConfig(vgg_loss=False), "disabled by --no-vgg-loss")


def workflow(workdir: Path, *targets: str, train: dict | None = None, videos: str = "va") -> str:
    """Run Snakemake on the repository's workflow in ``workdir`` with target clips ``videos``."""
    rows = "".join(f"{v}\t{v}.mp4\ttarget\ts\n" for v in videos.split())
    (workdir / "videos.tsv").write_text("name\tpath\trole\tsubject\n" + rows)
    for v in videos.split():
        (workdir / f"{v}.mp4").touch()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "videos.tsv"
    config["train"].update(train or {})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
                           "-p", "--cores", "2", *targets], cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "TORCH_HOME": str(workdir / "torch")})  # no VGG19 file, anywhere
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return done.stdout


def test_workflow_plans_both_training_rules(tmp_path):
    planned = workflow(tmp_path, "-n", "results/models/s/face.pt", videos="va vb")
    clips = ("--clip results/frames/va results/render/va results/keypoints/va/smooth.parquet "
             "--clip results/frames/vb results/render/vb results/keypoints/vb/smooth.parquet")
    assert (f"python -m pipeline.launch --gpus 1 --cpu-procs 1 -- python -m pipeline.cli train results/models/s {clips} "
            "--model-out results/models/s/generator.pt") in planned
    assert (f"python -m pipeline.launch --gpus 1 --cpu-procs 1 -- python -m pipeline.cli train-face "
            f"results/models/s/face {clips} "
            "--model-out results/models/s/face.pt --generator results/models/s/generator.pt") in planned
    assert "--vgg-loss auto" in planned and "--face-ngf 16" in planned


# ------------------------------------------------------------------------------- training runs

@pytest.mark.slow
def test_tiny_model_overfits_one_frame_pair(tmp_path, synthetic_clip_factory):
    clip = synthetic_clip_factory(tmp_path / "clip", n_frames=2)  # one pair, no hold-out
    cfg = TrainConfig(**{**TINY, "ngf": 16, "ndf": 16}, epochs=40, niter_decay=0, lr=1e-3, holdout=0)
    train(tmp_path / "run", [clip], cfg)
    l1 = [float(r["L1"]) for r in losses(tmp_path / "run")]
    assert len(l1) == 40
    # GAN + feature matching alone (no VGG, no L1 term) pull the output to the frame.
    assert sum(l1[-5:]) / 5 < 0.5 * l1[0], l1


@pytest.mark.slow
def test_batch_of_two(tmp_path, synthetic_clip):
    record = train(tmp_path / "run", [synthetic_clip], TrainConfig(**{**TINY, "sample_every": 3}, batch_size=2,
                                                                    epochs=2, niter_decay=1))
    assert record["samples"] == 5 and record["steps_per_epoch"] == 3  # 8 frames, 2 held out: 5 pairs
    assert [int(r["step"]) for r in losses(tmp_path / "run")] == list(range(1, 7))
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step_0000003.png",
                                                                               "step_0000006.png"]
    generator, config = load_generator(tmp_path / "run" / "generator.pt")
    with torch.no_grad():
        assert generator(torch.zeros(2, 6, 128, 64)).shape == (2, 3, 128, 64)
    assert (config["width"], config["height"]) == (64, 128)
    assert run_json(tmp_path / "run")["clips"][0]["held_out_frames"] == [6, 7]


@pytest.mark.slow
def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path, synthetic_clip):
    # 2 epochs of 5 steps; the rate halves after the first, so the scheduler state matters too.
    cfg = dict(TINY, epochs=2, niter_decay=2, checkpoint_every=2)
    train(tmp_path / "whole", [synthetic_clip], TrainConfig(**cfg))
    train(tmp_path / "parts", [synthetic_clip], TrainConfig(**cfg, max_steps=2))  # stop at 2...
    shutil.copy(tmp_path / "parts" / "checkpoint.pt", tmp_path / "step2.pt")
    train(tmp_path / "parts", [synthetic_clip], TrainConfig(**cfg, max_steps=3))  # ...restart, stop at 3
    assert load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["step"] == 3
    # As if killed after step 3 before its checkpoint: losses.csv has a row past the checkpoint.
    shutil.copy(tmp_path / "step2.pt", tmp_path / "parts" / "checkpoint.pt")
    record = train(tmp_path / "parts", [synthetic_clip], TrainConfig(**cfg))
    assert record["resumed_from_step"] == 2
    whole, parts = losses(tmp_path / "whole"), losses(tmp_path / "parts")
    assert [r["lr"] for r in whole] == ["0.0002"] * 5 + ["0.0001"] * 5
    assert parts == whole  # every digit of every loss of the resumed steps too
    a = torch.load(tmp_path / "whole" / "generator.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "parts" / "generator.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # other settings do not resume: the run says which and what to do
    with pytest.raises(ValueError, match=r"checkpoint.pt: checkpoint was made with other settings \(ngf\)"):
        train(tmp_path / "parts", [synthetic_clip], TrainConfig(**{**cfg, "ngf": 4}))


@pytest.mark.slow
def test_two_processes_keep_weights_in_sync(tmp_path, synthetic_clip):
    # The launcher and command the workflow uses, with two gloo processes on the CPU.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-m", "pipeline.launch", "--cpu-procs", "2", "--", sys.executable, "-m",
                           "pipeline.cli", "train", str(tmp_path / "run"), *clip_flags(synthetic_clip), *TINY_FLAGS,
                           "--no-vgg-loss", "--max-steps", "4", "--checkpoint-every", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = run_json(tmp_path / "run")
    assert record["world_size"] == 2 and record["final_step"] == 4
    for name, sums in record["param_checksums"].items():
        assert len(sums) == 2 and sums[0] == sums[1], (name, sums)
    assert len(losses(tmp_path / "run")) == 4
    assert len(load_checkpoint(tmp_path / "run" / "checkpoint.pt")["rng"]) == 2  # both ranks' generators


@pytest.mark.slow
def test_missing_vgg_weights_stop_the_run_unless_turned_off(tmp_path, synthetic_clip, monkeypatch, caplog):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}
    cmd = [str(BIN / "edn"), "train", str(tmp_path / "run"), *clip_flags(synthetic_clip), *TINY_FLAGS,
           "--max-steps", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert f"edn train: error: VGG19 weights for the perceptual loss not found at {tmp_path}/torch/hub" \
           f"/checkpoints/{VGG19_FILE}" in done.stderr
    assert "IMAGENET1K_V1" in done.stderr and "--no-vgg-loss" in done.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # stopped before any work

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for flags, run in ((["--no-vgg-loss"], "off"), (["--vgg-loss", "auto"], "auto")):
        argv = [*cmd[1:], *flags]
        argv[1] = str(tmp_path / run)
        assert main(argv) == 0
        record = run_json(tmp_path / run)
        assert record["vgg_loss"] is False and record["vgg_loss_requested"] == (False if run == "off" else "auto")
        assert load_checkpoint(tmp_path / run / "checkpoint.pt")["vgg_loss"] is False
        assert torch.load(tmp_path / run / "generator.pt", weights_only=True)["vgg_loss"] is False
        assert "G_VGG" not in losses(tmp_path / run)[0]
    assert "VGG perceptual loss OFF (vgg_loss auto: VGG19 weights" in caplog.text


@pytest.mark.slow
def test_vgg_loss_trains_with_a_weight_file(tmp_path, synthetic_clip, random_vgg_file):
    # Random weights only exercise the path; real runs load torchvision's ImageNet file.
    train(tmp_path / "run", [synthetic_clip], TrainConfig(**{**TINY, "vgg_loss": True}, vgg_weights=str(random_vgg_file),
                                                          max_steps=2))
    rows = losses(tmp_path / "run")
    assert len(rows) == 2 and all(float(r["G_VGG"]) > 0 for r in rows)
    record = run_json(tmp_path / "run")
    assert record["vgg_loss"] is True and record["params"]["vgg_weights"] == str(random_vgg_file)


@pytest.mark.slow
def test_workflow_trains_both_models_and_a_rerun_resumes(tmp_path, synthetic_clip):
    frames, render, keypoints = synthetic_clip
    shutil.copytree(frames, tmp_path / "results" / "frames" / "va")
    shutil.copytree(render, tmp_path / "results" / "render" / "va")
    (tmp_path / "results" / "keypoints" / "va").mkdir(parents=True)
    shutil.copy(keypoints, tmp_path / "results" / "keypoints" / "va" / "smooth.parquet")
    tiny = dict(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, epochs=1, niter_decay=0,
                workers=0, face={"epochs": 1, "niter_decay": 0, "ngf": 4, "n_blocks": 1, "size": None})
    only_training = ["--allowed-rules", "train_generator", "train_face"]  # the inputs above stand as they are
    workflow(tmp_path, "results/models/s/face.pt", *only_training, train=tiny)
    models = tmp_path / "results" / "models" / "s"
    assert load_generator(models / "generator.pt")[1]["width"] == 64
    assert (models / "face.pt").is_file() and (models / "face" / "checkpoint.pt").is_file()
    assert run_json(models)["vgg_loss"] is False  # auto, and no VGG19 file in this TORCH_HOME
    assert (tmp_path / "results" / "benchmarks" / "train" / "s.tsv").is_file()
    # A rerun of the generator job (as after a crash) resumes from the checkpoint beside its output;
    # the same weights come out, so the face run resumes too.
    workflow(tmp_path, "results/models/s/face.pt", *only_training, "--forcerun", "train_generator", train=tiny)
    logs = tmp_path / "results" / "logs"
    assert "checkpoint.pt: resuming at step 5 of 5" in (logs / "train" / "s.log").read_text()
    assert "face/checkpoint.pt: resuming at step 5 of 5" in (logs / "train_face" / "s.log").read_text()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_one_step_in_reduced_precision_on_cpu_autocast(tmp_path, synthetic_clip, precision):
    record = train(tmp_path / "run", [synthetic_clip], TrainConfig(**{**TINY, "max_steps": 1}, precision=precision))
    assert run_json(tmp_path / "run")["precision"] == precision
    assert [int(r["step"]) for r in losses(tmp_path / "run")] == [1]
    row = losses(tmp_path / "run")[0]
    assert all(math.isfinite(float(row[k])) for k in ("D_fake", "D_real", "G_GAN", "G_FM"))
    generator, _ = load_generator(tmp_path / "run" / "generator.pt")
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in generator.parameters())
    assert record["status"] == "finished" and record["final_step"] == 1


def test_auto_precision_trains_in_fp32_on_cpu(tmp_path, synthetic_clip):
    from pipeline.train import start_runtime

    assert start_runtime("cpu", "auto").precision == "fp32" and not start_runtime("cpu", "auto").bf16
    with pytest.raises(ValueError, match="precision='fp8'"):
        TrainConfig(precision="fp8")


def test_channels_last_is_an_option_off_by_default():
    from torch import nn

    from pipeline.train import Runtime

    assert TrainConfig().channels_last is False
    conv = nn.Conv2d(3, 4, 3)
    assert Runtime(0, 1, torch.device("cpu")).prepare(conv).weight.is_contiguous()
    on = Runtime(0, 1, torch.device("cpu"), channels_last=True)
    assert on.prepare(nn.Conv2d(3, 4, 3)).weight.is_contiguous(memory_format=torch.channels_last)
    assert on.tensor(torch.zeros(1, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    assert not on.prepare(nn.Conv2d(3, 4, 3)).weight.is_contiguous()
