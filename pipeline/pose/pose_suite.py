"""A synthetic pose suite for pose QC: 3-D bodies that turn, crouch, lie, cartwheel, jump and walk.

Pose QC is checked on footage nobody here has seen, so its thresholds are derived from geometry
and anthropometry and checked here, not on the demo clips. Bodies of several shapes (segment
lengths from ``docs/pose-qc.md`` ("Anthropometry"), varied per shape) move through motions a
dancer makes, in 3-D; a pinhole camera at several distances projects them to BODY_25 keypoints
(with detection noise). QC must flag none of these frames. The same sequences with faults a
detector makes (a limb drawn twice its length, a wrist teleported, two skeletons mixed, the legs
swapped left for right, one frame of another person) must be flagged in those frames and only
those; a body labelled left for right for a few frames (the detector's front/back confusion)
must be relabelled, not flagged. ``python -m pipeline.pose.pose_suite`` prints the table in the
README (precision and recall).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pipeline.pose.keypoints import BODY, J, N_BODY, KeypointTrack, empty_track

# Segment lengths as shares of standing height (anthropometry.md).
SHARES = {"torso": 0.288, "shoulder": 0.259, "hip": 0.191, "upper_arm": 0.186, "forearm": 0.146,
          "thigh": 0.245, "shank": 0.246}


@dataclass(frozen=True)
class Body:
    """A body shape: standing height in metres and multipliers of the standard segment shares."""

    name: str
    height: float
    scale: dict[str, float] = field(default_factory=dict)
    head: float = 1.0

    def length(self, segment: str) -> float:
        return SHARES[segment] * self.scale.get(segment, 1.0) * self.height


# Individuals vary by ~+-10 % per segment (anthropometry.md); a child's head is ~1.3x an adult's share.
BODIES = (
    Body("standard", 1.75),
    Body("long-legged", 1.85, {"thigh": 1.08, "shank": 1.08, "torso": 0.94}),
    Body("broad", 1.70, {"shoulder": 1.15, "hip": 1.2, "upper_arm": 0.95, "forearm": 0.95}),
    Body("child", 1.20, {"thigh": 0.9, "shank": 0.9, "torso": 1.05, "shoulder": 0.95}, head=1.3),
)


@dataclass
class Pose:
    """Angles of one frame (radians). A limb direction is (elevation from straight down, azimuth:
    0 sideways outwards, +pi/2 forwards, -pi/2 backwards); the forearm and shank have their own."""

    arms: tuple[tuple[float, float, float, float], tuple[float, float, float, float]] = ((0.15, 0, 0.15, 0),) * 2
    legs: tuple[tuple[float, float, float, float], tuple[float, float, float, float]] = ((0.05, 0, 0.05, 0),) * 2
    bend: float = 0.0        # the torso bent forwards at the hips
    yaw: float = 0.0         # about the vertical: 0 faces the camera
    pitch: float = 0.0       # the whole body about its left-right axis: -pi/2 lies on its back
    roll: float = 0.0        # the whole body about the camera's axis: a cartwheel
    x: float = 0.0           # metres right of the camera's axis
    distance: float = 4.0    # metres from the camera
    lift: float = 0.0        # metres above the floor (a jump)


def _direction(elevation: float, azimuth: float, side: int) -> np.ndarray:
    """Unit vector in the body frame (x: the body's left, y: up, z: forwards); side -1 right, +1 left."""
    return np.array([side * math.sin(elevation) * math.cos(azimuth), -math.cos(elevation),
                     math.sin(elevation) * math.sin(azimuth)])


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def skeleton(body: Body, pose: Pose, camera_height: float = 1.3) -> np.ndarray:
    """(25, 3) BODY_25 joints in camera coordinates (metres; x right, y up, z away from the camera)."""
    h = body.height
    p = np.zeros((N_BODY, 3))
    bend = _rotation("x", -pose.bend)  # forwards is +z: a bend tips the torso's up vector towards +z
    p[J["MidHip"]] = 0
    p[J["Neck"]] = bend @ np.array([0, body.length("torso"), 0])
    for side, name in ((-1, "R"), (1, "L")):
        p[J[f"{name}Shoulder"]] = p[J["Neck"]] + bend @ np.array([side * body.length("shoulder") / 2, 0, 0])
        p[J[f"{name}Hip"]] = np.array([side * body.length("hip") / 2, 0, 0])
        upper, fore = pose.arms[0 if side < 0 else 1][:2], pose.arms[0 if side < 0 else 1][2:]
        p[J[f"{name}Elbow"]] = p[J[f"{name}Shoulder"]] + bend @ _direction(*upper, side) * body.length("upper_arm")
        p[J[f"{name}Wrist"]] = p[J[f"{name}Elbow"]] + bend @ _direction(*fore, side) * body.length("forearm")
        thigh, shank = pose.legs[0 if side < 0 else 1][:2], pose.legs[0 if side < 0 else 1][2:]
        p[J[f"{name}Knee"]] = p[J[f"{name}Hip"]] + _direction(*thigh, side) * body.length("thigh")
        ankle = p[J[f"{name}Ankle"]] = p[J[f"{name}Knee"]] + _direction(*shank, side) * body.length("shank")
        p[J[f"{name}Heel"]] = ankle + np.array([0, -0.035, -0.04]) * h
        p[J[f"{name}BigToe"]] = ankle + np.array([-side * 0.01, -0.039, 0.11]) * h
        p[J[f"{name}SmallToe"]] = ankle + np.array([side * 0.025, -0.039, 0.08]) * h
    head = body.head * h
    p[J["Nose"]] = p[J["Neck"]] + bend @ np.array([0, 0.085, 0.06]) * head
    for side, name in ((-1, "R"), (1, "L")):
        p[J[f"{name}Eye"]] = p[J["Nose"]] + bend @ np.array([side * 0.03, 0.03, -0.015]) * head
        p[J[f"{name}Ear"]] = p[J["Nose"]] + bend @ np.array([side * 0.07, 0.015, -0.07]) * head
    # Facing the camera means the body's forwards (+z) points at it (-z); then yaw, pitch, roll.
    world = _rotation("z", pose.roll) @ _rotation("y", math.pi + pose.yaw) @ _rotation("x", pose.pitch)
    p = p @ world.T
    p[:, 0] *= -1  # the body frame is right-handed, the camera's (x right, y up, z away) is not
    p[:, 1] += -camera_height - p[:, 1].min() + pose.lift  # the lowest joint on the floor (or lifted)
    p[:, 0] += pose.x
    p[:, 2] += pose.distance
    return p


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: frame size in pixels and vertical field of view."""

    width: int = 1080
    height: int = 1920
    fov_deg: float = 60.0

    @property
    def focal(self) -> float:
        return self.height / 2 / math.tan(math.radians(self.fov_deg) / 2)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) camera coordinates -> (..., 2) pixels (y down)."""
        f = self.focal
        return np.stack([f * points[..., 0] / points[..., 2] + self.width / 2,
                         -f * points[..., 1] / points[..., 2] + self.height / 2], axis=-1)


# ------------------------------------------------------------------------------------- motions

def _smooth(t: np.ndarray) -> np.ndarray:
    """0 -> 1 -> 0 over t in [0, 1], smoothly."""
    return np.sin(np.pi * np.clip(t, 0, 1)) ** 2


def _turn(n: int, arms: tuple[float, float, float, float]) -> Callable[[int, float], Pose]:
    return lambda i, d: Pose(arms=(arms, arms), yaw=2 * math.pi * i / n, distance=d)


def _arms_up(n: int) -> Callable[[int, float], Pose]:
    def pose(i: int, d: float) -> Pose:
        a = 0.1 + (math.pi - 0.2) * float(_smooth(np.array(i / n)))
        return Pose(arms=((a, 0.3, a, 0.3),) * 2, yaw=0.5 * math.sin(2 * math.pi * i / n), distance=d)
    return pose


def _crouch(n: int) -> Callable[[int, float], Pose]:
    def pose(i: int, d: float) -> Pose:
        k = float(_smooth(np.array(i / n)))
        leg = (1.7 * k, math.pi / 2, 0.05 + 0.8 * k, -math.pi / 2)
        arm = (1.4 * k + 0.1, math.pi / 2, 1.4 * k + 0.1, math.pi / 2)
        return Pose(arms=(arm, arm), legs=(leg, leg), bend=0.7 * k, yaw=math.pi * i / n, distance=d)
    return pose


def _lying(n: int) -> Callable[[int, float], Pose]:
    def pose(i: int, d: float) -> Pose:
        a = 0.3 + 1.2 * float(_smooth(np.array(2 * i / n % 1)))
        return Pose(arms=((a, 0, a, 0), (a, 0, a, 0)), legs=((0.2, 0, 0.2, 0), (0.3, 0, 0.3, 0)),
                    pitch=-math.pi / 2, yaw=math.pi * i / n, distance=d)
    return pose


def _cartwheel(n: int) -> Callable[[int, float], Pose]:
    star_arm, star_leg = (2.5, 0, 2.5, 0), (0.5, 0, 0.5, 0)
    return lambda i, d: Pose(arms=(star_arm, star_arm), legs=(star_leg, star_leg), roll=2 * math.pi * i / n,
                             x=-1.0 + 2.0 * i / n, distance=d)


def _jump(n: int) -> Callable[[int, float], Pose]:
    def pose(i: int, d: float) -> Pose:
        t = i / n
        air = float(_smooth(np.array((t - 0.3) / 0.4)))  # in the air for the middle 40 %
        crouch = float(_smooth(np.array(t / 0.3)) + _smooth(np.array((t - 0.7) / 0.3))) * 0.8
        arm = 0.2 + 2.6 * air
        leg = (crouch, math.pi / 2, 0.05 + crouch, -math.pi / 2)
        return Pose(arms=((arm, 0.5, arm, 0.5),) * 2, legs=(leg, leg), bend=0.4 * crouch, lift=0.45 * air,
                    distance=d, yaw=0.6)
    return pose


def _walk(n: int, fps: float, towards: bool) -> Callable[[int, float], Pose]:
    def pose(i: int, d: float) -> Pose:
        phase = 2 * math.pi * 0.9 * i / fps  # 0.9 strides a second, 1.4 m/s
        swing = 0.4 * math.sin(phase)
        legs = tuple((abs(s), math.copysign(math.pi / 2, s), abs(s) + 0.25 * (1 + math.cos(phase + k)),
                      -math.pi / 2 if s < 0 else math.pi / 2) for k, s in ((0, swing), (math.pi, -swing)))
        arms = tuple((abs(s) + 0.1, math.copysign(math.pi / 2, s), abs(s) + 0.3, math.pi / 2)
                     for s in (-0.6 * swing, 0.6 * swing))
        travelled = 1.4 * i / fps
        return Pose(arms=arms, legs=legs, yaw=0.0 if towards else math.pi,
                    distance=(d + 5.0 - travelled) if towards else (d + travelled))
    return pose


def _spin(fps: float) -> Callable[[int, float], Pose]:
    passe = (1.2, 0.3, 1.9, -math.pi / 2)  # one leg raised, its foot at the other knee
    rounded = (1.3, 1.0, 1.9, 1.4)
    return lambda i, d: Pose(arms=(rounded, rounded), legs=((0.02, 0, 0.02, 0), passe),
                             yaw=2 * math.pi * 2.0 * i / fps, distance=d)  # two turns a second


def _punches(fps: float) -> Callable[[int, float], Pose]:
    def pose(i: int, d: float) -> Pose:
        t = i / fps
        k = float(_smooth(np.array((t % 0.5) / 0.25)))  # a jab out and back in 0.25 s, twice a second
        jab = (0.3 + 1.3 * k, math.pi / 2, 0.3 + 1.6 * k, math.pi / 2)
        guard = (0.4, math.pi / 2, 2.6, math.pi / 2)
        return Pose(arms=(jab, guard), yaw=math.pi / 2, distance=d)
    return pose


@dataclass(frozen=True)
class Motion:
    name: str
    frames: int
    fps: float
    make: Callable[[int, float], Pose]
    distances: tuple[float, ...] = (3.5, 7.0)


def motions() -> tuple[Motion, ...]:
    relaxed, t_pose = (0.15, 0.0, 0.15, 0.0), (math.pi / 2, 0.0, math.pi / 2, 0.0)
    return (
        Motion("turn 360", 90, 30.0, _turn(90, relaxed)),
        Motion("T-pose turn 360", 90, 30.0, _turn(90, t_pose)),
        Motion("arms up", 60, 30.0, _arms_up(60)),
        Motion("crouch while turning", 90, 30.0, _crouch(90)),
        Motion("lying, turning on the floor", 90, 30.0, _lying(90)),
        Motion("cartwheel", 45, 30.0, _cartwheel(45), distances=(4.0, 7.0)),
        Motion("jump", 45, 30.0, _jump(45)),
        Motion("walk towards the camera", 100, 30.0, _walk(100, 30.0, True), distances=(2.5,)),
        Motion("walk away", 100, 30.0, _walk(100, 30.0, False), distances=(2.5,)),
        Motion("spin, 2 turns/s", 60, 30.0, _spin(30.0)),
        Motion("jabs", 60, 30.0, _punches(30.0)),
        Motion("spin at 60 fps", 120, 60.0, _spin(60.0)),
        Motion("walk towards at 60 fps", 200, 60.0, _walk(200, 60.0, True), distances=(2.5,)),
        Motion("jabs at 24 fps", 48, 24.0, _punches(24.0)),
    )


NOISE = 0.004  # detection noise per coordinate, in body heights (MediaPipe on sharp frames: ~0.5 %)


def project_sequence(body: Body, motion: Motion, distance: float, camera: Camera = Camera(),
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 25, 2) pixels with detection noise, and (frames, 25, 3) camera coordinates."""
    rng = np.random.default_rng(seed)
    points = np.stack([skeleton(body, motion.make(i, distance)) for i in range(motion.frames)])
    pixels = camera.project(points)
    size = body.height * camera.focal / points[:, J["MidHip"], 2]  # the body's height in pixels
    return pixels + rng.normal(0, NOISE, pixels.shape) * size[:, None, None], points


def as_track(pixels: np.ndarray, fps: float, camera: Camera = Camera()) -> KeypointTrack:
    data = empty_track(len(pixels))
    data[:, BODY, :2] = pixels
    data[:, BODY, 2] = 0.9
    return KeypointTrack(data, np.arange(len(pixels)), {"width": camera.width, "height": camera.height, "fps": fps,
                                                        "provenance": {"stage": "pose_suite"}})


# --------------------------------------------------------------------------------------- faults

LIMBS = {"RForearm": ("RElbow", "RWrist"), "LForearm": ("LElbow", "LWrist"), "RUpperArm": ("RShoulder", "RElbow"),
         "LUpperArm": ("LShoulder", "LElbow"), "RThigh": ("RHip", "RKnee"), "LThigh": ("LHip", "LKnee"),
         "RShank": ("RKnee", "RAnkle"), "LShank": ("LKnee", "LAnkle")}
DOWNSTREAM = {"RElbow": ("RElbow", "RWrist"), "LElbow": ("LElbow", "LWrist"), "RWrist": ("RWrist",),
              "LWrist": ("LWrist",), "RKnee": ("RKnee", "RAnkle", "RHeel", "RBigToe", "RSmallToe"),
              "LKnee": ("LKnee", "LAnkle", "LHeel", "LBigToe", "LSmallToe"),
              "RAnkle": ("RAnkle", "RHeel", "RBigToe", "RSmallToe"), "LAnkle": ("LAnkle", "LHeel", "LBigToe", "LSmallToe")}
LEG = ("Knee", "Ankle", "Heel", "BigToe", "SmallToe")
LEG_JOINTS = ("MidHip", "RHip", "LHip") + tuple(s + j for s in "RL" for j in LEG)


def _limb_twice(pixels: np.ndarray, points: np.ndarray, t: int, body: Body, camera: Camera,
                rng: np.random.Generator) -> bool:
    """A limb drawn twice its length, chosen among those that show >= 0.75 of their length (a
    foreshortened limb drawn twice its 2-D length can be a correct detection of a turned limb)."""
    shown = []
    for name, (a, b) in LIMBS.items():
        full = np.linalg.norm(points[t, J[b]] - points[t, J[a]]) * camera.focal / points[t, J[a], 2]
        if np.linalg.norm(pixels[t, J[b]] - pixels[t, J[a]]) >= 0.75 * full:
            shown.append(name)
    if not shown:
        return False
    a, b = LIMBS[shown[rng.integers(len(shown))]]
    offset = pixels[t, J[b]] - pixels[t, J[a]]
    for joint in DOWNSTREAM[b]:
        pixels[t, J[joint]] += offset
    return True


def _teleport(pixels: np.ndarray, t: int, size: float, rng: np.random.Generator) -> bool:
    angle = rng.uniform(0, 2 * math.pi)
    pixels[t, J["RWrist" if rng.integers(2) else "LWrist"]] += 0.5 * size * np.array([math.cos(angle), math.sin(angle)])
    return True


def _mixed(pixels: np.ndarray, t: int, other: np.ndarray) -> bool:
    """Person A's upper body on the legs of person B, who stands 1.4 m beside and a little nearer."""
    legs = [J[j] for j in LEG_JOINTS]
    pixels[t, legs] = other[legs]
    return True


def _swap_legs(pixels: np.ndarray, t: int, size: float) -> bool:
    """Left and right leg swapped below the hips, where they are apart (>= 0.3 H between the
    ankles): legs that overlap in the image look the same either way."""
    if np.linalg.norm(pixels[t, J["RAnkle"]] - pixels[t, J["LAnkle"]]) < 0.3 * size:
        return False
    right, left = [J["R" + j] for j in LEG], [J["L" + j] for j in LEG]
    pixels[t, right + left] = pixels[t, left + right]
    return True


def _other_person(pixels: np.ndarray, t: int, other: np.ndarray) -> bool:
    pixels[t] = other
    return True


def _front_back(pixels: np.ndarray, t: int, size: float, frames: int) -> bool:
    """Every label left for right for ``frames`` frames (the detector's front/back confusion), where
    that moves most joints visibly (>= 0.25 H for 60 %: otherwise it changes nothing seen)."""
    from pipeline.pose.keypoints import SIDE_SWAP

    order = SIDE_SWAP[BODY]
    run = pixels[t:t + frames]
    if (np.linalg.norm(run[:, order] - run, axis=-1) >= 0.25 * size).mean(axis=1).min() < 0.6:
        return False
    pixels[t:t + frames] = run[:, order]
    return True


FAULTS = ("limb twice its length", "wrist teleported", "two skeletons mixed", "legs swapped left/right",
          "a frame of another person")
RELABELLED = "front/back confusion (all labels left for right, 1-8 frames)"  # to be relabelled, not flagged


def inject(kind: str, pixels: np.ndarray, points: np.ndarray, body: Body, motion: Motion, distance: float,
           camera: Camera, rng: np.random.Generator) -> list[int]:
    """Faults of ``kind`` in about three frames of ``pixels`` (in place), spread over the sequence
    (not in the first or last two frames, >= 8 frames apart); returns the frames changed."""
    n = len(pixels)
    size = body.height * camera.focal / points[:, J["MidHip"], 2]
    stranger = Body("stranger", 1.8, {"shoulder": 1.1})
    injected: list[int] = []
    for k, t in enumerate(sorted({int(n * q) for q in (0.2, 0.5, 0.8)})):
        for t_try in range(t, min(n - 2, t + 6)):
            if injected and t_try - injected[-1] < 8:
                continue
            if kind == RELABELLED:
                length = min((1, 3, 8)[k], n - 2 - t_try)
                if _front_back(pixels, t_try, size[t_try], length):
                    injected += list(range(t_try, t_try + length))
                    break
                continue
            if kind == "limb twice its length":
                done = _limb_twice(pixels, points, t_try, body, camera, rng)
            elif kind == "wrist teleported":
                done = _teleport(pixels, t_try, size[t_try], rng)
            elif kind == "legs swapped left/right":
                done = _swap_legs(pixels, t_try, size[t_try])
            else:
                beside = Pose(x=motion.make(t_try, distance).x + rng.choice([-1, 1]) * 1.4,
                              distance=points[t_try, J["MidHip"], 2] * 0.85)
                other = camera.project(skeleton(stranger, beside))
                done = (_mixed(pixels, t_try, other) if kind == "two skeletons mixed"
                        else _other_person(pixels, t_try, other))
            if done:
                injected.append(t_try)
                break
    return injected


# ---------------------------------------------------------------------------------------- suite

@dataclass
class Row:
    motion: str
    body: str
    distance: float
    fault: str | None
    frames: int
    injected: list[int]
    flagged: list[int]
    relabelled: list[int]

    @property
    def detected(self) -> set[int]:
        """What QC should do with the injected frames: relabel a front/back confusion, flag the rest."""
        return set(self.relabelled if self.fault == RELABELLED else self.flagged)

    @property
    def true_positives(self) -> int:
        return len(set(self.injected) & self.detected)

    @property
    def false_positives(self) -> list[int]:
        """Frames flagged or relabelled that should not be (a relabelled confusion must not be flagged)."""
        wrong = (set(self.flagged) | set(self.relabelled)) - set(self.injected)
        if self.fault == RELABELLED:
            wrong |= set(self.flagged)
        else:
            wrong |= set(self.relabelled)
        return sorted(wrong)


def run_suite(thresholds: dict[str, float] | None = None, bodies: tuple[Body, ...] = BODIES,
              selected: tuple[Motion, ...] | None = None, camera: Camera = Camera()) -> list[Row]:
    """Every motion x body x distance, clean and with each fault; a row each."""
    from pipeline.pose.quality import quality_scores

    rows: list[Row] = []
    for m_index, motion in enumerate(selected or motions()):
        for b_index, body in enumerate(bodies):
            for distance in motion.distances:
                seed = 1000 * m_index + 10 * b_index + int(distance)
                clean, points = project_sequence(body, motion, distance, camera, seed)
                for f_index, fault in enumerate((None,) + FAULTS + (RELABELLED,)):
                    pixels = clean.copy()
                    injected = [] if fault is None else inject(fault, pixels, points, body, motion, distance, camera,
                                                               np.random.default_rng(seed + f_index))
                    scores = quality_scores(as_track(pixels, motion.fps, camera), thresholds)
                    rows.append(Row(motion.name, body.name, distance, fault, len(pixels), injected,
                                    scores["frame"][~scores["ok"]].tolist(),
                                    scores["frame"][scores["swapped"]].tolist()))
    return rows


def summarise(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Per fault kind (and "clean"): frames, injected, caught, false positives, precision, recall."""
    out: dict[str, dict[str, float]] = {}
    for name in ("clean",) + FAULTS + (RELABELLED,):
        chosen = [r for r in rows if (r.fault or "clean") == name]
        injected = sum(len(r.injected) for r in chosen)
        caught = sum(r.true_positives for r in chosen)
        false = sum(len(r.false_positives) for r in chosen)
        out[name] = {"sequences": len(chosen), "frames": sum(r.frames for r in chosen), "injected": injected,
                     "caught": caught, "false_positives": false,
                     "recall": caught / injected if injected else math.nan,
                     "precision": caught / (caught + false) if caught + false else math.nan}
    return out


def markdown(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| sequences | frames | faulty frames | flagged (relabelled) of them: recall | other frames flagged "
             "or relabelled | precision |",
             "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        recall = f"{s['caught']:.0f} ({s['recall']:.0%})" if s["injected"] else "-"
        precision = f"{s['precision']:.0%}" if s["caught"] + s["false_positives"] else "-"
        lines.append(f"| {name}: {s['sequences']:.0f} | {s['frames']:.0f} | {s['injected']:.0f} | {recall} | "
                     f"{s['false_positives']:.0f} | {precision} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="list every sequence with a miss or a false flag")
    args = parser.parse_args(argv)
    rows = run_suite()
    print(markdown(summarise(rows)))
    if args.details:
        for r in rows:
            if r.false_positives or r.true_positives < len(r.injected):
                print(f"{r.motion} / {r.body} / {r.distance} m / {r.fault or 'clean'}: injected {r.injected}, "
                      f"flagged {r.flagged}, relabelled {r.relabelled}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
