"""``edn measure-transfer``: how faithfully a transfer video shows the poses it was given.

The held-out evaluation (:mod:`pipeline.evaluation.evaluate`) scores the target's own frames; what
users share is the transfer, poses the target may never have made. There is no real frame to
compare with, so the generated frames are measured against their own input: the transfer video
(as encoded, what a viewer gets) is read back, each frame's pose re-detected with the pipeline's
detector (MediaPipe Holistic, one tracker over the video), and compared with the normalized pose
the generator was given, fitted to the model's frame as in generation.

Per frame:

* ``body_found``: at least :data:`MIN_BODY_JOINTS` of the 14 :data:`MAIN_JOINTS` re-detected (more
  than half: a lone limb or a head is not a body);
* ``joint_error``: the median distance, over the main joints present in both, between re-detected
  and given joint, in body heights (the target's standing height at the pose's depth, from the
  target's statistics, as normalization scales it); per limb in ``error_<limb>``;
* ``pck``: the share of those joints within :data:`PCK_THRESHOLD` body heights;
* ``pck_given``: the share of the main joints given within it, a joint not re-detected counting as a miss.
  ``pck`` and ``joint_error`` are measured on what was found, so a generator that loses the body on the
  hard frames is spared them there; ``pck_given`` is not, and is the measure to compare generators by.

With the source's coverage (:mod:`pipeline.evaluation.coverage`) the relation between a frame's coverage
distance and its error is reported: whether uncovered frames are the ones that fail.
The same step writes the side-by-side video (source | stick figure | generated), marking frames
that lose the body (red border, "no body") and frames whose pose the target's footage does not
cover ("pose not in training"), and the transfer's record with everything in one JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pipeline.pose.keypoints import J, KeypointTrack, read_keypoints
from pipeline.provenance import provenance, write_json

log = logging.getLogger(__name__)

MAIN_JOINTS = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
               "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle")
MAIN = np.array([J[n] for n in MAIN_JOINTS])
MIN_BODY_JOINTS = 8
PCK_THRESHOLD = 0.1  # body heights: half a head's height
LIMBS = {"head": ("Nose", "Neck"), "right_arm": ("RShoulder", "RElbow", "RWrist"),
         "left_arm": ("LShoulder", "LElbow", "LWrist"), "right_leg": ("RHip", "RKnee", "RAnkle"),
         "left_leg": ("LHip", "LKnee", "LAnkle")}


def body_found(keypoints: np.ndarray) -> np.ndarray:
    """Per frame of (frames, 137, 3) keypoints: at least :data:`MIN_BODY_JOINTS` main joints present."""
    return (keypoints[:, MAIN, 2] > 0).sum(axis=1) >= MIN_BODY_JOINTS


def compare(given: np.ndarray, found: np.ndarray, heights: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame fidelity of re-detected keypoints ``found`` against the ``given`` ones (both (frames, 137, 3),
    one frame's pixels), with ``heights`` the body height per frame in those pixels."""
    present = given[:, MAIN, 2] > 0
    both = present & (found[:, MAIN, 2] > 0)
    dist = np.linalg.norm(given[:, MAIN, :2] - found[:, MAIN, :2], axis=-1) / heights[:, None]
    dist = np.where(both, dist, np.nan)
    n, n_given = both.sum(axis=1), present.sum(axis=1)
    with np.errstate(invalid="ignore"), _quiet():
        out = {"body_found": body_found(found), "joints_found": n,
               "joint_error": np.where(n > 0, np.nanmedian(dist, axis=1), np.nan),
               "pck": np.where(n > 0, (dist <= PCK_THRESHOLD).sum(axis=1) / np.maximum(n, 1), np.nan),
               "joints_given": n_given,
               "pck_given": np.where(n_given > 0, (dist <= PCK_THRESHOLD).sum(axis=1) / np.maximum(n_given, 1),
                                     np.nan)}
        for limb, names in LIMBS.items():
            cols = [MAIN_JOINTS.index(name) for name in names]
            part = dist[:, cols]
            out[f"error_{limb}"] = np.where(np.isfinite(part).any(axis=1), np.nanmean(part, axis=1), np.nan)
    out["_pooled"] = dist[np.isfinite(dist)]  # every joint's error, for the summary
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a frame without a body
        yield


