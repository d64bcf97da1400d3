"""``edn evaluate``: the paper's evaluation (Chan et al. 2018, section 5) on held-out frames of the target.

The held-out frames are the ones training never saw: the lists in the generator's ``run.json``
(``held_out_frames`` per clip), whose clip fingerprints must match the clips given here. Only
those frames and their stick figures are read. From the target's own poses each model makes
the held-out frames (feeding back its previous output from a zero first frame, per clip), and
they are compared with the real frames at the model's resolution:

* Table 1: SSIM and LPIPS (AlexNet) on the crop to the body's bounding box (all present
  keypoints, 10 % margin);
* Table 2: the same on the face box the face GAN works on;
* Table 3: pose distance, the mean L2 in model pixels between keypoints that MediaPipe finds on
  both the real and the generated frame, for body, face, both hands and overall;
* Table 4: missed detections, joints found on the real frame but not on the generated one, per image;
* beyond the paper: temporal instability, the mean absolute difference between consecutive
  frames, generated against real.

Rows are the ablations asked for: ``frame_by_frame`` (a separate generator trained without the
previous-frame input, ``edn train --no-temporal``, as the paper's frame-by-frame baseline),
``temporal`` (temporal smoothing) and ``temporal_face`` (temporal smoothing + face GAN).
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.data import Clip, fit_keypoints, fit_to_size, load_clip, read_rgb
from pipeline.provenance import atomic_dir, provenance, write_json

log = logging.getLogger(__name__)

ROWS = {
    "frame_by_frame": "Frame-by-frame (separate model, no temporal input)",
    "temporal": "Temporal smoothing",
    "temporal_face": "Temporal smoothing + Face GAN",
}
# Which loaded model makes each row and whether the face GAN refines its frames: rows of one model
# come from one generator pass (temporal_face is the face GAN on the temporal row's frames).
ROW_SOURCES = {"frame_by_frame": ("frame_by_frame", False), "temporal": ("temporal", False),
               "temporal_face": ("temporal", True)}
PARTS = ("body", "face", "hands", "overall")
BODY_MARGIN = 0.1  # the body crop: keypoints' bounding box grown by this fraction of its size
# Our joint counts beside the paper's (23 body, 70 face, 21 per hand, 135 overall): MediaPipe has no
# small toes, so our body is BODY_25 less LSmallToe/RSmallToe (23; the paper does not name its two);
# face 70 = 68 OpenPose points mapped from the face mesh + 2 pupils; hands 2 x 21; overall 135 found
# of the 137 columns.
JOINT_NOTE = ("Joint counts: the paper counts body 23 (BODY_25 less two joints it does not name), face 70, "
              "hands 21 per hand, overall 135. Ours: body 23 = BODY_25 less LSmallToe and RSmallToe, which "
              "MediaPipe does not detect; face 70 = the 68 OpenPose face points mapped from MediaPipe's face "
              "mesh plus 2 pupils (iris centres); hands 2 x 21 from MediaPipe's hand models; overall 135 "
              "(137 columns less the two small toes). Our keypoints come from MediaPipe, theirs from OpenPose.")
PAPER_NOTE = ("Rows labelled 'paper (their data, 1024x512)' are the published values of Chan et al. 2018, "
              "Tables 1-4, for pix2pixHD (beside our frame-by-frame row), T.S. (temporal) and T.S. + Face "
              "(temporal + face GAN): their own subjects, ~20 min targets at 120 fps, many GPU-days; a "
              "reference, not a target. Their pose distances' resolution is not stated (model 1024x512).")


@dataclass
class HeldOutClip:
    """One clip's held-out frames at the model's resolution (RGB) and their keypoints in model pixels."""

    clip: Clip
    frames: list[int]
    real: list[np.ndarray] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    keypoints: np.ndarray | None = None


def held_out_frames(generator: str | Path, clips: Sequence[tuple[str | Path, str | Path, str | Path]]
                    ) -> tuple[list[list[int]], Path]:
    """The held-out frame indices per clip from the ``run.json`` beside ``generator``."""
    run_path = Path(generator).parent / "run.json"
    if not run_path.is_file():
        raise FileNotFoundError(f"{run_path}: training record not found beside {generator} "
                                "(its held_out_frames say which frames training never saw)")
    try:
        run = json.loads(run_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{run_path}: invalid JSON ({exc})") from exc
    recorded = run.get("clips") or []
    if len(recorded) != len(clips):
        raise ValueError(f"{run_path}: training used {len(recorded)} clips but {len(clips)} are given to evaluate")
    held = [[int(f) for f in c.get("held_out_frames") or []] for c in recorded]
    for files, frames in zip(clips, held):
        if not frames:
            raise ValueError(f"{run_path}: no held-out frames for {files[0]} (train with holdout > 0 to evaluate)")
    return held, run_path


def check_same_clips(run_path: Path, clips: list[Clip]) -> None:
    """The clips must be the ones training split (frame count, first frame, size, keypoint values)."""
    from pipeline.train import clip_inputs

    run = json.loads(run_path.read_text())
    trained = (run.get("inputs") or {}).get("clips")
    now = clip_inputs(clips)
    for i, (a, b) in enumerate(zip(trained or [], now)):
        if a != b:
            raise ValueError(f"{run_path}: clip {i + 1} ({clips[i].frames_dir}) is not the clip this model was "
                             f"trained on (recorded {a}, found {b}); its held-out frames would not be held out")
    if trained is None or len(trained) != len(now):
        raise ValueError(f"{run_path}: no clip fingerprints recorded (inputs.clips)")


def load_held_out(clips: Sequence[tuple[str | Path, str | Path, str | Path]], held: list[list[int]],
                  run_path: Path, size: tuple[int, int]) -> list[HeldOutClip]:
    """Read the held-out frames and stick figures (and nothing else) at the model's ``size``."""
    from pipeline.generate import model_pose

    out = []
    for files, frames in zip(clips, held):
        clip = load_clip(*files, check_frame=frames[0])  # the size check reads a held-out frame
        out.append(HeldOutClip(clip, frames))
    check_same_clips(run_path, [h.clip for h in out])
    for h in out:
        position = {f: i for i, f in enumerate(h.clip.indices)}
        missing = [f for f in h.frames if f not in position]
        if missing:
            raise ValueError(f"{h.clip.frames_dir}: held-out frames {missing[:5]} are not in the clip")
        rows = [position[f] for f in h.frames]
        h.real = [fit_to_size(read_rgb(h.clip.frame_paths[i]), *size) for i in rows]
        h.poses = [model_pose(h.clip.pose_paths[i], size) for i in rows]
        h.keypoints = fit_keypoints(h.clip.keypoints[rows], h.clip.width, h.clip.height, *size)
    return out


