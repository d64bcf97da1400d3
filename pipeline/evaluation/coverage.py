"""Pose coverage: which source poses the target's footage never showed, before any training.

A generator draws the target well in poses it was trained on and breaks on poses far from all of
them. This module measures, for every source frame, how far each of its limbs is from the nearest
configuration of that limb in the target's training frames, in a pose space that ignores position
and scale: the image direction of each body segment.

* **Segments and chains.** :data:`SEGMENTS` are the body's rigid parts (torso, head, shoulder line,
  upper arms, forearms, thighs, shanks) as BODY_25 joint pairs; each segment's direction is an
  angle in the image. Segments are grouped in :data:`CHAINS` (trunk, each arm, each leg): a chain
  is covered when one training frame holds *all* its segments near the source's (an elbow bend is
  one appearance, not two independent ones), while different chains may come from different
  training frames (a convolutional generator composes limbs it has seen apart).
* **Tolerance, from anthropometry.** A segment of length ``L`` and diameter ``d`` (shares of
  standing height, :data:`SEGMENTS`) turned by ``a`` about one end moves its other end by
  ``2 L sin(a / 2)``; while that stays under ``d`` the turned limb still overlaps the drawn one,
  so the generator has seen pixels of the limb there. The tolerance is ``2 asin(d / 2L)``
  (15-48 degrees). Distances are in units of it: a chain's distance is the smallest, over the
  training frames, of its worst segment's angle over that segment's tolerance.
* **Threshold.** A frame is *uncovered* when any chain's distance exceeds 1: some limb points where
  none of the target's frames had it, by more than the limb's own width. No footage's values enter.

With ``--mirror`` (the workflow passes it when ``train: mirror`` > 0) the training poses' mirror images
count too: the generator was trained on them.

``edn coverage`` needs keypoints only: a source (normalized or raw: directions do not change under
the normalization's scale and shift) against a target's training frames, or a target alone
("what to film more of": the directions each segment never reached).
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.pose.keypoints import J, KeypointTrack, present, read_keypoints
from pipeline.provenance import provenance, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """A rigid body part between two BODY_25 joints; ``length`` and ``diameter`` in shares of standing height."""

    name: str
    start: str
    end: str
    length: float
    diameter: float

    @property
    def tolerance(self) -> float:
        """Radians the segment may turn about ``start`` before its far end leaves the drawn limb's width."""
        return 2 * math.asin(min(1.0, self.diameter / (2 * self.length)))


# Lengths: Drillis & Contini via Winter (docs/pose-qc.md, "Anthropometry"; the same shares as pose QC).
# Diameters: adult mean circumferences over pi (upper arm ~31 cm, forearm ~27 cm, thigh ~55 cm,
# calf ~37 cm, for a 1.75 m adult), the chest's breadth (~0.17 H) for the torso turning about the hips,
# the head's breadth (~0.09 H) for the head about the neck, the upper arm's for the shoulder line
# (a shoulder moving by more than its arm's width is a turn or a lean of the whole body).
SEGMENTS = (
    Segment("torso", "MidHip", "Neck", 0.288, 0.17),
    Segment("head", "Neck", "Nose", 0.11, 0.09),
    Segment("shoulders", "RShoulder", "LShoulder", 0.259, 0.056),
    Segment("right upper arm", "RShoulder", "RElbow", 0.186, 0.056),
    Segment("right forearm", "RElbow", "RWrist", 0.146, 0.049),
    Segment("left upper arm", "LShoulder", "LElbow", 0.186, 0.056),
    Segment("left forearm", "LElbow", "LWrist", 0.146, 0.049),
    Segment("right thigh", "RHip", "RKnee", 0.245, 0.10),
    Segment("right shank", "RKnee", "RAnkle", 0.246, 0.067),
    Segment("left thigh", "LHip", "LKnee", 0.245, 0.10),
    Segment("left shank", "LKnee", "LAnkle", 0.246, 0.067),
)
CHAINS = {
    "trunk": ("torso", "head", "shoulders"),
    "right arm": ("right upper arm", "right forearm"),
    "left arm": ("left upper arm", "left forearm"),
    "right leg": ("right thigh", "right shank"),
    "left leg": ("left thigh", "left shank"),
}
_INDEX = {s.name: i for i, s in enumerate(SEGMENTS)}
TOLERANCE = np.array([s.tolerance for s in SEGMENTS])
THRESHOLD = 1.0  # in tolerances: beyond it a limb points where the target's never did
# Image directions in words (y grows down), 45-degree sectors centred on each.
COMPASS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")
_CHUNK = 512  # source frames compared with all training frames at once (memory: chunk x train x segments)


def segment_angles(data: np.ndarray) -> np.ndarray:
    """(frames, len(SEGMENTS)) image direction of each segment in radians; NaN where an end is missing."""
    data = np.asarray(data, dtype=np.float64)
    ok = present(data)
    a = np.array([J[s.start] for s in SEGMENTS])
    b = np.array([J[s.end] for s in SEGMENTS])
    d = data[:, b, :2] - data[:, a, :2]
    both = ok[:, a] & ok[:, b] & (np.hypot(d[..., 0], d[..., 1]) > 0)
    with np.errstate(invalid="ignore"):
        return np.where(both, np.arctan2(d[..., 1], d[..., 0]), np.nan)


