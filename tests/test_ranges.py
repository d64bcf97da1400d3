"""Every number is checked, and so is the geometry it leads to.

Numeric options of every ``edn`` command refuse NaN, infinity and values outside their range, with
the range in the message (exit 2, no traceback); the config schema takes the same ranges; a model
size whose training step cannot fit the memory there is refused before any data is loaded, with
the estimate; normalized poses that fall mostly outside the target frame are named in a warning.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.arguments import Number
from pipeline.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
GAN = ["--clip", "frames", "render", "kp.parquet"]

# (id, argv, words of the message: the option and its range)
NUMERIC_SLIPS = [
    ("extract_fps_nan", ["extract", "v.mp4", "out", "--fps", "nan"], "--fps: must be a finite number from 1 to 1000"),
    ("extract_fps_inf", ["extract", "v.mp4", "out", "--fps", "inf"], "--fps: must be a finite number from 1 to 1000"),
    ("extract_fps_tiny", ["extract", "v.mp4", "out", "--fps", "1e-9"], "from 1 to 1000 frames per second"),
    ("extract_height_huge", ["extract", "v.mp4", "out", "--height", "100000"], "--height: must be an even whole "
     "number from 16 to 8192"),
    ("extract_height_odd", ["extract", "v.mp4", "out", "--height", "255"], "even whole number from 16 to 8192"),
    ("extract_crop_inf", ["extract", "v.mp4", "out", "--crop", "0,0,inf,10"], "--crop: box must be finite"),
    ("extract_crop_negative", ["extract", "v.mp4", "out", "--crop=-5,0,10,10"], "x, y >= 0"),
    ("extract_max_frames_zero", ["extract", "v.mp4", "out", "--max-frames", "0"], "--max-frames: must be positive"),
    ("detect_warmup_negative", ["detect", "f", "k.parquet", "--warmup", "-5"], "--warmup: must be a whole number >= 0"),
    ("detect_start_negative", ["detect", "f", "k.parquet", "--start", "-1"], "--start: must be a whole number >= 0"),
    ("detect_fraction_nan", ["detect", "f", "k.parquet", "--min-detected-fraction", "nan"], "from 0 to 1"),
    ("detect_fraction_above_one", ["detect", "f", "k.parquet", "--min-detected-fraction", "1.5"], "from 0 to 1"),
    ("detect_json_size_zero", ["detect", "f", "k.parquet", "--json-size", "0x10"], "from 1 to 32768"),
    ("gather_fraction_inf", ["gather-keypoints", "f", "k.parquet", "c.parquet", "--min-detected-fraction", "inf"],
     "from 0 to 1"),
    ("smooth_window_even", ["smooth", "a.parquet", "b.parquet", "--window", "4"], "--window: must be an odd whole"),
    ("smooth_window_negative", ["smooth", "a.parquet", "b.parquet", "--window", "-3"], "odd whole number >= 1"),
    ("smooth_gap_negative", ["smooth", "a.parquet", "b.parquet", "--max-gap", "-1"], "--max-gap: must be a whole "
     "number >= 0"),
    ("qc_limb_long_one", ["qc", "k.parquet", "q.parquet", "--limb-long", "1"], "--limb-long: must be a finite "
     "number > 1"),
    ("qc_jump_speed_nan", ["qc", "k.parquet", "q.parquet", "--jump-speed", "nan"], "--jump-speed: must be a finite "
     "number > 0"),
    ("qc_spike_accel_inf", ["qc", "k.parquet", "q.parquet", "--spike-accel", "inf"], "--spike-accel: must be a "
     "finite number > 0"),
    ("qc_switch_joints_two", ["qc", "k.parquet", "q.parquet", "--switch-joints", "2"], "> 0 and <= 1"),
    ("normalize_share_two", ["normalize", "s.parquet", "s.json", "t.json", "n.parquet", "--max-repaired-share", "2"],
     "--max-repaired-share: must be a finite number from 0 to 1"),
    ("normalize_gap_negative", ["normalize", "s.parquet", "s.json", "t.json", "n.parquet", "--max-repair-gap", "-1"],
     "--max-repair-gap: must be a whole number >= 0"),
    ("render_size_huge", ["render", "k.parquet", "r", "--size", "100000x100000"], "from 1 to 32768"),
    ("render_size_too_many_pixels", ["render", "k.parquet", "r", "--size", "30000x30000"],
     "has 900000000 pixels, more than 268435456 (32768x8192)"),
    ("train_width_65536", ["train", "run", *GAN, "--width", "65536"],
     "--width: must be a whole number from 16 to 8192"),
    ("train_height_zero", ["train", "run", *GAN, "--height", "0"], "--height: must be a whole number from 16 to 8192"),
    ("train_ngf_huge", ["train", "run", *GAN, "--ngf", "100000"], "--ngf: must be a whole number from 1 to 1024"),
    ("train_n_downsample_zero", ["train", "run", *GAN, "--n-downsample", "0"], "from 1 to 8"),
    ("train_num_d_huge", ["train", "run", *GAN, "--num-d", "100"], "--num-d: must be a whole number from 1 to 8"),
    ("train_batch_zero", ["train", "run", *GAN, "--batch-size", "0"], "--batch-size: must be a whole number from 1"),
    ("train_lr_nan", ["train", "run", *GAN, "--lr", "nan"], "--lr: must be a finite number > 0 and <= 1"),
    ("train_lr_five", ["train", "run", *GAN, "--lr", "5"], "> 0 and <= 1"),
    ("train_beta1_one", ["train", "run", *GAN, "--beta1", "1"], "--beta1: must be a finite number >= 0 and < 1"),
    ("train_holdout_one", ["train", "run", *GAN, "--holdout", "1"], "--holdout: must be a finite number >= 0 and < 1"),
    ("train_lambda_inf", ["train", "run", *GAN, "--lambda-l1", "inf"], "--lambda-l1: must be a finite number >= 0"),
    ("train_lambda_vgg_negative", ["train", "run", *GAN, "--lambda-vgg", "-1"], "must be a finite number >= 0"),
    ("train_workers_negative", ["train", "run", *GAN, "--workers", "-1"], "--workers: must be a whole number from 0"),
    ("train_seed_negative", ["train", "run", *GAN, "--seed", "-1"], "from 0 to 4294967295"),
    ("train_minutes_nan", ["train", "run", *GAN, "--checkpoint-minutes", "nan"], "--checkpoint-minutes: must be a "
     "finite number >= 0"),
    ("train_epochs_zero", ["train", "run", *GAN, "--epochs", "0"], "--epochs: must be positive"),
    ("train_niter_decay_negative", ["train", "run", *GAN, "--niter-decay", "-1"], "whole number >= 0"),
    ("train_max_steps_negative", ["train", "run", *GAN, "--max-steps", "-1"], "whole number >= 0"),
    ("face_size_huge", ["train-face", "run", *GAN, "--generator", "g.pt", "--face-size", "100000"], "from 8 to 8192"),
    ("face_ngf_zero", ["train-face", "run", *GAN, "--generator", "g.pt", "--face-ngf", "0"], "from 1 to 1024"),
    ("transfer_crf_negative", ["transfer", "n.parquet", "r", "f", "o.mp4", "--generator", "g.pt", "--crf", "-5"],
     "--crf: must be a whole number from 0 to 51"),
    ("transfer_crf_52", ["transfer", "n.parquet", "r", "f", "o.mp4", "--generator", "g.pt", "--crf", "52"],
     "from 0 to 51"),
    ("evaluate_clip_batch_zero", ["evaluate", "ev", *GAN, "--generator", "g.pt", "--clip-batch", "0"],
     "--clip-batch: must be a whole number from 1 to 64"),
    ("evaluate_samples_huge", ["evaluate", "ev", *GAN, "--generator", "g.pt", "--samples", "100000"], "from 1 to 64"),
]


@pytest.mark.parametrize("argv, words", [c[1:] for c in NUMERIC_SLIPS], ids=[c[0] for c in NUMERIC_SLIPS])
def test_numeric_slips_are_refused_with_the_range(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and words in err, err
    assert "Traceback" not in err and f"edn {argv[0]}: error: argument" in err
    assert time.monotonic() - start < 5 and list(tmp_path.iterdir()) == []


def _numeric_actions() -> list[tuple[str, argparse.Action]]:
    """(command, action) of every option of every edn command that takes a number."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for command, p in ([(f"{name} {k}", v) for k, v in nested[0].choices.items()] if nested else [(name, parser)]):
            found += [(command, a) for a in p._actions if a.type is not None]
    return found


