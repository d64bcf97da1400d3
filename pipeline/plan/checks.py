"""What the workflow checks when it plans, before any job: the base config it always reads, the sheet's
numbers against its videos (trims that hold a frame, targets long enough for a held-out split, one frame
size per subject), and the outputs a rerun must make again because part of them was lost.

Only headers are read (no decoding); videos the workflow makes itself (the demo) are checked when extracted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.provenance import write_json

log = logging.getLogger(__name__)

BASE_CONFIG = Path("config") / "config.yaml"  # beside the Snakefile: the workflow's own defaults


def base_config(workflow_dir: str | Path) -> str:
    """The absolute path of the workflow's ``config/config.yaml``, read before every ``--configfile``
    wherever Snakemake starts (``-s PATH/Snakefile``, ``--directory``, a SLURM job); an error naming it
    when it is missing, where Snakemake would drop it silently once a ``--configfile`` is given."""
    path = (Path(workflow_dir) / BASE_CONFIG).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the workflow's base config is missing; every run reads it first and "
                                "overlays (--configfile) change only some of its keys: restore it "
                                "(git checkout -- config/config.yaml)")
    return str(path)


def repository_base_config() -> str:
    """:func:`base_config` of the workflow this package belongs to (the Snakefile beside ``pipeline/``)."""
    return base_config(Path(__file__).resolve().parents[2])


def _time(text: str) -> float | None:
    from pipeline.footage.timespan import parse_time

    return parse_time(text) if text else None


def _displayed_size(info: Any, rotation: str, crop: str) -> tuple[int, int]:
    """A sheet row's frame before scaling, in source pixels: after its rotation and crop."""
    from pipeline.footage.extract import displayed_size

    if crop:
        width, height = (int(v) for v in crop.split(",")[2:])
        return width, height
    return displayed_size(info, int(rotation) if rotation else None)


def scaled_width(width: int, height: int, out_height: int) -> int:
    """The width ffmpeg's ``scale=-2:out_height`` gives a ``width`` x ``height`` frame (rounded to the nearest
    even number, as libavfilter's scale_eval does)."""
    return max(2, 2 * math.floor(out_height * width / (2 * height) + 0.5))


def check_sheet(sheet: Any, sheet_path: str, config: Mapping[str, Any]) -> None:
    """Every check of the sheet's rows against their videos' headers that needs the config: trims holding a
    frame, targets long enough for the held-out split, one frame size per subject. ``sheet``: the workflow's
    DataFrame (index: name; columns path, role, subject, crop, rotation, fps, start, end)."""
    from pipeline.footage.media import probe_video
    from pipeline.footage.timespan import check_span_frames

    infos, rows = {}, {}
    for name, row in sheet.iterrows():
        if Path(row["path"]).is_file():
            try:
                infos[name], rows[name] = probe_video(row["path"], count_frames=False), row
            except ValueError:
                continue  # not a readable video: its extraction says so, naming it
    frames = {}
    for name, row in rows.items():
        try:
            frames[name] = check_span_frames(infos[name], _time(row["start"]), _time(row["end"]),
                                             float(row["fps"]) if row["fps"] else None)
        except ValueError as exc:
            raise ValueError(f"{sheet_path}: video {name}: {exc}") from None
    holdout = float(config["train"]["holdout"])
    for name, row in rows.items():
        if row["role"] == "target":
            try:
                check_holdout_split(frames[name], holdout, row["path"])
            except ValueError as exc:
                raise ValueError(f"{sheet_path}: video {name}: {exc}") from None
    targets = {name: row for name, row in rows.items() if row["role"] == "target"}
    for subject in sorted({row["subject"] for row in targets.values()}):
        clips = {name: _displayed_size(infos[name], row["rotation"], row["crop"])
                 for name, row in targets.items() if row["subject"] == subject}
        try:
            check_subject_sizes(clips, int(config["extract"]["height"]))
        except ValueError as exc:
            raise ValueError(f"{sheet_path}: subject {subject}: {exc}") from None


def check_holdout_split(frame_count: int, holdout: float, where: str) -> None:
    """A target clip of ``frame_count`` frames must leave training at least one pair of consecutive frames and,
    with ``holdout`` > 0, hold out at least one frame to evaluate on (the held-out tail is
    ``round(frame_count * holdout)`` frames: :func:`pipeline.gan.data.split_holdout`)."""
    if frame_count <= 0:
        return  # unknown: extraction counts them
    from pipeline.gan.data import split_holdout

    def fits(n: int) -> bool:
        trained, held = (len(part) for part in split_holdout(n, holdout))
        return trained >= 2 and (held >= 1 or holdout == 0)

    if not fits(frame_count):
        held = len(split_holdout(frame_count, holdout)[1])
        trained = frame_count - held
        needed = next(n for n in range(2, 1_000_000) if fits(n))
        raise ValueError(f"{where}: {frame_count} frames are too few for train: holdout {holdout:g} ({held} held out, "
                         f"{trained} to train on): training needs two consecutive frames and evaluation a held-out "
                         f"one; give a target of at least {needed} frames (a longer span or a higher fps)")


