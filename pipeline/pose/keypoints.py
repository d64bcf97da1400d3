"""The keypoint file contract shared by every stage.

A keypoint file is Parquet with one row per (frame, joint):

========== ======= =====================================================
column     type    meaning
========== ======= =====================================================
frame      int32   frame index (0-based, the frame files' numbering)
joint      int16   0-24 BODY_25, 25-94 face 70, 95-115 left hand,
                   116-136 right hand (OpenPose order inside each part)
x, y       float32 pixels in the frames the detector saw (y grows down)
confidence float32 in [0, 1]; a missing joint has 0 and NaN x, y
========== ======= =====================================================

The Parquet file metadata key ``edn`` holds JSON with at least ``width``,
``height``, ``fps``, ``backend`` and ``provenance`` (stage, parameters,
versions), and ``frame_count``, the frames of the video (every frame index is
below it; files without it are held to ``MAX_FRAMES``). In memory a track is
an array of shape (frames, 137, 3) holding x, y, confidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

N_BODY, N_FACE, N_HAND = 25, 70, 21
BODY = slice(0, N_BODY)
FACE = slice(N_BODY, N_BODY + N_FACE)
LEFT_HAND = slice(FACE.stop, FACE.stop + N_HAND)
RIGHT_HAND = slice(LEFT_HAND.stop, LEFT_HAND.stop + N_HAND)
N_JOINTS = RIGHT_HAND.stop  # 137
PARTS = {"body": BODY, "face": FACE, "left_hand": LEFT_HAND, "right_hand": RIGHT_HAND}

BODY_25_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
    "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
J = {name: i for i, name in enumerate(BODY_25_NAMES)}

# OpenPose BODY_25 limbs (pairs drawn as sticks), in OpenPose's drawing order.
BODY_25_LIMBS = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11),
    (8, 12), (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)
# OpenPose hand: wrist 0, then four joints per finger (thumb .. little finger).
HAND_LIMBS = tuple(
    (0 if k == 0 else 1 + 4 * f + k - 1, 1 + 4 * f + k) for f in range(5) for k in range(4)
)
# OpenPose face 70: jaw 0-16, brows 17-21 / 22-26, nose 27-35, eyes 36-41 / 42-47,
# outer lips 48-59, inner lips 60-67, pupils 68, 69.
FACE_CONTOURS = (
    (tuple(range(0, 17)), False), (tuple(range(17, 22)), False), (tuple(range(22, 27)), False),
    (tuple(range(27, 31)), False), (tuple(range(31, 36)), False),
    (tuple(range(36, 42)), True), (tuple(range(42, 48)), True),
    (tuple(range(48, 60)), True), (tuple(range(60, 68)), True),
)



def _side_swap() -> np.ndarray:
    """Joint order with left and right exchanged: BODY_25's L/R pairs and the two hands (the face
    comes from the face itself, not from the body's left and right)."""
    order = np.arange(N_JOINTS)
    for name in BODY_25_NAMES:
        if name[0] == "R" and "L" + name[1:] in J:
            order[J[name]], order[J["L" + name[1:]]] = J["L" + name[1:]], J[name]
    order[LEFT_HAND], order[RIGHT_HAND] = np.arange(RIGHT_HAND.start, RIGHT_HAND.stop), \
        np.arange(LEFT_HAND.start, LEFT_HAND.stop)
    return order


SIDE_SWAP = _side_swap()  # data[..., SIDE_SWAP, :] is the same pose labelled the other way round


def _face_mirror() -> np.ndarray:
    """The face 70's order seen in a mirror: each point's left/right counterpart (jaw 0 <-> 16, brows
    17 <-> 26, nostrils 31 <-> 35, eye corners 36 <-> 45 and 39 <-> 42, mouth corners 48 <-> 54 and
    60 <-> 64, pupils 68 <-> 69); points on the midline (nose bridge, lip centres) map to themselves."""
    order = np.arange(N_FACE)
    pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes: corner, top, corner, bottom
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67), (68, 69)]
    for a, b in pairs:
        order[a], order[b] = b, a
    return order


# data[..., MIRROR_SWAP, :] relabels a horizontally mirrored pose: a person's left side shows as the right
# in a mirror, so each joint takes its counterpart's (body pairs, the two hands, the face's own left/right).
MIRROR_SWAP = SIDE_SWAP.copy()
MIRROR_SWAP[FACE] = FACE.start + _face_mirror()