def test_no_option_takes_an_unchecked_number():
    """A plain int or float lets NaN, infinity or any size through: every numeric option has a range
    (--rotation only picks from its choices)."""
    unchecked = [f"{c} {a.option_strings}" for c, a in _numeric_actions()
                 if a.type in (int, float) and not a.choices]
    assert unchecked == []
    assert sum(isinstance(a.type, Number) for _, a in _numeric_actions()) >= 60


# (command, option dest) -> the schema's key (dotted) taking the same value in the workflow
SCHEMA_KEYS = {
    ("extract", "height"): "extract.height",
    ("detect", "min_detected_fraction"): "detect.min_detected_fraction",
    ("detect", "warmup"): "detect.chunk_overlap",
    ("smooth", "window"): "smooth.window", ("smooth", "max_gap"): "smooth.max_gap",
    **{("qc", k): f"qc.{k}" for k in ("limb_long", "box_factor", "jump_speed", "scale_change", "joint_speed",
                                      "switch_joints", "spike_accel")},
    ("normalize", "max_repair_gap"): "qc.max_repair_gap", ("normalize", "max_repaired_share"): "qc.max_repaired_share",
    **{("train", k): f"train.{k}" for k in (
        "width", "height", "ngf", "n_downsample", "n_blocks", "n_blocks_local", "niter_fix_global", "ndf",
        "n_layers_d", "num_d", "epochs", "niter_decay", "batch_size", "lr", "seed", "checkpoint_every",
        "checkpoint_minutes", "sample_every", "holdout", "workers", "lambda_l1", "mirror", "jitter_scale",
        "jitter_shift", "jitter_rotation", "pose_drop", "pose_noise")},
    **{("train-face", f"face_{k}"): f"train.face.{k}" for k in ("ngf", "n_downsample", "n_blocks", "size")},
    ("train-face", "epochs"): "train.face.epochs", ("train-face", "niter_decay"): "train.face.niter_decay",
    ("transfer", "crf"): "transfer.crf",
    ("evaluate", "clip_batch"): "evaluate.clip_batch", ("evaluate", "samples"): "evaluate.samples",
}


