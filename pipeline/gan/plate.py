"""Background plate of a target clip: the per-pixel temporal median with the person masked out.

The paper's targets are filmed on a tripod, so the background is static; a plate estimated from
the clip lets a generator draw only the person. The person's region in each frame is the box
around its present keypoints, dilated by a margin of the body's height. A dancer who keeps to
one spot covers the pixels behind them in every frame's box, although limbs and torso leave
most of that box free now and then; those pixels take the median over the frames in which a
body-shaped mask (:func:`pipeline.pose.body_region.body_mask`: limbs, torso, head, hands and feet at
anthropometric widths) leaves them free, where that happens in at least :data:`MIN_BODY_SEEN` frames.
Only what neither mask ever uncovers is filled by inpainting, and its share is recorded; plate.png's
alpha channel marks it (0: inpainted, a guess; 255: seen), so training can treat it as unknown.

With ``holdout`` the plate is estimated from the frames training uses only (the clip's first
``1 - holdout``, :func:`pipeline.gan.data.split_holdout`): the held-out frames' background never
reaches the plate, so evaluating on them measures the generator, not a copy of what they show.

A moving camera breaks the assumption: then frames differ from the plate everywhere, not only
where the person is. :func:`plate_residual` measures that (median absolute difference outside
the person's mask) and :func:`estimate_plate` flags ``moving_camera`` above a threshold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.pose.body_region import BOX_MARGIN, EXTREMITY_RADIUS, HEAD_RADIUS, LIMB_RADIUS, body_heights, body_mask, \
    person_mask

log = logging.getLogger(__name__)

# Median |frame - plate| (0-255 grey levels) outside the person above which the camera is taken
# to move: static footage leaves sensor noise and compression (a few levels); a pan of a few
# pixels over textured background gives tens.
MOVING_CAMERA_RESIDUAL = 12.0
# A pixel of the person's box is the person where its colour differs from the plate by more than this
# (grey levels, largest channel): twice the most a static clip's background may differ from its plate
# (sensor noise and compression, MOVING_CAMERA_RESIDUAL), so noise alone is never taken for the person.
FOREGROUND_DIFFERENCE = 2 * MOVING_CAMERA_RESIDUAL
# A pixel only the body-shaped mask uncovers takes the median of at least this many frames: one frame
# whose person reaches past the mask (a skirt, a flying sleeve) then cannot set it.
MIN_BODY_SEEN = 3


def stick_figure_region(pose: Any, margin: float = BOX_MARGIN) -> Any:
    """Float (N, 1, H, W) masks of the person's box in a batch of stick figures (N, 3, H, W) in [-1, 1]:
    the box around the drawn (not black) pixels, dilated by ``margin`` of its larger side as
    :func:`person_mask` does with keypoints; all zero for a blank figure."""
    import torch

    drawn = (pose > -0.9).any(dim=1)  # (N, H, W)
    n, height, width = drawn.shape
    region = torch.zeros(n, 1, height, width, device=pose.device)
    for i in range(n):
        rows, cols = drawn[i].any(dim=1).nonzero(), drawn[i].any(dim=0).nonzero()
        if not len(rows):
            continue
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        pad = int(round(margin * max(y1 - y0, x1 - x0, 1)))
        region[i, :, max(0, y0 - pad):y1 + pad + 1, max(0, x0 - pad):x1 + pad + 1] = 1.0
    return region


def foreground_target(real: Any, plate: Any, region: Any, threshold: float = FOREGROUND_DIFFERENCE) -> Any:
    """Float (N, 1, H, W) mask of where frames show the person: 1 inside ``region`` (N, 1, H, W, the
    person's box) where a frame's colour differs from its plate by more than ``threshold`` grey levels
    (largest channel), else 0. ``real``, ``plate``: (N, 3, H, W) in [-1, 1]."""
    differs = (real.float() - plate.float()).abs().amax(dim=1, keepdim=True) > threshold / 127.5
    return differs.float() * region


@dataclass
class Plate:
    """A clip's background plate (RGB uint8) and what its estimate says about the clip."""

    image: np.ndarray
    filled_fraction: float  # share of pixels never seen without the person, inpainted
    residual: float  # median |frame - plate| outside the person, grey levels
    moving_camera: bool
    stats: dict[str, Any] = field(default_factory=dict)
    inpainted: np.ndarray | None = None  # bool (H, W): the pixels never seen without the person
    body_seen: np.ndarray | None = None  # bool (H, W): pixels only the body-shaped mask uncovers


def plate_residual(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], plate: np.ndarray) -> float:
    """Median over frames of the median |frame - plate| (grey levels) outside each frame's person mask."""
    per_frame = []
    ref = plate.astype(np.float32).mean(axis=2)
    for frame, mask in zip(frames, masks):
        diff = np.abs(frame.astype(np.float32).mean(axis=2) - ref)[~mask]
        if diff.size:
            per_frame.append(float(np.median(diff)))
    return float(np.median(per_frame)) if per_frame else 0.0


