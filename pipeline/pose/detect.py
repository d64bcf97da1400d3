"""Stage 2: pose keypoints per frame in OpenPose's layout (BODY_25, face 70, two hands of 21).

Two backends write the same contract (:mod:`pipeline.pose.keypoints`):

* ``mediapipe`` (default): MediaPipe Holistic 0.10.21, whose wheel ships its models, mapped
  to OpenPose's joints by the tables below; docs/keypoints.md explains each choice.
* ``openpose-json``: the per-frame JSON that OpenPose writes with ``--write_json``, so users
  with OpenPose on a cluster plug its output in unchanged.

One person per clip. Holistic finds one person: its detector picks the most prominent one and
then tracks that person from frame to frame. OpenPose reports everyone; we keep the largest
person of the first frame where anyone is seen, then in each frame the person nearest to the
last one kept (see :func:`pick_person`). With ``crop`` only people inside that box count.
Frames where nobody is found are written as missing (confidence 0, NaN x, y), never an error;
a clip where nobody is found at all is.

mediapipe is imported when a :class:`HolisticTracker` is made, never at import: the GPU machines that run
``edn train`` and ``edn transfer`` do not have it.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from pipeline.arguments import non_negative_int
from pipeline.footage.extract import list_frames, read_frames_meta
from pipeline.pose.keypoints import (BODY, FACE, LEFT_HAND, N_BODY, N_FACE, N_HAND, RIGHT_HAND, J, KeypointTrack,
                                     chain_provenance, empty_track, mark_missing, read_keypoints, write_keypoints)
from pipeline.provenance import provenance

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels

# MediaPipe Pose landmark -> BODY_25 joint. Neck and MidHip are the midpoints of the
# shoulders and hips; LSmallToe/RSmallToe have no MediaPipe counterpart and stay missing.
MP_POSE_TO_BODY25 = {
    "Nose": 0, "RShoulder": 12, "RElbow": 14, "RWrist": 16, "LShoulder": 11, "LElbow": 13, "LWrist": 15,
    "RHip": 24, "RKnee": 26, "RAnkle": 28, "LHip": 23, "LKnee": 25, "LAnkle": 27, "REye": 5, "LEye": 2,
    "REar": 8, "LEar": 7, "LBigToe": 31, "LHeel": 29, "RBigToe": 32, "RHeel": 30,
}
MP_MIDPOINTS = {"Neck": (11, 12), "MidHip": (23, 24)}
MP_LEFT_WRIST, MP_RIGHT_WRIST = 15, 16
# The wheel ships only the "full" pose model (complexity 1); 0 and 2 are downloaded at run
# time, which offline clusters cannot do.
MODEL_COMPLEXITY = 1
# MediaPipe's own drawing threshold for pose landmarks: below it a landmark is a guess.
VISIBILITY_THRESHOLD = 0.5

# Face Mesh (468 points) -> OpenPose/dlib face 68. Subject's right is the image's left.
MP_FACE_TO_OPENPOSE68 = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw 0-16
    71, 63, 105, 66, 107,  # right brow 17-21
    336, 296, 334, 293, 301,  # left brow 22-26
    168, 197, 5, 4,  # nose bridge 27-30
    75, 97, 2, 326, 305,  # nostrils 31-35
    33, 160, 158, 133, 153, 144,  # right eye 36-41: outer corner, upper lid, inner corner, lower lid
    362, 385, 387, 263, 373, 380,  # left eye 42-47: inner corner, upper lid, outer corner, lower lid
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)
# Pupils 68 (right eye, points 36-41) and 69 (left eye, 42-47): the iris centres of the refined
# mesh (points 468 and 473), each given to the eye whose contour centre is nearer; without
# iris points, the eye contour's centre.
MP_IRIS_CENTRES = (468, 473)
RIGHT_EYE, LEFT_EYE = slice(36, 42), slice(42, 48)
# MediaPipe Hands and OpenPose hands share one 21-point layout (wrist, then 4 per finger).

_JSON_FRAME = re.compile(r"(\d+)(?:_keypoints)?\.json$")


# ------------------------------------------------------------------------------- MediaPipe

def _to_pixels(landmarks: Any, width: int, height: int, offset: tuple[int, int]) -> np.ndarray:
    """(n, 3) x, y in frame pixels and visibility (1.0 where MediaPipe gives none)."""
    out = np.array([(p.x, p.y, p.visibility if p.HasField("visibility") else 1.0)
                    for p in landmarks.landmark], dtype=np.float64)
    out[:, 0] = out[:, 0] * width + offset[0]
    out[:, 1] = out[:, 1] * height + offset[1]
    return out


def map_holistic(pose: np.ndarray | None, face: np.ndarray | None, hands: Sequence[np.ndarray | None],
                 frame_size: tuple[int, int]) -> np.ndarray:
    """One frame's (137, 3) OpenPose-layout keypoints from Holistic's landmarks in frame pixels.

    ``pose`` (33, 3) with visibility, ``face`` (468 or 478, 3), ``hands`` the two (21, 3) hand
    results in any order (each goes to the body wrist it is nearer to). Joints below the
    visibility threshold or outside the frame are missing.
    """
    width, height = frame_size
    joints = empty_track(1)[0].astype(np.float64)
    if pose is not None:
        for name, mp_index in MP_POSE_TO_BODY25.items():
            joints[BODY.start + J[name]] = pose[mp_index]
        for name, (a, b) in MP_MIDPOINTS.items():
            joints[BODY.start + J[name]] = (*(pose[a, :2] + pose[b, :2]) / 2, min(pose[a, 2], pose[b, 2]))
        low = joints[BODY, 2] < VISIBILITY_THRESHOLD
        joints[BODY][low] = (np.nan, np.nan, 0.0)
    if face is not None:
        pts = np.empty((N_FACE, 3))
        pts[:68] = face[list(MP_FACE_TO_OPENPOSE68)]
        centres = {RIGHT_EYE.start: pts[RIGHT_EYE, :2].mean(0), LEFT_EYE.start: pts[LEFT_EYE, :2].mean(0)}
        pupils = [pts[RIGHT_EYE, :2].mean(0), pts[LEFT_EYE, :2].mean(0)]
        if len(face) > max(MP_IRIS_CENTRES):
            irises = [face[i, :2] for i in MP_IRIS_CENTRES]
            right, left = centres[RIGHT_EYE.start], centres[LEFT_EYE.start]
            if np.linalg.norm(irises[0] - right) > np.linalg.norm(irises[0] - left):
                irises.reverse()
            pupils = irises
        pts[68, :2], pts[69, :2] = pupils
        pts[:, 2] = 1.0
        joints[FACE] = pts
    found = [h for h in hands if h is not None]
    if pose is not None and found:
        # Each hand goes to the pose wrist it is nearer to (the wrist landmark is placed even
        # when not visible), which also settles Holistic's mirrored left/right conventions.
        wrists = (pose[MP_LEFT_WRIST, :2], pose[MP_RIGHT_WRIST, :2])
        cost = np.array([[np.linalg.norm(h[0, :2] - w) for w in wrists] for h in found])
        if len(found) == 2:
            sides = (0, 1) if cost[0, 0] + cost[1, 1] <= cost[0, 1] + cost[1, 0] else (1, 0)
        else:
            sides = (int(np.argmin(cost[0])),)
        for hand, side in zip(found, sides):
            joints[(LEFT_HAND, RIGHT_HAND)[side]] = hand
    else:  # no pose to compare with: Holistic's own (left, right)
        for part, hand in zip((LEFT_HAND, RIGHT_HAND), hands):
            if hand is not None:
                joints[part] = hand
    outside = (joints[:, 0] < 0) | (joints[:, 0] > width - 1) | (joints[:, 1] < 0) | (joints[:, 1] > height - 1)
    joints[outside] = (np.nan, np.nan, 0.0)
    return mark_missing(joints.astype(np.float32))


def _read_images(paths: Sequence[Path], crop: Box | None) -> Iterator[np.ndarray]:
    """RGB frames (cropped), decoded one ahead in a thread so decoding overlaps inference."""
    import cv2

    def load(path: Path) -> np.ndarray:
        data = path.read_bytes()
        # cv2 decodes a cut-off JPEG as a grey-filled image (a frame "without anybody");
        # our frames are whole files, so a missing end marker means a broken extraction.
        ends = {".jpg": (b"\xff\xd9",), ".png": (b"IEND\xaeB`\x82",)}.get(path.suffix, ())
        if ends and not data.rstrip(b"\x00").endswith(ends):
            raise ValueError(f"{path}: truncated frame image (no end marker); extract the video again")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: cannot read frame image")
        if crop is not None:
            x, y, w, h = crop
            image = image[y:y + h, x:x + w]
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, paths[0]) if paths else None
        for nxt in list(paths[1:]) + [None]:
            image = pending.result()
            pending = pool.submit(load, nxt) if nxt is not None else None
            yield image


def _check_crop(crop: Box | None, width: int, height: int, where: Path) -> None:
    if crop is None:
        return
    x, y, w, h = crop
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"{where}: crop box {crop} lies outside the {width}x{height} frames")


def frame_range(n_frames: int, start: int, stop: int | None, where: Path) -> tuple[int, int]:
    """``[start, stop)`` checked against a folder of ``n_frames`` frames (``stop`` None: the end)."""
    stop = n_frames if stop is None else stop
    if not 0 <= start < stop <= n_frames:
        raise ValueError(f"{where}: frame range {start}..{stop} is not inside its {n_frames} frames")
    return start, stop


class HolisticTracker:
    """MediaPipe Holistic run frame by frame over one sequence (its tracker carries from frame to frame).

    ``tracker(image)`` maps one RGB image to its (137, 3) OpenPose-layout keypoints, or None when
    nobody is found. ``frame_size`` (width, height) is the whole frame's and ``offset`` the top-left
    corner of ``image`` in it (a crop); keypoints come out in whole-frame pixels. One instance per
    sequence: ``edn detect`` reads a folder through one, ``edn evaluate`` streams each real and
    generated sequence through its own without writing images.
    """

    def __init__(self, frame_size: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> None:
        import mediapipe as mp

        self.frame_size, self.offset = frame_size, offset
        self._holistic = mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=MODEL_COMPLEXITY,
                                                        refine_face_landmarks=True, smooth_landmarks=True)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        res = self._holistic.process(image)

        def pixels(landmarks: Any) -> np.ndarray | None:
            return None if landmarks is None else _to_pixels(landmarks, w, h, self.offset)

        pose = pixels(res.pose_landmarks)
        if pose is None:
            return None  # nobody in this frame
        return map_holistic(pose, pixels(res.face_landmarks),
                            (pixels(res.left_hand_landmarks), pixels(res.right_hand_landmarks)), self.frame_size)

    def close(self) -> None:
        self._holistic.close()

    def __enter__(self) -> "HolisticTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def params(crop: Box | None = None) -> dict[str, Any]:
        """What the keypoints depend on, for provenance."""
        return {"model_complexity": MODEL_COMPLEXITY, "refine_face_landmarks": True,
                "visibility_threshold": VISIBILITY_THRESHOLD, "crop": list(crop) if crop else None}


def detect_mediapipe(frames_dir: str | Path, *, crop: Box | None = None, start: int = 0,
                     stop: int | None = None, warmup: int = 0) -> KeypointTrack:
    """Run MediaPipe Holistic over an extracted frames folder; one row of 137 joints per frame.

    Only frames ``[start, stop)`` are returned; the tracker first sees up to ``warmup`` frames
    before ``start`` (dropped), so a chunk of a long video starts as if tracking had run on.
    """
    from tqdm import tqdm

    non_negative_int.check(warmup, "detect: warmup")  # a negative one would drop frames of the chunk
    frames_dir = Path(frames_dir)
    paths = list_frames(frames_dir)
    meta = read_frames_meta(frames_dir)
    if meta.get("frame_count") not in (None, len(paths)):
        raise ValueError(f"{frames_dir}: {len(paths)} frame images but meta.json says {meta['frame_count']}")
    width, height = int(meta["width"]), int(meta["height"])
    _check_crop(crop, width, height, frames_dir)
    offset = (crop[0], crop[1]) if crop else (0, 0)
    start, stop = frame_range(len(paths), start, stop, frames_dir)
    first = max(0, start - warmup)
    paths = paths[first:stop]
    data = empty_track(len(paths))
    with HolisticTracker((width, height), offset) as tracker:
        for i, image in enumerate(tqdm(_read_images(paths, crop), total=len(paths), unit="frame",
                                       desc=f"detect {frames_dir.name}", mininterval=1.0)):
            joints = tracker(image)
            if joints is not None:  # nobody in this frame: stays missing
                data[i] = joints
    frames = np.array([int(p.stem) for p in paths], dtype=np.int32)
    keep = slice(start - first, None)
    return KeypointTrack(data[keep], frames[keep], _track_meta(meta, "mediapipe", HolisticTracker.params(crop)))


# ---------------------------------------------------------------------------- OpenPose JSON

def _person_joints(person: dict[str, Any], where: Path) -> np.ndarray:
    """One OpenPose person as (137, 3); missing joints (confidence 0) become NaN."""
    joints = empty_track(1)[0]
    parts = (("pose_keypoints_2d", BODY, N_BODY), ("face_keypoints_2d", FACE, N_FACE),
             ("hand_left_keypoints_2d", LEFT_HAND, N_HAND), ("hand_right_keypoints_2d", RIGHT_HAND, N_HAND))
    for key, part, count in parts:
        values = person.get(key) or []
        if not values:
            continue
        if len(values) != 3 * count:
            hint = " (BODY_25 expected; COCO/MPII models are not supported)" if key == "pose_keypoints_2d" else ""
            raise ValueError(f"{where}: {key} has {len(values)} values, expected {3 * count}{hint}")
        joints[part] = np.asarray(values, dtype=np.float32).reshape(count, 3)
    conf = joints[:, 2]
    joints[:, 2] = np.clip(np.nan_to_num(conf, nan=0.0), 0.0, 1.0)
    return mark_missing(joints)


def _body_box(joints: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Centre and height of the bounding box of a person's present body joints."""
    body = joints[BODY]
    ok = body[:, 2] > 0
    if ok.sum() < 2:
        return None
    lo, hi = body[ok, :2].min(0), body[ok, :2].max(0)
    return (lo + hi) / 2, float(max(hi[1] - lo[1], hi[0] - lo[0], 1.0))


