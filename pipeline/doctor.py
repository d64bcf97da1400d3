"""``edn doctor``: what this machine offers for a run of the current config, before the run.

One row per thing a run may use: torch and CUDA, the CPU (native bf16), the GPUs (memory, bf16), ffmpeg and its
encoders, MediaPipe's models, the VGG19 and AlexNet weights, SLURM, and free disk against the
frames the sheet will write. A row the config needs and the machine lacks is MISSING and makes
the command exit 1; a row it could use but does without (``vgg_loss: auto`` without weights, LPIPS
without AlexNet) is only a warning. Each missing thing says how to get it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.arguments import StagePaths, handler

OK, WARN, MISSING, INFO = "ok", "warn", "MISSING", "info"
# JPEG at quality 2 took 0.225 bytes a pixel on the demo's 288x512 frames; phone footage has more
# texture, so twice that. PNG at compression 1: ~2 bytes a pixel.
BYTES_PER_PIXEL = {"jpg": 0.45, "png": 2.0}
# The models MediaPipe Holistic (model_complexity 1, refined face) loads from its wheel.
MEDIAPIPE_MODELS = ("pose_detection/pose_detection.tflite", "pose_landmark/pose_landmark_full.tflite",
                    "face_detection/face_detection_short_range.tflite",
                    "face_landmark/face_landmark_with_attention.tflite", "palm_detection/palm_detection_full.tflite",
                    "hand_landmark/hand_landmark_full.tflite", "holistic_landmark/hand_recrop.tflite")
# One way to fetch them: `make prefetch` (pipeline.prefetch), into the torch hub cache it checks.
VGG_FETCH = ALEXNET_FETCH = "make prefetch (or .venv/bin/python -m pipeline.prefetch; TORCH_HOME=DIR for shared storage)"


@dataclass
class Row:
    """One line of the table: what was checked, its verdict, what was found, and how to fix it."""

    name: str
    status: str
    detail: str
    fix: str = ""


def load_config(configfiles: list[Path]) -> dict[str, Any]:
    """The config as Snakemake sees it: each file merged over the ones before (nested keys merged)."""
    import yaml

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    config: dict[str, Any] = {}
    for path in configfiles:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must be a mapping of keys")
        config = merge(config, loaded)
    return config


def torch_rows(config: dict[str, Any]) -> list[Row]:
    """torch and CUDA versions, each GPU with its memory and bf16 support; the config's precision against them."""
    try:
        import torch
    except ImportError:
        return [Row("torch", MISSING, "not installed", "pip install -r requirements.txt")]
    from pipeline.gan.runtime import choose_precision, cpu_bf16_feature

    rows = [Row("torch", OK, f"{torch.__version__}, CUDA {torch.version.cuda or 'none (CPU build)'}")]
    cpu_bf16 = cpu_bf16_feature()
    _, auto = choose_precision("auto", torch.device("cpu"))
    rows.append(Row("CPU", INFO, f"{torch.backends.cpu.get_cpu_capability()}, "
                    + (f"native bf16 ({cpu_bf16})" if cpu_bf16 else "no native bf16") + f"; precision {auto}"))
    gpus = gpu_list()
    for i, (name, memory_gib, bf16) in enumerate(gpus):
        rows.append(Row(f"GPU {i}", OK, f"{name}, {memory_gib:.0f} GiB, bf16 {'yes' if bf16 else 'no'}"))
    precision = config.get("train", {}).get("precision", "auto")
    wanted = config.get("train", {}).get("gpus", 0)
    if not gpus:
        rows.append(Row("GPU", WARN if wanted else INFO, "none visible: training and transfer run on the CPU "
                        "(slow beyond the demo's model)" + (f"; config train.gpus = {wanted}" if wanted else "")))
    if precision == "bf16" and not any(bf16 for _, _, bf16 in gpus) and not cpu_bf16:
        rows.append(Row("bf16", MISSING, "config train.precision is bf16 but neither a GPU nor the CPU here "
                        "computes bf16 natively", "precision: auto (fp32 where bf16 is missing) or a GPU of "
                        "compute capability >= 8"))
    return rows


def gpu_list() -> list[tuple[str, float, bool]]:
    """(name, memory in GiB, native bf16) of each visible CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append((props.name, props.total_memory / 2**30, torch.cuda.get_device_capability(i) >= (8, 0)))
    return gpus


def ffmpeg_encoders(exe: str) -> tuple[str, set[str]]:
    """ffmpeg's version line and the names of its encoders."""
    version = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True).stdout
    listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    names = {m.group(1) for m in re.finditer(r"^\s*[VAS][\w.]{5}\s+(\S+)", listing, re.M)}
    first = (version.splitlines() or ["unknown version"])[0]
    return first.split(" Copyright")[0], names


