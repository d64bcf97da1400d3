"""Stage 5: global pose normalization of a source track into a target subject's frame.

Chan, Ginosar, Zhou, Efros, "Everybody Dance Now", arXiv 1808.07371, Sec. 3.2: the
source's poses are translated and scaled so that, at each depth, the source subject
stands where and as tall as the target subject would. With the source's far/near ankle
positions ``s_far < s_near`` and heights ``hs_far, hs_near`` and the target's
``t_far < t_near``, ``ht_far, ht_near`` (see :mod:`pipeline.pose.stats`), a frame with ankle
point ``(a, f)`` gets

* ``p = (f - s_far) / (s_near - s_far)`` (``p = 0`` when the source never moves in depth),
* the ankle point moves to ``(a + c, t_far + p * (t_near - t_far))`` where ``c`` is 0, or
  with ``center_x`` the difference of the subjects' mean ankle-point x,
* every joint (body, face, hands) is scaled about the ankle point by
  ``k = ht_far / hs_far + p * (ht_near / hs_near - ht_far / hs_far)``.

The ankle point is :func:`pipeline.pose.stats.ankle_points`: y is the lower ankle, x the mean
x of the present ankles. Deliberate differences from the official release: we scale
about the ankle point itself (the release scales about a fixed anchor, which moves the
ankle off its mapped position) and use all frames deterministically (no unseeded frame
sampling; the ankles are the ankles, not the left ear).

* **Extrapolation.** Beyond far/near ``p`` is extrapolated linearly, as the paper's
  formula does, but clamped to ``[P_MIN, P_MAX] = [-1, 2]`` (a full far-near span beyond
  either end: any real in-frame motion) so a misdetected ankle cannot produce an absurd
  scale; ``k`` is floored at ``K_FLOOR`` times the smaller reference scale so a pose is
  never mirrored or collapsed.
* **Degenerate subjects.** When far and near coincide (within ``MIN_SPAN_PX``) ``p = 0``
  and one scale applies. For such a source the ankle lands at
  ``t_far + k * (f - s_far)``: its small offsets from its one position (hops, a step)
  stay visible at the target's scale rather than being flattened onto ``t_far``.
* **Frames without an ankle** reuse the last valid frame's mapping (scale and
  translation); frames before the first valid one use the first valid mapping.
* **Repair of bad source frames** (``--qc``: the smoothed source's :mod:`pipeline.pose.quality`
  verdicts). Before the mapping, every run of frames QC does not call ok is replaced: a run
  of at most ``max_repair_gap`` frames with ok frames on both sides by linear interpolation
  between those two poses (per joint; a joint seen on one side only is held from it), a
  longer run, or one at either end of the clip, by holding the last ok pose (the first one,
  before it); an interpolation that pose QC itself calls implausible (neighbours that differ
  by a turn or a left/right swap collapse in between) holds the last ok pose instead. Last,
  QC judges the repaired poses themselves, and any frame it still calls implausible is held
  from the nearest ok, plausible frame (``implausible_held``). So the stick figures, and the
  transferred video, never show a pose QC calls implausible. ``qc_repair`` in the metadata
  lists the frames (``interpolated``, ``held``; :func:`repaired_frames` reads them back), the
  share of frames that follow the source (``follows_source``; more than
  ``max_repaired_share`` repaired is a warning naming the frame ranges and the reasons) and,
  as a check, the normalized frames pose QC still calls implausible
  (``implausible_after_repair``, a warning when any).
* **Output.** The target's frame size, the source's fps, a ``normalize`` record of the
  parameters used, and the per-frame mapping in the metadata under ``mapping`` (lists:
  frame, valid, p, k, ankle_x, ankle_y, mapped_ankle_x, mapped_ankle_y, translate_x,
  translate_y; ``x' = k x + translate_x``, ``y' = k y + translate_y``). The metadata
  keeps the table with the keypoints so the Snakemake rule has one output and the two can
  never be separated. ``bone_ratios`` (method paper) or ``bone_ratios_before`` /
  ``bone_ratios_after`` (method retarget) report each bone's length relative to the
  target's (:func:`pipeline.pose.retarget.bone_length_ratios`).
* **Geometry check.** A normalized frame in which more than half of the present keypoints lie
  outside the target's frame (``OUTSIDE_SHARE``: then most of the stick figure is not drawn) is
  named in a warning with the side it left by and the likely cause (``--center-x`` off with
  frames of other widths, a source moving wider than the target frame, stats that disagree);
  ``outside_frame`` in the metadata records the frames, the side, the cause and the warning.
* **Keeping the person in view** (``keep_in_view``, the default). A source that moves further
  sideways, up or down than the target's frame holds would be cut off: after the mapping, each
  frame's body (its present keypoints, widened by ``VIEW_MARGIN`` of its reference height for the
  head above the nose and a hand beyond its wrist) gets the smallest shift that brings it inside the
  frame, and that shift is eased in and out over ``VIEW_EASE_S`` seconds either side (a running
  maximum, then a Gaussian; a last clip keeps every frame inside), like a camera following the
  dancer. The pose itself is unchanged. ``keep_in_view`` in the metadata records the frames moved
  and the largest shift; a body larger than the frame is centred on it and named in the warning.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np

from pipeline.pose.keypoints import KeypointTrack, chain_provenance, mark_missing, present, read_keypoints, \
    write_keypoints
from pipeline.pose.retarget import bone_length_ratios, retarget_track
from pipeline.pose.stats import MIN_SPAN_PX, ankle_points, carry_valid, depth_fraction, load_stats, pose_heights
from pipeline.provenance import provenance

log = logging.getLogger(__name__)

P_MIN, P_MAX = -1.0, 2.0
# A frame "falls outside" the target's frame when more than this share of its present keypoints lie
# outside it: most of its stick figure is then not drawn.
OUTSIDE_SHARE = 0.5
K_FLOOR = 0.1
METHODS = ("paper", "retarget")
# The top of the head lies ~0.10 H above the nose (1.000 against ~0.90 H above the floor) and a hand
# reaches ~0.11 H beyond its wrist (anthropometry, docs/pose-qc.md): the drawn body's margin around
# its keypoints, in body heights.
VIEW_MARGIN = 0.1
# A shift that keeps the body in view starts this long before it is needed and ends this long after.
VIEW_EASE_S = 0.5


def compute_mapping(source: KeypointTrack, source_stats: dict[str, Any], target_stats: dict[str, Any],
                    center_x: bool = False) -> dict[str, np.ndarray]:
    """Per-frame paper mapping of ``source``: arrays p, k, translate_x/y and the ankle points."""
    s_far, s_near = float(source_stats["ankle_far"]), float(source_stats["ankle_near"])
    t_far, t_near = float(target_stats["ankle_far"]), float(target_stats["ankle_near"])
    k_far = float(target_stats["height_far"]) / float(source_stats["height_far"])
    k_near = float(target_stats["height_near"]) / float(source_stats["height_near"])
    ax, f = ankle_points(source.data)
    valid = np.isfinite(f)
    if not valid.any():
        raise ValueError("source has no frame with a visible ankle (RAnkle/LAnkle)")
    p = np.clip(depth_fraction(f, s_far, s_near), P_MIN, P_MAX)
    k = np.maximum(k_far + p * (k_near - k_far), K_FLOOR * min(k_far, k_near))
    shift = float(target_stats["ankle_x_mean"]) - float(source_stats["ankle_x_mean"]) if center_x else 0.0
    mapped_x = ax + shift
    mapped_y = t_far + p * (t_near - t_far)
    if s_near - s_far < MIN_SPAN_PX:
        # A source that never moves in depth has p = 0 everywhere; its ankle's offsets from
        # that single position (hops, steps) are image motion, kept at the target's scale
        # instead of being flattened onto t_far.
        mapped_y = mapped_y + k * (f - s_far)
    # x' = a' + k (x - a) = k x + (a' - k a): the translation that frames without ankles reuse.
    table = np.stack([p, k, mapped_x - k * ax, mapped_y - k * f], axis=1)
    table = carry_valid(table, valid)
    return {
        "frame": source.frames.astype(np.int64), "valid": valid,
        "p": table[:, 0], "k": table[:, 1], "translate_x": table[:, 2], "translate_y": table[:, 3],
        "ankle_x": ax, "ankle_y": f, "mapped_ankle_x": mapped_x, "mapped_ankle_y": mapped_y,
        "shift_x": np.full(len(f), shift),
    }


def apply_mapping(data: np.ndarray, mapping: dict[str, np.ndarray]) -> np.ndarray:
    """``data`` with every joint mapped by the per-frame scale and translation."""
    out = data.copy()
    k = mapping["k"][:, None]
    out[..., 0] = k * data[..., 0] + mapping["translate_x"][:, None]
    out[..., 1] = k * data[..., 1] + mapping["translate_y"][:, None]
    return mark_missing(out)


def _as_lists(mapping: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, values in mapping.items():
        if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
            out[key] = values.tolist()
        else:
            out[key] = [None if not np.isfinite(v) else round(float(v), 5) for v in values]
    return out


REPAIR_CONFIDENCE_FACTOR = 0.5  # repaired joints: positive (present) but below any detection
DEFAULT_MAX_REPAIR_GAP = 10
DEFAULT_MAX_REPAIRED_SHARE = 0.1  # beyond this the video visibly stops following the source: warn


def repair_track(track: KeypointTrack, qc: dict[str, np.ndarray], max_repair_gap: int = DEFAULT_MAX_REPAIR_GAP,
                 thresholds: dict[str, float] | None = None) -> tuple[KeypointTrack, dict[str, list[int]]]:
    """``track`` with the frames QC does not call ok replaced (see the module docstring).

    Interpolated frames are checked with pose QC (``thresholds``, default its defaults): a run
    whose interpolation is itself implausible -- the two neighbours differ by a turn or a
    left/right swap, so the in-between poses collapse -- holds the last ok pose instead.
    Returns the repaired track and ``{"interpolated": frames, "held": frames}``. ValueError
    when QC lacks a frame of the track or calls no frame ok.
    """
    from pipeline.pose.quality import quality_scores

    if max_repair_gap < 0:
        raise ValueError(f"max_repair_gap must be >= 0, got {max_repair_gap}")
    verdict = {int(f): bool(ok) for f, ok in zip(qc["frame"], qc["ok"])}
    unjudged = [int(f) for f in track.frames if int(f) not in verdict]
    if unjudged:  # verdicts of another track (e.g. the raw detections or another video)
        raise ValueError(f"the QC verdicts lack {len(unjudged)} of the track's {len(track.frames)} frames "
                         f"(first: {unjudged[0]}); give the QC of this very track (edn qc SMOOTH.parquet)")
    good = np.array([verdict[int(f)] for f in track.frames], dtype=bool)
    if not good.all() and not good.any():
        raise ValueError("pose QC calls no frame ok: nothing to repair the source from")
    hold = np.zeros(len(good), dtype=bool)  # runs whose interpolation failed QC
    for _ in range(3):  # each pass only turns interpolated runs into held ones
        out, runs = _repair_runs(track, good, hold, max_repair_gap)
        interpolated = [r for r, kind in runs if kind == "interpolated"]
        if not interpolated:
            break
        plausible = quality_scores(out, thresholds)["plausible"]
        failed = [r for r in interpolated if not plausible[r].all()]
        if not failed:
            break
        for r in failed:
            hold[r] = True
    repaired: dict[str, list[int]] = {"interpolated": [], "held": []}
    for r, kind in runs:
        repaired[kind] += [int(f) for f in track.frames[r]]
    # The independent check: QC of the repaired poses themselves. A frame it still calls
    # implausible (e.g. an ok frame among bad ones whose bound the repair changed) is held too,
    # from the nearest frame that is ok and plausible, so no stick figure shows such a pose.
    plausible = quality_scores(out, thresholds)["plausible"]
    trusted = np.flatnonzero(plausible & (good | np.isin(track.frames, repaired["interpolated"])))
    still = np.flatnonzero(~plausible)
    if len(still) and len(trusted):
        for t in still:
            source = trusted[np.argmin(np.abs(trusted - t))]
            out.data[t] = out.data[source]
            if good[source]:  # an interpolated source is already marked as repaired
                out.data[t, :, 2] *= REPAIR_CONFIDENCE_FACTOR
        repaired["implausible_held"] = [int(f) for f in track.frames[still]]
        moved = set(repaired["implausible_held"])
        repaired["interpolated"] = [f for f in repaired["interpolated"] if f not in moved]
        repaired["held"] = sorted(set(repaired["held"]) | moved)
    return out, repaired


def repair_report(repair: dict[str, list[int]], qc: dict[str, np.ndarray], n_frames: int,
                  max_repaired_share: float) -> dict[str, Any]:
    """Share of frames that follow the source, and a warning's text (None when within the share)."""
    from pipeline.pose.quality import frame_ranges, reason_kind

    frames = sorted({f for kind in ("interpolated", "held") for f in repair.get(kind, [])})
    share = len(frames) / n_frames if n_frames else 0.0
    why: dict[str, int] = {}
    reasons = dict(zip((int(f) for f in qc["frame"]), qc["reasons"]))
    for f in frames:
        for kind in {reason_kind(r) for r in str(reasons.get(f, "")).split(";") if r} or {"implausible after repair"}:
            why[kind] = why.get(kind, 0) + 1
    warning = None
    if share > max_repaired_share:
        warning = (f"pose QC holds or interpolates {len(frames)} of {n_frames} frames ({share:.0%}, more than "
                   f"qc.max_repaired_share {max_repaired_share:.0%}): frames {frame_ranges(frames)}; reasons "
                   + ", ".join(f"{k} {v}" for k, v in sorted(why.items(), key=lambda kv: -kv[1]))
                   + ". The transfer does not follow the source there; see the QC figure of this source.")
    return {"repaired_share": round(share, 4), "follows_source": round(1 - share, 4), "reasons": why,
            "warning": warning}