def _schema() -> dict:
    return yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def _schema_key(schema: dict, dotted: str) -> dict:
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def test_cli_and_schema_take_the_same_ranges():
    schema = _schema()
    actions = {(c, a.dest): a for c, a in _numeric_actions()}
    for (command, dest), key in SCHEMA_KEYS.items():
        number, entry = actions[(command, dest)].type, _schema_key(schema, key)
        assert isinstance(number, Number), (command, dest)
        bounds = (number.minimum, number.maximum, number.above, number.below)
        assert bounds == tuple(entry.get(k) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")), \
            (command, dest, key)
        assert number.even == (entry.get("multipleOf") == 2) and number.odd == ("not" in entry), key
    # an ablation changes train: options within train:'s ranges
    ablation = schema["properties"]["evaluate"]["properties"]["ablations"]["additionalProperties"]["properties"]
    for key, entry in ablation.items():
        if entry.get("type") in ("integer", "number"):
            train = _schema_key(schema, f"train.{key}")
            assert {k: entry.get(k) for k in ("minimum", "maximum", "exclusiveMinimum")} == \
                {k: train.get(k) for k in ("minimum", "maximum", "exclusiveMinimum")}, key


def test_the_launcher_takes_the_schema_ranges(capsys):
    """python -m pipeline.gan.launch gets train: gpus and cpu_processes from the workflow."""
    from pipeline.gan.launch import main as launch

    for argv, words in ((["--gpus", "-1"], "--gpus: must be a whole number from 0 to 16"),
                        (["--cpu-procs", "0"], "--cpu-procs: must be a whole number from 1 to 256")):
        with pytest.raises(SystemExit) as info:
            launch([*argv, "--dry-run", "--", "edn", "train", "run"])
        assert info.value.code == 2 and words in capsys.readouterr().err
    schema = _schema()
    assert (_schema_key(schema, "train.gpus")["maximum"], _schema_key(schema, "train.cpu_processes")["maximum"]) == \
        (16, 256)


def _validate(config: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(config)]


# (section, key, value, words of the schema's message)
OUT_OF_RANGE_CONFIG = [
    ("train", "width", 65536, "greater than the maximum of 8192"),
    ("train", "height", 8, "less than the minimum of 16"),
    ("train", "ngf", 4096, "greater than the maximum of 1024"),
    ("train", "batch_size", 100000, "greater than the maximum of 1024"),
    ("train", "n_blocks", 1000, "greater than the maximum of 64"),
    ("train", "num_d", 20, "greater than the maximum of 8"),
    ("train", "lr", 5, "greater than the maximum of 1"),
    ("train", "seed", -1, "less than the minimum of 0"),
    ("train", "workers", 1000, "greater than the maximum of 64"),
    ("train", "cpu_processes", 100000, "greater than the maximum of 256"),
    ("extract", "height", 100000, "greater than the maximum of 8192"),
    ("transfer", "crf", -5, "less than the minimum of 0"),
    ("transfer", "crf", 52, "greater than the maximum of 51"),
    ("evaluate", "clip_batch", 1000, "greater than the maximum of 64"),
    ("detect", "chunk_overlap", -5, "less than the minimum of 0"),
]


@pytest.mark.parametrize("section, key, value, words", OUT_OF_RANGE_CONFIG,
                         ids=[f"{c[0]}.{c[1]}={c[2]}" for c in OUT_OF_RANGE_CONFIG])
def test_schema_refuses_out_of_range_values(section, key, value, words):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert _validate(config) == []
    config[section][key] = value
    errors = _validate(config)
    assert len(errors) == 1 and errors[0].startswith(f"{section}.{key}:") and words in errors[0], errors


def test_schema_refuses_a_huge_face_box_and_ablation():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["train"]["face"]["size"] = 100000
    config["evaluate"]["ablations"] = {"wide": {"ngf": 4096}}
    assert sorted(e.split(":")[0] for e in _validate(config)) == ["evaluate.ablations.wide.ngf", "train.face.size"]


def test_workflow_refuses_non_finite_numbers_and_sheet_frame_rates(tmp_path, clip_path):
    from test_workflow import snakemake, write_config

    for overrides, words in (({"train": {"lr": math.nan}}, "config train.lr = nan must be a finite number"),
                             ({"qc": {"spike_accel": math.inf}}, "config qc.spike_accel = inf must be a finite")):
        write_config(tmp_path, clip_path, **overrides)
        done = snakemake(tmp_path, "-n", check=False)
        assert done.returncode != 0 and words in done.stdout + done.stderr
    write_config(tmp_path, clip_path)
    sheet = tmp_path / "videos.tsv"
    sheet.write_text(sheet.read_text().replace("\t30\n", "\t0.0001\n"))
    done = snakemake(tmp_path, "-n", check=False)
    assert done.returncode != 0
    assert "video clip_source: fps must be a finite number from 1 to 1000 frames per second, got 0.0001" in \
        done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def test_stages_check_their_numbers_too(tmp_path, clip_frames):
    """Called from Python, not only through the CLI: the same ranges, named."""
    from pipeline.footage.extract import extract_frames
    from pipeline.footage.video import VideoEncoder
    from pipeline.gan.options import TrainConfig
    from pipeline.pose.detect import detect_mediapipe

    with pytest.raises(ValueError, match="extract: fps must be a finite number from 1 to 1000"):
        extract_frames(REPO / "tests/data/clip.mp4", tmp_path / "f", fps=math.nan)
    with pytest.raises(ValueError, match="extract: height must be an even whole number from 16 to 8192"):
        extract_frames(REPO / "tests/data/clip.mp4", tmp_path / "f", height=100000)
    with pytest.raises(ValueError, match="detect: warmup must be a whole number >= 0"):
        detect_mediapipe(clip_frames, start=2, warmup=-5)
    with pytest.raises(ValueError, match="x264 crf must be a whole number from 0 to 51"):
        VideoEncoder(tmp_path / "o.mp4", 30.0, crf=-5)
    for bad in ({"lambda_l1": math.inf}, {"lr": math.nan}, {"beta1": 1.0}, {"holdout": math.nan}):
        with pytest.raises(ValueError, match="invalid training settings"):
            TrainConfig(**bad)
    assert not (tmp_path / "f").exists()


# ------------------------------------------------------------------------------- memory estimate

DEMO_TRAIN = yaml.safe_load((REPO / "config/config.yaml").read_text())["train"]
DEMO_MODEL = {k: DEMO_TRAIN[k] for k in ("width", "height", "ngf", "n_downsample", "n_blocks", "ndf", "n_layers_d",
                                         "num_d", "batch_size")}


def test_training_step_estimate_follows_the_architecture():
    from pipeline.gan.memory import pose_step_memory
    from pipeline.gan.options import TrainConfig

    demo = pose_step_memory(TrainConfig(**DEMO_MODEL, vgg_loss=False))
    assert 0 < demo.total < 2 ** 30  # the demo model: well under 1 GiB
    doubled = pose_step_memory(TrainConfig(**{**DEMO_MODEL, "width": 2 * DEMO_MODEL["width"],
                                              "height": 2 * DEMO_MODEL["height"]}, vgg_loss=False))
    assert doubled.weights == demo.weights and 3.5 < doubled.activations / demo.activations < 4.5  # 4x pixels
    batch = pose_step_memory(TrainConfig(**{**DEMO_MODEL, "batch_size": 2}, vgg_loss=False))
    assert batch.activations == pytest.approx(2 * demo.activations, rel=0.01)
    single = pose_step_memory(TrainConfig(**DEMO_MODEL, vgg_loss=False, temporal=False))
    assert single.activations < demo.activations  # one generator pass instead of the temporal pair
    new_poses = pose_step_memory(TrainConfig(**DEMO_MODEL, vgg_loss=False, lambda_new_pose=1.0))
    # the new poses double the generator's batch and add a discriminator graph; no weights
    assert new_poses.weights == demo.weights and 1.5 < new_poses.activations / demo.activations < 2.5
    assert pose_step_memory(TrainConfig(**DEMO_MODEL, vgg_loss=True)).activations > demo.activations
    assert pose_step_memory(TrainConfig(**DEMO_MODEL, vgg_loss=False), half=True).activations == demo.activations // 2


def test_the_demo_size_fits_and_a_huge_one_is_refused_with_the_estimate(monkeypatch, caplog):
    import torch

    from pipeline.gan import memory
    from pipeline.gan.options import TrainConfig

    monkeypatch.setattr(memory, "available_bytes", lambda device: (4 * 2 ** 30, "test machine"))
    cpu = torch.device("cpu")
    demo = memory.check_step_fits(lambda: memory.pose_step_memory(TrainConfig(**DEMO_MODEL, vgg_loss=False)), cpu,
                                  "demo")
    assert demo.total < 4 * 2 ** 30
    with caplog.at_level(logging.WARNING, logger="pipeline.gan.memory"):  # fits, but within a measured peak of
        memory.check_step_fits(lambda: memory.StepMemory(3 * 2 ** 30, 0), cpu, "close")  # the memory there is
    assert "close: a training step needs about 3.0 GiB" in caplog.text and "may not be enough" in caplog.text
    huge = TrainConfig(**{**DEMO_MODEL, "width": 8192, "height": 8192}, vgg_loss=False)
    with pytest.raises(ValueError, match=r"big: a training step needs about \d+\.\d GiB .* more than the 4\.0 GiB "
                                         r"\(test machine\) on cpu"):
        memory.check_step_fits(lambda: memory.pose_step_memory(huge), cpu, "big")


def test_face_step_estimate_counts_the_frozen_generator():
    from pipeline.gan.memory import face_step_memory
    from pipeline.gan.models.generator import default_generator_config
    from pipeline.gan.train_face import FaceConfig

    def estimate(side: int):
        config = default_generator_config(ngf=16, n_downsample=4, n_blocks=6, width=side, height=side)
        cfg = FaceConfig(width=side, height=side, ngf=16, n_downsample=4, n_blocks=6, vgg_loss=False,
                         face_ngf=16, face_n_downsample=3, face_n_blocks=3)
        return face_step_memory(cfg, config, box=64)

    small, large = estimate(256), estimate(4096)
    assert large.activations > 100 * small.activations  # the crops are the same: the frozen pass grows


def test_edn_train_refuses_a_size_that_cannot_fit_before_loading_anything(tmp_path, synthetic_clip, capsys):
    frames, render, keypoints = synthetic_clip
    start = time.monotonic()
    # ~28 TB of activations at 8192x8192, batch 64: more than any machine has
    code = main(["train", str(tmp_path / "run"), "--clip", str(frames), str(render), str(keypoints), "--width",
                 "8192", "--height", "8192", "--batch-size", "64", "--no-vgg-loss", "--precision", "fp32",
                 "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - start < 60
    assert "train at 8192x8192, batch size 64: a training step needs about" in err and "GiB" in err, err
    assert "Traceback" not in err and str(tmp_path / "run") in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- geometry

def _walker(x: float, size: tuple[int, int], n: int = 60):
    from test_stats import walking_track

    far, near = 0.62 * size[1], 0.9 * size[1]
    return walking_track(far=far, near=near, h_far=0.35 * size[1], h_near=0.5 * size[1], n=n, period=30, x=x,
                         size=size)


@pytest.fixture
def landscape_onto_portrait(tmp_path):
    """A 1280x720 source dancing at x 900 and a 405x720 target at x 200, with their stats."""
    from pipeline.pose.keypoints import write_keypoints

    write_keypoints(tmp_path / "src.parquet", _walker(900, (1280, 720)))
    write_keypoints(tmp_path / "tgt.parquet", _walker(200, (405, 720)))
    assert main(["stats", str(tmp_path / "src.parquet"), str(tmp_path / "s.json")]) == 0
    assert main(["stats", str(tmp_path / "tgt.parquet"), str(tmp_path / "t.json")]) == 0
    return tmp_path


def test_poses_outside_the_target_frame_are_named_with_the_cause(landscape_onto_portrait, caplog):
    from pipeline.pose.keypoints import read_keypoints

    ws = landscape_onto_portrait
    argv = ["normalize", str(ws / "src.parquet"), str(ws / "s.json"), str(ws / "t.json"), str(ws / "n.parquet")]
    # By default the bodies are moved into the frame, and the warning says so.
    with caplog.at_level(logging.WARNING, logger="pipeline.pose.normalize"):
        assert main(argv) == 0
    assert any("60 of 60 frames (0-59) were moved" in r.getMessage() for r in caplog.records)
    assert read_keypoints(ws / "n.parquet").meta["outside_frame"]["frames"] == []
    caplog.clear()
    argv += ["--no-keep-in-view", "--force"]  # the mapped positions as they are
    with caplog.at_level(logging.WARNING, logger="pipeline.pose.normalize"):
        assert main(argv) == 0
    warning = next(r.getMessage() for r in caplog.records if "fall mostly outside" in r.getMessage())
    assert "60 of 60 normalized frames fall mostly outside the target's 405x720 frame" in warning
    assert "frames 0-59" in warning and "to the right" in warning and "--center-x" in warning
    flag = read_keypoints(ws / "n.parquet").meta["outside_frame"]
    assert flag["frames"] == list(range(60)) and flag["side"] == "right" and flag["warning"] == warning

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.pose.normalize"):
        assert main([*argv, "--center-x"]) == 0
    assert not [r for r in caplog.records if "fall mostly outside" in r.getMessage()]
    assert read_keypoints(ws / "n.parquet").meta["outside_frame"]["frames"] == []


def test_outside_frames_are_counted_from_the_keypoints_in_the_frame():
    """More than half of a frame's present keypoints outside: named; half or fewer: not. Frames come
    as compact ranges, and a centred source leaving sideways or a body below the frame get their own cause."""
    from pipeline.pose.keypoints import KeypointTrack, present
    from pipeline.pose.normalize import outside_frame

    track = _walker(200, (405, 720), n=40)
    track.data[10:20, :, 0] += 400  # frames 10-19 step out to the right
    track.data[30:33, :, 1] += 720  # frames 30-32 drop below the frame
    seen = present(track.data)
    # frame 35: exactly half of its present keypoints outside, which is not "mostly"
    half = np.flatnonzero(seen[35])[: seen[35].sum() // 2]
    track.data[35, half, 0] = -50
    report = outside_frame(track, 405, 720, center_x=True, source_width=405)
    assert report["frames"] == [*range(10, 20), 30, 31, 32]
    assert "frames 10-19, 30-32" in report["warning"] and "moves further sideways" in report["cause"]
    below = outside_frame(KeypointTrack(track.data[30:33], track.frames[30:33], track.meta), 405, 720,
                          center_x=True, source_width=405)
    assert below["side"] == "below" and "stats" in below["cause"]
    missing = track.copy()
    missing.data[:, :, 2] = 0  # no keypoint present: nothing to judge, nothing named
    assert outside_frame(missing, 405, 720, center_x=False, source_width=1280)["frames"] == []


def test_the_workflow_shows_the_geometry_warning(tmp_path, clip_path):
    """rule normalize: its warning reaches the run's output as well as its log file."""
    from test_workflow import snakemake, write_config

    from pipeline.pose.keypoints import write_keypoints

    write_config(tmp_path, clip_path, normalize={"center_x": False, "keep_in_view": False})
    results = tmp_path / "results"
    for folder in ("keypoints/clip_source", "qc/clip_source", "stats/video", "stats/subject"):
        (results / folder).mkdir(parents=True)
    source = results / "keypoints/clip_source/smooth.parquet"
    write_keypoints(source, _walker(900, (1280, 720)))
    write_keypoints(tmp_path / "tgt.parquet", _walker(200, (405, 720)))
    assert main(["qc", str(source), str(results / "qc/clip_source/smooth.parquet")]) == 0
    assert main(["stats", str(source), str(results / "stats/video/clip_source.json")]) == 0
    assert main(["stats", str(tmp_path / "tgt.parquet"), str(results / "stats/subject/subj.json")]) == 0
    done = snakemake(tmp_path, "results/normalized/clip_source/subj.parquet")
    words = "60 of 60 normalized frames fall mostly outside the target's 405x720 frame"
    assert words in done.stderr and "--center-x" in done.stderr
    assert words in (results / "logs/normalize/clip_source_subj.log").read_text()
    # With keep_in_view (the default) the bodies are moved into the frame, and that warning shows instead.
    write_config(tmp_path, clip_path, normalize={"center_x": False, "keep_in_view": True})
    done = snakemake(tmp_path, "results/normalized/clip_source/subj.parquet")
    assert "60 of 60 frames (0-59) were moved" in done.stderr and words not in done.stderr