def check_subject_sizes(clips: Mapping[str, tuple[int, int]], out_height: int) -> None:
    """The target clips of one subject (name -> width, height before scaling) must give frames of one size at
    ``out_height``; otherwise an error naming each clip's sizes and the centred crop that gives each the
    narrowest clip's shape."""
    scaled = {name: (scaled_width(w, h, out_height), out_height) for name, (w, h) in clips.items()}
    if len(set(scaled.values())) <= 1:
        return
    narrow = min(clips, key=lambda n: (clips[n][0] / clips[n][1], n))
    goal = scaled[narrow][0]
    fixes = []
    for name, (w, h) in sorted(clips.items()):
        if scaled[name][0] == goal:
            continue
        crop_w = min(w, max(2, round(goal * h / out_height)))
        while crop_w > 2 and scaled_width(crop_w, h, out_height) > goal:
            crop_w -= 1
        fixes.append(f"{name}: crop {(w - crop_w) // 2},0,{crop_w},{h}"
                     if scaled_width(crop_w, h, out_height) == goal else f"{name}: crop it to the shape of {narrow}")
    sizes = ", ".join(f"{name} {w}x{h} -> {scaled[name][0]}x{out_height}" for name, (w, h) in sorted(clips.items()))
    raise ValueError(f"clips of one subject must share a frame size, and at extract: height {out_height} they do not "
                     f"({sizes}); set the sheet's crop column (x,y,w,h, centred) to give each {narrow}'s shape: "
                     + "; ".join(fixes))


def lost_outputs(videos: Iterable[str], results: str | Path = "results") -> dict[str, str]:
    """Outputs of finished jobs that have lost a part Snakemake cannot see (a file inside an output folder, a
    training's loss log beside its model): path (as the workflow names it) -> what is lost. The workflow makes
    each again, and what follows it (:func:`record_lost`)."""
    from pipeline.footage.extract import missing_frames

    results = Path(results)
    lost: dict[str, str] = {}
    for video in videos:
        folder = results / "frames" / video
        if folder.is_dir():
            missing = missing_frames(folder)
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                lost[str(folder)] = f"{missing[0]} is missing{more}"
        render = results / "render" / video
        if render.is_dir():
            why = _incomplete_render(render)
            if why:
                lost[str(render)] = why
    models = results / "models"
    for run_json in sorted(models.rglob("run.json")) if models.is_dir() else ():
        why, model = _finished_run_without_log(run_json)
        if why:
            lost[model] = why
    return lost


def _incomplete_render(folder: Path) -> str | None:
    try:
        count = int(json.loads((folder / "meta.json").read_text())["frame_count"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{folder / 'meta.json'} is missing or unreadable"
    found = sum(1 for p in folder.glob("*.png") if p.stem.isdigit())
    return f"{count - found} of its {count} stick figures are missing" if found < count else None


def _finished_run_without_log(run_json: Path) -> tuple[str | None, str]:
    """(what is lost, the model file) for a training run folder whose model exists but whose ``losses.csv``
    does not: the model's training is made again (see pipeline.gan.train: a checkpoint without its loss log
    is not continued)."""
    try:
        record = json.loads(run_json.read_text())
        model = str(record["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""
    if record.get("status") != "finished" or not Path(model).is_file():
        return None, model
    log_path = run_json.parent / "losses.csv"
    return (None if log_path.is_file() else f"its loss log {log_path} is missing"), model


LOST_RECORDS = "lost"  # results/lost/<output>.json: the lost parts found in each output


def lost_record(output: str | Path, results: str | Path = "results") -> Path:
    """Where the lost parts of ``output`` (a path under ``results``, as the workflow names it) are recorded:
    ``results/lost/<output's path under results>.json``."""
    return Path(results) / LOST_RECORDS / f"{Path(output).relative_to(results)}.json"


def lost_inputs(output: str | Path, results: str | Path = "results") -> list[str]:
    """The input that makes a rerun make ``output`` again after a part of it was lost: its lost record, when
    one exists. :func:`record_lost` writes it when the workflow plans, so it is newer than the output and
    Snakemake runs the job again (an input newer than the output, its oldest rerun rule); once the output is
    made again it is older than the output and nothing reruns. None for an output never lost, so adding
    this input changes no existing job."""
    record = lost_record(output, results)
    return [str(record)] if record.is_file() else []


def record_lost(videos: Iterable[str], results: str | Path = "results", planning: bool = True) -> dict[str, str]:
    """Find :func:`lost_outputs` and add each to its lost record (what is lost, when it was found), with a
    warning each; returns them. The record, an input of the job that makes the output (:func:`lost_inputs`),
    has the output made again, and what follows it. A dry run records too: the record says what is lost,
    which is true whether or not the run follows. ``planning`` false (a cluster job reading the Snakefile
    again, the workflow's main process having planned it): nothing is recorded."""
    if not planning:
        return {}
    lost = lost_outputs(videos, results)
    found = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for path, why in lost.items():
        record = lost_record(path, results)
        log.warning("%s: %s; it is made again (recorded in %s)", path, why, record)
        try:
            history = json.loads(record.read_text())["lost"]
        except (OSError, ValueError, KeyError, TypeError):
            history = []
        record.parent.mkdir(parents=True, exist_ok=True)
        write_json(record, {"output": str(path), "lost": [*history, {"what": why, "found": found}]})
    return lost