def _repair_runs(track: KeypointTrack, good: np.ndarray, hold: np.ndarray,
                 max_repair_gap: int) -> tuple[KeypointTrack, list[tuple[slice, str]]]:
    """One repair pass: every run of not-``good`` frames interpolated or (``hold``, long, at an end) held."""
    out = track.copy()
    data = out.data
    n = len(good)
    runs: list[tuple[slice, str]] = []
    t = 0
    while t < n:
        if good[t]:
            t += 1
            continue
        end = t
        while end < n and not good[end]:
            end += 1
        left, right = t - 1, end  # the ok frames around the run [t, end)
        if left >= 0 and right < n and end - t <= max_repair_gap and not hold[t:end].any():
            a, b = data[left], data[right]
            a_ok, b_ok = present(a[None])[0], present(b[None])[0]
            for i in range(t, end):
                w = (i - left) / (right - left)
                frame = np.where(a_ok[:, None], a, b)  # joints seen on one side only: held from it
                both = a_ok & b_ok
                frame[both, :2] = a[both, :2] + w * (b[both, :2] - a[both, :2])
                frame[both, 2] = np.minimum(a[both, 2], b[both, 2])
                data[i] = frame
            kind = "interpolated"
        else:
            source = left if left >= 0 else right
            data[t:end] = data[source]
            kind = "held"
        data[t:end, :, 2] *= REPAIR_CONFIDENCE_FACTOR
        runs.append((slice(t, end), kind))
        t = end
    out.data = mark_missing(data)
    return out, runs


