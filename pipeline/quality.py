"""Pose quality control: a per-frame verdict on a keypoint track from the video's own statistics.

A detector can be plausible frame by frame and still hand over garbage: a limb stretched to
another person's wrist, a joint that teleports, or a switch to another person in the middle of
the clip. Everything here is measured against the same video's robust medians, so no body
model and no frame size assumptions are needed. Checks (thresholds are ``qc.*`` in the config):

* **limb** -- each of the major BODY_25 limbs (:data:`QC_LIMBS`) against its usual share of
  the body's scale. The frame's scale ``s`` is the median over its limbs of
  ``length / median length over the video``, so one bad limb cannot move it; a limb's ratio
  is ``length / (s * usual share)``. Flagged above ``limb_long`` (2.0: on the demo clips the
  largest ratio of any limb in a good frame is 1.94). Too short is checked only for the torso (Neck-MidHip,
  below ``torso_short`` 0.3): arms, shoulders and hips foreshorten legitimately to almost
  nothing in 2-D (0.01x on the demo dancer), the torso of an upright person does not (>= 0.78x).
* **box** -- the body joints' bounding box wider or taller than ``box_factor`` (2.0) times the
  video's median box (the demo reaches 1.51x with outstretched arms), or larger than the frame.
* **jump** -- the body's centre (median of its present joints) moves more than ``jump``
  (0.25) body heights (the video's median box height) per frame since the previous frame with
  a body; the demo's largest move is 0.12 at 60 fps.
* **switch** (a change of person) -- the body's scale changes by more than ``scale_change``
  (1.5x; demo at most 1.37x) from the previous frame, or at least ``switch_joints`` (half) of
  the joints seen in both frames move more than ``joint_jump`` (0.2) body heights per frame at
  once (demo: at most 0.39 of the joints on good frames; 0.57 and 0.61 where every limb of the
  dancer moves 0.2-0.7 body heights between two frames and stays there, a jump in the footage).
* **no body** -- no body joint at all.

``plausible`` is False for the per-frame reasons (limb, box, no body); a frame whose
``break`` is True (jump or switch) starts a new segment: the motion before it does not
continue into it. ``ok`` is both. Smoothing treats implausible frames as missing and never
smooths across a break; training uses a pair only when both frames are ok; normalization
repairs frames that are not ok.

Output: Parquet, one row per frame (columns :data:`COLUMNS`), with the ``edn`` metadata
(frame size, fps, thresholds, counts, provenance) as keypoint files have.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.keypoints import BODY, BODY_25_NAMES, METADATA_KEY, J, KeypointTrack, present, read_keypoints, \
    read_parquet_table
from pipeline.provenance import atomic_path, provenance

log = logging.getLogger(__name__)

QC_LIMBS = tuple((J[a], J[b]) for a, b in (
    ("Neck", "MidHip"), ("Neck", "RShoulder"), ("Neck", "LShoulder"), ("RShoulder", "RElbow"),
    ("RElbow", "RWrist"), ("LShoulder", "LElbow"), ("LElbow", "LWrist"), ("MidHip", "RHip"),
    ("RHip", "RKnee"), ("RKnee", "RAnkle"), ("MidHip", "LHip"), ("LHip", "LKnee"), ("LKnee", "LAnkle"),
    ("Neck", "Nose")))
TORSO = 0  # index of Neck-MidHip in QC_LIMBS
DEFAULTS: dict[str, float] = {"limb_long": 2.0, "torso_short": 0.3, "box_factor": 2.0, "jump": 0.25,
                              "scale_change": 1.5, "joint_jump": 0.2, "switch_joints": 0.5}
COLUMNS = ("frame", "ok", "plausible", "break", "reasons", "n_joints", "scale", "max_limb_ratio", "worst_limb",
           "torso_ratio", "box_width_ratio", "box_height_ratio", "jump", "scale_change", "moved_fraction")


def limb_name(a: int, b: int) -> str:
    return f"{BODY_25_NAMES[a]}-{BODY_25_NAMES[b]}"


def _nanmedian(values: np.ndarray, axis: int | None = None) -> Any:
    """np.nanmedian without the all-NaN warning (NaN where nothing is finite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def check_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    """The defaults updated with ``thresholds``; ValueError naming an unknown or non-positive one."""
    unknown = sorted(set(thresholds) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"qc: unknown thresholds {unknown} (known: {sorted(DEFAULTS)})")
    merged = {**DEFAULTS, **{k: float(v) for k, v in thresholds.items()}}
    bad = [f"{k}={v}" for k, v in merged.items() if not v > 0]
    bad += [f"switch_joints={merged['switch_joints']}"] if merged["switch_joints"] > 1 else []
    bad += [f"{k}={merged[k]}" for k in ("limb_long", "box_factor", "scale_change") if merged[k] <= 1]
    if bad:
        raise ValueError(f"qc: invalid thresholds {', '.join(bad)} (positive; limb_long, box_factor, "
                         "scale_change > 1; switch_joints <= 1)")
    return merged


def quality_scores(track: KeypointTrack, thresholds: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Per-frame QC columns (:data:`COLUMNS`) of ``track``; see the module docstring."""
    th = check_thresholds(thresholds or {})
    data = track.data[:, BODY].astype(np.float64)
    n = len(data)
    seen = present(data)
    xy = np.where(seen[..., None], data[..., :2], np.nan)
    a = np.array([l[0] for l in QC_LIMBS])
    b = np.array([l[1] for l in QC_LIMBS])
    lengths = np.linalg.norm(xy[:, b] - xy[:, a], axis=-1)  # NaN where an end is missing
    lengths = np.where(lengths > 0, lengths, np.nan)
    usual = _nanmedian(lengths, axis=0)
    scale = _nanmedian(lengths / usual, axis=1)
    share = _nanmedian(lengths / scale[:, None], axis=0)  # each limb's usual length at scale 1
    ratio = lengths / (scale[:, None] * share)
    any_ratio = np.isfinite(ratio).any(axis=1)
    max_ratio = np.where(any_ratio, np.nanmax(np.where(np.isfinite(ratio), ratio, -np.inf), axis=1), np.nan)
    worst = np.where(any_ratio, np.argmax(np.where(np.isfinite(ratio), ratio, -np.inf), axis=1), -1)

    n_joints = seen.sum(axis=1)
    has_body = n_joints > 0
    with np.errstate(all="ignore"):
        lo = np.where(has_body[:, None], np.where(seen[..., None], xy, np.inf).min(axis=1), np.nan)
        hi = np.where(has_body[:, None], np.where(seen[..., None], xy, -np.inf).max(axis=1), np.nan)
    box = hi - lo
    usual_box = _nanmedian(np.where(n_joints[:, None] >= 2, box, np.nan), axis=0)
    body_height = float(usual_box[1]) if np.isfinite(usual_box[1]) and usual_box[1] > 0 else np.nan
    box_ratio = box / np.where(usual_box > 0, usual_box, np.nan)
    centre = _nanmedian(xy, axis=1)

    jump = np.full(n, np.nan)
    scale_change = np.full(n, np.nan)
    moved = np.full(n, np.nan)
    prev = -1
    for t in range(n):
        if not has_body[t]:
            continue
        if prev >= 0:  # against the last frame with a body (a gap does not hide a switch) ...
            elapsed = max(1, int(track.frames[t]) - int(track.frames[prev]))  # ... per frame elapsed
            jump[t] = np.linalg.norm(centre[t] - centre[prev]) / body_height / elapsed
            if np.isfinite(scale[t]) and np.isfinite(scale[prev]) and scale[prev] > 0:
                scale_change[t] = max(scale[t] / scale[prev], scale[prev] / scale[t])
            both = seen[t] & seen[prev]
            if both.sum() >= 3:
                step = np.linalg.norm(xy[t, both] - xy[prev, both], axis=-1) / body_height / elapsed
                moved[t] = float(np.mean(step > th["joint_jump"]))
        prev = t

    frame_width, frame_height = track.meta.get("width"), track.meta.get("height")
    reasons: list[str] = []
    plausible = np.ones(n, dtype=bool)
    breaks = np.zeros(n, dtype=bool)
    for t in range(n):
        why: list[str] = []
        if not has_body[t]:
            why.append("no body")
        long = np.nonzero(ratio[t] > th["limb_long"])[0]
        why += [f"limb:{limb_name(*QC_LIMBS[i])} {ratio[t, i]:.1f}x" for i in long]
        if ratio[t, TORSO] < th["torso_short"]:
            why.append(f"torso {ratio[t, TORSO]:.2f}x")
        if np.nanmax(box_ratio[t], initial=-np.inf) > th["box_factor"]:
            why.append(f"box {box_ratio[t, 0]:.1f}x{box_ratio[t, 1]:.1f}")
        elif frame_width and frame_height and has_body[t] and (box[t, 0] > frame_width or box[t, 1] > frame_height):
            why.append("box>frame")
        plausible[t] = not why
        if jump[t] > th["jump"]:
            why.append(f"jump {jump[t]:.2f}")
            breaks[t] = True
        if scale_change[t] > th["scale_change"] or moved[t] >= th["switch_joints"]:
            why.append("switch")
            breaks[t] = True
        reasons.append(";".join(why))
    return {
        "frame": track.frames.astype(np.int32), "ok": plausible & ~breaks, "plausible": plausible,
        "break": breaks, "reasons": np.array(reasons, dtype=object), "n_joints": n_joints.astype(np.int16),
        "scale": scale, "max_limb_ratio": max_ratio,
        "worst_limb": np.array([limb_name(*QC_LIMBS[w]) if w >= 0 else "" for w in worst], dtype=object),
        "torso_ratio": ratio[:, TORSO], "box_width_ratio": box_ratio[:, 0], "box_height_ratio": box_ratio[:, 1],
        "jump": jump, "scale_change": scale_change, "moved_fraction": moved,
    }


def reason_kind(reason: str) -> str:
    """The check behind one reason: "limb:RElbow-RWrist 3.1x" -> "limb", "no body" -> "no body"."""
    return "no body" if reason == "no body" else reason.split(":")[0].split(" ")[0]


def summary(scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Counts of bad frames per reason kind, and the frame numbers that are not ok."""
    kinds: dict[str, int] = {}
    for text in scores["reasons"]:
        for kind in {reason_kind(r) for r in text.split(";") if r}:
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"frames": int(len(scores["frame"])), "bad_frames": int((~scores["ok"]).sum()),
            "implausible_frames": int((~scores["plausible"]).sum()), "breaks": int(scores["break"].sum()),
            "by_reason": kinds, "not_ok": scores["frame"][~scores["ok"]].tolist()}


def write_qc(path: str | Path, scores: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write the per-frame verdicts as Parquet (metadata under ``edn``), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(scores[k].tolist() if scores[k].dtype == object else scores[k])
                      for k in COLUMNS})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