# The shoulder line (right shoulder to left) says which way the body faces.
FACING = {"right": "facing the camera", "left": "back to the camera"}


def direction_word(angle: float, segment: str = "") -> str:
    """"up", "down-left", ... for an image angle (radians, y down); for the shoulder line, which way the body faces."""
    word = COMPASS[int(round(math.degrees(angle) / 45.0)) % 8]
    if segment == "shoulders":
        return f"{word} ({FACING.get(word, 'body turned sideways or tilted')})"
    return word


def _turn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute angle between directions ``a`` and ``b`` (radians, 0..pi); NaN where either is NaN."""
    return np.abs((a - b + np.pi) % (2 * np.pi) - np.pi)


def chain_distances(source: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per source frame and chain: the distance (in tolerances) to the nearest training frame's chain, and
    that frame's row in ``train``. ``source`` and ``train`` are :func:`segment_angles` arrays.

    A chain counts only the segments present in the source frame; a training frame lacking one of them
    cannot cover it. NaN distance (row -1): the source frame shows none of the chain's segments, or no
    training frame shows them.
    """
    n = len(source)
    dist = np.full((n, len(CHAINS)), np.nan)
    nearest = np.full((n, len(CHAINS)), -1, dtype=np.int64)
    for c, names in enumerate(CHAINS.values()):
        idx = [_INDEX[name] for name in names]
        tol = TOLERANCE[idx]
        for lo in range(0, n, _CHUNK):
            src = source[lo:lo + _CHUNK, idx]  # (s, k)
            turns = _turn(src[:, None, :], train[None, :, idx]) / tol  # (s, t, k)
            shown = np.isfinite(src)[:, None, :]
            # A segment the source shows but a training frame lacks: that frame cannot cover it.
            worst = np.where(shown, np.where(np.isfinite(turns), turns, np.inf), 0.0).max(axis=2)
            worst[~shown.any(axis=2)[:, 0]] = np.nan
            if worst.shape[1] == 0:
                continue
            finite = np.isfinite(worst).any(axis=1)
            best = np.where(finite, np.nanargmin(np.where(np.isnan(worst), np.inf, worst), axis=1), -1)
            rows = np.arange(len(src))
            value = np.where(finite, worst[rows, np.maximum(best, 0)], np.nan)
            dist[lo:lo + len(src), c] = np.where(np.isinf(value), np.nan, value)
            nearest[lo:lo + len(src), c] = np.where(np.isfinite(value), best, -1)
    return dist, nearest


def _describe(chain: str, src: np.ndarray, near: np.ndarray | None, ref: np.ndarray) -> str:
    """The chain's worst segment in words: "left forearm pointing up: the target's nearest is 47 degrees off"."""
    idx = [_INDEX[name] for name in CHAINS[chain]]
    if near is None:  # no training frame shows all the segments the source shows
        never = [i for i in idx if np.isfinite(src[i]) and not np.isfinite(ref[:, i]).any()]
        i = (never or [i for i in idx if np.isfinite(src[i])])[0]
        where = "in the target's frames" if never else f"with the rest of the {chain} in the target's frames"
        return f"{SEGMENTS[i].name} pointing {direction_word(src[i], SEGMENTS[i].name)}: never seen {where}"
    turns = _turn(src[idx], near[idx]) / TOLERANCE[idx]
    k = int(np.nanargmax(np.where(np.isfinite(src[idx]), np.where(np.isfinite(turns), turns, np.inf), -1)))
    i = idx[k]
    if not np.isfinite(near[i]):
        return f"{SEGMENTS[i].name} pointing {direction_word(src[i], SEGMENTS[i].name)}: never seen with the rest of the {chain}"
    return (f"{SEGMENTS[i].name} pointing {direction_word(src[i], SEGMENTS[i].name)}: the target's nearest "
            f"is {math.degrees(float(_turn(src[i], near[i]))):.0f} degrees off")


def training_rows(tracks: Sequence[KeypointTrack], holdout: float) -> np.ndarray:
    """The (frames, 137, 3) keypoints of the frames training uses: each clip's first ``1 - holdout`` (as
    :mod:`pipeline.gan.data` splits it)."""
    from pipeline.gan.data import split_holdout

    parts = [t.data[split_holdout(len(t.frames), holdout)[0]] for t in tracks]
    return np.concatenate(parts) if parts else np.zeros((0, 137, 3), np.float32)


def with_mirrored(train: np.ndarray) -> np.ndarray:
    """The training poses and their mirror images (x negated, left and right relabelled), as a generator
    trained with ``train: mirror`` sees them; directions do not depend on where the mirror's axis lies."""
    from pipeline.pose.keypoints import MIRROR_SWAP

    mirrored = np.array(train, dtype=np.float64, copy=True)[:, MIRROR_SWAP]
    mirrored[..., 0] = -mirrored[..., 0]
    return np.concatenate([np.asarray(train, dtype=np.float64), mirrored])