def repaired_frames(track: KeypointTrack) -> set[int]:
    """Frame numbers ``edn normalize --qc`` repaired (interpolated or held); empty if none."""
    record = track.meta.get("qc_repair") or {}
    return {int(f) for kind in ("interpolated", "held") for f in record.get(kind, [])}


def view_shift(lo: np.ndarray, hi: np.ndarray, ease: float) -> np.ndarray:
    """A smooth per-frame shift inside each frame's allowed band ``[lo, hi]`` (NaN: any shift), zero where
    zero is allowed and far from any frame that needs one; ``ease`` frames of ramp either side."""
    from scipy.ndimage import gaussian_filter1d, maximum_filter1d

    lo = np.where(np.isfinite(lo), lo, -np.inf)
    hi = np.where(np.isfinite(hi), hi, np.inf)
    crowded = lo > hi  # the body is larger than the frame: centre it
    mid = np.where(crowded, (lo + hi) / 2, 0.0)
    lo, hi = np.where(crowded, mid, lo), np.where(crowded, mid, hi)
    need = np.clip(0.0, lo, hi)
    if not need.any():
        return need
    size = 2 * int(round(2 * ease)) + 1
    # The largest push each way within +-2 sigma, then smoothed: the plateau keeps the peak's value.
    up = gaussian_filter1d(maximum_filter1d(np.maximum(need, 0), size, mode="nearest"), ease, mode="nearest")
    down = -gaussian_filter1d(maximum_filter1d(np.maximum(-need, 0), size, mode="nearest"), ease, mode="nearest")
    return np.clip(up + down, lo, hi)


