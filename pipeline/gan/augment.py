"""Training-data augmentation of the pose GAN (all off by default; docs/method.md, "Augmentation").

Three settings, each drawn per training sample by a generator seeded from (training seed, epoch,
sample index), so two runs with the same seed see the same samples whatever the data workers:

* **mirror**: the frame, the previous frame and the plate flipped horizontally, and the stick figures
  re-drawn from mirrored keypoints with left and right exchanged (:data:`MIRROR_SWAP`): a mirrored
  left arm is a right arm, and must carry the right arm's colour for the colours to keep their meaning.
* **jitter**: one similarity transform (scale, shift, rotation about the frame's centre) applied to
  both frames of the pair, the plate and the stick figures alike.
* **pose faults**: the detector's faults on the generator's input only (vid2vid's dropped limbs and
  jittered joints): a joint, and what hangs on it, left out, or every joint moved by a few pixels.
  The real frames, the targets, are not touched.
* **new poses** (``lambda_new_pose``): the pair's stick figures drawn once more with limbs turned about
  their joints (:func:`turn_limbs`), a pose the target never made and so has no frame of; the generator's
  frames for it are judged by the discriminator alone (performance cloning's unpaired branch, Aberman et
  al. 2019), so it learns to draw a plausible person for poses outside the footage. With ``lambda_mismatch``
  the discriminator also learns the real frames shown with the new pose's figures as fakes (a frame that
  does not match its figure), so its verdict checks the pose, not only the person. With
  ``lambda_new_pose_plate`` the sample also carries where the new pose's body cannot be (outside
  :func:`pipeline.pose.body_region.body_mask` of the turned keypoints): there a frame shows the background plate,
  as a real frame does, so the new pose's frames get that pixel loss too.

Stick figures are re-drawn, never warped: a re-drawn figure keeps the line widths every stored
stick figure has (a figure scaled by 5 % by an image warp would have lines 5 % thicker, which no
transfer input shows) and the left/right colours can only be exchanged on keypoints. They are drawn
exactly as ``edn render`` drew the stored ones (:func:`pipeline.pose.render.render_frame` at the
stick-figure folder's size, then :func:`pipeline.gan.data.fit_to_size`), so an untransformed re-draw
is byte-identical to the stored image (tests/test_augment.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.pose.keypoints import BODY_25_LIMBS, FACE, LEFT_HAND, MIRROR_SWAP, RIGHT_HAND, J, present

# A joint dropped by a pose fault is the far end of a BODY_25 limb; with a wrist go its hand's 21 points
# (a detector finds a hand from its wrist), with the nose the face, eyes and ears hang on their own limbs.
DROPPABLE = tuple(sorted({b for _, b in BODY_25_LIMBS}))
HANGS_ON = {J["LWrist"]: LEFT_HAND, J["RWrist"]: RIGHT_HAND}
# Draws per sample, in a fixed order, so switching one setting never changes another's draws.
_GEOMETRY_DRAWS = 5  # mirror, scale, shift x, shift y, rotation
# The new pose's draws come from a stream of their own (a fourth seed word), so turning them on changes no
# other draw of a sample.
_NEW_POSE_STREAM = 1


def _joints(*names: str) -> list[int]:
    return [J[n] for n in names]


_HAND = {"R": list(range(RIGHT_HAND.start, RIGHT_HAND.stop)), "L": list(range(LEFT_HAND.start, LEFT_HAND.stop))}
_FOOT = {s: _joints(f"{s}BigToe", f"{s}SmallToe", f"{s}Heel") for s in "RL"}
# The segments a new pose turns, distal first (a turn of a thigh then carries the shank already turned):
# (pivot joint, the joints that move with the segment, the largest turn in degrees). The largest turn is
# half the joint's normal range of motion (AAOS; Norkin and White): flexion of the elbow 150 and knee 135
# degrees, of the shoulder 180; the hip's abduction (45) and the trunk's lateral bend (35) whole, since those
# move the limb sideways in a frontal camera's picture, where flexion turns it towards the camera.
LIMB_TURNS: tuple[tuple[int, list[int], float], ...] = tuple(
    [(J[f"{s}Knee"], [J[f"{s}Ankle"]] + _FOOT[s], 67.5) for s in "RL"]
    + [(J[f"{s}Hip"], [J[f"{s}Knee"], J[f"{s}Ankle"]] + _FOOT[s], 45.0) for s in "RL"]
    + [(J[f"{s}Elbow"], [J[f"{s}Wrist"]] + _HAND[s], 75.0) for s in "RL"]
    + [(J[f"{s}Shoulder"], [J[f"{s}Elbow"], J[f"{s}Wrist"]] + _HAND[s], 90.0) for s in "RL"]
    + [(J["MidHip"], _joints("Neck", "Nose", "REye", "LEye", "REar", "LEar", "RShoulder", "LShoulder", "RElbow",
                             "LElbow", "RWrist", "LWrist") + list(range(FACE.start, FACE.stop))
        + _HAND["R"] + _HAND["L"], 35.0)])
# Each segment is turned with this probability: on average half the body keeps the target's own pose.
TURN_PROBABILITY = 0.5


@dataclass(frozen=True)
class Augmentation:
    """The augmentation settings of a training run (:class:`pipeline.gan.train.TrainConfig`'s fields of the
    same names); all zero: no augmentation, the dataset's samples exactly as without it."""

    mirror: float = 0.0  # probability that a sample is mirrored
    jitter_scale: float = 0.0  # the scale is drawn from 1 +- this
    jitter_shift: float = 0.0  # the shift, from +- this share of the frame's width (x) and height (y)
    jitter_rotation: float = 0.0  # the rotation, from +- this many degrees
    pose_drop: float = 0.0  # probability that a stick figure loses one joint (and what hangs on it)
    pose_noise: float = 0.0  # each joint moved by a normal draw of this standard deviation, a share of the height
    lambda_new_pose: float = 0.0  # > 0: each sample also carries its stick figures with limbs turned (a new pose)
    lambda_mismatch: float = 0.0  # > 0: the same new pose, for the discriminator to see beside the real frames
    lambda_new_pose_plate: float = 0.0  # > 0: the new pose also marks where its body cannot be (the plate's pixels)
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [f"{k}={getattr(self, k)}" for k in ("mirror", "pose_drop") if not 0 <= getattr(self, k) <= 1]
        bad += [f"{k}={getattr(self, k)}" for k in ("jitter_scale", "jitter_shift", "pose_noise")
                if not 0 <= getattr(self, k) < 1]
        bad += [f"jitter_rotation={self.jitter_rotation}"] if not 0 <= self.jitter_rotation <= 180 else []
        if bad:
            raise ValueError(f"invalid augmentation settings: {', '.join(bad)} (probabilities mirror and pose_drop "
                             "in [0, 1]; jitter_scale, jitter_shift and pose_noise in [0, 1); jitter_rotation "
                             "0-180 degrees)")

    @classmethod
    def of(cls, cfg: Any) -> "Augmentation":
        """The settings of a training config (any object with the fields, and ``seed``)."""
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        return any(getattr(self, k) > 0 for k in self.__dataclass_fields__ if k != "seed")

    @property
    def new_poses(self) -> bool:
        """Whether samples carry new-pose stick figures (for the generator, the discriminator or both)."""
        return self.lambda_new_pose > 0 or self.lambda_mismatch > 0

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The sample's own generator: a function of (seed, epoch, index) alone, so no two samples, epochs
        or data workers share draws, and a resumed or repeated run draws the same."""
        return np.random.default_rng([self.seed, epoch, index])

    def new_pose_turns(self, epoch: int, index: int) -> np.ndarray:
        """The sample's new-pose turn of each :data:`LIMB_TURNS` segment, radians (0: not turned); one draw for
        both frames of the pair, so the new pose moves as the target's own did."""
        rng = np.random.default_rng([self.seed, epoch, index, _NEW_POSE_STREAM])
        turned = rng.random(len(LIMB_TURNS)) < TURN_PROBABILITY
        largest = np.radians([t for _, _, t in LIMB_TURNS])
        return np.where(turned, largest * (2 * rng.random(len(LIMB_TURNS)) - 1), 0.0)