METADATA_KEY = b"edn"
# Bounds a keypoint file is checked against on read, so a corrupt value is named, not allocated.
MAX_FRAMES = 1_000_000  # frame files are numbered with six digits (000000.jpg ... 999999.jpg)
MAX_SIDE = 16384  # pixels: frames larger than 16K are not video frames
MAX_FPS = 10_000  # frames per second: beyond high-speed cameras


class KeypointFileError(ValueError):
    """A keypoint file that breaks the contract; the message names the file."""


@dataclass
class KeypointTrack:
    """Keypoints of one video: ``data[t, j] = (x, y, confidence)`` for frame ``frames[t]``."""

    data: np.ndarray
    frames: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.frames = np.asarray(self.frames, dtype=np.int32)
        if self.data.ndim != 3 or self.data.shape[1:] != (N_JOINTS, 3):
            raise ValueError(f"keypoint array must be (frames, {N_JOINTS}, 3), got {self.data.shape}")
        if len(self.frames) != len(self.data):
            raise ValueError("frames and data lengths differ")

    @property
    def xy(self) -> np.ndarray:
        return self.data[..., :2]

    @property
    def confidence(self) -> np.ndarray:
        return self.data[..., 2]

    @property
    def present(self) -> np.ndarray:
        """Boolean (frames, joints): the joint was detected (or filled) in that frame."""
        return present(self.data)

    def copy(self) -> "KeypointTrack":
        return KeypointTrack(self.data.copy(), self.frames.copy(), json.loads(json.dumps(self.meta)))


def present(data: np.ndarray) -> np.ndarray:
    """Boolean mask over ``data[..., (x, y, confidence)]``: the joint was found (or filled)."""
    return (data[..., 2] > 0) & np.isfinite(data[..., 0]) & np.isfinite(data[..., 1])


def empty_track(n_frames: int) -> np.ndarray:
    """An all-missing (n_frames, 137, 3) array: NaN positions, zero confidence."""
    data = np.full((n_frames, N_JOINTS, 3), np.nan, dtype=np.float32)
    data[..., 2] = 0.0
    return data


def mark_missing(data: np.ndarray) -> np.ndarray:
    """Enforce the contract's missing convention in place: conf 0 <=> NaN x, y."""
    bad = ~present(data)
    data[bad, 0:2] = np.nan
    data[bad, 2] = 0.0
    return data


def chain_provenance(meta: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``meta`` whose ``provenance`` is ``record``; earlier records go to ``upstream``.

    ``upstream`` lists every earlier stage's record, oldest first, so an artifact carries
    its whole lineage.
    """
    new = dict(meta)
    upstream = list(meta.get("upstream", []))
    if meta.get("provenance") is not None:
        upstream.append(meta["provenance"])
    new["upstream"] = upstream
    new["provenance"] = record
    return new


def write_keypoints(path: str | Path, track: KeypointTrack) -> None:
    """Write ``track`` as a contract Parquet file, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.provenance import atomic_path

    for key in ("width", "height", "fps"):
        if key not in track.meta:
            raise ValueError(f"keypoint metadata lacks '{key}'")
    data = mark_missing(track.data.copy())
    n_frames = len(track.frames)
    table = pa.table({
        "frame": pa.array(np.repeat(track.frames, N_JOINTS).astype(np.int32)),
        "joint": pa.array(np.tile(np.arange(N_JOINTS, dtype=np.int16), n_frames)),
        "x": pa.array(data[..., 0].reshape(-1)),
        "y": pa.array(data[..., 1].reshape(-1)),
        "confidence": pa.array(data[..., 2].reshape(-1)),
    })
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(track.meta, sort_keys=True).encode()})
    # Parquet goes through Python file objects: pyarrow reads a name as a URI ("take:1.parquet") and as UTF-8
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")


