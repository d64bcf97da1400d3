"""The command-line options the workflow's rules hand their ``edn`` commands (a rule's ``params:``), from the
config, the video sheet and a job's inputs: each a string, shell-quoted, ready for the rule's shell line.
The training options themselves are ``train_flags``'."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.plan.targets import ablation_models
from pipeline.plan.train_flags import train_flags

# config qc: keys that are edn normalize's, not edn qc's
NORMALIZE_QC_KEYS = ("max_repair_gap", "max_repaired_share")


def _quoted(flags: Iterable[str]) -> str:
    return " ".join(shlex.quote(f) for f in flags)


def extract_options(config: Mapping[str, Any], videos: pd.DataFrame, video: str) -> str:
    """Per-video ``edn extract`` flags from the sheet (crop, rotation, fps, start, end) and the config (damaged)."""
    row = videos.loc[video]
    flags = []
    if row["crop"]:
        flags += ["--crop", row["crop"].replace(" ", "")]
    if row["rotation"]:
        flags += ["--rotation", row["rotation"]]
    if row["fps"]:
        flags += ["--fps", row["fps"]]
    for key in ("start", "end"):
        if row[key]:
            flags += [f"--{key}", row[key]]
    if config["extract"]["damaged"] != "fail":  # the default adds no flag: existing frames need no rerun
        flags += ["--damaged", config["extract"]["damaged"]]
    return _quoted(flags)


def detect_options(config: Mapping[str, Any], videos: pd.DataFrame, video: str) -> str:
    """``edn detect``'s backend: OpenPose JSON from the sheet wins over the configured backend."""
    json_dir = videos.loc[video, "openpose_json"]
    if json_dir:
        # one word with its option: a folder whose name starts with "-" is not read as an option
        return f"--backend openpose-json {shlex.quote('--json-dir=' + json_dir)}"
    return f"--backend {config['detect']['backend']}"


def n_chunks(frames_dir: str | Path, chunk_frames: int) -> int:
    """Detection chunks of a video: the frame count of its extracted frames (their meta.json) / chunk_frames."""
    n_frames = json.loads((Path(frames_dir) / "meta.json").read_text())["frame_count"]
    return -(-n_frames // chunk_frames)


def chunk_range(chunk_frames: int, chunk: int, chunks: int) -> str:
    """``--start S --stop E`` of chunk ``chunk`` of ``chunks``; the last chunk runs to the video's end."""
    stop = "" if chunk == chunks - 1 else f" --stop {(chunk + 1) * chunk_frames}"
    return f"--start {chunk * chunk_frames}{stop}"


def qc_flags(config: Mapping[str, Any]) -> str:
    """``edn qc`` thresholds from config['qc'] (max_repair_gap and max_repaired_share are normalize's)."""
    options = {k: v for k, v in config["qc"].items() if k not in NORMALIZE_QC_KEYS}
    return " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in options.items())


def render_flags(config: Mapping[str, Any]) -> str:
    """``--no-face`` / ``--no-hands`` for the stick figures, from config['render']."""
    flags = [] if config["render"]["face"] else ["--no-face"]
    return " ".join(flags + ([] if config["render"]["hands"] else ["--no-hands"]))


def train_options(config: Mapping[str, Any], ablations: Mapping[str, Any], ablation: str | None = None
                  ) -> dict[str, Any]:
    """config['train'], with the overrides of ``ablation`` (one of evaluate: ablations) when given."""
    return {**config["train"], **ablations.get(ablation, {})}


def train_clip_flags(inputs: Mapping[str, Sequence[str]]) -> str:
    """``--clip FRAMES RENDER KEYPOINTS`` for each clip of ``targets.train_inputs``."""
    clips = zip(inputs["frames"], inputs["render"], inputs["keypoints"])
    return " ".join("--clip " + _quoted(clip) for clip in clips)


def train_qc_flags(qc: Sequence[str]) -> str:
    """``--clip-qc QC`` for each clip's pose check, in train_clip_flags' order."""
    return " ".join(f"--clip-qc {shlex.quote(path)}" for path in qc)


def train_plate_flags(plates: Sequence[str]) -> str:
    """`` --clip-plate PLATE`` for each clip's background plate, in train_clip_flags' order; each with its
    leading space, so that none leaves the command as it was."""
    return "".join(f" --clip-plate {shlex.quote(path)}" for path in plates)


def init_global_flags(init_global: Sequence[str], global_phase: bool) -> str:
    """``--init-global GENERATOR`` (the global phase's generator.pt, the job's first init_global input) when
    the config has a global phase."""
    return f"--init-global {shlex.quote(init_global[0])}" if global_phase else ""


def ablation_train_flags(config: Mapping[str, Any], ablations: Mapping[str, Any], ablation: str) -> str:
    """train_generator's options with the ablation's overrides (evaluate: ablations)."""
    return train_flags(config["train"], "generator", ablations[ablation])


def compile_option(config: Mapping[str, Any]) -> str:
    """train: compile as ``edn transfer`` and ``edn evaluate`` take it (YAML reads on/off as true/false)."""
    value = config["train"]["compile"]
    return {True: "on", False: "off"}.get(value, value)


def model_flags(inputs: Mapping[str, Any]) -> str:
    """``--face F`` / ``--frame-by-frame G`` for the models among a job's named inputs."""
    flags = []
    for name in ("face", "frame_by_frame"):
        if name in inputs:
            flags += [f"--{name.replace('_', '-')}", inputs[name]]
    return _quoted(flags)


def ablation_flags(ablations: Mapping[str, Any], subject: str) -> str:
    """``--ablation NAME=GENERATOR_PT`` for each ablation: one evaluation row each, after evaluate: rows'."""
    models = ablation_models(subject, ablations)
    return " ".join(f"--ablation {shlex.quote(f'{name}={path}')}" for name, path in models.items())


def transfer_flags(transfers: Sequence[str]) -> str:
    """``--transfer SOURCE=RECORD`` for each transfer record onto the subject (results/transfer/SOURCE/...):
    the evaluation's transfer table."""
    return " ".join(f"--transfer {shlex.quote(f'{Path(p).parent.name}={p}')}" for p in transfers)


def evaluate_flags(config: Mapping[str, Any]) -> str:
    """``edn evaluate``'s options from config['evaluate'], and the training's precision and compile."""
    options = config["evaluate"]
    flags = ["--rows", *options["rows"], "--samples", str(options["samples"]), "--clip-batch",
             str(options["clip_batch"]), "--device", options["device"],
             "--precision", config["train"]["precision"],  # generation in the precision it was trained in
             "--compile", compile_option(config)]
    if options["lpips_weights"]:
        flags += ["--lpips-weights", options["lpips_weights"]]
    return _quoted(flags)


def loss_run_flags(runs: Sequence[tuple[str, str]]) -> str:
    """``--run TITLE FOLDER`` for each of ``targets.loss_runs``."""
    return " ".join(f"--run {shlex.quote(name)} {shlex.quote(folder)}" for name, folder in runs)


def real_frame_flags(real: Sequence[str]) -> str:
    """``--real FOLDER`` for each frames folder of a job's real input."""
    return " ".join(f"--real {shlex.quote(folder)}" for folder in real)