def percent(share: float | None) -> str:
    """A share as a whole percentage, or n/a."""
    return "n/a" if share is None else f"{share:.0%}"


def _round(values: np.ndarray, digits: int = 4) -> list[Any]:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in np.asarray(values, dtype=float)]


def summarize(per_frame: dict[str, np.ndarray], coverage: dict[str, Any] | None) -> dict[str, Any]:
    """The summary of :func:`compare`'s per-frame values (and, with a source's coverage, how coverage relates
    to the error)."""
    pooled = per_frame["_pooled"]
    n = len(per_frame["body_found"])
    summary: dict[str, Any] = {
        "frames": n, "body_found_share": round(float(per_frame["body_found"].mean()), 4) if n else None,
        "pck": round(float((pooled <= PCK_THRESHOLD).mean()), 4) if len(pooled) else None,
        "pck_given": _pck_given(per_frame),
        "median_joint_error": round(float(np.median(pooled)), 4) if len(pooled) else None,
        "joints_compared": int(len(pooled)), "pck_threshold": PCK_THRESHOLD, "min_body_joints": MIN_BODY_JOINTS,
        "main_joints": list(MAIN_JOINTS), "units": "body heights (the target's standing height at the pose's depth)",
        "limb_median_error": {}}
    with _quiet():
        for limb in LIMBS:
            values = per_frame[f"error_{limb}"]
            summary["limb_median_error"][limb] = (round(float(np.nanmedian(values)), 4)
                                                  if np.isfinite(values).any() else None)
    if coverage is not None:
        summary["coverage_relation"] = coverage_relation(per_frame, coverage)
    return summary


def _pck_given(per_frame: dict[str, np.ndarray]) -> float | None:
    """The share of all given main joints re-detected within the threshold (pooled over frames)."""
    given = per_frame.get("joints_given")
    if given is None or not given.sum():
        return None
    correct = np.nan_to_num(per_frame["pck_given"]) * given
    return round(float(correct.sum() / given.sum()), 4)


def coverage_relation(per_frame: dict[str, np.ndarray], coverage: dict[str, Any]) -> dict[str, Any]:
    """Do uncovered frames fail? Body-found share and median joint error of covered and uncovered frames,
    and the rank correlation of coverage distance with joint error (a frame without a body ranks worst)."""
    from scipy.stats import spearmanr

    frames = coverage["per_frame"]
    distance = np.array([np.nan if v is None else v for v in frames["distance"]], dtype=float)
    uncovered = np.array(frames["uncovered"], dtype=bool)
    if len(distance) != len(per_frame["body_found"]):
        raise ValueError(f"coverage has {len(distance)} frames, the transfer {len(per_frame['body_found'])}")
    found, error = per_frame["body_found"], per_frame["joint_error"]

    def part(mask: np.ndarray) -> dict[str, Any]:
        e = error[mask & found & np.isfinite(error)]
        return {"frames": int(mask.sum()),
                "body_found_share": round(float(found[mask].mean()), 4) if mask.any() else None,
                "median_joint_error": round(float(np.median(e)), 4) if len(e) else None}

    worst = np.where(found & np.isfinite(error), error, np.inf)
    usable = np.isfinite(distance)
    rho = None
    if usable.sum() >= 3 and np.unique(distance[usable]).size > 1 and np.unique(worst[usable]).size > 1:
        rho = round(float(spearmanr(distance[usable], worst[usable]).statistic), 4)
    return {"covered": part(~uncovered), "uncovered": part(uncovered), "spearman_distance_error": rho}