def keep_in_view(track: KeypointTrack, width: int, height: int, heights: np.ndarray, fps: float
                 ) -> tuple[KeypointTrack, dict[str, Any]]:
    """``track`` shifted, smoothly, so each frame's body (keypoints plus ``VIEW_MARGIN`` x ``heights``, its
    reference height in pixels) lies inside the ``width`` x ``height`` frame; and the record of what moved."""
    from pipeline.pose.quality import frame_ranges

    ok = present(track.data)
    seen = ok.any(axis=1)
    pad = VIEW_MARGIN * np.asarray(heights, dtype=np.float64)

    def extent(axis: int) -> tuple[np.ndarray, np.ndarray]:
        v = track.data[..., axis].astype(np.float64)
        low, high = np.where(ok, v, np.inf).min(axis=1), np.where(ok, v, -np.inf).max(axis=1)
        return np.where(seen, low - pad, np.nan), np.where(seen, high + pad, np.nan)

    (x0, x1), (y0, y1) = extent(0), extent(1)
    ease = max(1.0, VIEW_EASE_S * (fps or 30.0))
    dx, dy = view_shift(-x0, width - x1, ease), view_shift(-y0, height - y1, ease)
    out = track.copy()
    out.data[..., 0] += dx[:, None].astype(np.float32)
    out.data[..., 1] += dy[:, None].astype(np.float32)
    out.data = mark_missing(out.data)
    moved = (np.abs(dx) > 0.5) | (np.abs(dy) > 0.5)
    larger = seen & (((x1 - x0) > width) | ((y1 - y0) > height))
    frames = track.frames[moved].tolist()
    record: dict[str, Any] = {"frames": frames, "max_shift_x": round(float(np.abs(dx).max(initial=0)), 1),
                              "max_shift_y": round(float(np.abs(dy).max(initial=0)), 1),
                              "larger_than_frame": track.frames[larger].tolist(), "margin": VIEW_MARGIN,
                              "ease_seconds": VIEW_EASE_S, "warning": None}
    if frames:
        record["warning"] = (
            f"the source moves further than the target's {width}x{height} frame holds: {len(frames)} of "
            f"{len(track.frames)} frames ({frame_ranges(frames)}) were moved, by up to {record['max_shift_x']:.0f} px "
            f"sideways and {record['max_shift_y']:.0f} px up or down, easing in and out over {VIEW_EASE_S:g} s, "
            "so the whole body stays in view (normalize: keep_in_view; false keeps the mapped positions)"
            + (f"; frames {frame_ranges(record['larger_than_frame'])}: the body is larger than the frame and was "
               "centred" if record["larger_than_frame"] else ""))
    return out, record


