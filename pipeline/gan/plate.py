"""Background plate of a target clip: the per-pixel temporal median with the person masked out.

The paper's targets are filmed on a tripod, so the background is static; a plate estimated from
the clip lets a generator draw only the person. The person's region in each frame is the box
around its present keypoints, dilated by a margin of the body's height. Pixels covered by the
person in every frame are filled by inpainting, and their share is recorded; plate.png's alpha
channel marks them (0: inpainted, a guess; 255: seen), so training can treat them as unknown.

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

from pipeline.pose.keypoints import present

log = logging.getLogger(__name__)

# Median |frame - plate| (0-255 grey levels) outside the person above which the camera is taken
# to move: static footage leaves sensor noise and compression (a few levels); a pan of a few
# pixels over textured background gives tens.
MOVING_CAMERA_RESIDUAL = 12.0
BOX_MARGIN = 0.15  # of the body box's height, on every side
# A pixel of the person's box is the person where its colour differs from the plate by more than this
# (grey levels, largest channel): twice the most a static clip's background may differ from its plate
# (sensor noise and compression, MOVING_CAMERA_RESIDUAL), so noise alone is never taken for the person.
FOREGROUND_DIFFERENCE = 2 * MOVING_CAMERA_RESIDUAL


def person_mask(keypoints: np.ndarray, width: int, height: int, margin: float = BOX_MARGIN) -> np.ndarray:
    """Bool (H, W) mask of one frame's person: the dilated box of its present (137, 3) keypoints."""
    mask = np.zeros((height, width), dtype=bool)
    ok = present(keypoints)
    if not ok.any():
        return mask
    xy = keypoints[ok, :2]
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    pad = margin * max(y1 - y0, x1 - x0, 1.0)
    xa, xb = int(max(0, np.floor(x0 - pad))), int(min(width, np.ceil(x1 + pad) + 1))
    ya, yb = int(max(0, np.floor(y0 - pad))), int(min(height, np.ceil(y1 + pad) + 1))
    mask[ya:yb, xa:xb] = True
    return mask


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


def plate_residual(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], plate: np.ndarray) -> float:
    """Median over frames of the median |frame - plate| (grey levels) outside each frame's person mask."""
    per_frame = []
    ref = plate.astype(np.float32).mean(axis=2)
    for frame, mask in zip(frames, masks):
        diff = np.abs(frame.astype(np.float32).mean(axis=2) - ref)[~mask]
        if diff.size:
            per_frame.append(float(np.median(diff)))
    return float(np.median(per_frame)) if per_frame else 0.0


def estimate_plate(frames: Sequence[np.ndarray], keypoints: np.ndarray, *,
                   margin: float = BOX_MARGIN, moving_threshold: float = MOVING_CAMERA_RESIDUAL) -> Plate:
    """Plate of RGB uint8 frames (all one size) with their (frames, 137, 3) keypoints in frame pixels."""
    import cv2

    if len(frames) == 0:
        raise ValueError("no frames to estimate a background plate from")
    if len(frames) != len(keypoints):
        raise ValueError(f"{len(frames)} frames but {len(keypoints)} keypoint frames")
    height, width = frames[0].shape[:2]
    if any(f.shape[:2] != (height, width) for f in frames):
        raise ValueError("frames differ in size; a plate needs one size")
    masks = [person_mask(k, width, height, margin) for k in keypoints]
    stack = np.stack(frames).astype(np.float32)
    hidden = np.stack(masks)
    stack[hidden] = np.nan
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: filled below
            median = np.nanmedian(stack, axis=0)
    never_seen = np.isnan(median).any(axis=2)
    median = np.nan_to_num(median, nan=0.0)
    image = np.clip(np.round(median), 0, 255).astype(np.uint8)
    if never_seen.any():
        image = cv2.inpaint(image, never_seen.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    residual = plate_residual(frames, masks, image)
    mask_share = float(hidden.mean())
    return Plate(image, float(never_seen.mean()), residual, residual > moving_threshold,
                 {"frames": len(frames), "width": width, "height": height, "mean_person_mask_fraction": mask_share,
                  "moving_camera_threshold": moving_threshold, "margin": margin}, inpainted=never_seen)


def plate_of_clip(frames_dir: Path, keypoints_path: Path, out_dir: Path, *,
                  margin: float = BOX_MARGIN, moving_threshold: float = MOVING_CAMERA_RESIDUAL) -> Plate:
    """Estimate a clip's plate from its frames folder and keypoint Parquet; write plate.png + plate.json."""
    import cv2

    from pipeline.footage.images import write_image
    from pipeline.gan.data import indexed_images, read_rgb
    from pipeline.pose.keypoints import read_keypoints
    from pipeline.provenance import atomic_path, provenance, write_json

    frames_dir, keypoints_path, out_dir = Path(frames_dir), Path(keypoints_path), Path(out_dir)
    images = indexed_images(frames_dir, "frame")
    track = read_keypoints(keypoints_path)
    row = {int(f): i for i, f in enumerate(track.frames)}
    indices = [i for i in sorted(images) if i in row]
    if not indices:
        raise ValueError(f"{keypoints_path}: no keypoint frame matches the frames in {frames_dir}")
    frames = [read_rgb(images[i]) for i in indices]
    kp = track.data[[row[i] for i in indices]].astype(np.float32)
    kp_h = float(track.meta.get("height", frames[0].shape[0]))
    if kp_h != frames[0].shape[0]:  # keypoints in the detector's pixels
        kp[..., :2] *= frames[0].shape[0] / kp_h
    plate = estimate_plate(frames, kp, margin=margin, moving_threshold=moving_threshold)
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
        "provenance": provenance("plate", {"margin": margin, "moving_threshold": moving_threshold}),
        "frames": str(frames_dir), "keypoints": str(keypoints_path), "filled_fraction": plate.filled_fraction,
        "residual": plate.residual, "moving_camera": plate.moving_camera, **plate.stats})
    return plate


def cli(args: Any) -> int:
    plate_of_clip(args.frames, args.keypoints, args.out)
    return 0