def coverage(source: KeypointTrack, train: np.ndarray) -> dict[str, Any]:
    """Per-frame coverage of ``source`` by the training keypoints ``train`` ((n, 137, 3)): the record
    ``edn coverage`` writes (summary, uncovered frame ranges with their limbs in words, per-frame lists)."""
    from pipeline.pose.quality import frame_ranges

    src, ref = segment_angles(source.data), segment_angles(train)
    dist, nearest = chain_distances(src, ref)
    names = list(CHAINS)
    with np.errstate(invalid="ignore"):
        frame_distance = np.where(np.isfinite(dist).any(axis=1), np.nanmax(np.where(np.isfinite(dist), dist, -1), 1),
                                  np.nan)
    # A chain no training frame shows at all is uncovered whatever the source does with it.
    unseen = np.isnan(dist) & np.array([[np.isfinite(src[t, [_INDEX[n] for n in CHAINS[c]]]).any()
                                         for c in names] for t in range(len(src))]).reshape(len(src), len(names))
    uncovered = (frame_distance > THRESHOLD) | unseen.any(axis=1)
    frames = source.frames.astype(int)
    limbs: dict[str, dict[str, Any]] = {}
    for t in np.flatnonzero(uncovered):
        for c, chain in enumerate(names):
            if not (unseen[t, c] or dist[t, c] > THRESHOLD):
                continue
            near = None if unseen[t, c] else ref[nearest[t, c]]
            words = _describe(chain, src[t], near, ref)
            entry = limbs.setdefault(words.split(":")[0], {"chain": chain, "what": words, "frames": []})
            entry["frames"].append(int(frames[t]))
    described = sorted(limbs.values(), key=lambda e: -len(e["frames"]))
    for e in described:
        e["ranges"] = frame_ranges(e.pop("frames"))
    measured = np.isfinite(frame_distance)
    return {
        "frames": int(len(frames)), "training_frames": int(len(train)), "threshold": THRESHOLD,
        "uncovered": int(uncovered.sum()), "uncovered_share": round(float(uncovered.mean()), 4) if len(frames) else 0.0,
        "measured": int(measured.sum()),
        "median_distance": float(np.nanmedian(frame_distance)) if measured.any() else None,
        "uncovered_ranges": frame_ranges(frames[uncovered]),
        "limbs": described,
        "tolerance_degrees": {s.name: round(math.degrees(s.tolerance), 1) for s in SEGMENTS},
        "per_frame": {"frame": frames.tolist(),
                      "distance": [None if not np.isfinite(v) else round(float(v), 4) for v in frame_distance],
                      "uncovered": uncovered.tolist(),
                      **{f"distance_{c.replace(' ', '_')}": [None if not np.isfinite(v) else round(float(v), 4)
                                                             for v in dist[:, i]] for i, c in enumerate(names)}},
    }


def target_gaps(train: np.ndarray) -> dict[str, Any]:
    """What the target's training frames never show: per segment, the compass directions (45-degree
    sectors) no frame points within the segment's tolerance of the sector's centre; "what to film more of"."""
    angles = segment_angles(train)
    gaps = {}
    for i, s in enumerate(SEGMENTS):
        seen = angles[:, i][np.isfinite(angles[:, i])]
        missing = []
        for k, word in enumerate(COMPASS):
            centre = math.radians(45 * k)
            if not len(seen) or _turn(seen, centre).min() > s.tolerance:
                missing.append(word)
        gaps[s.name] = missing
    sentences = [f"{name} never points {', '.join(words)}" for name, words in gaps.items() if words]
    return {"training_frames": int(len(train)), "never": gaps, "film_more": sentences}


def cli(args: argparse.Namespace) -> int:
    tracks = [read_keypoints(p) for p in args.target]
    train = training_rows(tracks, args.holdout)
    if not len(train):
        raise ValueError(f"{', '.join(map(str, args.target))}: no training frames (holdout {args.holdout})")
    if args.mirror:
        train = with_mirrored(train)
    record: dict[str, Any] = {"provenance": provenance("coverage", {
        "target": [str(p) for p in args.target], "holdout": args.holdout, "mirror": args.mirror,
        "source": str(args.source) if args.source else None, "threshold": THRESHOLD}),
        "target": target_gaps(train)}
    for line in record["target"]["film_more"]:
        log.info("target: %s", line)
    if args.source:
        record["source"] = coverage(read_keypoints(args.source), train)
        s = record["source"]
        log.info("%s: %d of %d frames uncovered by the target's %d training frames (%s)", args.source,
                 s["uncovered"], s["frames"], s["training_frames"], s["uncovered_ranges"] or "none")
        for limb in s["limbs"]:
            log.info("  %s: frames %s", limb["what"], limb["ranges"])
    write_json(args.out, record)
    return 0