def redetect(video: Path, size: tuple[int, int], n_frames: int) -> np.ndarray:
    """(frames, 137, 3) keypoints re-detected on each frame of ``video`` (one tracker, as `edn detect`)."""
    import cv2
    from tqdm import tqdm

    from pipeline.pose.detect import HolisticTracker
    from pipeline.pose.keypoints import empty_track

    found = empty_track(n_frames)
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ValueError(f"{video}: cannot open the transfer video")
    count = 0
    try:
        with HolisticTracker(size) as tracker:
            for i in tqdm(range(n_frames), desc=f"re-detect {video.stem}", unit="frame", mininterval=1.0):
                ok, frame = capture.read()
                if not ok:
                    break
                count += 1
                joints = tracker(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                if joints is not None:
                    found[i] = joints
    finally:
        capture.release()
    if count != n_frames:
        raise ValueError(f"{video}: {count} frames decoded, its transfer record says {n_frames}")
    return found


def given_poses(normalized: KeypointTrack, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The poses the generator was given, in the model's frame, and each frame's body height there."""
    from pipeline.gan.data import fit_keypoints
    from pipeline.pose.stats import pose_heights

    width, height = int(normalized.meta["width"]), int(normalized.meta["height"])
    target = (normalized.meta.get("normalize") or {}).get("target") or {}
    missing = [k for k in ("ankle_far", "ankle_near", "height_far", "height_near") if target.get(k) is None]
    if missing:
        raise ValueError(f"normalized keypoints lack the target's {missing} (not written by `edn normalize`?)")
    given = fit_keypoints(normalized.data, width, height, *size)
    heights = pose_heights(normalized.data, target) * (size[1] / height)
    return given, heights


def measure(video: str | Path, generation: dict[str, Any], normalized: str | Path,
            coverage: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any], np.ndarray]:
    """Re-detect ``video`` and compare with ``normalized``: per-frame values, summary, re-detected keypoints."""
    video, track = Path(video), read_keypoints(normalized)
    size = (int(generation["size"][0]), int(generation["size"][1]))
    if int(generation["frames"]) != len(track.frames):
        raise ValueError(f"{normalized}: {len(track.frames)} frames, the transfer of {video} made "
                         f"{generation['frames']}")
    given, heights = given_poses(track, size)
    found = redetect(video, size, len(track.frames))
    per_frame = compare(given, found, heights)
    return per_frame, summarize(per_frame, coverage), found


def _marked_panels(per_frame: dict[str, np.ndarray], uncovered: np.ndarray | None
                   ) -> Iterator[tuple[bool, bool]]:
    for i, found in enumerate(per_frame["body_found"]):
        yield bool(found), bool(uncovered[i]) if uncovered is not None else False


def mark(panel: np.ndarray, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    """A border and a label at the panel's top (BGR, in place)."""
    import cv2

    h, w = panel.shape[:2]
    border = max(2, h // 64)
    cv2.rectangle(panel, (0, 0), (w - 1, h - 1), colour, border)
    cv2.putText(panel, text, (2 * border, h - 3 * border), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, h / 700), colour,
                max(1, h // 256), cv2.LINE_AA)
    return panel


def write_side_by_side(out: Path, video: Path, track: KeypointTrack, render_dir: Path, source_frames: Path,
                       per_frame: dict[str, np.ndarray], uncovered: np.ndarray | None, size: tuple[int, int],
                       fps: float, crf: int) -> None:
    """source | stick figure | generated frame, frames without a body and uncovered poses marked."""
    import cv2

    from pipeline.footage.images import read_image
    from pipeline.footage.video import VideoEncoder, side_by_side
    from pipeline.gan.generate import model_pose
    from pipeline.gan.transfer import _indexed, label_follows, mark_repaired
    from pipeline.pose.normalize import repaired_frames

    poses = _indexed(render_dir, track.frames, "stick-figure")
    sources = _indexed(source_frames, track.frames, "source frame")
    repaired = repaired_frames(track)
    follows = 1 - len(repaired) / len(track.frames)
    capture = cv2.VideoCapture(str(video))
    try:
        with VideoEncoder(out, fps, crf=crf, stage="measure-transfer") as encoder:
            for i, (has_body, new_pose) in enumerate(_marked_panels(per_frame, uncovered)):
                ok, result = capture.read()
                if not ok:
                    raise ValueError(f"{video}: ends at frame {i} of {len(track.frames)}")
                source = read_image(sources[i])
                if source is None:
                    raise ValueError(f"{sources[i]}: cannot read source frame")
                pose = cv2.cvtColor(model_pose(poses[i], size), cv2.COLOR_RGB2BGR)
                if int(track.frames[i]) in repaired:
                    mark_repaired(pose)
                elif new_pose:
                    mark(pose, "pose not in training", (0, 200, 255))
                if repaired:
                    label_follows(pose, follows)
                if not has_body:
                    mark(result, "no body", (0, 0, 255))
                encoder.write(side_by_side(source, pose, result, height=size[1]))
    finally:
        capture.release()


def measure_transfer(video: str | Path, generation_record: str | Path, normalized: str | Path,
                     render_dir: str | Path, source_frames: str | Path, record_out: str | Path, *,
                     coverage: str | Path | None = None, side_by_side_out: str | Path | None = None,
                     per_frame_out: str | Path | None = None, crf: int = 18, audio: bool = True) -> dict[str, Any]:
    """Measure ``video`` (see the module docstring); write the transfer's record (the generation record
    with ``fidelity`` and ``coverage``), the per-frame Parquet and the marked side-by-side video."""
    import json

    import pandas as pd

    from pipeline.gan.transfer import _add_soundtrack
    from pipeline.provenance import atomic_path

    video, normalized = Path(video), Path(normalized)
    generation = json.loads(Path(generation_record).read_text())
    cover = json.loads(Path(coverage).read_text()).get("source") if coverage else None
    if coverage and cover is None:
        raise ValueError(f"{coverage}: no source coverage (made by `edn coverage` without --source?)")
    started = time.perf_counter()
    per_frame, summary, _ = measure(video, generation, normalized, cover)
    seconds = time.perf_counter() - started
    track = read_keypoints(normalized)
    uncovered = np.array(cover["per_frame"]["uncovered"], dtype=bool) if cover else None
    if side_by_side_out:
        size = (int(generation["size"][0]), int(generation["size"][1]))
        write_side_by_side(Path(side_by_side_out), video, track, Path(render_dir), Path(source_frames), per_frame,
                           uncovered, size, float(generation["fps"]), crf)
        if audio and generation.get("audio"):
            _add_soundtrack(Path(source_frames), track.frames, [Path(side_by_side_out)])
    columns = {"frame": track.frames.astype(np.int64),
               **{k: v for k, v in per_frame.items() if not k.startswith("_")}}
    if cover:
        columns["coverage_distance"] = np.array([np.nan if v is None else v for v in cover["per_frame"]["distance"]])
        columns["uncovered"] = uncovered
    if per_frame_out:
        with atomic_path(per_frame_out) as tmp:
            pd.DataFrame(columns).to_parquet(tmp, index=False)
    summary.update(seconds=round(seconds, 3), frames_per_second=round(len(track.frames) / seconds, 3)
                   if seconds > 0 else None)
    record = {**generation, "side_by_side": str(side_by_side_out) if side_by_side_out else None,
              "fidelity": {**summary, "per_frame": {k: (_round(v) if v.dtype.kind == "f" else v.tolist())
                                                   for k, v in columns.items()}},
              "coverage": {k: v for k, v in cover.items() if k != "per_frame"} if cover else None,
              "measure_provenance": provenance("measure-transfer", {
                  "video": str(video), "generation_record": str(generation_record), "normalized": str(normalized),
                  "coverage": str(coverage) if coverage else None, "min_body_joints": MIN_BODY_JOINTS,
                  "pck_threshold": PCK_THRESHOLD})}
    write_json(record_out, record)
    log.info("%s: a body in %.0f%% of %d frames, PCK@%g %s of the joints given (%s of those found), median joint "
             "error %s body heights (%.1f frames/s)", video, 100 * summary["body_found_share"], summary["frames"],
             PCK_THRESHOLD, percent(summary["pck_given"]), percent(summary["pck"]), summary["median_joint_error"],
             summary["frames_per_second"] or 0.0)
    relation = summary.get("coverage_relation")
    if relation:
        log.info("covered frames: %s; uncovered frames: %s; rank correlation of coverage distance and error: %s",
                 relation["covered"], relation["uncovered"], relation["spearman_distance_error"])
    return record


def cli(args: argparse.Namespace) -> int:
    measure_transfer(args.video, args.generation_record, args.normalized, args.render_dir, args.source_frames,
                     args.record, coverage=args.coverage, side_by_side_out=args.side_by_side,
                     per_frame_out=args.per_frame, crf=args.crf, audio=args.audio)
    return 0