@dataclass(frozen=True)
class SampleDraw:
    """What one training sample got: a 2x3 similarity (model pixels), whether it is mirrored, and the
    generator that draws its pose faults next."""

    matrix: np.ndarray
    mirrored: bool
    rng: np.random.Generator

    @property
    def identity(self) -> bool:
        return bool(np.array_equal(self.matrix, np.eye(2, 3)))


def draw_sample(aug: Augmentation, epoch: int, index: int, width: int, height: int) -> SampleDraw:
    """The sample's transform: mirror about the vertical centre line, then scale and rotate about the
    frame's centre, then shift. Pixel centres are integer coordinates (cv2's): a mirror maps x to W - 1 - x."""
    rng = aug.rng(epoch, index)
    u = rng.random(_GEOMETRY_DRAWS)
    mirrored = bool(u[0] < aug.mirror)
    scale = 1.0 + aug.jitter_scale * (2 * u[1] - 1)
    shift = aug.jitter_shift * (2 * u[2:4] - 1) * (width, height)
    angle = math.radians(aug.jitter_rotation * (2 * u[4] - 1))
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    if mirrored:
        linear = linear @ np.diag([-1.0, 1.0])
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    offset = centre + shift - linear @ centre
    matrix = np.hstack([linear, offset[:, None]])
    if not (aug.jitter_scale or aug.jitter_shift or aug.jitter_rotation):
        matrix = np.round(matrix)  # a pure mirror or the identity: exact, so images are flipped or kept as they are
    return SampleDraw(matrix, mirrored, rng)