def outside_frame(track: KeypointTrack, width: int, height: int, center_x: bool, source_width: int | None
                  ) -> dict[str, Any]:
    """The frames of ``track`` that fall outside a ``width`` x ``height`` frame (more than
    OUTSIDE_SHARE of their present keypoints beyond an edge), the side most of them left by, the
    likely cause and a warning's text (None when no frame falls outside)."""
    from pipeline.pose.quality import frame_ranges

    ok = present(track.data)
    x, y = track.data[..., 0], track.data[..., 1]
    with np.errstate(invalid="ignore"):
        sides = {"left": ok & (x < 0), "right": ok & (x >= width), "above": ok & (y < 0), "below": ok & (y >= height)}
    off = np.logical_or.reduce(list(sides.values()))
    counted = ok.sum(axis=1)
    falls = (counted > 0) & (off.sum(axis=1) > OUTSIDE_SHARE * counted)
    frames = track.frames[falls].tolist()
    report: dict[str, Any] = {"frames": frames, "share_limit": OUTSIDE_SHARE, "side": None, "cause": None,
                              "warning": None}
    if not frames:
        return report
    side = max(sides, key=lambda k: int(sides[k][falls].sum()))
    if side in ("left", "right") and not center_x:
        cause = (f"--center-x is off (normalize: center_x), so x stays in the source's pixels"
                 f"{f' of a {source_width}-pixel-wide frame' if source_width else ''}: --center-x moves the "
                 "source's mean position onto the target's")
    elif side in ("left", "right"):
        cause = f"the source moves further sideways than the target's {width}-pixel-wide frame holds"
    else:
        cause = ("the mapped ankle positions and heights put the body beyond the frame: check that the source "
                 "and target stats (edn stats) come from these videos")
    report.update(side=side, cause=cause, warning=(
        f"{len(frames)} of {len(track.frames)} normalized frames fall mostly outside the target's {width}x{height} "
        f"frame (more than {OUTSIDE_SHARE:.0%} of their keypoints, most "
        f"{ {'left': 'to the left', 'right': 'to the right'}.get(side, side + ' it')}): frames {frame_ranges(frames)}; "
        f"likely cause: {cause}"))
    return report