def read_parquet_table(path: Path, missing: str, error: type[ValueError]) -> Any:
    """The pyarrow table of ``path``; ``error(missing)`` when absent, or when it is not Parquet."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        with open(path, "rb") as f:  # a file object: pyarrow reads a name as a URI
            return pq.read_table(f)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise error(f"{path}: not a readable Parquet file ({exc})") from exc


def read_keypoints(path: str | Path) -> KeypointTrack:
    """Read and check a contract Parquet file; errors name the file and the problem."""
    path = Path(path)
    table = read_parquet_table(path, "keypoint file not found", KeypointFileError)
    expected = {"frame", "joint", "x", "y", "confidence"}
    missing = expected - set(table.column_names)
    if missing:
        raise KeypointFileError(f"{path}: missing columns {sorted(missing)}")
    meta = _read_meta(path, table.schema.metadata or {})
    import pyarrow as pa

    for name in ("frame", "joint"):
        column = table.column(name)
        if not pa.types.is_integer(column.type):
            raise KeypointFileError(f"{path}: column '{name}' must hold integers, found {column.type}")
        if column.null_count:
            raise KeypointFileError(f"{path}: column '{name}' has {column.null_count} empty values")
    for name in ("x", "y", "confidence"):
        if not (pa.types.is_floating(table.column(name).type) or pa.types.is_integer(table.column(name).type)):
            raise KeypointFileError(f"{path}: column '{name}' must hold numbers, found {table.column(name).type}")
    if table.num_rows == 0:
        raise KeypointFileError(f"{path}: no frames (the keypoint table is empty)")
    frame = table.column("frame").to_numpy().astype(np.int64)
    joint = table.column("joint").to_numpy().astype(np.int64)
    if joint.min() < 0 or joint.max() >= N_JOINTS:
        raise KeypointFileError(f"{path}: column 'joint' holds {joint.min() if joint.min() < 0 else joint.max()}, "
                                f"outside the layout's 0..{N_JOINTS - 1}")
    if frame.min() < 0:
        raise KeypointFileError(f"{path}: column 'frame' holds the negative index {frame.min()}")
    # Checked before anything is sized by the indices: a stray index must not become an allocation.
    count = meta.get("frame_count", MAX_FRAMES)
    if frame.max() >= count:
        source = "its 'edn' metadata 'frame_count'" if "frame_count" in meta else "six-digit frame numbers"
        raise KeypointFileError(f"{path}: column 'frame' holds index {frame.max()}, beyond the {count} frames of "
                                f"{source}")
    if len(np.unique(frame * N_JOINTS + joint)) != len(frame):
        raise KeypointFileError(f"{path}: a (frame, joint) pair appears more than once")
    frames = np.unique(frame)
    data = empty_track(len(frames))
    row = np.searchsorted(frames, frame)
    for i, col in enumerate(("x", "y", "confidence")):
        data[row, joint, i] = table.column(col).to_numpy(zero_copy_only=False).astype(np.float32)
    conf = data[..., 2]
    if np.isnan(conf).any():
        raise KeypointFileError(f"{path}: confidence is NaN in some rows (a missing joint has 0)")
    if np.any((conf < 0) | (conf > 1)):
        raise KeypointFileError(f"{path}: confidence outside [0, 1]")
    return KeypointTrack(mark_missing(data), frames.astype(np.int32), meta)


def _read_meta(path: Path, schema_meta: dict[bytes, bytes]) -> dict[str, Any]:
    """The ``edn`` metadata, checked for the keys every stage relies on."""
    raw = schema_meta.get(METADATA_KEY)
    if raw is None:
        raise KeypointFileError(f"{path}: no 'edn' metadata (not written by edn detect/smooth/normalize?)")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeypointFileError(f"{path}: 'edn' metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise KeypointFileError(f"{path}: 'edn' metadata is not a JSON object")
    for key in ("width", "height", "fps"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise KeypointFileError(f"{path}: 'edn' metadata lacks a positive '{key}' (found {value!r})")
    for key in ("width", "height"):  # compared before float(): a huge JSON integer must not overflow
        if meta[key] > MAX_SIDE or not float(meta[key]).is_integer():
            raise KeypointFileError(f"{path}: 'edn' metadata '{key}' must be a whole number of pixels up to "
                                    f"{MAX_SIDE}, found {meta[key]!r}")
    if not meta["fps"] <= MAX_FPS:  # also infinity
        raise KeypointFileError(f"{path}: 'edn' metadata 'fps' must be finite and at most {MAX_FPS}, "
                                f"found {meta['fps']!r}")
    if "frame_count" in meta:
        count = meta["frame_count"]
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_FRAMES:
            raise KeypointFileError(f"{path}: 'edn' metadata 'frame_count' must be a whole number in 1..{MAX_FRAMES},"
                                    f" found {count!r}")
    return meta
