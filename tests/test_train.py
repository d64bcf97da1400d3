"""``edn train``: options, schedule, VGG decision, learning, batches, exact resume, DDP, workflow rules."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.cli import build_parser, main
from pipeline.gan.checkpoint import load_checkpoint
from pipeline.gan.models.generator import load_generator
from pipeline.gan.models.losses import VGG19_FILE, VGGWeightsNotFound
from pipeline.gan.engine import _decay_factor
from pipeline.gan.options import TrainConfig, config_from_args
from pipeline.gan.stage import resolve_vgg
from pipeline.gan.train import train
from pipeline.gan.train_face import FaceConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A tiny model on the 64x128 synthetic clip (5 training pairs): a step takes tens of milliseconds.
TINY = dict(width=64, height=128, ngf=8, n_downsample=2, n_blocks=1, ndf=8, n_layers_d=2, num_d=2, workers=0,
            vgg_loss=False, sample_every=0, deterministic=True, device="cpu")  # bit-exact: the CPU's (no TF32, no bf16)
TINY_FLAGS = ["--width", "64", "--height", "128", "--ngf", "8", "--n-downsample", "2", "--n-blocks", "1",
              "--ndf", "8", "--n-layers-d", "2", "--num-d", "2", "--workers", "0", "--sample-every", "0",
              "--device", "cpu"]


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
                      "temporal", "init_global", "niter_fix_global", "background", "lambda_fg",
                      "lambda_mask_binary", "lambda_mask", "mask_init", "upsample", "chroma",
                      "mirror", "jitter_scale", "jitter_shift", "jitter_rotation", "pose_drop", "pose_noise",
                      "lambda_new_pose", "lambda_mismatch", "lambda_new_pose_plate"}
    # (pose GAN only, augmentation included; the face GAN has its own lambda_l1)
    assert set(FaceConfig.__dataclass_fields__) - from_generator <= set(vars(face_args))
    assert config_from_args(TrainConfig, parser.parse_args(
        ["train", "o", "--clip", "f", "r", "k", "--no-vgg-loss"])).vgg_loss is False
    assert config_from_args(TrainConfig, parser.parse_args(
        ["train", "o", "--clip", "f", "r", "k", "--vgg-loss", "auto"])).vgg_loss == "auto"


def test_invalid_settings_are_refused_with_their_names():
    for bad, match in [({"epochs": 0}, "epochs=0"), ({"niter_decay": 50}, "niter_decay=50"),
                       ({"vgg_loss": "maybe"}, "vgg_loss='maybe'"), ({"holdout": 1.0}, "holdout=1.0"),
                       ({"upsample": "bilinear"}, "upsample='bilinear'"), ({"chroma": "quarter"}, "chroma='quarter'"),
                       ({"lambda_mask": -1.0}, "lambda_mask=-1.0")]:
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
             "--clip results/frames/vb results/render/vb results/keypoints/vb/smooth.parquet "
             "--clip-qc results/qc/va/smooth.parquet --clip-qc results/qc/vb/smooth.parquet")
    plates = " --clip-plate results/plate/va/plate.png --clip-plate results/plate/vb/plate.png"  # background: plate
    assert (f"python -m pipeline.gan.launch --gpus 1 --cpu-procs 1 -- python -m pipeline.cli train "
            f"{clips}{plates} --model-out results/models/s/generator.pt") in planned
    assert " -- results/models/s > " in planned  # the run folder after the options' end
    assert (f"python -m pipeline.gan.launch --gpus 1 --cpu-procs 1 -- python -m pipeline.cli train-face "
            f"{clips} --model-out results/models/s/face.pt --generator results/models/s/generator.pt") in planned
    assert " -- results/models/s/face > " in planned
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


def _random_loss_weights(monkeypatch) -> None:
    """Make every step draw from python's, numpy's and torch's generators, as augmentation or dropout
    would: a resume that does not restore all three then trains differently."""
    import random

    import numpy as np

    import pipeline.gan.task

    lsgan = pipeline.gan.task.lsgan_loss

    def drawing(pred, real):
        return lsgan(pred, real) * (1 + 0.1 * (random.random() + float(np.random.rand()) + float(torch.rand(()))))

    monkeypatch.setattr(pipeline.gan.task, "lsgan_loss", drawing)


@pytest.mark.slow
def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path, synthetic_clip, monkeypatch, caplog):
    _random_loss_weights(monkeypatch)
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
    # a checkpoint of other settings never blocks: the run starts over, says why, and ends as a fresh run
    (tmp_path / "parts" / "samples").mkdir(exist_ok=True)
    (tmp_path / "parts" / "samples" / "step_0000002.png").write_bytes(b"an old run's grid")
    with caplog.at_level(logging.WARNING, logger="pipeline.gan.engine"):
        record = train(tmp_path / "parts", [synthetic_clip], TrainConfig(**{**cfg, "ngf": 4, "max_steps": 3}))
    assert "checkpoint was made with other settings (ngf 8 -> 4): starting over" in caplog.text
    assert record["resumed_from_step"] is None and not (tmp_path / "parts" / "samples" / "step_0000002.png").exists()
    train(tmp_path / "fresh", [synthetic_clip], TrainConfig(**{**cfg, "ngf": 4, "max_steps": 3}))
    assert losses(tmp_path / "parts") == losses(tmp_path / "fresh") and len(losses(tmp_path / "fresh")) == 3


@pytest.mark.slow
def test_fp16_resume_keeps_the_loss_scales(tmp_path, synthetic_clip):
    cfg = dict(TINY, epochs=1, niter_decay=0, checkpoint_every=2, precision="fp16")
    train(tmp_path / "whole", [synthetic_clip], TrainConfig(**cfg))
    train(tmp_path / "parts", [synthetic_clip], TrainConfig(**cfg, max_steps=2))
    scales = {k: s["scale"] for k, s in load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["scalers"].items()}
    # A step overflowed and the scales halved from their start (65536): a resume that restarted them would
    # overflow and skip again, so the rest of the run would differ.
    assert scales == {"G": 32768.0, "D": 32768.0}
    train(tmp_path / "parts", [synthetic_clip], TrainConfig(**cfg))
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole") and len(losses(tmp_path / "whole")) == 5


@pytest.mark.slow
def test_two_processes_keep_weights_in_sync(tmp_path, synthetic_clip):
    # The launcher and command the workflow uses, with two gloo processes on the CPU.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-m", "pipeline.gan.launch", "--cpu-procs", "2", "--", sys.executable, "-m",
                           "pipeline.cli", "train", str(tmp_path / "run"), *clip_flags(synthetic_clip), *TINY_FLAGS,
                           "--no-vgg-loss", "--max-steps", "4", "--checkpoint-every", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = run_json(tmp_path / "run")
    assert record["world_size"] == 2 and record["final_step"] == 4
    assert record["precision_reason"].startswith("auto:")  # rank 0's choice, broadcast to both
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
    only_training = ["--allowed-rules", "qc", "plate", "train_generator", "train_face"]  # the inputs above stand as they are
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


# --------------------------------------------------------------- the reference schedule (global -> local)

LOCAL = dict(TINY, local_enhancer=True, ngf=4)  # its global part: ngf 8, like TINY's global generator


def _global_generator(tmp_path, synthetic_clip) -> Path:
    # The global phase at half the local phase's resolution (64x128 -> 32x64), ngf = 2 x 4.
    train(tmp_path / "global", [synthetic_clip], TrainConfig(**{**TINY, "width": 32, "height": 64}, max_steps=2))
    return tmp_path / "global" / "generator.pt"


def _split_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    glob = {k: v for k, v in state.items() if k.startswith("model.")}
    return glob, {k: v for k, v in state.items() if not k.startswith("model.")}


@pytest.mark.slow
def test_local_phase_starts_from_the_global_phase_and_keeps_it_fixed_at_first(tmp_path, synthetic_clip):
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.train import PoseTask

    global_pt = _global_generator(tmp_path, synthetic_clip)
    trained = torch.load(global_pt, weights_only=True)["state_dict"]
    from pipeline.gan.models.generator import GlobalGenerator

    kept = len(GlobalGenerator(ngf=8, n_downsample=2, n_blocks=1).model) - 3  # all but the last pad/conv/tanh
    expected = {k: v for k, v in trained.items() if int(k.split(".")[1]) < kept}
    cfg = TrainConfig(**LOCAL, init_global=str(global_pt), niter_fix_global=1, epochs=2, niter_decay=0)
    task = PoseTask(cfg, Runtime(0, 1, torch.device("cpu")))  # step 0: built, no update yet
    glob, _ = _split_state(task.G.state_dict())
    assert glob.keys() == expected.keys() and all(torch.equal(glob[k], expected[k]) for k in glob)
    fresh, _ = _split_state(PoseTask(dataclasses_replace(cfg, init_global=None), Runtime(0, 1, torch.device("cpu"))
                                     ).G.state_dict())
    assert not all(torch.equal(fresh[k], expected[k]) for k in fresh)  # the test can tell the difference

    # Epoch 0 of 2 (5 steps): the global part frozen, the local branch learning; epoch 1: both.
    train(tmp_path / "local1", [synthetic_clip], dataclasses_replace(cfg, max_steps=5))
    train(tmp_path / "local2", [synthetic_clip], cfg)
    after_epoch0 = torch.load(tmp_path / "local1" / "generator.pt", weights_only=True)["state_dict"]
    after_epoch1 = torch.load(tmp_path / "local2" / "generator.pt", weights_only=True)["state_dict"]
    g0, l0 = _split_state(after_epoch0)
    g1, _ = _split_state(after_epoch1)
    _, l_start = _split_state(task.G.state_dict())
    assert all(torch.equal(g0[k], expected[k]) for k in g0)
    assert any(not torch.equal(l0[k], l_start[k]) for k in l0)
    assert any(not torch.equal(g1[k], expected[k]) for k in g1)
    assert run_json(tmp_path / "local2")["inputs"]["init_global_sha256"]


def dataclasses_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def test_a_global_generator_that_does_not_fit_is_refused(tmp_path):
    from pipeline.gan.models.generator import GlobalGenerator, build_generator, default_generator_config, \
        load_global_into_local

    config = default_generator_config(kind="local", ngf=4, n_downsample=2, n_blocks=1)
    local = build_generator(config)
    # its global part keeps every activation (a ReLU module shared between layers would be dropped after the first)
    relus = sum(isinstance(m, torch.nn.ReLU) for m in GlobalGenerator(ngf=8, n_downsample=2, n_blocks=1).model)
    assert sum(isinstance(m, torch.nn.ReLU) for m in local.model) == relus
    wrong = default_generator_config(kind="global", ngf=4, n_downsample=2, n_blocks=1)  # needs ngf 8
    with pytest.raises(ValueError, match=r"g.pt: global generator does not fit this local enhancer: ngf 4 \(needs 8\)"):
        load_global_into_local(local, config, GlobalGenerator(ngf=4, n_downsample=2, n_blocks=1), wrong, "g.pt")
    with pytest.raises(ValueError, match="without local_enhancer"):
        TrainConfig(init_global="g.pt")


def test_learning_rate_rule_and_a_checkpoint_of_another_gpu_count_is_not_continued(tmp_path):
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.engine import checkpoint_mismatch, scaled_lr

    assert scaled_lr(TrainConfig(batch_size=2), 8) == 2e-4  # none (default): lr whatever the GPU count
    assert scaled_lr(TrainConfig(batch_size=2, lr_scaling="linear"), 8) == pytest.approx(2e-4 * 16)
    with pytest.raises(ValueError, match="lr_scaling='sqrt'"):
        TrainConfig(lr_scaling="sqrt")
    cfg = TrainConfig()
    state = {"config": cfg.as_dict(), "stage": "train", "world": 2, "inputs": {}, "precision": "fp32"}
    cpu = torch.device("cpu")
    assert checkpoint_mismatch(state, "train", cfg, Runtime(0, 1, cpu), {}) == "processes 2 -> 1"
    assert checkpoint_mismatch(state, "train", cfg, Runtime(0, 2, cpu), {}) is None  # same count: resumes
    assert checkpoint_mismatch(state, "train", cfg, Runtime(0, 2, cpu), {"clips": []}) == "input clips or model"
    assert checkpoint_mismatch({**state, "precision": None}, "train", cfg, Runtime(0, 2, cpu), {}) == \
        "no record of the precision it computed in"
    assert checkpoint_mismatch(state, "train-face", TrainConfig(lr=1e-3), Runtime(0, 2, cpu), {}) == \
        "lr 0.0002 -> 0.001; stage train -> train-face"


def test_workers_get_uint8_images_each_decoded_once(synthetic_clip, monkeypatch):
    import pipeline.gan.data as data
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.task import batch_to_device

    dataset = data.PairDataset([data.load_clip(*synthetic_clip)], 64, 128, 0.2)
    reads: list[Path] = []
    real_read = data.read_rgb
    monkeypatch.setattr(data, "read_rgb", lambda path: reads.append(path) or real_read(path))
    item = dataset[2]
    assert len(reads) == len(set(reads)) == 4  # frames t, t+1 and their stick figures, one decode each
    images = {k: item[k] for k in ("pose_t", "pose_t1", "real_t", "real_t1")}
    assert all(t.dtype == torch.uint8 and t.shape == (3, 128, 64) for t in images.values())
    on_device = batch_to_device(images["real_t"][None], Runtime(0, 1, torch.device("cpu")))
    expected = torch.from_numpy(real_read(reads[2])).permute(2, 0, 1).float() / 127.5 - 1
    assert on_device.dtype == torch.float32 and torch.equal(on_device[0], expected)


def test_paper_preset_plans_the_three_phases_as_separate_jobs_in_order(tmp_path):
    (tmp_path / "videos.tsv").write_text("name\tpath\trole\tsubject\nva\tva.mp4\ttarget\ts\n")
    (tmp_path / "va.mp4").touch()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "videos.tsv"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
                           str(REPO / "config" / "paper.yaml"), "-n", "-p", "--cores", "2",
                           "results/models/s/face.pt", "results/models/s/frame_by_frame/generator.pt"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    out = done.stdout
    baseline = out[out.index("rule train_frame_by_frame:"):]
    baseline = baseline[:baseline.index("> results/logs")]  # its command
    assert "--no-temporal --niter-fix-global 0" in baseline and "--init-global" not in baseline
    jobs = [m for m in ("rule train_global:", "rule train_generator:", "rule train_face:") if m in out]
    assert jobs == ["rule train_global:", "rule train_generator:", "rule train_face:"]
    assert out.index("rule train_global:") < out.index("rule train_generator:") < out.index("rule train_face:")
    blocks = {b.split(":", 1)[0]: b for b in out.split("\nrule ")[1:]}  # job -> its block of the dry run
    glob, local = blocks["train_global"], blocks["train_generator"]
    assert "--model-out results/models/s/global/generator.pt" in glob
    assert all(f in glob for f in ("--width 512 ", "--height 256 ", "--ngf 64 ", "--epochs 20 "))
    assert "--local-enhancer" not in glob and "--niter-fix-global" not in glob and "--init-global" not in glob
    assert all(f in local for f in ("--width 1024 ", "--height 512 ", "--ngf 32 ", "--local-enhancer"))
    assert "--niter-fix-global 10" in local and "--init-global results/models/s/global/generator.pt" in local
    assert "--vgg-loss on" in local and "--vgg-loss on" in glob
    assert "--background none" in local and "--clip-plate" not in local  # the paper's generator


def test_global_phase_needs_the_local_enhancer(tmp_path):
    (tmp_path / "videos.tsv").write_text("name\tpath\trole\tsubject\nva\tva.mp4\ttarget\ts\n")
    (tmp_path / "va.mp4").touch()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "videos.tsv"
    config["train"]["global_phase"] = {"epochs": 2, "niter_decay": 1}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
                           "-n", "--cores", "1", "results/models/s/generator.pt"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "global_phase needs local_enhancer: true" in done.stderr + done.stdout


@pytest.mark.slow
def test_persistent_workers_give_the_same_run_as_loading_in_process(tmp_path, synthetic_clip):
    # One loader for the whole run, its worker process kept between epochs: same order, same losses.
    cfg = dict(TINY, epochs=2, niter_decay=1)
    train(tmp_path / "inline", [synthetic_clip], TrainConfig(**cfg))
    train(tmp_path / "workers", [synthetic_clip], TrainConfig(**{**cfg, "workers": 1}))
    assert losses(tmp_path / "inline") == losses(tmp_path / "workers")
    assert len(losses(tmp_path / "workers")) == 10


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_one_step_in_reduced_precision_on_cpu_autocast(tmp_path, synthetic_clip, precision):
    record = train(tmp_path / "run", [synthetic_clip], TrainConfig(**{**TINY, "max_steps": 1}, precision=precision))
    assert run_json(tmp_path / "run")["precision"] == precision
    assert run_json(tmp_path / "run")["precision_reason"] == "requested"
    assert [int(r["step"]) for r in losses(tmp_path / "run")] == [1]
    row = losses(tmp_path / "run")[0]
    assert all(math.isfinite(float(row[k])) for k in ("D_fake", "D_real", "G_GAN", "G_FM"))
    generator, _ = load_generator(tmp_path / "run" / "generator.pt")
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in generator.parameters())
    assert record["status"] == "finished" and record["final_step"] == 1


def test_auto_precision_trains_in_fp32_on_cpu(tmp_path, synthetic_clip):
    from pipeline.gan.runtime import start_runtime

    assert start_runtime("cpu", "auto").precision == "fp32" and not start_runtime("cpu", "auto").bf16
    with pytest.raises(ValueError, match="precision='fp8'"):
        TrainConfig(precision="fp8")


def test_channels_last_is_an_option_off_by_default():
    from torch import nn

    from pipeline.gan.runtime import Runtime

    assert TrainConfig().channels_last is False
    conv = nn.Conv2d(3, 4, 3)
    assert Runtime(0, 1, torch.device("cpu")).prepare(conv).weight.is_contiguous()
    on = Runtime(0, 1, torch.device("cpu"), channels_last=True)
    assert on.prepare(nn.Conv2d(3, 4, 3)).weight.is_contiguous(memory_format=torch.channels_last)
    assert on.tensor(torch.zeros(1, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    assert not on.prepare(nn.Conv2d(3, 4, 3)).weight.is_contiguous()


def test_workflow_with_background_plate_plans_plates_for_the_pose_gan_only(tmp_path):
    planned = workflow(tmp_path, "-n", "results/models/s/face.pt", "results/models/s/frame_by_frame/generator.pt",
                       train={"background": "plate", "lambda_l1": 10.0, "holdout": 0.25}, videos="va vb")
    blocks = {b.split(":", 1)[0]: b for b in planned.split("\nrule ")[1:]}
    pose = blocks["train_generator"]
    assert "cli plate --holdout 0.25 --" in blocks["plate"]  # the plate never sees the frames training holds out
    assert ("--clip-plate results/plate/va/plate.png --clip-plate results/plate/vb/plate.png" in pose
            and "--background plate" in pose and "--lambda-l1 10.0" in pose)
    assert "rule plate:" in planned and "results/plate/vb/plate.png" in planned
    # The paper's frame-by-frame baseline: the same training, plate included, without the previous frame.
    def command(block: str) -> str:
        return next(line for line in block.splitlines() if "pipeline.cli train " in line)

    baseline = command(blocks["train_frame_by_frame"])
    assert baseline.replace(" --no-temporal --niter-fix-global 0 ", " ").replace("/frame_by_frame", "").replace(
        "train_frame_by_frame/", "train/") == command(pose)
    assert "--background" not in blocks["train_face"] and "--clip-plate" not in blocks["train_face"]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux's /proc shows a process's file mappings")
def test_a_resumed_checkpoint_is_memory_mapped_not_copied_into_each_process(tmp_path):
    # The ranks of a node resuming at once share the file's pages instead of each reading 2.3 GB.
    from pipeline.gan.checkpoint import save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"models": {"G": {"w": torch.arange(4096.0)}}})
    state = load_checkpoint(path)
    assert str(path) in Path("/proc/self/maps").read_text()
    assert torch.equal(state["models"]["G"]["w"], torch.arange(4096.0))


def test_timed_checkpoints_come_on_the_clock_not_only_on_the_step_count(tmp_path, synthetic_clip, monkeypatch):
    # A job stopped at its time limit loses at most checkpoint_minutes of training: a clock that
    # advances 100 s per reading makes every step due with checkpoint_minutes=1, none with 0.
    import itertools

    import pipeline.gan.engine as train_module

    saved: list[int] = []
    real_save = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint", lambda path, state: (saved.append(state["step"]),
                                                                              real_save(path, state)))
    clock = itertools.count(0.0, 100.0)
    monkeypatch.setattr(train_module.time, "monotonic", lambda: next(clock))
    cfg = dict(TINY, epochs=1, niter_decay=0, checkpoint_every=1000, max_steps=4)
    train(tmp_path / "steps", [synthetic_clip], TrainConfig(**cfg))
    assert saved == [4]  # only the last step
    saved.clear()
    train(tmp_path / "timed", [synthetic_clip], TrainConfig(**cfg, checkpoint_minutes=1))
    assert saved == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="checkpoint_minutes=-1"):
        TrainConfig(**cfg, checkpoint_minutes=-1)
