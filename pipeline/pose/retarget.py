"""Limb-proportion-aware retargeting, applied after the paper's global normalization.

Beyond Chan et al. (arXiv 1808.07371): their global mapping scales the source uniformly,
so a long-armed source gives the target long arms, which the generator then renders
as the target's body with wrong proportions. Here each BODY_25 bone of the (already
normalized) source is rescaled to the target's length for that bone, keeping its
direction:

* **Frame height.** A frame's mapped height is the target's standing height at the depth
  where the pose landed: ``H = ht_far + p * (ht_near - ht_far)`` with the frame's ``p``
  from the global mapping (``normalize`` passes it; otherwise it is recovered from the
  mapped ankle y, ``p = (y - t_far) / (t_near - t_far)``, frames without ankles reusing
  the last valid one). A bone's target length is the target's median
  ``bone length / standing height`` (:mod:`pipeline.pose.stats`) times ``H``.
* **Skeleton walk.** From the MidHip (8) outward along ``BODY_25_LIMBS``: a child joint is
  put at its parent's new position plus the bone's unit direction times the target
  length. A joint whose parent is missing keeps its globally mapped position, and its
  own children are retargeted relative to it. A bone the target never showed keeps the
  source's length. Missing joints stay missing.
* **Face and hands** move rigidly with the nose (face) and the wrists (BODY_25 RWrist 4
  carries the right hand, LWrist 7 the left) and are scaled about them by the target's
  face/hand size relative to the source's (both as median size / standing height). A
  frame whose nose/wrist is missing scales that part about its own centroid.
* **Ankle.** Finally the whole pose is translated so that its ankle point (the definition
  of :func:`pipeline.pose.stats.ankle_points`) returns to the paper's mapped ankle point, so
  retargeting never moves the subject in the frame; frames without ankles reuse the last
  valid translation. Only a translation: the head height then follows the target's
  proportions, which is the point.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from pipeline.pose.keypoints import BODY_25_LIMBS, FACE, LEFT_HAND, RIGHT_HAND, J, KeypointTrack, mark_missing
from pipeline.pose.stats import (ankle_points, bone_length_ratios_raw, bone_name, carry_valid, depth_fraction,
                                 face_sizes, hand_sizes)

ROOT = J["MidHip"]
PART_ANCHORS = ((FACE, J["Nose"], "face"), (LEFT_HAND, J["LWrist"], "hand"), (RIGHT_HAND, J["RWrist"], "hand"))


def skeleton_order(root: int = ROOT) -> list[tuple[int, int, int]]:
    """(parent, child, limb index) of ``BODY_25_LIMBS`` in breadth-first order from ``root``."""
    adjacent: dict[int, list[tuple[int, int]]] = {}
    for i, (a, b) in enumerate(BODY_25_LIMBS):
        adjacent.setdefault(a, []).append((b, i))
        adjacent.setdefault(b, []).append((a, i))
    order, seen, queue = [], {root}, deque([root])
    while queue:
        parent = queue.popleft()
        for child, limb in adjacent.get(parent, []):
            if child not in seen:
                seen.add(child)
                order.append((parent, child, limb))
                queue.append(child)
    return order


def frame_depth(track: KeypointTrack, target_stats: dict[str, Any], p: np.ndarray | None = None) -> np.ndarray:
    """Per-frame ``p`` of a normalized track: ``p`` itself if given, else from its ankle y."""
    if p is not None:
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (len(track.frames),):
            raise ValueError(f"p has shape {p.shape}, expected ({len(track.frames)},)")
        return p
    _, f = ankle_points(track.data)
    p = depth_fraction(f, float(target_stats["ankle_far"]), float(target_stats["ankle_near"]))
    valid = np.isfinite(p)
    return carry_valid(p, valid) if valid.any() else np.zeros(len(p))


def mapped_height(p: np.ndarray, target_stats: dict[str, Any]) -> np.ndarray:
    """The target's standing height (px) at depth fraction ``p``."""
    h_far, h_near = float(target_stats["height_far"]), float(target_stats["height_near"])
    return np.maximum(h_far + p * (h_near - h_far), 1.0)


