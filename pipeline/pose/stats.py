"""Stage 4: a subject's ankle and height statistics for global pose normalization.

Chan et al., "Everybody Dance Now" (arXiv 1808.07371), Sec. 3.2 map a source pose into
the target's frame from two reference depths per subject: the *far* and *near* ankle
positions (image y of the feet; y grows down, so near is the larger y) and the subject's
height at each. This module measures them, pooling all clips of one subject:

* **Ankle point** of a frame: ``y = f`` = the larger y of the two ankles (BODY_25 RAnkle
  11, LAnkle 14), the one present if only one is; ``x`` = the mean x of the present ankles
  (continuous when the left and right foot swap as the lower one, unlike the lower foot's
  x). :func:`ankle_points` is the one definition used by stats, normalize and retarget.
* **Ground contact.** ``f`` already follows the supporting foot (the lower one), so only
  frames with both feet in the air (jumps, kicks from a hop, misdetections) mislead. A
  frame counts as grounded when ``f`` is within ``GROUND_MARGIN`` (6 %) of the median body
  height of the highest ``f`` within +-``GROUND_WINDOW_S`` (0.2 s) of it: a jump's apex
  is higher than the take-off/landing frames inside that window, while walking toward the
  camera moves ``f`` by only ~4 % of the height in 0.2 s.
* **Far / near** = the ``FAR_PERCENTILE`` (2nd) and ``NEAR_PERCENTILE`` (98th) percentile
  of the grounded ``f``. The paper takes the maximum as near, which a single bad
  detection moves; these percentiles survive up to 2 % outliers and sit within 2 % of the
  span of the true extremes for a subject walking uniformly (closer if they dwell there).
  2-means was rejected: its centres are the *means* of two clusters, not the limits of
  the motion, so more of the transferred motion would be extrapolated.
* **Body height** of a frame = ``f`` minus the top of the head (min y of Nose, eyes,
  ears; the Neck is not used because a neck-only "head" would understate the height).
* **Heights at far / near.** With a pinhole camera over a flat floor, a person's standing
  height in pixels is exactly linear in the ankle y (both are proportional to 1/depth),
  so we fit that line and evaluate it at far and near. The paper takes the maximum
  height in a band around each position; we bin the grounded frames by ``f`` and take in
  each bin the frame at the ``HEIGHT_PERCENTILE`` (90th) height (upright, ignoring the
  rare over-tall misdetection), then least-squares fit the line through those frames
  (weighted by bin size). Using each chosen frame's own ``f`` makes the fit exact when
  heights are linear, where a band maximum would be biased by the band's width.
* **Degenerate case.** When ``near - far < MIN_SPAN_PX`` (the subject never moves in
  depth) both positions are the median grounded ``f`` and both heights the 90th
  percentile height: the mapping then uses one position and one scale (``p = 0``).
  When heads are seen in fewer than two depth bins the line cannot be fitted: far and
  near keep their positions and both heights are that 90th percentile height.
* **Fallback to a constant scale.** When the fitted height at near is not larger than at
  far (impossible for one person on a flat floor: one person standing on a box, a tilted
  camera or detections of two people), the line is dropped and both heights are the 90th
  percentile height, with a warning; ``fallback`` in the stats says why (also for the
  degenerate and the too-few-depths cases above; None otherwise), and the normalization
  figure shows it.
* **Proportions** (for the retarget method): every BODY_25 bone, the hand size and the
  face size as the median of ``length / H(f)`` over grounded frames, where ``H(f)`` is the
  fitted standing height at that frame's depth: unlike the frame's own head-to-ankle
  height it does not shrink when the subject crouches or bends. Hand size = mean distance
  from the hand's wrist point to the four finger bases (independent of finger curl); face
  size = RMS distance of the face points from their centroid (independent of head roll).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.pose.keypoints import (BODY_25_LIMBS, BODY_25_NAMES, FACE, LEFT_HAND, RIGHT_HAND, J,
                                     KeypointTrack, present, read_keypoints)
from pipeline.provenance import provenance, write_json

log = logging.getLogger(__name__)

ANKLES = (J["RAnkle"], J["LAnkle"])
HEAD = (J["Nose"], J["REye"], J["LEye"], J["REar"], J["LEar"])
GROUND_WINDOW_S = 0.2
GROUND_MARGIN = 0.06
FAR_PERCENTILE = 2.0
NEAR_PERCENTILE = 98.0
HEIGHT_PERCENTILE = 90.0
HEIGHT_BINS = 20
MIN_BIN_FRAMES = 3
MIN_SPAN_PX = 1.0
HIST_BINS = 40
MIN_FACE_POINTS = 10
HAND_BASES = (5, 9, 13, 17)  # OpenPose hand: index, middle, ring, little finger MCP
DEFAULT_FPS = 30.0


def bone_name(a: int, b: int) -> str:
    return f"{BODY_25_NAMES[a]}-{BODY_25_NAMES[b]}"


def ankle_points(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ankle point (x, y) of a (T, 137, 3) array; NaN where neither ankle is seen.

    y is the larger (lower in the image) ankle y; x the mean x of the present ankles.
    """
    ok = present(data[:, ANKLES])
    x = np.where(ok, data[:, ANKLES, 0], np.nan)
    y = np.where(ok, data[:, ANKLES, 1], np.nan)
    any_ok = ok.any(axis=1)
    safe_x = np.where(ok, x, 0.0)
    ax = np.where(any_ok, safe_x.sum(axis=1) / np.maximum(ok.sum(axis=1), 1), np.nan)
    ay = np.where(any_ok, np.where(ok, y, -np.inf).max(axis=1), np.nan)
    return ax.astype(np.float64), ay.astype(np.float64)


