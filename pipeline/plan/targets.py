"""The paths the workflow's rules ask for: what the pose half and the half after training make (the
Snakefile's ``all`` and ``pose``), each training's inputs, and a subject's model files. Paths are
relative to the working folder, as the rules name them; the sheet is the one ``sheet.load_videos`` reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

DEMO_FOLDERS = ("Demo_SinglePerson", "Demo_MultiPerson")
DEMO_CAMERAS = ("cam01", "cam02", "cam03", "cam04")


def demo_videos(demo_dir: str) -> list[str]:
    """The pose2sim demo's videos under ``demo_dir`` (the config's demo_dir), as rule fetch_demo makes them."""
    return [f"{demo_dir}/{folder}/{camera}.mp4" for folder in DEMO_FOLDERS for camera in DEMO_CAMERAS]


def subject_videos(targets: pd.DataFrame, subject: str) -> list[str]:
    """The target clips of ``subject``, in the sheet's order (the training's clip order)."""
    return list(targets.index[targets["subject"] == subject])


def subject_keypoints(targets: pd.DataFrame, subject: str) -> list[str]:
    """The smoothed keypoints of every clip of the subject, in the training's clip order."""
    return [f"results/keypoints/{v}/smooth.parquet" for v in subject_videos(targets, subject)]


def subject_frames(targets: pd.DataFrame, subject: str) -> list[str]:
    """The frames folder of every clip of the subject."""
    return [f"results/frames/{v}" for v in subject_videos(targets, subject)]


def detect_chunks(video: str, chunks: int) -> list[str]:
    """The keypoints of each of a video's ``chunks`` detection chunks, in frame order."""
    return [f"results/keypoints/{video}/chunks/{i}.parquet" for i in range(chunks)]