def pick_person(people: Sequence[np.ndarray], previous: tuple[np.ndarray, float] | None,
                crop: Box | None = None, elapsed: float = 0.0) -> int | None:
    """Index of the person to keep in one frame, or None.

    Candidates are people with at least two body joints whose box centre lies in ``crop``
    (when given). Without an earlier pick: the tallest. With one: the nearest to it when within
    its reach, half its height plus what a body can travel in the ``elapsed`` seconds since it
    was last seen (pose QC's ``jump_speed`` body heights per second); else None. So a clip keeps
    following the person it started with: someone else in the frame while that person is
    hidden is not taken for them, and the frame stays missing.
    """
    from pipeline.pose.quality import DEFAULTS

    boxes = []
    for i, joints in enumerate(people):
        box = _body_box(joints)
        if box is None:
            continue
        if crop is not None:
            x, y, w, h = crop
            cx, cy = box[0]
            if not (x <= cx <= x + w and y <= cy <= y + h):
                continue
        boxes.append((i, box))
    if not boxes:
        return None
    if previous is None:
        return max(boxes, key=lambda item: item[1][1])[0]
    best, index = min((float(np.linalg.norm(box[0] - previous[0])), i) for i, box in boxes)
    reach = previous[1] * (0.5 + DEFAULTS["jump_speed"] * max(0.0, elapsed))
    return index if best <= reach else None