class QCFileError(ValueError):
    """A QC file that cannot be used; the message names the file."""


def read_qc(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Columns and metadata of a QC file written by :func:`write_qc`; errors name the file."""
    path = Path(path)
    table = read_parquet_table(path, "QC file not found (run `edn qc` first)", QCFileError)
    missing = [c for c in ("frame", "ok", "plausible", "break", "reasons") if c not in table.column_names]
    if missing:
        raise QCFileError(f"{path}: not a QC file (missing columns {missing})")
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    columns["frame"] = columns["frame"].astype(np.int64)
    return columns, json.loads(raw) if raw else {}


def bad_frames(path: str | Path) -> set[int]:
    """Frame numbers a QC file does not call ok."""
    columns, _ = read_qc(path)
    return set(columns["frame"][~columns["ok"].astype(bool)].tolist())


def qc_track(track: KeypointTrack, thresholds: dict[str, float] | None = None,
             input_path: str | Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Scores and the metadata :func:`write_qc` stores (thresholds, counts, provenance)."""
    th = check_thresholds(thresholds or {})
    scores = quality_scores(track, th)
    meta = {key: track.meta.get(key) for key in ("width", "height", "fps")}
    meta["thresholds"] = th
    meta["summary"] = summary(scores)
    meta["upstream"] = [track.meta.get("provenance")] if track.meta.get("provenance") else []
    meta["provenance"] = provenance("qc", {"input": None if input_path is None else str(input_path), **th})
    return scores, meta


def cli(args: argparse.Namespace) -> int:
    track = read_keypoints(args.keypoints)
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    try:
        scores, meta = qc_track(track, given, args.keypoints)
    except ValueError as exc:
        raise ValueError(f"{args.keypoints}: {exc}") from exc
    write_qc(args.out, scores, meta)
    s = meta["summary"]
    log.info("%s: %d of %d frames not ok (%d implausible, %d breaks; %s) -> %s", args.keypoints, s["bad_frames"],
             s["frames"], s["implausible_frames"], s["breaks"], s["by_reason"] or "none", args.out)
    return 0