def pose_targets(videos: Sequence[str], targets: Sequence[str], sources: Sequence[str], subjects: Sequence[str],
                 pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Everything the pose half of the workflow makes, from the sheet's video, target and source names,
    the target subjects and the (source, subject) transfer pairs."""
    made = [f"results/render/{v}" for v in targets]
    made += [f"results/render_transfer/{s}/{t}" for s, t in pairs]
    made += [f"results/plots/tracks/{v}.png" for v in videos]
    made += [f"results/plots/qc/{v}.png" for v in videos]
    made += [f"results/plate/{v}/plate.json" for v in targets]  # shown in the report
    made += [f"results/plots/{kind}/{s}/{t}.png" for s, t in pairs for kind in ("normalization", "bones")]
    made += [f"results/coverage/{s}/{t}.json" for s, t in pairs]
    made += [f"results/coverage/target/{t}.json" for t in subjects]
    # The files between them are targets too: one lost is made again by a rerun (Snakemake leaves a missing
    # file alone while all made from it is there). Frames folders are not: deleting them frees the most space.
    made += [f"results/{kind}/{v}/{stage}.parquet" for v in videos for kind in ("keypoints", "qc")
             for stage in ("raw", "smooth")]
    made += [f"results/stats/video/{s}.json" for s in sources]
    made += [f"results/stats/subject/{t}.json" for t in subjects]
    made += [f"results/normalized/{s}/{t}.parquet" for s, t in pairs]
    return made


def train_inputs(targets: pd.DataFrame, subject: str) -> dict[str, list[str]]:
    """Frames, stick figures, smoothed keypoints and their pose check of every clip of the subject."""
    videos = subject_videos(targets, subject)
    return {"frames": subject_frames(targets, subject),
            "render": [f"results/render/{v}" for v in videos],
            "keypoints": subject_keypoints(targets, subject),
            "qc": [f"results/qc/{v}/smooth.parquet" for v in videos]}


def plate_inputs(train: Mapping[str, Any], targets: pd.DataFrame, subject: str) -> list[str]:
    """The background plate of every clip of the subject when ``train`` (a job's train: options) has
    background plate; none otherwise."""
    if train["background"] != "plate":
        return []
    return [f"results/plate/{v}/plate.png" for v in subject_videos(targets, subject)]


def global_generator_input(subject: str, global_phase: bool) -> list[str]:
    """The global phase's generator.pt when the config has a global phase (input of the local phase)."""
    return [f"results/models/{subject}/global/generator.pt"] if global_phase else []


def subject_models(subject: str) -> dict[str, str]:
    """Model files of a target subject: the pose GAN, its face GAN, the frame-by-frame ablation
    (the configured ablations' are :func:`ablation_models`')."""
    root = f"results/models/{subject}"
    return {"generator": f"{root}/generator.pt", "face": f"{root}/face.pt",
            "frame_by_frame": f"{root}/frame_by_frame/generator.pt"}


def ablation_models(subject: str, ablations: Mapping[str, Any]) -> dict[str, str]:
    """NAME -> generator.pt of each ablation (evaluate: ablations) of a target subject."""
    return {name: f"results/models/{subject}/ablations/{name}/generator.pt" for name in ablations}


def transfer_models(config: Mapping[str, Any], subject: str) -> dict[str, str]:
    """The models a transfer onto the subject runs: its pose GAN, and its face GAN with transfer: face."""
    models = subject_models(subject)
    return {"generator": models["generator"], **({"face": models["face"]} if config["transfer"]["face"] else {})}


def evaluate_models(config: Mapping[str, Any], ablations: Mapping[str, Any], subject: str) -> dict[str, Any]:
    """The models the configured evaluation rows need, and every ablation's (``ablations``: a list)."""
    models, rows = subject_models(subject), config["evaluate"]["rows"]
    wanted = {"generator": True, "face": "temporal_face" in rows, "frame_by_frame": "frame_by_frame" in rows}
    return {**{name: path for name, path in models.items() if wanted[name]},
            "ablations": list(ablation_models(subject, ablations).values())}


def loss_models(config: Mapping[str, Any], ablations: Mapping[str, Any], subject: str) -> dict[str, Any]:
    """The models whose training the loss figure plots (the frame-by-frame one only when evaluate: rows
    has it), and every ablation's (``ablations``: a list)."""
    models: dict[str, Any] = subject_models(subject)
    if "frame_by_frame" not in config["evaluate"]["rows"]:
        del models["frame_by_frame"]
    return {**models, "ablations": list(ablation_models(subject, ablations).values())}


def loss_runs(config: Mapping[str, Any], ablations: Mapping[str, Any], subject: str) -> list[tuple[str, str]]:
    """(title, run folder) of each training whose losses.csv the loss figure plots."""
    root = f"results/models/{subject}"
    runs = [("pose GAN", root), ("face GAN", f"{root}/face")]
    if "frame_by_frame" in config["evaluate"]["rows"]:
        runs.append(("frame-by-frame ablation", f"{root}/frame_by_frame"))
    return runs + [(f"ablation {name}", f"{root}/ablations/{name}") for name in ablations]


def subject_transfers(pairs: Sequence[tuple[str, str]], subject: str) -> list[str]:
    """The transfer records (edn measure-transfer) of every source onto the subject."""
    return [f"results/transfer/{s}/{t}.json" for s, t in pairs if t == subject]


def transfer_targets(pairs: Sequence[tuple[str, str]], subjects: Sequence[str]) -> list[str]:
    """Everything after training: transfer videos, their stability and fidelity figures, each subject's
    evaluation, loss curves and models."""
    made = []
    for source, subject in pairs:
        made += [f"results/transfer/{source}/{subject}{suffix}" for suffix in (".mp4", "_side_by_side.mp4")]
        made.append(f"results/plots/stability/{source}/{subject}.png")
        made.append(f"results/plots/transfer/{source}/{subject}.png")
    for subject in subjects:
        made += [f"results/evaluation/{subject}/{name}" for name in ("tables.md", "samples.png")]
        made.append(f"results/plots/losses/{subject}.png")
        made += [subject_models(subject)[model] for model in ("generator", "face")]  # a lost one is made again
    return made