def _bgr(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., ::-1])


def _detect(frames: list[np.ndarray], folder: Path, fps: float) -> np.ndarray:
    """MediaPipe keypoints (frames, 137, 3) of RGB frames, written as PNGs to ``folder`` first."""
    import cv2

    from pipeline.detect import detect_mediapipe

    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        if not cv2.imwrite(str(folder / f"{i:06d}.png"), _bgr(frame)):
            raise RuntimeError(f"{folder}: cannot write frame {i}")
    h, w = frames[0].shape[:2]
    (folder / "meta.json").write_text(json.dumps({"width": w, "height": h, "fps": fps}))
    return detect_mediapipe(folder).data


def _image_scores(real: np.ndarray, fake: np.ndarray, box: Any, lpips: Any) -> tuple[float, float]:
    from pipeline.metrics import crop, ssim

    a, b = crop(_bgr(real), box), crop(_bgr(fake), box)
    if a is None or b is None:
        return math.nan, math.nan
    return ssim(a, b), (lpips(a, b) if lpips is not None else math.nan)


_OWNED = r"metrics\.parquet|frames\.parquet|tables\.(md|html)|samples\.png|evaluation\.json"  # what evaluate writes


def evaluate(out_dir: str | Path, clips: Sequence[tuple[str | Path, str | Path, str | Path]], generator: str | Path,
             *, face: str | Path | None = None, frame_by_frame: str | Path | None = None,
             rows: Sequence[str] = ("temporal", "temporal_face"), lpips_weights: str | Path | None = None,
             device: str = "auto", samples: int = 4, precision: str = "auto") -> dict[str, Any]:
    """Evaluate on the held-out frames; writes metrics.parquet, frames.parquet, tables.md, tables.html,
    samples.png and evaluation.json into ``out_dir``. Returns the record."""
    import re

    from pipeline.provenance import check_output_dir

    # Refuse a folder that is not ours before the long computation, not only at the end.
    inputs = (Path(generator),) + tuple(Path(p) for clip in clips for p in clip)
    check_output_dir(Path(out_dir), "evaluate", re.compile(_OWNED), inputs, marker="evaluation.json")
    import pandas as pd
    import torch

    from pipeline.generate import face_boxes, generate_frames, load_models
    from pipeline.models.generator import select_plate
    from pipeline.keypoints import BODY
    from pipeline.metrics import LPIPS, keypoint_box, missed_detections, pose_distance, temporal_instability

    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        raise ValueError(f"unknown or no evaluation rows {unknown or list(rows)} (choose from {list(ROWS)})")
    if "temporal_face" in rows and face is None:
        raise ValueError("row temporal_face needs the face GAN (--face face.pt)")
    if "frame_by_frame" in rows and frame_by_frame is None:
        raise ValueError("row frame_by_frame needs the model trained without temporal input "
                         "(--frame-by-frame, made by `edn train --no-temporal`)")
    started = time.perf_counter()
    torch.manual_seed(0)
    models = {"temporal": load_models(generator, face, device, precision)}
    if frame_by_frame is not None and "frame_by_frame" in rows:
        models["frame_by_frame"] = load_models(frame_by_frame, None, device, precision)
        if models["frame_by_frame"].temporal:
            raise ValueError(f"{frame_by_frame}: this generator takes the previous frame; the frame-by-frame row "
                             "needs one trained with `edn train --no-temporal`")
        if models["frame_by_frame"].size != models["temporal"].size:
            raise ValueError(f"{frame_by_frame}: trained at {models['frame_by_frame'].size}, "
                             f"{generator} at {models['temporal'].size}")
    size = models["temporal"].size
    held, run_path = held_out_frames(generator, clips)
    if "frame_by_frame" in models:
        held_fbf, run_fbf = held_out_frames(frame_by_frame, clips)
        if held_fbf != held:
            raise ValueError(f"{run_fbf}: held-out frames differ from {run_path}'s; train both with the same holdout")
    data = load_held_out(clips, held, run_path, size)
    lpips = LPIPS.load(lpips_weights, device=str(models["temporal"].device))

    frame_rows, generated = [], {row: [] for row in rows}
    for source in dict.fromkeys(ROW_SOURCES[r][0] for r in rows):  # each model once, in row order
        model = models[source]
        mine = [r for r in rows if ROW_SOURCES[r][0] == source]
        refined = [r for r in mine if ROW_SOURCES[r][1]]
        plain = [r for r in mine if not ROW_SOURCES[r][1]]
        for c, h in enumerate(data):
            select_plate(model.generator, c)  # a plate generator paints over this clip's own background
            boxes = face_boxes(h.keypoints, size, model)  # keypoints are in model pixels already
            stream = generate_frames(model, h.poses, boxes, use_face=bool(refined),
                                     with_plain=bool(refined and plain))
            fakes: dict[str, list[np.ndarray]] = {r: [] for r in mine}
            for item in stream:
                pair = item if refined and plain else (item, item)
                for r in mine:
                    fakes[r].append(pair[1] if ROW_SOURCES[r][1] else pair[0])
            for row in mine:
                generated[row].append(fakes[row])
                for i, (real, fake) in enumerate(zip(h.real, fakes[row])):
                    body = _image_scores(real, fake, keypoint_box(h.keypoints[i], BODY_MARGIN), lpips)
                    face_scores = _image_scores(real, fake, boxes[i], lpips)
                    frame_rows.append({"ablation": row, "clip": c, "frame": h.frames[i], "ssim_body": body[0],
                                       "lpips_body": body[1], "ssim_face": face_scores[0],
                                       "lpips_face": face_scores[1]})
        for row in mine:
            log.info("%s: generated %d held-out frames", ROWS[row], sum(len(f) for f in generated[row]))
    order = {r: k for k, r in enumerate(rows)}
    frame_rows.sort(key=lambda f: order[f["ablation"]])  # row by row, as before
    per_frame = pd.DataFrame(frame_rows)

    metrics = []

    def add(table: str, row: str, metric: str, value: float) -> None:
        metrics.append({"table": table, "ablation": row, "label": ROWS[row], "metric": metric,
                        "value": float(value)})

    with tempfile.TemporaryDirectory(prefix=".evaluate.") as tmp:
        real_kp = [_detect(h.real, Path(tmp) / f"real_{c}", h.clip.fps) for c, h in enumerate(data)]
        real_all = np.concatenate(real_kp)
        for row in rows:
            fake_all = np.concatenate([_detect(f, Path(tmp) / f"{row}_{c}", data[c].clip.fps)
                                       for c, f in enumerate(generated[row])])
            for part, value in pose_distance(real_all, fake_all).items():
                if part in PARTS:
                    add("pose_distance", row, part, value)
            for part, value in missed_detections(real_all, fake_all).items():
                if part in PARTS:
                    add("missed_detections", row, part, value)
    for row in rows:
        mine = per_frame[per_frame["ablation"] == row]
        for table in ("body", "face"):
            add(table, row, "ssim", mine[f"ssim_{table}"].mean())
            add(table, row, "lpips", mine[f"lpips_{table}"].mean() if lpips is not None else math.nan)
        add("temporal_instability", row, "generated", _pooled_instability(generated[row]))
        add("temporal_instability", row, "real", _pooled_instability([h.real for h in data]))
    table = pd.DataFrame(metrics)
    record = {
        "provenance": provenance("evaluate", {"rows": list(rows), "device": str(models["temporal"].device),
                                              "precision": models["temporal"].precision,
                                              "lpips_weights": str(lpips_weights) if lpips_weights else None,
                                              "body_margin": BODY_MARGIN, "seed": 0}),
        "models": {k: m.records for k, m in models.items()}, "training_run": str(run_path),
        "held_out": [{"frames_dir": str(h.clip.frames_dir), "frames": h.frames} for h in data],
        "n_frames": sum(len(h.frames) for h in data), "size": list(size), "lpips": lpips is not None,
        "real_faces_detected": int((real_all[:, 25:95, 2] > 0).any(axis=1).sum()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "evaluate", _OWNED, inputs=inputs, marker="evaluation.json") as tmp_dir:
        table.to_parquet(tmp_dir / "metrics.parquet", index=False)
        per_frame.to_parquet(tmp_dir / "frames.parquet", index=False)
        tables = result_tables(table, rows, lpips is not None, size)
        intro = _intro(record, rows)
        (tmp_dir / "tables.md").write_text(tables_markdown(tables, intro))
        (tmp_dir / "tables.html").write_text(tables_html(tables, intro))
        write_samples(tmp_dir / "samples.png", data, generated, rows, samples)
        write_json(tmp_dir / "evaluation.json", record)
    log.info("%s: evaluated %d held-out frames in %.0f s", out_dir, record["n_frames"], record["seconds"])
    return record


def _pooled_instability(clips: list[list[np.ndarray]]) -> float:
    """Mean over every consecutive pair inside each clip (never across a clip boundary)."""
    from pipeline.metrics import consecutive_differences

    diffs = [d for frames in clips for d in consecutive_differences(frames)]
    return float(np.mean(diffs)) if diffs else math.nan


# ------------------------------------------------------------------------------------------ tables

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows of cells


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def result_tables(metrics: Any, rows: Sequence[str], lpips: bool,
                  size: tuple[int, int] | None = None) -> list[Table]:
    """The paper's four tables (and temporal instability) as text cells, the paper's rows beside ours.

    ``size`` (width, height) is the resolution our pixel distances were measured at; Table 3 then
    also gives them scaled to 512 px height (the height of the paper's model).
    """
    from pipeline.paper_tables import PAPER_LABEL, PAPER_NAMES, paper_cell, paper_value

    def value(table: str, row: str, metric: str) -> float:
        hit = metrics[(metrics["table"] == table) & (metrics["ablation"] == row) & (metrics["metric"] == metric)]
        return float(hit["value"].iloc[0]) if len(hit) else math.nan

    def paper_rows(table: str, metrics_: Sequence[str]) -> list[list[str]]:
        return [[f"{PAPER_LABEL}: {PAPER_NAMES[r]}"] + [paper_cell(paper_value(table, r, m)) for m in metrics_]
                for r in rows if r in PAPER_NAMES]

    tables: list[Table] = []
    for number, table, where in ((1, "body", "the crop to the body's bounding box"), (2, "face", "the face box")):
        cells = [[ROWS[r], _fmt(value(table, r, "ssim"), 4),
                  _fmt(value(table, r, "lpips"), 4) if lpips else "unavailable"] for r in rows]
        tables.append((f"Table {number}: images, {where}", ["", "SSIM (higher is better)",
                                                            "LPIPS (lower is better)"],
                       cells + paper_rows(table, ("ssim", "lpips"))))
    header = ["", "Body (23)", "Face (70)", "Hands (2 x 21)", "Overall (135)"]
    at = f"at {size[0]}x{size[1]}" if size else "in model pixels"
    distance = [[f"{ROWS[r]} ({at})"] + [_fmt(value("pose_distance", r, p), 2) for p in PARTS] for r in rows]
    if size:
        scale = 512 / size[1]
        distance += [[f"{ROWS[r]} (scaled to 512 px height, x{scale:.3g})"]
                     + [_fmt(value("pose_distance", r, p) * scale, 2) for p in PARTS] for r in rows]
    tables.append((f"Table 3: pose distance (mean L2 in pixels, lower is better; ours measured {at})", header,
                   distance + paper_rows("pose_distance", PARTS)))
    tables.append(("Table 4: missed detections per image (lower is better)", header,
                   [[ROWS[r]] + [_fmt(value("missed_detections", r, p), 2) for p in PARTS] for r in rows]
                   + paper_rows("missed_detections", PARTS)))
    tables.append(("Beyond the paper: temporal instability (mean absolute difference of consecutive frames, "
                   "0-255)", ["", "Generated", "Real footage"],
                   [[ROWS[r], _fmt(value("temporal_instability", r, "generated"), 2),
                     _fmt(value("temporal_instability", r, "real"), 2)] for r in rows]))
    return tables


def _intro(record: dict[str, Any], rows: Sequence[str]) -> list[str]:
    clips = "; ".join(f"{Path(h['frames_dir']).name}: frames {h['frames'][0]}-{h['frames'][-1]}"
                      for h in record["held_out"])
    lines = [f"{record['n_frames']} held-out frames that training never saw ({clips}), generated from the "
             f"target's own poses and compared with the real frames at the model's resolution "
             f"({record['size'][0]}x{record['size'][1]}). Each clip's sequence starts from a zero previous frame."]
    if "frame_by_frame" in rows:
        lines.append("Frame-by-frame is a separate generator trained without the previous-frame input "
                     "(`edn train --no-temporal`, single-frame discriminator), as the paper's baseline.")
    if not record["lpips"]:
        lines.append("LPIPS is unavailable: the pretrained AlexNet weights were not found (see the log); it is "
                     "never computed with random weights.")
    if record["real_faces_detected"] == 0:
        lines.append("No face keypoints were found on the real frames, so face pose distance and misses are n/a.")
    lines += [PAPER_NOTE, JOINT_NOTE]
    return lines


def tables_markdown(tables: list[Table], intro: list[str]) -> str:
    out = ["# Evaluation on held-out frames", "", *[f"{line}\n" for line in intro]]
    for title, header, cells in tables:
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in cells]
        out.append("")
    return "\n".join(out)