def normalize_track(source: KeypointTrack, source_stats: dict[str, Any], target_stats: dict[str, Any],
                    center_x: bool = False, method: str = "paper", qc: dict[str, np.ndarray] | None = None,
                    max_repair_gap: int = DEFAULT_MAX_REPAIR_GAP,
                    qc_thresholds: dict[str, float] | None = None,
                    max_repaired_share: float = DEFAULT_MAX_REPAIRED_SHARE, view: bool = False) -> KeypointTrack:
    """Map ``source`` into the target's frame by the paper's global pose normalization.

    ``method='retarget'`` follows the mapping with :func:`pipeline.pose.retarget.retarget_track`
    (target limb proportions). ``qc`` (the source's QC columns) repairs the frames it does
    not call ok first. ``view`` keeps the whole body in the target's frame (:func:`keep_in_view`).
    See the module docstring for the rules and the metadata.
    """
    if method not in METHODS:
        raise ValueError(f"normalize: method must be one of {METHODS}, got {method!r}")
    if center_x:
        for name, stats in (("source", source_stats), ("target", target_stats)):
            if stats.get("ankle_x_mean") is None:
                raise ValueError(f"normalize: --center-x needs ankle_x_mean in the {name} stats")
    repair = None
    if qc is not None:
        source, repair = repair_track(source, qc, max_repair_gap, qc_thresholds)
    mapping = compute_mapping(source, source_stats, target_stats, center_x)
    out = KeypointTrack(apply_mapping(source.data, mapping), source.frames.copy(), dict(source.meta))

    if method == "retarget":
        before = bone_length_ratios(out, target_stats, p=mapping["p"])
        out = retarget_track(out, target_stats, p=mapping["p"])
        out.meta["bone_ratios_before"] = before
        out.meta["bone_ratios_after"] = bone_length_ratios(out, target_stats, p=mapping["p"])
    else:
        out.meta["bone_ratios"] = bone_length_ratios(out, target_stats, p=mapping["p"])

    keys = ("ankle_far", "ankle_near", "height_far", "height_near", "ankle_x_mean")
    params = {
        "method": method, "center_x": bool(center_x), "keep_in_view": bool(view), "p_min": P_MIN, "p_max": P_MAX,
        "k_floor": K_FLOOR,
        "source": {k: source_stats.get(k) for k in keys},
        "target": {k: target_stats.get(k) for k in keys},
        "shift_x": float(mapping["shift_x"][0]) if len(mapping["shift_x"]) else 0.0,
        "n_frames": int(len(source.frames)), "n_valid_frames": int(mapping["valid"].sum()),
    }
    out.meta = chain_provenance(out.meta, provenance("normalize", {"method": method, "center_x": bool(center_x),
                                                                     "keep_in_view": bool(view)}))
    out.meta["normalize"] = params
    if repair is not None:
        from pipeline.pose.quality import quality_scores

        # The check that matters downstream: would pose QC call any output pose implausible?
        after = quality_scores(out, qc_thresholds)
        implausible = out.frames[~after["plausible"]].tolist()
        if implausible:
            log.warning("%d normalized frames still implausible after the QC repair: %s", len(implausible),
                        implausible[:20])
        report = repair_report(repair, qc, len(out.frames), max_repaired_share)
        if report["warning"]:
            log.warning("%s", report["warning"])
        out.meta["qc_repair"] = {**repair, "max_repair_gap": int(max_repair_gap),
                                 "implausible_after_repair": implausible, "max_repaired_share": max_repaired_share,
                                 **report}
    out.meta["mapping"] = _as_lists({k: v for k, v in mapping.items() if k != "shift_x"})
    out.meta["width"] = int(target_stats["frame_width"])
    out.meta["height"] = int(target_stats["frame_height"])
    if view:
        moved, record = keep_in_view(out, out.meta["width"], out.meta["height"], pose_heights(out.data, target_stats),
                                     float(source.meta.get("fps") or 0))
        out.data = moved.data
        out.meta["keep_in_view"] = record
        if record["warning"]:
            log.warning("%s", record["warning"])
    out.meta["outside_frame"] = outside_frame(out, out.meta["width"], out.meta["height"], center_x,
                                              source_stats.get("frame_width"))
    if out.meta["outside_frame"]["warning"]:
        log.warning("%s", out.meta["outside_frame"]["warning"])
    out.meta["fps"] = source.meta.get("fps")
    return out