def carry_valid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows where ``valid`` is False replaced by the last valid row (the first, before it)."""
    if not valid.any():
        raise ValueError("no valid frame to carry")
    idx = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), -1))
    idx[idx < 0] = int(np.argmax(valid))
    return values[idx]


def head_top(data: np.ndarray) -> np.ndarray:
    """Per-frame min y of the head joints (Nose, eyes, ears); NaN where none is seen."""
    ok = present(data[:, HEAD])
    y = np.where(ok, data[:, HEAD, 1], np.inf).min(axis=1)
    return np.where(ok.any(axis=1), y, np.nan).astype(np.float64)


def depth_fraction(f: np.ndarray | float, far: float, near: float) -> np.ndarray:
    """The paper's ``p = (f - far) / (near - far)``; 0 everywhere when far and near coincide."""
    f = np.asarray(f, dtype=np.float64)
    if near - far < MIN_SPAN_PX:
        return np.where(np.isfinite(f), 0.0, np.nan)
    return (f - far) / (near - far)


def reference_height(f: np.ndarray | float, stats: dict[str, Any]) -> np.ndarray:
    """The subject's standing height (px) at ankle y ``f``: linear through (far, near)."""
    p = depth_fraction(f, stats["ankle_far"], stats["ankle_near"])
    h = stats["height_far"] + p * (stats["height_near"] - stats["height_far"])
    return np.maximum(h, 1.0)  # a wild extrapolation must not give zero or negative heights