def _json_frame_number(path: Path) -> int | None:
    match = _JSON_FRAME.search(path.name)
    return int(match.group(1)) if match else None


def read_openpose_json(json_dir: str | Path, n_frames: int, *, scale: tuple[float, float] = (1.0, 1.0),
                       crop: Box | None = None, fps: float = 30.0) -> np.ndarray:
    """(n_frames, 137, 3) keypoints from OpenPose ``--write_json`` files, one person per frame.

    Files are matched to frames by the number before ``_keypoints.json`` (OpenPose writes
    ``<video>_000000000000_keypoints.json``; for an image folder, the image's name). Frames with
    no file or nobody in it are missing, and so are frames where only people out of reach of the
    person followed are seen (:func:`pick_person`; a warning names them). ``scale`` maps
    OpenPose's pixels to the frames'.
    """
    json_dir = Path(json_dir)
    if not json_dir.is_dir():
        raise FileNotFoundError(f"{json_dir}: OpenPose JSON folder not found")
    files = {}
    for path in sorted(json_dir.glob("*.json")):
        number = _json_frame_number(path)
        if number is None:
            continue
        if number in files:
            raise ValueError(f"{json_dir}: two JSON files for frame {number}: {files[number].name}, {path.name}")
        files[number] = path
    if not files:
        raise ValueError(f"{json_dir}: no OpenPose JSON files (<name>_000000000000_keypoints.json) in folder")
    data = empty_track(n_frames)
    previous, last_seen, others_only = None, 0, []
    for frame in range(n_frames):
        path = files.get(frame)
        if path is None:
            continue
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not an OpenPose JSON file ({exc})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
            raise ValueError(f"{path}: not an OpenPose JSON file (no 'people' list)")
        people = [_person_joints(p, path) for p in doc["people"]]
        for joints in people:
            joints[:, 0] *= scale[0]
            joints[:, 1] *= scale[1]
        index = pick_person(people, previous, crop, (frame - last_seen) / fps)
        if index is None:
            if previous is not None and any(_body_box(p) is not None for p in people):
                others_only.append(frame)
            continue
        data[frame] = people[index]
        previous, last_seen = _body_box(people[index]), frame
    if others_only:
        from pipeline.pose.quality import frame_ranges

        log.warning("%s: in frames %s only people out of reach of the person followed were detected; those frames "
                    "stay missing rather than switching to someone else (a crop box in the sheet picks the person)",
                    json_dir, frame_ranges(others_only))
    extra = sorted(set(files) - set(range(n_frames)))
    if extra:
        log.warning("%s: %d JSON files beyond the %d frames ignored (first: frame %d)", json_dir, len(extra),
                    n_frames, extra[0])
    return data