def tables_html(tables: list[Table], intro: list[str]) -> str:
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #bbb;padding:.3em .7em;text-align:right}td:first-child{text-align:left}")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation</title><style>{style}</style>"
             "</head><body><h1>Evaluation on held-out frames</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in intro]
    for title, header, cells in tables:
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells]
        parts.append("</table>")
    return "\n".join(parts + ["</body></html>\n"])


def write_samples(path: Path, data: list[HeldOutClip], generated: dict[str, list[list[np.ndarray]]],
                  rows: Sequence[str], n: int) -> None:
    """A grid of held-out frames: stick figure | each row's result | real frame, labelled on top."""
    import cv2

    from pipeline.video import side_by_side

    picks = [(c, i) for c, h in enumerate(data) for i in range(len(h.frames))]
    picks = [picks[k] for k in np.linspace(0, len(picks) - 1, min(n, len(picks))).round().astype(int)]
    lines = [side_by_side(*[_bgr(x) for x in [data[c].poses[i], *(generated[r][c][i] for r in rows),
                                              data[c].real[i]]]) for c, i in picks]
    grid = np.vstack(lines)
    width = data[0].poses[0].shape[1]
    label = np.full((28, grid.shape[1], 3), 255, np.uint8)
    for k, name in enumerate(["pose", *rows, "real"]):
        cv2.putText(label, name.replace("_", " "), (k * width + 4, 19), cv2.FONT_HERSHEY_SIMPLEX,
                    min(0.5, width / 260), (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), np.vstack([label, grid])):
        raise RuntimeError(f"{path}: cannot write sample grid")


def cli(args: argparse.Namespace) -> int:
    evaluate(args.out_dir, [tuple(c) for c in args.clip], args.generator, face=args.face,
             frame_by_frame=args.frame_by_frame, rows=args.rows, lpips_weights=args.lpips_weights,
             device=args.device, samples=args.samples, precision=args.precision)
    return 0
