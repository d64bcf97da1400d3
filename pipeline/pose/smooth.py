"""Stage 3: temporal pre-smoothing of keypoints and filling of short detection gaps.

Chan et al. (arXiv 1808.07371) pre-smooth the detected keypoints before normalisation;
this stage does it per joint and coordinate in two steps:

1. **Symmetric median.** Each present value is replaced by the median of the present
   values in a centred window of ``window`` frames, where offset ``d`` contributes the
   *pair* ``t - d`` and ``t + d`` only when both are present. Missing neighbours are thus
   never read as values (no poisoning), and the window stays symmetric at gap edges and at
   the clip ends. A one-sided window there would drag a moving joint toward the interior
   (a lag of about a quarter window times the velocity) and make the linear gap filling
   below start from a biased point; the symmetric one keeps any locally linear motion
   exact, removes isolated one-frame spikes, and keeps real steps sharp. The price: a
   spike on the very first/last present frame of a run is kept (it has no pair).
2. **Gap filling.** A run of missing frames of length ``<= max_gap`` with a present value
   on both sides is filled by linear interpolation between those two (smoothed) values.
   A filled joint gets confidence ``FILL_CONFIDENCE_FACTOR * min(left, right)``: positive
   (the contract treats confidence 0 as missing) but lower than either detection, so
   later stages and plots can tell it apart. Longer gaps and gaps at the clip ends stay
   missing: extrapolating a dancer's limb for many frames invents motion.

3. **Pose quality control** (optional, ``--qc`` with the raw track's :mod:`pipeline.pose.quality`
   verdicts). Frames QC calls implausible (a limb far too long, a body box far too large, no
   body) are made missing *before* the median, so their garbage never enters a neighbour's
   median; they are then filled like any other gap when short. The track is cut into
   segments at QC's breaks (a jump of the whole body or a change of person) and each segment
   is smoothed and gap-filled on its own: no median window and no interpolated gap spans a
   break, so two people are never averaged into one skeleton. Frames QC found labelled left
   for right (``swapped``: the detector's front/back confusion) are relabelled first.

Frame numbers absent from the input (the detector wrote no row for them) count as
missing frames; the output covers every frame number from the first to the last input
frame.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from pipeline.pose.keypoints import SIDE_SWAP, KeypointTrack, chain_provenance, empty_track, mark_missing, \
    read_keypoints, write_keypoints
from pipeline.pose.keypoints import present as present_mask  # `present` is a local name below
from pipeline.provenance import provenance

log = logging.getLogger(__name__)

FILL_CONFIDENCE_FACTOR = 0.5
# Elements of the (frames, joints, 2, window) float64 median working array per block (4 MB,
# ~380 frames at window 5; the sort and its temporaries take a few times that): long tracks
# and wide windows are processed in frame blocks of this size, so memory stays flat with
# length (make bench-scale: at 32 MB blocks, 3,000 frames took 1.5x the peak RSS of 300).
_WORK_ELEMENTS = 1 << 19


def validate_params(window: int, max_gap: int) -> None:
    """Raise ValueError with a clear message for a bad window or max_gap."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"smooth: window must be an integer, got {window!r}")
    if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)):
        raise ValueError(f"smooth: max_gap must be an integer, got {max_gap!r}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"smooth: window must be an odd number >= 1 (centred median), got {window}")
    if max_gap < 0:
        raise ValueError(f"smooth: max_gap must be >= 0, got {max_gap}")


def densify(track: KeypointTrack) -> KeypointTrack:
    """The track on every frame number from its first to its last; absent frames are missing."""
    if len(track.frames) == 0:
        return track.copy()
    order = np.argsort(track.frames, kind="stable")
    frames = track.frames[order].astype(np.int64)
    full = np.arange(frames[0], frames[-1] + 1, dtype=np.int64)
    data = empty_track(len(full))
    data[frames - frames[0]] = track.data[order]
    return KeypointTrack(mark_missing(data), full.astype(np.int32), dict(track.meta))


def _symmetric_median(xy: np.ndarray, present: np.ndarray, half: int) -> np.ndarray:
    """Symmetric-pair median of ``xy`` (T, J, 2) over a window of ``2 * half + 1`` frames."""
    n = len(xy)
    out = xy.copy()
    values = np.where(present[..., None], xy, np.nan).astype(np.float64)
    padded = np.pad(values, ((half, half), (0, 0), (0, 0)), constant_values=np.nan)
    pad_present = np.pad(present, ((half, half), (0, 0)), constant_values=False)
    block = max(64, _WORK_ELEMENTS // (xy.shape[1] * 2 * (2 * half + 1)))
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = np.arange(start, stop) + half  # centre rows in the padded arrays
        centre_ok = pad_present[rows]
        cols = [padded[rows]]
        for d in range(1, half + 1):
            pair = pad_present[rows - d] & pad_present[rows + d] & centre_ok
            lo = np.where(pair[..., None], padded[rows - d], np.nan)
            hi = np.where(pair[..., None], padded[rows + d], np.nan)
            cols += [lo, hi]
        win = np.sort(np.stack(cols, axis=-1), axis=-1)  # NaN sorts last
        count = np.isfinite(win).sum(axis=-1)
        safe = np.maximum(count, 1)
        lo_i = ((safe - 1) // 2)[..., None]
        hi_i = (safe // 2)[..., None]
        med = 0.5 * (np.take_along_axis(win, lo_i, -1) + np.take_along_axis(win, hi_i, -1))[..., 0]
        np.copyto(out[start:stop], med.astype(out.dtype), where=centre_ok[..., None])
    return out


def _fill_gaps(data: np.ndarray, max_gap: int) -> int:
    """Linearly fill short interior gaps of ``data`` (T, J, 3) in place; return joints filled."""
    if max_gap == 0 or len(data) < 3:
        return 0
    n = len(data)
    present = present_mask(data)
    t = np.arange(n)[:, None]
    # Index of the latest present frame at or before t, and the earliest at or after t.
    prev = np.maximum.accumulate(np.where(present, t, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(present, t, n)[::-1], axis=0)[::-1]
    gap = nxt - prev - 1
    fill = ~present & (prev >= 0) & (nxt < n) & (gap <= max_gap)
    if not fill.any():
        return 0
    ti, ji = np.nonzero(fill)
    p, q = prev[ti, ji], nxt[ti, ji]
    w = ((ti - p) / (q - p))[:, None]
    a, b = data[p, ji], data[q, ji]
    data[ti, ji, :2] = a[:, :2] + w * (b[:, :2] - a[:, :2])
    data[ti, ji, 2] = FILL_CONFIDENCE_FACTOR * np.minimum(a[:, 2], b[:, 2])
    return int(fill.sum())


def qc_segments(frames: np.ndarray, qc: dict[str, np.ndarray] | None) -> tuple[np.ndarray, list[slice]]:
    """Rows of ``frames`` QC calls implausible, and the row slices between QC's breaks.

    Frames the QC file does not list count as plausible and break nothing.
    """
    n = len(frames)
    if qc is None:
        return np.zeros(n, dtype=bool), [slice(0, n)]
    row = {int(f): i for i, f in enumerate(frames)}
    implausible = np.zeros(n, dtype=bool)
    starts = {0}
    for f, plausible, brk in zip(qc["frame"], qc["plausible"], qc["break"]):
        i = row.get(int(f))
        if i is None:
            continue
        implausible[i] = not plausible
        if brk:
            starts.add(i)
    bounds = sorted(starts) + [n]
    return implausible, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def qc_swapped(frames: np.ndarray, qc: dict[str, np.ndarray] | None) -> np.ndarray:
    """Rows of ``frames`` QC found labelled left for right (none without QC or its ``swapped`` column)."""
    out = np.zeros(len(frames), dtype=bool)
    if qc is None or "swapped" not in qc:
        return out
    row = {int(f): i for i, f in enumerate(frames)}
    for f, swapped in zip(qc["frame"], qc["swapped"]):
        if swapped and int(f) in row:
            out[row[int(f)]] = True
    return out


def smooth_track(track: KeypointTrack, window: int = 5, max_gap: int = 5,
                 qc: dict[str, np.ndarray] | None = None) -> KeypointTrack:
    """Median pre-smoothing (``window`` frames, odd) and linear filling of gaps <= ``max_gap``.

    ``qc``: the raw track's QC columns (:func:`pipeline.pose.quality.read_qc`): implausible frames
    are made missing first and no smoothing crosses a break. Returns a new track over every
    frame number from the first to the last input frame; see the module docstring.
    """
    validate_params(window, max_gap)
    out = densify(track)
    filled = 0
    implausible, segments = qc_segments(out.frames, qc)
    swapped = qc_swapped(out.frames, qc)
    if len(out.frames):
        data = out.data
        data[swapped] = data[swapped][:, SIDE_SWAP]
        data[implausible] = empty_track(int(implausible.sum()))
        for seg in segments:
            part = data[seg]  # a view: the segment is smoothed in place, blind to its neighbours
            if window > 1:
                part[..., :2] = _symmetric_median(part[..., :2], present_mask(part), window // 2)
            filled += _fill_gaps(part, max_gap)
        out.data = mark_missing(data)
    out.meta = dict(out.meta)
    out.meta["smooth_summary"] = {
        "frames_in": int(len(track.frames)),
        "frames_out": int(len(out.frames)),
        "joints_filled": filled,
    }
    if qc is not None:
        out.meta["smooth_summary"].update({
            "frames_dropped_by_qc": out.frames[implausible].tolist(),
            "frames_relabelled_left_right": out.frames[swapped].tolist(),
            "segments": [[int(out.frames[s.start]), int(out.frames[s.stop - 1])] for s in segments]})
    return out


def cli(args: argparse.Namespace) -> int:
    validate_params(args.window, args.max_gap)
    track = read_keypoints(args.input)
    qc = None
    if args.qc is not None:
        from pipeline.pose.quality import read_qc

        qc, _ = read_qc(args.qc)
    out = smooth_track(track, window=args.window, max_gap=args.max_gap, qc=qc)
    out.meta = chain_provenance(out.meta, provenance("smooth", {
        "window": args.window, "max_gap": args.max_gap,
        "fill_confidence_factor": FILL_CONFIDENCE_FACTOR, "input": str(args.input),
        "qc": None if args.qc is None else str(args.qc)}))
    write_keypoints(args.out, out)
    summary = out.meta["smooth_summary"]
    log.info("%s: %d frames (%d in), %d joints filled, %d frames dropped by QC, %d segments -> %s", args.input,
             summary["frames_out"], summary["frames_in"], summary["joints_filled"],
             len(summary.get("frames_dropped_by_qc", [])), len(summary.get("segments", [0])), args.out)
    return 0