def _median_outside(values: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Per-pixel median of (frames, ..., 3) float ``values`` over the frames where ``hidden`` (frames, ...)
    is False, NaN where none; ``values`` is overwritten (NaN where hidden): a clip's frames are held once."""
    import warnings

    values[hidden] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: the caller fills them
        return np.nanmedian(values, axis=0)


def estimate_plate(frames: Sequence[np.ndarray], keypoints: np.ndarray, *, fps: float = 30.0,
                   margin: float = BOX_MARGIN, moving_threshold: float = MOVING_CAMERA_RESIDUAL) -> Plate:
    """Plate of RGB uint8 frames (all one size) with their (frames, 137, 3) keypoints in frame pixels
    (``fps``: the clip's frame rate, for the body height's time window)."""
    import cv2

    if len(frames) == 0:
        raise ValueError("no frames to estimate a background plate from")
    if len(frames) != len(keypoints):
        raise ValueError(f"{len(frames)} frames but {len(keypoints)} keypoint frames")
    height, width = frames[0].shape[:2]
    if any(f.shape[:2] != (height, width) for f in frames):
        raise ValueError("frames differ in size; a plate needs one size")
    masks = [person_mask(k, width, height, margin) for k in keypoints]
    hidden = np.stack(masks)
    never_seen = hidden.all(axis=0)
    body_seen = np.zeros_like(never_seen)
    stack = np.stack(frames).astype(np.float32)
    if never_seen.any():  # behind a dancer who keeps to one spot: look between the limbs
        heights = body_heights(keypoints, fps)
        rows, cols = np.nonzero(never_seen)
        bodies = np.stack([body_mask(k, h, width, height)[rows, cols] for k, h in zip(keypoints, heights)])
        usable = (~bodies).sum(axis=0) >= MIN_BODY_SEEN
        body_median = _median_outside(stack[:, rows[usable], cols[usable]], bodies[:, usable])
        body_seen[rows[usable], cols[usable]] = True
    median = _median_outside(stack, hidden)
    if body_seen.any():
        median[body_seen] = body_median
        never_seen &= ~body_seen
    median = np.nan_to_num(median, nan=0.0)
    image = np.clip(np.round(median), 0, 255).astype(np.uint8)
    if never_seen.any():
        image = cv2.inpaint(image, never_seen.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    residual = plate_residual(frames, masks, image)
    mask_share = float(hidden.mean())
    return Plate(image, float(never_seen.mean()), residual, residual > moving_threshold,
                 {"frames": len(frames), "width": width, "height": height, "mean_person_mask_fraction": mask_share,
                  "body_seen_fraction": float(body_seen.mean()), "moving_camera_threshold": moving_threshold,
                  "margin": margin}, inpainted=never_seen, body_seen=body_seen)


def plate_of_clip(frames_dir: Path, keypoints_path: Path, out_dir: Path, *, holdout: float = 0.0,
                  margin: float = BOX_MARGIN, moving_threshold: float = MOVING_CAMERA_RESIDUAL) -> Plate:
    """Estimate a clip's plate from its frames folder and keypoint Parquet; write plate.png + plate.json.
    ``holdout``: leave out the clip's last frames as training holds them out (the same share)."""
    import cv2

    from pipeline.footage.images import write_image
    from pipeline.gan.data import indexed_images, read_rgb, split_holdout
    from pipeline.pose.keypoints import read_keypoints
    from pipeline.pose.quality import track_fps
    from pipeline.provenance import atomic_path, provenance, write_json

    frames_dir, keypoints_path, out_dir = Path(frames_dir), Path(keypoints_path), Path(out_dir)
    images = indexed_images(frames_dir, "frame")
    track = read_keypoints(keypoints_path)
    row = {int(f): i for i, f in enumerate(track.frames)}
    ordered = sorted(images)
    used = [ordered[i] for i in split_holdout(len(ordered), holdout)[0]]
    indices = [i for i in used if i in row]
    if not indices:
        raise ValueError(f"{keypoints_path}: no keypoint frame matches the frames in {frames_dir}"
                         + (f" before its held-out last {holdout:.0%}" if holdout else ""))
    frames = [read_rgb(images[i]) for i in indices]
    kp = track.data[[row[i] for i in indices]].astype(np.float32)
    kp_h = float(track.meta.get("height", frames[0].shape[0]))
    if kp_h != frames[0].shape[0]:  # keypoints in the detector's pixels
        kp[..., :2] *= frames[0].shape[0] / kp_h
    plate = estimate_plate(frames, kp, fps=track_fps(track), margin=margin, moving_threshold=moving_threshold)
    if plate.moving_camera:
        log.warning("=" * 72)
        log.warning("%s: the camera seems to MOVE (plate residual %.1f > %.1f grey levels outside the person); "
                    "a background plate will not fit this clip", frames_dir, plate.residual, moving_threshold)
        log.warning("=" * 72)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen = np.where(plate.inpainted, 0, 255).astype(np.uint8)[..., None]
    with atomic_path(out_dir / "plate.png") as tmp:
        if not write_image(tmp, np.concatenate([cv2.cvtColor(plate.image, cv2.COLOR_RGB2BGR), seen], axis=2)):
            raise RuntimeError(f"{out_dir / 'plate.png'}: cannot write image")
    write_json(out_dir / "plate.json", {
        "provenance": provenance("plate", {"margin": margin, "moving_threshold": moving_threshold, "holdout": holdout,
                                           "limb_radius": LIMB_RADIUS, "head_radius": HEAD_RADIUS,
                                           "extremity_radius": EXTREMITY_RADIUS, "min_body_seen": MIN_BODY_SEEN}),
        "frames_dir": str(frames_dir), "keypoints": str(keypoints_path), "frames_used": [indices[0], indices[-1]],
        "filled_fraction": plate.filled_fraction, "residual": plate.residual, "moving_camera": plate.moving_camera,
        **plate.stats})
    log.info("%s: plate from frames %d-%d; %.1f %% seen only between the limbs, %.1f %% inpainted", out_dir,
             indices[0], indices[-1], 100 * plate.stats["body_seen_fraction"], 100 * plate.filled_fraction)
    return plate


def cli(args: Any) -> int:
    plate_of_clip(args.frames, args.keypoints, args.out, holdout=args.holdout)
    return 0
