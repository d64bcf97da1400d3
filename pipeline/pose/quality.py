"""Pose quality control: a per-frame verdict on a keypoint track, invariant to how the body turns.

A detector can be plausible frame by frame and still hand over garbage: a limb stretched to
another person's wrist, a joint that teleports for a frame, a skeleton mixed from two people,
or a switch to another person. A real dancer also turns, crouches, lies down and spins, and
then every 2-D length changes. The checks use two facts that hold whatever the body does:

1. **Foreshortening only shortens.** A segment's 2-D length is at most its 3-D length times
   the projection's scale. So each segment is judged only against an *upper bound*, never
   against its usual (median) length and never against another segment that may itself point
   at the camera (such ratios are unbounded in 2-D). The bound is a body size ``H`` in pixels:
   each segment's length over its anthropometric share of standing height
   (:data:`SEGMENTS`, Drillis & Contini via Winter, ``docs/pose-qc.md``) is a
   lower bound of ``H``; a frame's estimate is the second largest of these (one wrong segment
   cannot set it), and the frame's bound is the :data:`SIZE_PERCENTILE` th percentile of the
   estimates over +-:data:`SIZE_WINDOW_S` seconds (it does not collapse while the body turns
   away for a moment, and a few bad frames cannot inflate it).
2. **Bodies have inertia.** Speeds and accelerations of the body and its joints are bounded,
   so temporal thresholds are physical (body heights per second, per second squared) and
   scale with the frame rate.

Checks (``qc.*`` in the config; each default is derived in :data:`DEFAULTS`' comments):

* **limb** -- a segment longer than ``limb_long`` x its share of ``H``.
* **box** -- the body joints' box with a side longer than ``box_factor`` x ``H``, or larger
  than the frame.
* **spike** -- a joint out of line with its two neighbouring frames (its deviation from their
  midpoint) by more than a joint can accelerate (``spike_accel`` body heights/s^2, at least
  :data:`SPIKE_FLOOR_H` for detection noise), where that deviation peaks and exceeds the
  neighbours' distance (it left and came back; a step that stays is a jump, not a spike).
* **jump** (a break) -- the body's centre (its torso joints) faster than ``jump_speed``
  body heights per second since the last frame with a body.
* **switch** (a break: a change of person or a cut) -- the segments' median length ratio
  between consecutive body frames beyond ``scale_change``, or at least ``switch_joints`` of
  the joints faster than ``joint_speed`` body heights per second at once.
* **other person** -- a break that is undone within :data:`MAX_EXCURSION_S` (the body jumps
  away and back, and the frames before and after agree): the frames in between belong to
  someone else. They are implausible (so they are repaired from the person the clip follows),
  not breaks. A break that is not undone is a **person change** (or a cut) and is logged with
  its frame.
* **no body** -- no body joint at all.
* **left/right swapped** -- not a fault of the frame: a frame that breaks the motion as
  labelled but continues it with left and right exchanged (half the joint motion or less) is
  the detector's front/back confusion. ``swapped`` marks it and smoothing relabels it; the
  majority labelling of the clip wins.

``plausible`` is False for limb, box, spike, other person and no body; ``break`` for jump and
switch (the motion before does not continue into it). ``ok`` is both. Smoothing treats
implausible frames as missing and never smooths across a break; training uses a pair only
when both frames are ok; normalization repairs frames that are not ok.

Output: Parquet, one row per frame (columns :data:`COLUMNS`), with the ``edn`` metadata
(frame size, fps, thresholds, counts, person changes, provenance) as keypoint files have.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.pose.keypoints import BODY, BODY_25_NAMES, METADATA_KEY, SIDE_SWAP, J, KeypointTrack, present, \
    read_keypoints, read_parquet_table
from pipeline.provenance import atomic_path, provenance

log = logging.getLogger(__name__)

# Segments judged, each with its 3-D length as a share of standing height (docs/pose-qc.md, "Anthropometry").
# Neck-Nose: the neck point is the shoulders' midpoint (0.818 H above the floor), the nose lies
# between eye (0.936) and chin (0.870), ~0.90 H, and ~0.06 H in front: sqrt(0.085^2 + 0.06^2).
# Hip width: the table's 0.191 is a man's; a woman's bitrochanteric width is ~0.21 H, and the
# larger share keeps the height each width implies a lower bound for both.
SEGMENTS = tuple((J[a], J[b], share) for a, b, share in (
    ("Neck", "MidHip", 0.288), ("RShoulder", "LShoulder", 0.259), ("RHip", "LHip", 0.21),
    ("RShoulder", "RElbow", 0.186), ("RElbow", "RWrist", 0.146), ("LShoulder", "LElbow", 0.186),
    ("LElbow", "LWrist", 0.146), ("RHip", "RKnee", 0.245), ("RKnee", "RAnkle", 0.246),
    ("LHip", "LKnee", 0.245), ("LKnee", "LAnkle", 0.246), ("Neck", "Nose", 0.11)))
# Joints whose spikes count: the segments' ends. Eyes, ears and feet are small and often
# half-occluded; a fault there barely changes the stick figure.
SPIKE_JOINTS = tuple(sorted({j for a, b, _ in SEGMENTS for j in (a, b)}))
TORSO_JOINTS = tuple(J[n] for n in ("Neck", "MidHip", "RShoulder", "LShoulder", "RHip", "LHip"))

SIZE_WINDOW_S = 0.5     # the body-size bound looks this far either side ...
SIZE_PERCENTILE = 80    # ... and takes this percentile: up to a fifth of the window's frames may be bad
MAX_EXCURSION_S = 1.0   # a jump away and back within this long is someone else's frames, not a cut
SPIKE_FLOOR_H = 0.05    # spikes below this many body heights are detection noise (~1 % of H per joint)
DEFAULT_FPS = 30.0      # only for tracks whose metadata lacks the frame rate

DEFAULTS: dict[str, float] = {
    # 1.15 (individual proportions +-10 %, joint centres against bony landmarks) x 1.3
    # (perspective: a segment 0.5 m nearer the camera than the body at 2 m) ~ 1.5. A limb
    # drawn twice its length is caught whenever it shows at least 0.75 of its length.
    "limb_long": 1.5,
    # The widest span between body joints, wrists overhead to toes, is ~1.2 H (1.15 + 0.04);
    # with the same 1.15 x 1.3 margin: 1.8.
    "box_factor": 1.8,
    # A sprinter's torso moves ~10 m/s, 5.7 heights/s at 1.75 m; a dancer's (leaps, runs) far slower.
    "jump_speed": 6.0,
    # The same body seen in the next frame: its segments change length by foreshortening one by
    # one, not all by half (the median over them); approaching the camera at 5 m/s from 1.5 m
    # changes the scale by 11 % a frame at 30 fps.
    "scale_change": 1.5,
    # Hands and feet reach ~10 m/s (5.7 heights/s) in kicks and punches; at least half of the
    # joints that fast at once is the whole body, i.e. a change of person or a cut.
    "joint_speed": 6.0,
    "switch_joints": 0.5,
    # ~40 g (400 m/s^2 = 230 heights/s^2 at 1.75 m): above punches (~20-30 g) and dance. At 30 fps
    # a joint may leave the line of its neighbours by 0.13 body heights.
    "spike_accel": 230.0,
}
RENAMED = {"jump": "jump_speed (now body heights per second, default 6; the old 0.25 per frame at 30 fps is 7.5)",
           "joint_jump": "joint_speed (now body heights per second, default 6; the old 0.2 per frame at 30 fps is 6)",
           "torso_short": "nothing: a torso bent towards the camera foreshortens like any segment, so a short "
                          "one is no fault"}
COLUMNS = ("frame", "ok", "plausible", "break", "reasons", "n_joints", "body_size", "max_limb_ratio", "worst_limb",
           "box_ratio", "spike", "jump", "scale_change", "moved_fraction", "swapped")


def limb_name(a: int, b: int) -> str:
    return f"{BODY_25_NAMES[a]}-{BODY_25_NAMES[b]}"


def _nanmedian(values: np.ndarray, axis: int | None = None) -> Any:
    """np.nanmedian without the all-NaN warning (NaN where nothing is finite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def check_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    """The defaults updated with ``thresholds``; ValueError naming an unknown or non-positive one."""
    renamed = [f"{k} -> {RENAMED[k]}" for k in sorted(set(thresholds) & set(RENAMED))]
    if renamed:
        raise ValueError(f"qc: thresholds renamed or removed: {'; '.join(renamed)}")
    unknown = sorted(set(thresholds) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"qc: unknown thresholds {unknown} (known: {sorted(DEFAULTS)})")
    merged = {**DEFAULTS, **{k: float(v) for k, v in thresholds.items()}}
    bad = [f"{k}={v}" for k, v in merged.items() if not (v > 0 and math.isfinite(v))]
    bad += [f"switch_joints={merged['switch_joints']}"] if merged["switch_joints"] > 1 else []
    bad += [f"{k}={merged[k]}" for k in ("limb_long", "box_factor", "scale_change") if merged[k] <= 1]
    if bad:
        raise ValueError(f"qc: invalid thresholds {', '.join(bad)} (positive and finite; limb_long, box_factor, "
                         "scale_change > 1; switch_joints <= 1)")
    return merged


def track_fps(track: KeypointTrack) -> float:
    """The track's frame rate (metadata), :data:`DEFAULT_FPS` when it has none."""
    fps = track.meta.get("fps")
    try:
        fps = float(fps) if fps is not None else DEFAULT_FPS
    except (TypeError, ValueError):
        raise ValueError(f"fps in the metadata is {fps!r}, not a number") from None
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps in the metadata is {fps}, not a positive finite number")
    return fps


def segment_lengths(xy: np.ndarray) -> np.ndarray:
    """(frames, len(SEGMENTS)) 2-D lengths of :data:`SEGMENTS`; NaN where an end is missing or they coincide."""
    a = np.array([s[0] for s in SEGMENTS])
    b = np.array([s[1] for s in SEGMENTS])
    lengths = np.linalg.norm(xy[:, b] - xy[:, a], axis=-1)
    return np.where(lengths > 0, lengths, np.nan)


def body_size(lengths: np.ndarray, fps: float) -> np.ndarray:
    """Per frame, an upper bound of the body's standing height in pixels (see the module docstring).

    Each segment's length over its share is a lower bound of the height; a frame's estimate is
    the second largest (one wrong segment cannot set it) and the bound is the
    :data:`SIZE_PERCENTILE` th percentile of the estimates within +-:data:`SIZE_WINDOW_S`.
    NaN where the window has no frame with two segments.
    """
    shares = np.array([s[2] for s in SEGMENTS])
    estimates = np.sort(np.where(np.isfinite(lengths), lengths / shares, -np.inf), axis=1)
    second = estimates[:, -2] if estimates.shape[1] >= 2 else np.full(len(lengths), -np.inf)
    second = np.where(np.isfinite(second), second, np.nan)
    half = max(1, int(round(SIZE_WINDOW_S * fps)))
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(second, half, constant_values=np.nan), 2 * half + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(windows, SIZE_PERCENTILE, axis=1) if len(second) else second


def _centres(xy: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The body's centre per frame: the mean of its torso joints (two or more), else the median joint."""
    torso = np.array(TORSO_JOINTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        torso_mean = np.nanmean(xy[:, torso], axis=1)
    enough = seen[:, torso].sum(axis=1) >= 2
    return np.where(enough[:, None], torso_mean, _nanmedian(xy, axis=1))


class _Motion:
    """Per-pair motion measures between two frames with a body (speeds per second, in body heights)."""

    def __init__(self, track: KeypointTrack, xy: np.ndarray, seen: np.ndarray, lengths: np.ndarray,
                 size: np.ndarray, fps: float, th: dict[str, float]):
        self.frames, self.xy, self.seen, self.lengths, self.fps, self.th = track.frames, xy, seen, lengths, fps, th
        fallback = _nanmedian(size)
        self.size = np.where(np.isfinite(size), size, fallback)
        self.centre = _centres(xy, seen)

    def measure(self, p: int, t: int) -> tuple[float, float, float]:
        """(centre speed, scale change factor, fraction of joints faster than joint_speed) from row p to t."""
        seconds = max(1, int(self.frames[t]) - int(self.frames[p])) / self.fps
        height = self.size[t] if np.isfinite(self.size[t]) else self.size[p]
        jump = float(np.linalg.norm(self.centre[t] - self.centre[p]) / height / seconds)
        both = np.isfinite(self.lengths[t]) & np.isfinite(self.lengths[p])
        scale = (float(np.exp(abs(np.median(np.log(self.lengths[t, both] / self.lengths[p, both])))))
                 if both.sum() >= 3 else np.nan)
        joints = self.seen[t] & self.seen[p]
        moved = np.nan
        if joints.sum() >= 3:
            speed = np.linalg.norm(self.xy[t, joints] - self.xy[p, joints], axis=-1) / height / seconds
            moved = float(np.mean(speed > self.th["joint_speed"]))
        return jump, scale, moved

    def swap_if_it_continues(self, p: int, t: int) -> bool:
        """Relabel row t left for right when that version continues from row p without a break and
        with less than half the joint motion (the detector's front/back confusion); True if so."""
        plain = self._motion_cost(p, t)
        order = SIDE_SWAP[BODY]
        kept = self.xy[t].copy(), self.seen[t].copy(), self.lengths[t].copy()
        self.xy[t], self.seen[t] = self.xy[t, order], self.seen[t, order]
        self.lengths[t] = segment_lengths(self.xy[t:t + 1])[0]
        if not any(self.is_break(*self.measure(p, t))) and self._motion_cost(p, t) < 0.5 * plain:
            return True
        self.xy[t], self.seen[t], self.lengths[t] = kept
        return False

    def _motion_cost(self, p: int, t: int) -> float:
        joints = self.seen[t] & self.seen[p]
        return float(np.linalg.norm(self.xy[t, joints] - self.xy[p, joints], axis=-1).sum()) if joints.any() else np.inf

    def is_break(self, jump: float, scale: float, moved: float) -> tuple[bool, bool]:
        """(a jump, a switch) by the thresholds; NaN measures never break."""
        return bool(jump > self.th["jump_speed"]), bool(scale > self.th["scale_change"]
                                                        or moved >= self.th["switch_joints"])


def _spikes(frames: np.ndarray, xy: np.ndarray, size: np.ndarray, fps: float,
            accel: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the largest spike (deviation over its limit) and the joint with it (-1: none).

    A joint spikes at t when it lies off the midpoint of its positions at t-1 and t+1 by more
    than ``accel * dt^2 / 2`` body heights (at least :data:`SPIKE_FLOOR_H`), by more than in
    the frames beside (a joint off in one frame is off by half as much in those) and by more
    than the two neighbours lie apart (a step, a joint that jumps and stays, is off by half that).
    """
    n = len(frames)
    ratio = np.full(n, np.nan)
    worst = np.full(n, -1)
    if n < 3:
        return ratio, worst
    limit = max(accel / fps ** 2 / 2, SPIKE_FLOOR_H)
    joints = np.array(SPIKE_JOINTS)
    before, here, after = xy[:-2, joints], xy[1:-1, joints], xy[2:, joints]
    consecutive = (np.diff(frames[:-1]) == 1) & (np.diff(frames[1:]) == 1)
    deviation = np.where(consecutive[:, None], np.linalg.norm(here - (before + after) / 2, axis=-1), np.nan)
    # A joint off by D in one frame is off its neighbours' midpoint by D there and by ~D/2 in the
    # frames beside it: only the largest of the three is the spike.
    known = np.where(np.isfinite(deviation), deviation, 0.0)
    beside = np.maximum(np.vstack([np.zeros((1, len(joints))), known[:-1]]),
                        np.vstack([known[1:], np.zeros((1, len(joints)))]))
    # A step (the joint jumps and stays) is off the midpoint by half the step in two frames, and
    # by exactly half the distance between the neighbours: only a joint that left and came back
    # lies off by more than that distance.
    across = np.linalg.norm(after - before, axis=-1)
    with np.errstate(invalid="ignore"):
        score = np.where((deviation >= beside) & (deviation > across), deviation / size[1:-1, None] / limit, np.nan)
    finite = np.isfinite(score).any(axis=1)
    inner = np.where(finite, np.nanmax(np.where(np.isfinite(score), score, -np.inf), axis=1), np.nan)
    ratio[1:-1] = inner
    worst[1:-1] = np.where(finite, joints[np.argmax(np.where(np.isfinite(score), score, -np.inf), axis=1)], -1)
    return ratio, worst


def _breaks(motion: _Motion, has_body: np.ndarray) -> tuple[np.ndarray, ...]:
    """Temporal checks on the frames as the detector labelled them, except that a frame whose left/right
    relabelling continues the motion (and the plain one breaks it) is relabelled: MediaPipe confuses a
    body's front and back, most often while it turns. Per frame: jump, scale change, moved share, whether
    it jumped, switched person or was swapped, and the last frame with a body before it."""
    n = len(has_body)
    jump, scale_change, moved = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    jumped, switched, swapped = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    previous = np.full(n, -1)  # the last row with a body before each row with a body
    prev = -1
    for t in np.flatnonzero(has_body):
        if prev >= 0:  # against the last frame with a body (a gap does not hide a switch), per second elapsed
            jump[t], scale_change[t], moved[t] = motion.measure(prev, t)
            jumped[t], switched[t] = motion.is_break(jump[t], scale_change[t], moved[t])
            if (jumped[t] or switched[t]) and motion.swap_if_it_continues(prev, t):
                swapped[t] = True
                jump[t], scale_change[t], moved[t] = motion.measure(prev, t)
                jumped[t], switched[t] = False, False
        previous[t] = prev
        prev = t
    if swapped.sum() > has_body.sum() / 2:  # the clip's first frames were the odd ones out
        swapped = has_body & ~swapped
    return jump, scale_change, moved, jumped, switched, swapped, previous


def quality_scores(track: KeypointTrack, thresholds: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Per-frame QC columns (:data:`COLUMNS`) of ``track``; see the module docstring."""
    th = check_thresholds(thresholds or {})
    fps = track_fps(track)
    data = track.data[:, BODY].astype(np.float64)
    n = len(data)
    seen = present(data)
    xy = np.where(seen[..., None], data[..., :2], np.nan)
    lengths = segment_lengths(xy)
    size = body_size(lengths, fps)
    shares = np.array([s[2] for s in SEGMENTS])
    ratio = lengths / (shares * size[:, None])
    finite_ratio = np.where(np.isfinite(ratio), ratio, -np.inf)
    any_ratio = np.isfinite(ratio).any(axis=1)
    max_ratio = np.where(any_ratio, finite_ratio.max(axis=1), np.nan)
    worst = np.where(any_ratio, finite_ratio.argmax(axis=1), -1)

    n_joints = seen.sum(axis=1)
    has_body = n_joints > 0
    with np.errstate(all="ignore"):
        lo = np.where(has_body[:, None], np.where(seen[..., None], xy, np.inf).min(axis=1), np.nan)
        hi = np.where(has_body[:, None], np.where(seen[..., None], xy, -np.inf).max(axis=1), np.nan)
    box = hi - lo
    box_ratio = box.max(axis=1) / size

    motion = _Motion(track, xy.copy(), seen.copy(), lengths.copy(), size, fps, th)
    jump, scale_change, moved, jumped, switched, swapped, previous = _breaks(motion, has_body)
    spike, spike_joint = _spikes(track.frames, motion.xy, size, fps, th["spike_accel"])
    other = _excursions(jumped | switched, previous, track.frames, fps, motion)
    jumped[other["cleared"]] = switched[other["cleared"]] = False

    frame_width, frame_height = track.meta.get("width"), track.meta.get("height")
    reasons: list[str] = []
    plausible = np.ones(n, dtype=bool)
    for t in range(n):
        why: list[str] = []
        if not has_body[t]:
            why.append("no body")
        why += [f"limb:{limb_name(*SEGMENTS[i][:2])} {ratio[t, i]:.1f}x"
                for i in np.flatnonzero(ratio[t] > th["limb_long"])]
        if box_ratio[t] > th["box_factor"]:
            why.append(f"box {box_ratio[t]:.1f}x")
        elif frame_width and frame_height and has_body[t] and (box[t, 0] > frame_width or box[t, 1] > frame_height):
            why.append("box>frame")
        if spike[t] > 1:
            why.append(f"spike:{BODY_25_NAMES[spike_joint[t]]} {spike[t]:.1f}x")
        if other["frames"][t]:
            why.append("other person")
        plausible[t] = not why
        if swapped[t]:
            why.append("left/right swapped")  # relabelled by smoothing: no fault of the frame
        if jumped[t]:
            why.append(f"jump {jump[t]:.1f}/s")
        if switched[t]:
            why.append("switch")
        reasons.append(";".join(why))
    breaks = jumped | switched
    return {
        "frame": track.frames.astype(np.int32), "ok": plausible & ~breaks, "plausible": plausible,
        "break": breaks, "reasons": np.array(reasons, dtype=object), "n_joints": n_joints.astype(np.int16),
        "body_size": size, "max_limb_ratio": max_ratio,
        "worst_limb": np.array([limb_name(*SEGMENTS[w][:2]) if w >= 0 else "" for w in worst], dtype=object),
        "box_ratio": box_ratio, "spike": spike, "jump": jump, "scale_change": scale_change, "moved_fraction": moved,
        "swapped": swapped,
    }


def _excursions(breaks: np.ndarray, previous: np.ndarray, frames: np.ndarray, fps: float,
                motion: _Motion) -> dict[str, np.ndarray]:
    """Breaks undone within :data:`MAX_EXCURSION_S`: rows of someone else (``frames``) and breaks to clear.

    A break at t (from p, the last body before it) is undone at a later break u when p to u is
    no break: the body jumped away at t and back at u, so t .. u-1 is another person and
    neither t nor u starts a new segment; the clip keeps following the person it had.
    """
    n = len(breaks)
    other, cleared = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    rows = np.flatnonzero(breaks)
    horizon = MAX_EXCURSION_S * fps
    i = 0
    while i < len(rows):
        t = rows[i]
        p = previous[t]
        back = None
        for u in rows[i + 1:] if p >= 0 else ():
            if frames[u] - frames[t] > horizon:
                break
            if not any(motion.is_break(*motion.measure(p, u))):
                back = u
                break
        if back is None:
            i += 1
            continue
        other[t:back] = True
        cleared[t:back + 1] = True
        i = int(np.searchsorted(rows, back)) + 1
    return {"frames": other, "cleared": cleared}


def reason_kind(reason: str) -> str:
    """The check behind one reason: "limb:RElbow-RWrist 3.1x" -> "limb", "no body" -> "no body"."""
    return reason if reason in ("no body", "other person", "left/right swapped") else reason.split(":")[0].split(" ")[0]


def summary(scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Counts of bad frames per reason kind, and the frame numbers that are not ok."""
    kinds: dict[str, int] = {}
    for text in scores["reasons"]:
        for kind in {reason_kind(r) for r in text.split(";") if r}:
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"frames": int(len(scores["frame"])), "bad_frames": int((~scores["ok"]).sum()),
            "implausible_frames": int((~scores["plausible"]).sum()), "breaks": int(scores["break"].sum()),
            "by_reason": kinds, "not_ok": scores["frame"][~scores["ok"]].tolist(),
            "person_changes": scores["frame"][scores["break"]].tolist(),
            "other_person": [int(f) for f, r in zip(scores["frame"], scores["reasons"]) if "other person" in r],
            "swapped": scores["frame"][scores["swapped"]].tolist()}


def write_qc(path: str | Path, scores: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write the per-frame verdicts as Parquet (metadata under ``edn``), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(scores[k].tolist() if scores[k].dtype == object else scores[k])
                      for k in COLUMNS})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: pyarrow reads a name as a URI
        pq.write_table(table, f, compression="zstd")


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
    if s["person_changes"]:
        log.warning("%s: the body jumps or changes size and does not come back at frame(s) %s: a change of person "
                    "or a cut in the footage (smoothing does not cross it; a crop box in the sheet can keep the "
                    "detector on one person)", args.keypoints, frame_ranges(s["person_changes"]))
    if s["swapped"]:
        log.info("%s: frames %s are labelled left for right (the detector's front/back confusion); smoothing "
                 "relabels them", args.keypoints, frame_ranges(s["swapped"]))
    if s["other_person"]:
        log.info("%s: frames %s belong to someone else (the body jumps away and back); they are repaired from the "
                 "person the clip follows", args.keypoints, frame_ranges(s["other_person"]))
    return 0


def frame_ranges(frames: list[int] | np.ndarray) -> str:
    """Frame numbers as runs: [3, 4, 5, 9] -> "3-5, 9"."""
    values = sorted(int(f) for f in frames)
    runs: list[list[int]] = []
    for f in values:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