def ffmpeg_rows(config: dict[str, Any]) -> list[Row]:
    from pipeline.footage.media import ffmpeg_exe

    try:
        exe = ffmpeg_exe()
    except RuntimeError as exc:
        return [Row("ffmpeg", MISSING, str(exc), "pip install imageio-ffmpeg, or a system ffmpeg on PATH")]
    version, encoders = ffmpeg_encoders(exe)
    rows = [Row("ffmpeg", OK, f"{exe}: {version}")]
    audio = config.get("transfer", {}).get("audio", True)
    for encoder, needed, use in (("libx264", True, "the transfer MP4s (H.264)"),
                                 ("aac", audio, "the soundtrack (transfer.audio)")):
        if encoder in encoders:
            rows.append(Row(f"ffmpeg {encoder}", OK, f"for {use}"))
        else:
            rows.append(Row(f"ffmpeg {encoder}", MISSING if needed else WARN, f"no {encoder} encoder, needed for {use}",
                            "an ffmpeg build with it (the imageio-ffmpeg wheel's has both)"))
    return rows


def mediapipe_rows(config: dict[str, Any], sheet: list[dict[str, str]]) -> list[Row]:
    """MediaPipe and Holistic's model files, needed when any video is detected with it."""
    needed = config.get("detect", {}).get("backend", "mediapipe") == "mediapipe" and \
        any(not row.get("openpose_json") for row in sheet)
    spec = importlib.util.find_spec("mediapipe")  # found, not imported: importing takes seconds
    if spec is None or not spec.submodule_search_locations:
        return [Row("MediaPipe", MISSING if needed else INFO, "not installed",
                    "pip install -r requirements.txt (mediapipe==0.10.21)")]
    root = Path(list(spec.submodule_search_locations)[0]) / "modules"
    absent = [m for m in MEDIAPIPE_MODELS if not (root / m).is_file()]
    version = importlib.metadata.version("mediapipe")
    if absent:
        return [Row("MediaPipe", MISSING if needed else WARN, f"{version}: model files absent from {root}: {absent}",
                    "reinstall the wheel: pip install --force-reinstall mediapipe==0.10.21")]
    return [Row("MediaPipe", OK, f"{version}, Holistic's {len(MEDIAPIPE_MODELS)} models in {root}")]


def weight_rows(config: dict[str, Any]) -> list[Row]:
    """VGG19 (perceptual loss) and AlexNet (LPIPS), found where training and evaluation look for them."""
    from pipeline.evaluation.metrics import ALEXNET_FILE, alexnet_weights
    from pipeline.gan.models.losses import VGG19_FILE, VGGWeightsNotFound, default_vgg_weights_path, find_vgg_weights

    rows = []
    train = config.get("train", {})
    vgg = train.get("vgg_loss", "auto")
    try:
        rows.append(Row("VGG19 weights", OK, f"{find_vgg_weights(train.get('vgg_weights') or None)}"))
    except VGGWeightsNotFound:
        where = train.get("vgg_weights") or default_vgg_weights_path()
        fix = (f"on a machine with internet: {VGG_FETCH}; copy {VGG19_FILE} from its "
               f"~/.cache/torch/hub/checkpoints to {where}")
        if vgg is True:
            rows.append(Row("VGG19 weights", MISSING, f"not at {where}; train.vgg_loss is true", fix))
        else:
            rows.append(Row("VGG19 weights", WARN if vgg == "auto" else INFO,
                            f"not at {where}; training runs without the perceptual loss", fix))
    lpips_file = config.get("evaluate", {}).get("lpips_weights") or None
    try:
        found = alexnet_weights(lpips_file)
    except FileNotFoundError as exc:  # a configured file that is not there: the run would stop
        rows.append(Row("AlexNet weights", MISSING, str(exc), f"on a machine with internet: {ALEXNET_FETCH}; "
                        f"copy {ALEXNET_FILE} from its ~/.cache/torch/hub/checkpoints to {lpips_file}"))
        return rows
    if found:
        rows.append(Row("AlexNet weights", OK, str(found)))
    else:
        import torch

        cache = Path(torch.hub.get_dir()) / "checkpoints"  # where alexnet_weights looks
        rows.append(Row("AlexNet weights", WARN, f"not in {cache}; evaluation reports LPIPS as unavailable",
                        f"on a machine with internet: {ALEXNET_FETCH}; copy {ALEXNET_FILE} to {cache}"))
    return rows


def slurm_rows(profile: Path | None) -> list[Row]:
    """sbatch, and the profile's partition as sinfo knows it; needed when the profile submits to SLURM."""
    import yaml

    settings: dict[str, Any] = {}
    if profile is not None:
        path = profile / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: workflow profile not found")
        settings = yaml.safe_load(path.read_text()) or {}
    needed = settings.get("executor") == "slurm"
    partition = (settings.get("default-resources") or {}).get("slurm_partition")
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        return [Row("SLURM", MISSING if needed else INFO, "no sbatch on PATH" +
                    (f" but profile {profile} submits to SLURM" if needed else ": the run is local"),
                    "run from the cluster's login node" if needed else "")]
    rows = [Row("SLURM", OK, f"sbatch at {sbatch}")]
    if partition and shutil.which("sinfo") is None:
        rows.append(Row("SLURM partition", WARN, f"no sinfo on PATH to check partition {partition!r}"))
    elif partition:
        listed = subprocess.run(["sinfo", "-h", "-p", str(partition), "-o", "%P %a %D"], capture_output=True,
                                text=True).stdout.split()
        if listed:
            rows.append(Row("SLURM partition", OK, f"{partition}: {' '.join(listed)} (name, state, nodes)"))
        else:
            rows.append(Row("SLURM partition", MISSING if needed else WARN,
                            f"sinfo knows no partition {partition!r} (profile {profile})",
                            f"set default-resources: slurm_partition in {profile}/config.yaml (see `sinfo -s`)"))
    return rows