def detect_openpose_json(frames_dir: str | Path, json_dir: str | Path, *,
                         json_size: tuple[int, int] | None = None, crop: Box | None = None) -> KeypointTrack:
    """Keypoints of the frames in ``frames_dir`` from OpenPose's JSON output in ``json_dir``.

    OpenPose's pixels are taken to be those of the frames (run it on ``results/frames/{video}``)
    unless ``json_size`` gives the size of the images it saw.
    """
    frames_dir = Path(frames_dir)
    paths = list_frames(frames_dir)
    meta = read_frames_meta(frames_dir)
    width, height = int(meta["width"]), int(meta["height"])
    _check_crop(crop, width, height, frames_dir)
    numbers = [int(p.stem) for p in paths]
    if numbers != list(range(len(paths))):
        raise ValueError(f"{frames_dir}: frames must be numbered 000000 ... without gaps")
    scale = (1.0, 1.0) if json_size is None else (width / json_size[0], height / json_size[1])
    data = read_openpose_json(json_dir, len(paths), scale=scale, crop=crop, fps=float(meta.get("fps") or 30.0))
    outside = (data[..., 0] < 0) | (data[..., 0] > width - 1) | (data[..., 1] < 0) | (data[..., 1] > height - 1)
    data[outside] = (np.nan, np.nan, 0.0)
    return KeypointTrack(mark_missing(data), np.array(numbers, dtype=np.int32), _track_meta(meta, "openpose-json", {
        "json_dir": str(json_dir), "json_size": list(json_size) if json_size else None,
        "crop": list(crop) if crop else None}))