def bone_length_ratios(track: KeypointTrack, target_stats: dict[str, Any],
                       p: np.ndarray | None = None) -> dict[str, float | None]:
    """Per bone: median (bone length / mapped height) of ``track`` over the target's ratio.

    1.0 means the target's proportion; None where the track or the target lacks the bone.
    """
    height = mapped_height(frame_depth(track, target_stats, p), target_stats)
    own = bone_length_ratios_raw(track.data, height)
    target = target_stats.get("bone_ratios") or {}
    return {name: (None if r is None or not target.get(name) else round(r / target[name], 5))
            for name, r in own.items()}


def _part_ratio(sizes: np.ndarray, height: np.ndarray) -> float | None:
    ratio = sizes / (height[:, None] if sizes.ndim == 2 else height)
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if len(ratio) else None


def retarget_track(normalized_source: KeypointTrack, target_stats: dict[str, Any],
                   p: np.ndarray | None = None) -> KeypointTrack:
    """Rescale every bone of a normalized track to the target's proportions (module docstring).

    ``p`` is the per-frame depth fraction of the global mapping (recovered from the
    mapped ankle y when not given).
    """
    src = normalized_source
    data = src.data.astype(np.float64)
    present = src.present
    height = mapped_height(frame_depth(src, target_stats, p), target_stats)
    ratios = target_stats.get("bone_ratios") or {}

    xy = data[..., :2]
    new = xy.copy()
    kept_source_length = []
    for parent, child, limb in skeleton_order():
        a, b = BODY_25_LIMBS[limb]
        ratio = ratios.get(bone_name(a, b))
        vec = xy[:, child] - xy[:, parent]
        length = np.linalg.norm(vec, axis=1)
        ok = present[:, parent] & present[:, child]
        if ratio:
            target_len = ratio * height
            unit = vec / np.where(length > 1e-9, length, 1.0)[:, None]
            # A zero-length bone has no direction: keep it at zero length.
            step = np.where((length > 1e-9)[:, None], unit * target_len[:, None], 0.0)
        else:
            kept_source_length.append(bone_name(a, b))
            step = vec
        new[:, child] = np.where(ok[:, None], new[:, parent] + step, new[:, child])

    scales = {}
    sizes = {"face": face_sizes(src.data), "hand": hand_sizes(src.data)}
    for kind, key in (("face", "face_ratio"), ("hand", "hand_ratio")):
        own = _part_ratio(sizes[kind], height)
        want = target_stats.get(key)
        scales[kind] = float(want / own) if own and want else 1.0
    for part, anchor, kind in PART_ANCHORS:
        pts = xy[:, part]
        ok = present[:, part]
        count = ok.sum(axis=1)
        centroid = np.where(ok[..., None], pts, 0.0).sum(axis=1) / np.maximum(count, 1)[:, None]
        has_anchor = present[:, anchor][:, None]
        old_anchor = np.where(has_anchor, xy[:, anchor], centroid)
        new_anchor = np.where(has_anchor, new[:, anchor], centroid)
        new[:, part] = new_anchor[:, None] + scales[kind] * (pts - old_anchor[:, None])

    # Put the ankle point back where the paper's mapping put it.
    old_ax, old_ay = ankle_points(src.data)
    moved = data.copy()
    moved[..., :2] = new
    new_ax, new_ay = ankle_points(moved)
    valid = np.isfinite(old_ay) & np.isfinite(new_ay)
    shift = np.zeros((len(data), 2))
    if valid.any():
        shift = carry_valid(np.stack([old_ax - new_ax, old_ay - new_ay], axis=1), valid)
    moved[..., :2] = new + shift[:, None, :]
    out = KeypointTrack(mark_missing(moved.astype(np.float32)), src.frames.copy(), dict(src.meta))
    out.meta["retarget"] = {"face_scale": round(scales["face"], 5), "hand_scale": round(scales["hand"], 5),
                            "bones_kept_source_length": kept_source_length}
    return out