def frames_estimate(config: dict[str, Any], sheet: list[dict[str, str]]) -> tuple[int, int, list[str]]:
    """(frames, bytes) that extraction will write for the sheet's videos found on disk, and those not found."""
    from pipeline.footage.media import probe_video
    from pipeline.footage.timespan import parse_time

    extract = config.get("extract", {})
    height, fmt = int(extract.get("height", 512)), extract.get("format", "jpg")
    frames = total = 0
    unknown = []
    for row in sheet:
        if not Path(row["path"]).is_file():
            unknown.append(row["name"])
            continue
        info = probe_video(row["path"], count_frames=False)
        start = parse_time(row["start"]) if row.get("start") else 0.0
        end = parse_time(row["end"]) if row.get("end") else info.duration
        n = round(max(0.0, end - start) * float(row.get("fps") or info.fps))
        w, h = info.width, info.height
        if row.get("crop"):
            w, h = (int(v) for v in row["crop"].split(",")[2:])
        frames += n
        total += int(n * height * (height * w / h) * BYTES_PER_PIXEL.get(fmt, 2.0))
    return frames, total, unknown


def disk_rows(config: dict[str, Any], sheet: list[dict[str, str]], results: Path) -> list[Row]:
    frames, needed, unknown = frames_estimate(config, sheet)
    where = results
    while not where.exists():  # results/ may not exist yet: the disk it will be on
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = (f"{free / 2**30:.1f} GiB free at {where.resolve()}; the sheet's {frames} frames need "
              f"~{needed / 2**30:.1f} GiB"
              + (f" (not counted, not on disk yet: {', '.join(unknown)})" if unknown else ""))
    if free < needed:
        return [Row("disk", MISSING, detail, "free space, or point results/ at a larger disk (a symlink)")]
    return [Row("disk", WARN if free < 2 * needed else OK, detail)]


def read_sheet(config: dict[str, Any]) -> list[dict[str, str]]:
    """The video sheet's rows (the workflow checks them in full; this needs paths, trims, crops, fps)."""
    import pandas as pd

    path = Path(config.get("videos", "config/videos.tsv"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video sheet not found (config key 'videos')")
    sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    sheet.columns = [c.strip() for c in sheet.columns]
    return [{k: str(v).strip() for k, v in row.items()} for row in sheet.to_dict("records")]


def diagnose(config: dict[str, Any], profile: Path | None = None, results: Path = Path("results")) -> list[Row]:
    """Every row of the table for ``config`` (and the workflow ``profile`` when given)."""
    sheet = read_sheet(config)
    return (torch_rows(config) + ffmpeg_rows(config) + mediapipe_rows(config, sheet) + weight_rows(config)
            + slurm_rows(profile) + disk_rows(config, sheet, results))


def format_table(rows: list[Row]) -> str:
    """A plain-text table: check | status | found, each fix on its own line beneath."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'check':<{width}}  {'status':<7}  found", f"{'-' * width}  -------  -----"]
    for row in rows:
        lines.append(f"{row.name:<{width}}  {row.status:<7}  {row.detail}")
        if row.fix and row.status in (MISSING, WARN):
            lines.append(f"{'':<{width}}  {'':<7}  fix: {row.fix}")
    return "\n".join(lines)


def cli(args: argparse.Namespace) -> int:
    from pipeline.plan.checks import repository_base_config

    # as the workflow does: its own config/config.yaml (beside the Snakefile, wherever this runs), then each
    # --configfile merged over it
    config = load_config([Path(repository_base_config()), *(args.configfile or [])])
    rows = diagnose(config, args.profile)
    print(format_table(rows))
    missing = [r.name for r in rows if r.status == MISSING]
    if missing:
        print(f"\nMissing for this config: {', '.join(missing)}")
        return 1
    return 0


# Commands that write no file, so they take no --force (cli.build_parser).
WRITES_NOTHING = ("doctor",)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add doctor to ``edn``'s subcommands."""
    p = sub.add_parser("doctor", help="what this machine offers for a run of the config; exit 1 if it lacks a need")
    p.add_argument("--configfile", type=Path, nargs="+", action="extend", default=None,
                   help="merged over config/config.yaml in order, as snakemake --configfile")
    p.add_argument("--profile", type=Path, default=None, help="workflow profile to check (e.g. profiles/slurm)")
    p.set_defaults(func=handler("pipeline.doctor", "cli"))


def stage_paths(args: argparse.Namespace) -> StagePaths | None:
    """doctor reads the config and probes the machine: no inputs, no outputs; None for any other command."""
    return ("doctor", (), ()) if args.command == "doctor" else None