# ------------------------------------------------------------------------------------ common

def _track_meta(frames_meta: dict[str, Any], backend: str, params: dict[str, Any]) -> dict[str, Any]:
    meta = {"width": int(frames_meta["width"]), "height": int(frames_meta["height"]),
            "fps": float(frames_meta["fps"]), "backend": backend,
            "provenance": frames_meta.get("provenance")}
    if frames_meta.get("frame_count") is not None:  # every frame index of the file is below it (keypoints.py)
        meta["frame_count"] = int(frames_meta["frame_count"])
    return chain_provenance(meta, provenance("detect", {"backend": backend, **params}))


def summarize(track: KeypointTrack) -> dict[str, Any]:
    """Detection counts per part: frames with a person, and joints found per frame."""
    present = track.present
    person = present[:, BODY].any(axis=1)
    return {
        "frames": int(len(track.frames)), "frames_with_person": int(person.sum()),
        "mean_joints_found": {name: round(float(present[:, part].sum(1).mean()), 2) if len(present) else 0.0
                              for name, part in (("body", BODY), ("face", FACE), ("left_hand", LEFT_HAND),
                                                 ("right_hand", RIGHT_HAND))},
    }


def detect(frames_dir: str | Path, out: str | Path, *, backend: str = "mediapipe",
           json_dir: str | Path | None = None, json_size: tuple[int, int] | None = None,
           crop: Box | None = None, min_detected_fraction: float = 0.0, start: int = 0,
           stop: int | None = None, warmup: int = 0) -> KeypointTrack:
    """Detect, check that a person was found often enough, and write ``out`` (contract Parquet).

    With ``start``/``stop`` only that frame range is written (a chunk for
    :func:`gather_keypoints`, which checks the whole video instead; a chunk may hold nobody).
    """
    if not 0.0 <= min_detected_fraction <= 1.0:
        raise ValueError(f"detect: min_detected_fraction must be in [0, 1], got {min_detected_fraction}")
    chunk = start != 0 or stop is not None
    if backend == "mediapipe":
        track = detect_mediapipe(frames_dir, crop=crop, start=start, stop=stop, warmup=warmup)
    elif backend == "openpose-json":
        if json_dir is None:
            raise ValueError("detect: --backend openpose-json needs --json-dir (OpenPose --write_json folder)")
        track = detect_openpose_json(frames_dir, json_dir, json_size=json_size, crop=crop)
        first, last = frame_range(len(track.frames), start, stop, Path(frames_dir))
        track = KeypointTrack(track.data[first:last], track.frames[first:last], track.meta)
    else:
        raise ValueError(f"detect: unknown backend {backend!r} (mediapipe or openpose-json)")
    if chunk:
        track.meta["chunk"] = {"start": int(track.frames[0]), "stop": int(track.frames[-1]) + 1, "warmup": warmup}
        write_keypoints(out, track)
        return track
    _check_and_write(track, out, frames_dir if backend == "mediapipe" else json_dir, backend,
                     min_detected_fraction)
    return track