def cli(args: argparse.Namespace) -> int:
    source = read_keypoints(args.source)
    source_stats = load_stats(args.source_stats)
    target_stats = load_stats(args.target_stats)
    size = (source.meta.get("width"), source.meta.get("height"))
    stats_size = (source_stats["frame_width"], source_stats["frame_height"])
    if size != stats_size:
        # The stats' pixel positions only mean something in the frames they were measured in.
        raise ValueError(f"{args.source}: frame size {size} differs from {args.source_stats} {stats_size}")
    if not args.center_x and source_stats["frame_width"] != target_stats["frame_width"]:
        log.warning("source and target frame widths differ (%s vs %s) and --center-x is off: "
                    "x stays in source pixels", source_stats["frame_width"], target_stats["frame_width"])
    qc = None
    if args.qc is not None:
        from pipeline.pose.quality import read_qc

        qc, qc_meta = read_qc(args.qc)
    try:
        out = normalize_track(source, source_stats, target_stats, center_x=args.center_x, method=args.method,
                              qc=qc, max_repair_gap=args.max_repair_gap,
                              qc_thresholds=qc_meta.get("thresholds") if qc is not None else None,
                              max_repaired_share=args.max_repaired_share, view=args.keep_in_view)
    except ValueError as exc:
        raise ValueError(f"{args.source}: {exc}") from exc
    out.meta["provenance"]["params"].update({
        "source": str(args.source), "source_stats": str(args.source_stats),
        "target_stats": str(args.target_stats), "qc": None if args.qc is None else str(args.qc),
        "max_repair_gap": args.max_repair_gap, "max_repaired_share": args.max_repaired_share})
    out.meta["stats_provenance"] = {"source": source_stats.get("provenance"),
                                    "target": target_stats.get("provenance")}
    write_keypoints(args.out, out)
    params = out.meta["normalize"]
    log.info("%s: %d frames (%d with ankles, %d repaired by QC), method %s -> %s", args.source, params["n_frames"],
             params["n_valid_frames"], len(repaired_frames(out)), args.method, args.out)
    return 0