def transform_image(image: np.ndarray, draw: SampleDraw, *, nearest: bool = False) -> np.ndarray:
    """An (H, W[, C]) image at the model size under the sample's transform. Pixels brought in from
    outside the frame repeat its border (frame and plate alike, so they agree there): neither black bars
    nor a reflected person that a transfer never shows."""
    import cv2

    if draw.identity:
        return image
    height, width = image.shape[:2]
    if np.array_equal(draw.matrix, [[-1, 0, width - 1], [0, 1, 0]]):
        return np.ascontiguousarray(image[:, ::-1])
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.warpAffine(image, draw.matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(image.shape)


def transform_keypoints(keypoints: np.ndarray, draw: SampleDraw) -> np.ndarray:
    """(137, 3) keypoints in model pixels under the sample's transform, relabelled when mirrored."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    xy = out[:, :2].astype(np.float64)
    out[:, :2] = xy @ draw.matrix[:, :2].T + draw.matrix[:, 2]
    return out[MIRROR_SWAP] if draw.mirrored else out


def pose_faults(keypoints: np.ndarray, aug: Augmentation, rng: np.random.Generator, height: int) -> np.ndarray:
    """A copy of (137, 3) keypoints (model pixels) with the detector's faults: with probability
    ``pose_drop`` one present joint that ends a limb is lost, with what hangs on it; with ``pose_noise``
    every present joint moves by a normal draw of ``pose_noise * height`` pixels."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    drop, pick = rng.random(2)
    noise = rng.standard_normal((len(out), 2))
    ok = present(out)
    if drop < aug.pose_drop:
        candidates = [j for j in DROPPABLE if ok[j]]
        if candidates:
            joint = candidates[min(int(pick * len(candidates)), len(candidates) - 1)]
            lost = [joint] + list(range(HANGS_ON[joint].start, HANGS_ON[joint].stop)) if joint in HANGS_ON \
                else [joint]
            out[lost, :2], out[lost, 2] = np.nan, 0.0
            ok = present(out)
    if aug.pose_noise > 0:
        out[ok, :2] += (aug.pose_noise * height * noise[ok]).astype(np.float32)
    return out


def turn_limbs(keypoints: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """A copy of (137, 3) keypoints with each :data:`LIMB_TURNS` segment turned by ``turns`` (radians, image
    plane, positive clockwise on screen) about its pivot, distal segments first; a segment whose pivot is
    missing stays as it is, missing joints stay missing."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    xy = out[:, :2].astype(np.float64)
    for (pivot, moving, _), angle in zip(LIMB_TURNS, turns):
        if angle == 0 or not np.isfinite(xy[pivot]).all():
            continue
        c, s = math.cos(angle), math.sin(angle)
        d = xy[moving] - xy[pivot]
        xy[moving] = xy[pivot] + d @ np.array([[c, s], [-s, c]])
    out[:, :2] = xy.astype(np.float32)
    return out