def gather_keypoints(chunks: Sequence[str | Path], frames_dir: str | Path, out: str | Path, *,
                     min_detected_fraction: float = 0.0) -> KeypointTrack:
    """One keypoint file from the chunks of ``edn detect --start/--stop`` of ``frames_dir``.

    The chunks must tile the video's frames exactly (no gap, no overlap) and agree on size,
    frame rate, backend and detection parameters; the whole is checked as ``detect`` would.
    """
    frames_dir = Path(frames_dir)
    n_frames = len(list_frames(frames_dir))
    tracks = [read_keypoints(c) for c in chunks]
    if not tracks:
        raise ValueError(f"{frames_dir}: no chunks to gather")
    order = sorted(range(len(tracks)), key=lambda i: int(tracks[i].frames[0]) if len(tracks[i].frames) else -1)
    expected, first = 0, tracks[order[0]]
    same = ("width", "height", "fps", "backend")
    params = {k: v for k, v in first.meta["provenance"]["params"].items()}
    for i in order:
        track, name = tracks[i], Path(chunks[i])
        if list(track.frames) != list(range(expected, expected + len(track.frames))) or not len(track.frames):
            raise ValueError(f"{name}: chunk frames {track.frames[:1].tolist()}..{track.frames[-1:].tolist()} do not "
                             f"continue at frame {expected} (gap or overlap between chunks)")
        if any(track.meta.get(k) != first.meta.get(k) for k in same) or track.meta["provenance"]["params"] != params:
            raise ValueError(f"{name}: chunk made with other metadata or parameters than {Path(chunks[order[0]])}")
        expected += len(track.frames)
    if expected != n_frames:
        raise ValueError(f"{frames_dir}: chunks cover frames 0..{expected}, the folder has {n_frames}")
    meta = {k: v for k, v in first.meta.items() if k != "chunk"}
    meta = chain_provenance(meta, provenance("gather-keypoints", {
        "chunks": [str(chunks[i]) for i in order], "warmup": first.meta.get("chunk", {}).get("warmup")}))
    track = KeypointTrack(np.concatenate([tracks[i].data for i in order]),
                          np.concatenate([tracks[i].frames for i in order]), meta)
    _check_and_write(track, out, frames_dir, str(meta.get("backend")), min_detected_fraction)
    return track


def _check_and_write(track: KeypointTrack, out: str | Path, source: str | Path | None, backend: str,
                     min_detected_fraction: float) -> None:
    summary = summarize(track)
    found, total = summary["frames_with_person"], summary["frames"]
    if found == 0:
        raise ValueError(f"{source}: nobody found in any of its {total} frames ({backend})")
    if found < min_detected_fraction * total:
        raise ValueError(f"{source}: a person was found in only {found} of {total} frames, fewer than the "
                         f"required {min_detected_fraction:.0%} (detect.min_detected_fraction)")
    track.meta["detect_summary"] = summary
    track.meta["provenance"]["params"]["min_detected_fraction"] = min_detected_fraction
    write_keypoints(out, track)
    log.info("%s: person in %d/%d frames, mean joints found %s -> %s", source, found, total,
             summary["mean_joints_found"], out)


def cli(args: argparse.Namespace) -> int:
    detect(args.frames_dir, args.out, backend=args.backend, json_dir=args.json_dir, json_size=args.json_size,
           crop=args.crop, min_detected_fraction=args.min_detected_fraction, start=args.start, stop=args.stop,
           warmup=args.warmup)
    return 0


def cli_gather(args: argparse.Namespace) -> int:
    gather_keypoints(args.chunks, args.frames_dir, args.out, min_detected_fraction=args.min_detected_fraction)
    return 0