def pose_heights(data: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Per frame of (T, 137, 3) poses: the subject's standing height (px) at the pose's ankle depth
    (:func:`reference_height`); a frame without ankles takes the last one's, a track without any the near one's."""
    _, ankle_y = ankle_points(data)
    found = np.isfinite(ankle_y)
    ankle_y = carry_valid(ankle_y, found) if found.any() else np.full(len(data), float(stats["ankle_near"]))
    return reference_height(ankle_y, stats)


def bone_lengths(data: np.ndarray) -> np.ndarray:
    """(T, n_bones) lengths of the BODY_25 limbs; NaN where either end is missing."""
    a = np.array([l[0] for l in BODY_25_LIMBS])
    b = np.array([l[1] for l in BODY_25_LIMBS])
    ok = present(data[:, a]) & present(data[:, b])
    d = np.linalg.norm(data[:, b, :2].astype(np.float64) - data[:, a, :2], axis=-1)
    return np.where(ok, d, np.nan)


def hand_sizes(data: np.ndarray) -> np.ndarray:
    """(T, 2) left and right hand sizes (mean wrist-to-finger-base distance); NaN if unseen."""
    out = []
    for part in (LEFT_HAND, RIGHT_HAND):
        hand = data[:, part]
        ok = present(hand)
        d = np.linalg.norm(hand[:, HAND_BASES, :2].astype(np.float64) - hand[:, [0], :2], axis=-1)
        d_ok = ok[:, HAND_BASES] & ok[:, [0]]
        count = d_ok.sum(axis=1)
        mean = np.where(d_ok, d, 0.0).sum(axis=1) / np.maximum(count, 1)
        out.append(np.where(count > 0, mean, np.nan))
    return np.stack(out, axis=1)


def face_sizes(data: np.ndarray) -> np.ndarray:
    """(T,) RMS distance of the face points from their centroid; NaN with < 10 points."""
    face = data[:, FACE, :2].astype(np.float64)
    ok = present(data[:, FACE])
    count = ok.sum(axis=1)
    safe = np.where(ok[..., None], face, 0.0)
    centre = safe.sum(axis=1) / np.maximum(count, 1)[:, None]
    sq = np.where(ok, ((face - centre[:, None]) ** 2).sum(axis=-1), 0.0).sum(axis=1)
    rms = np.sqrt(sq / np.maximum(count, 1))
    return np.where(count >= MIN_FACE_POINTS, rms, np.nan)


def _median_or_none(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else None


def bone_length_ratios_raw(data: np.ndarray, ref_height: np.ndarray) -> dict[str, float | None]:
    """Per BODY_25 bone: median of length / ``ref_height`` (T,) over frames (NaN height: skipped)."""
    bones = bone_lengths(data) / np.asarray(ref_height, dtype=np.float64)[:, None]
    return {bone_name(a, b): _median_or_none(bones[:, i]) for i, (a, b) in enumerate(BODY_25_LIMBS)}


def proportions(data: np.ndarray, ref_height: np.ndarray, use: np.ndarray) -> dict[str, Any]:
    """Median bone, hand and face sizes relative to ``ref_height`` over the frames in ``use``."""
    h = np.where(use, ref_height, np.nan)[:, None]
    bones = bone_lengths(data) / h
    hands = hand_sizes(data) / h
    faces = face_sizes(data) / h[:, 0]
    return {
        "bone_ratios": bone_length_ratios_raw(data, h[:, 0]),
        "bone_counts": {bone_name(a, b): int(np.isfinite(bones[:, i]).sum())
                        for i, (a, b) in enumerate(BODY_25_LIMBS)},
        "hand_ratio": _median_or_none(hands.reshape(-1)),
        "face_ratio": _median_or_none(faces),
    }


def _ground_flags(frames: np.ndarray, f: np.ndarray, fps: float, margin_px: float) -> np.ndarray:
    """True where ``f`` is within ``margin_px`` of the max ``f`` within +-GROUND_WINDOW_S."""
    valid = np.isfinite(f)
    if not valid.any():
        return valid
    half = max(1, int(round(GROUND_WINDOW_S * fps)))
    start = int(frames.min())
    dense = np.full(int(frames.max()) - start + 1 + 2 * half, -np.inf)
    dense[frames - start + half] = np.where(valid, f, -np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(dense, 2 * half + 1)
    local_max = windows.max(axis=1)[frames - start]
    return valid & (f >= local_max - margin_px)


def _height_line(f: np.ndarray, h: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
    """Slope and intercept of upright height vs ankle y (see module docstring); None if < 2 bins."""
    edges = np.linspace(lo, hi, HEIGHT_BINS + 1)
    which = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, HEIGHT_BINS - 1)
    inside = (f >= lo) & (f <= hi)
    xs, ys, ws = [], [], []
    for b in range(HEIGHT_BINS):
        idx = np.nonzero(inside & (which == b))[0]
        if len(idx) < MIN_BIN_FRAMES:
            continue
        order = idx[np.argsort(h[idx], kind="stable")]
        pick = order[int(round(HEIGHT_PERCENTILE / 100 * (len(order) - 1)))]
        xs.append(f[pick]), ys.append(h[pick]), ws.append(len(idx))
    if len(xs) < 2 or np.ptp(xs) < MIN_SPAN_PX:
        return None
    slope, intercept = np.polyfit(np.array(xs), np.array(ys), 1, w=np.sqrt(np.array(ws, float)))
    return float(slope), float(intercept)


def _finite_list(values: np.ndarray, digits: int = 3) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in values]


def _heights_by_depth(f: np.ndarray, body: np.ndarray, ground: np.ndarray, label: str
                      ) -> tuple[float, float, float, float, tuple[float, float] | None, bool, str | None, np.ndarray]:
    """The far and near ankle rows of the grounded frames and the body height at each: from a line through
    the heights against the ankle row, else one height for every depth, with the reason (logged). Also
    whether the ankle range is degenerate and which frames are grounded with a height."""
    fg = f[ground]
    far, near = (float(np.percentile(fg, q)) for q in (FAR_PERCENTILE, NEAR_PERCENTILE))
    degenerate = near - far < MIN_SPAN_PX
    with_height = ground & np.isfinite(body)
    if not with_height.any():
        raise ValueError(f"{label}: no grounded frame shows a head joint, cannot measure height")
    line = None if degenerate else _height_line(f[with_height], body[with_height], far, near)
    if degenerate:
        far = near = float(np.median(fg))
    fallback = None
    if degenerate:
        fallback = f"ankle range degenerate (near - far < {MIN_SPAN_PX:g} px): one position, constant scale"
    elif line is None:
        fallback = "heads seen at fewer than two depths: constant scale"
    else:
        h_far, h_near = (line[0] * v + line[1] for v in (far, near))
        if h_near <= h_far:
            # Nearer the camera a person looks taller; the opposite (one person on a box, a
            # tilted camera, mixed-up detections) would make the mapping shrink what comes close.
            fallback = (f"near height {h_near:.1f} px <= far height {h_far:.1f} px "
                        "(expected taller when nearer): constant scale")
            line = None
    if line is None:
        # One depth, heads at too few depths, or heights inverted: one height for all depths
        # (the ankle positions still map when they span a range).
        h_far = h_near = float(np.percentile(body[with_height], HEIGHT_PERCENTILE))
    if fallback is not None:
        log.warning("%s: %s", label, fallback)
    return far, near, h_far, h_near, line, degenerate, fallback, with_height


def compute_stats(tracks: Sequence[KeypointTrack], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Ankle/height statistics of one subject from all its clips (see the module docstring).

    ``names`` label the tracks in error messages (file paths in the CLI). Raises ValueError
    when no frame shows an ankle, or none shows both an ankle and a head joint.
    """
    tracks = list(tracks)
    if not tracks:
        raise ValueError("stats: no keypoint tracks given")
    names = list(names) if names is not None else [f"track {i}" for i in range(len(tracks))]
    label = ", ".join(str(n) for n in names)
    sizes = {(t.meta.get("width"), t.meta.get("height")) for t in tracks}
    if len(sizes) > 1:
        raise ValueError(f"{label}: clips of one subject must share a frame size, got {sorted(map(str, sizes))}")
    width, height = sizes.pop()

    data = np.concatenate([t.data for t in tracks])
    clip = np.concatenate([np.full(len(t.frames), i) for i, t in enumerate(tracks)])
    frame = np.concatenate([t.frames.astype(np.int64) for t in tracks])
    ax, f = ankle_points(data)
    top = head_top(data)
    if not np.isfinite(f).any():
        raise ValueError(f"{label}: no frame with a visible ankle (RAnkle/LAnkle)")
    body = f - top
    body = np.where(body > 0, body, np.nan)  # head below the feet: a misdetection
    if not np.isfinite(body).any():
        raise ValueError(f"{label}: no frame shows both an ankle and a head joint (Nose/eyes/ears)")
    margin = GROUND_MARGIN * float(np.nanmedian(body))

    ground = np.zeros(len(f), dtype=bool)
    for i, t in enumerate(tracks):
        sel = clip == i
        fps = float(t.meta.get("fps") or DEFAULT_FPS)
        ground[sel] = _ground_flags(frame[sel], f[sel], fps, margin)

    fg = f[ground]
    far, near, h_far, h_near, line, degenerate, fallback, with_height = _heights_by_depth(f, body, ground, label)

    stats: dict[str, Any] = {
        "ankle_far": far, "ankle_near": near, "height_far": float(h_far), "height_near": float(h_near),
        "degenerate": bool(degenerate), "fallback": fallback,
        "height_line": None if line is None else {"slope": line[0], "intercept": line[1]},
        "frame_width": width, "frame_height": height,
        "fps": tracks[0].meta.get("fps"),
        "n_frames": int(len(f)), "n_ankle_frames": int(np.isfinite(f).sum()),
        "n_ground_frames": int(ground.sum()), "n_height_frames": int(with_height.sum()),
        "ankle_x_mean": float(np.mean(ax[ground])),
    }
    mid = data[:, J["MidHip"]]
    mid_ok = present(mid)
    stats["midhip_x_mean"] = float(mid[mid_ok, 0].mean()) if mid_ok.any() else None
    stats.update(proportions(data, reference_height(f, stats), ground))

    finite_f = f[np.isfinite(f)]
    edges = np.histogram_bin_edges(finite_f, bins=HIST_BINS)
    stats["histogram"] = {
        "edges": _finite_list(edges),
        "counts_all": np.histogram(finite_f, bins=edges)[0].tolist(),
        "counts_ground": np.histogram(fg, bins=edges)[0].tolist(),
    }
    stats["per_frame"] = {
        "clip": clip.tolist(), "frame": frame.tolist(), "ankle_x": _finite_list(ax),
        "ankle_y": _finite_list(f), "height": _finite_list(body), "ground": ground.tolist(),
    }
    stats["params"] = {
        "ground_window_s": GROUND_WINDOW_S, "ground_margin": GROUND_MARGIN,
        "far_percentile": FAR_PERCENTILE, "near_percentile": NEAR_PERCENTILE,
        "height_percentile": HEIGHT_PERCENTILE, "height_bins": HEIGHT_BINS,
        "min_span_px": MIN_SPAN_PX,
    }
    return stats


REQUIRED_KEYS = ("ankle_far", "ankle_near", "height_far", "height_near", "frame_width", "frame_height")


def load_stats(path: str | Path) -> dict[str, Any]:
    """Read a stats JSON written by :func:`cli`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: stats file not found")
    try:
        stats = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a stats JSON file ({exc})") from exc
    if not isinstance(stats, dict):
        raise ValueError(f"{path}: not a stats JSON object")
    missing = [k for k in REQUIRED_KEYS if stats.get(k) is None]
    if missing:
        raise ValueError(f"{path}: stats lack {missing}")
    if stats["ankle_near"] < stats["ankle_far"] or min(stats["height_far"], stats["height_near"]) <= 0:
        raise ValueError(f"{path}: inconsistent stats (need ankle_far <= ankle_near, positive heights)")
    return stats


def cli(args: argparse.Namespace) -> int:
    tracks = [read_keypoints(p) for p in args.inputs]
    stats = compute_stats(tracks, names=[str(p) for p in args.inputs])
    stats["inputs"] = [str(p) for p in args.inputs]
    stats["upstream"] = [t.meta.get("provenance") for t in tracks]
    stats["provenance"] = provenance("stats", {"inputs": stats["inputs"], **stats["params"]})
    write_json(args.out, stats)
    log.info("%s: far %.1f (h %.1f), near %.1f (h %.1f), %d/%d grounded frames -> %s",
             ", ".join(stats["inputs"]), stats["ankle_far"], stats["height_far"], stats["ankle_near"],
             stats["height_near"], stats["n_ground_frames"], stats["n_frames"], args.out)
    return 0
