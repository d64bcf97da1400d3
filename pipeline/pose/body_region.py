"""The region a person's keypoints outline in a frame: the dilated box of the present keypoints, or a
body-shaped mask (limbs, torso, head, hands and feet at anthropometric widths of the standing height).

Keypoint geometry only: the background plate (:mod:`pipeline.gan.plate`) estimates the background where
these leave the pixels free, and training (:mod:`pipeline.gan.data`) marks where a new pose's body
cannot be.
"""

from __future__ import annotations

import numpy as np

from pipeline.pose.keypoints import BODY, BODY_25_LIMBS, FACE, LEFT_HAND, RIGHT_HAND, J, present

BOX_MARGIN = 0.15  # of the body box's height, on every side
# The body-shaped mask, in shares of standing height H (Drillis & Contini via Winter, docs/pose-qc.md,
# "Anthropometry"). Every limb: the thigh, the widest, is ~0.10 H across; half that plus 0.03 H for
# clothing and joint centres placed off the limb's axis. The head (0.13 H tall) about its centre, with
# hair. A hand (0.108 H long) about its wrist, whichever way it points, when its own keypoints are missing;
# the same about the ankle, whose foot is drawn by its heel and toe limbs.
LIMB_RADIUS = 0.08
HEAD_RADIUS = 0.15
EXTREMITY_RADIUS = 0.12


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


def body_heights(keypoints: np.ndarray, fps: float) -> np.ndarray:
    """Per frame of (frames, 137, 3) keypoints in pixels, the standing height the body's segments imply
    (:func:`pipeline.pose.quality.body_size`); NaN where no frame near it shows two segments."""
    from pipeline.pose.quality import body_size, segment_lengths

    body = keypoints[:, BODY].astype(np.float64)
    xy = np.where(present(body)[..., None], body[..., :2], np.nan)
    return body_size(segment_lengths(xy), fps)


def body_mask(keypoints: np.ndarray, body_height: float, width: int, height: int) -> np.ndarray:
    """Bool (H, W) mask of one frame's person shaped like a body: a band of :data:`LIMB_RADIUS` about each
    BODY_25 limb, the torso's hull, discs about the head and at wrists and ankles, the hands' hulls; all
    sized by ``body_height`` (pixels). Falls back to :func:`person_mask` (the dilated box) when the
    height is unknown."""
    import cv2

    ok = present(keypoints)
    if not ok.any():
        return np.zeros((height, width), dtype=bool)
    if not (np.isfinite(body_height) and body_height > 0):
        return person_mask(keypoints, width, height)
    mask = np.zeros((height, width), dtype=np.uint8)
    point = {j: (int(round(keypoints[j, 0])), int(round(keypoints[j, 1]))) for j in np.flatnonzero(ok)}
    limb = 2 * max(1, int(round(LIMB_RADIUS * body_height))) + 1  # a line's thickness is its width

    def hull(joints: list[int]) -> None:
        corners = np.array([point[j] for j in joints if j in point], dtype=np.int32)
        if len(corners) >= 3:
            outline = cv2.convexHull(corners)
            cv2.fillConvexPoly(mask, outline, 1)
            cv2.polylines(mask, [outline], True, 1, limb)

    for a, b in BODY_25_LIMBS:
        if a in point and b in point:
            cv2.line(mask, point[a], point[b], 1, limb)
    hull([J[n] for n in ("Neck", "RShoulder", "LShoulder", "RHip", "LHip", "MidHip")])
    for part in (LEFT_HAND, RIGHT_HAND):
        hull(list(range(part.start, part.stop)))
    head = [j for j in [J[n] for n in ("Nose", "REye", "LEye", "REar", "LEar")] + list(range(FACE.start, FACE.stop))
            if j in point]
    if head:
        centre = np.mean([point[j] for j in head], axis=0)
        cv2.circle(mask, (int(round(centre[0])), int(round(centre[1]))),
                   max(1, int(round(HEAD_RADIUS * body_height))), 1, -1)
    for name in ("RWrist", "LWrist", "RAnkle", "LAnkle"):
        if J[name] in point:
            cv2.circle(mask, point[J[name]], max(1, int(round(EXTREMITY_RADIUS * body_height))), 1, -1)
    return mask.astype(bool)
