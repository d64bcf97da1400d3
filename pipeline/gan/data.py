"""Training data: consecutive (stick figure, frame) pairs of a target subject's clips.

A clip is a frames folder (``000000.jpg ...`` plus ``meta.json``), a stick-figure folder with
the same indices (``000000.png ...``) and the smoothed keypoint Parquet of those frames.
The last ``holdout`` fraction of every clip is kept out of training for evaluation.

Images are brought to the model resolution by one transform shared by frames, stick
figures and keypoints: scale to the target height, then centre-crop or pad the width.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.gan.augment import Augmentation
from pipeline.pose.body_region import body_heights, body_mask
from pipeline.pose.chain import check_chain
from pipeline.pose.keypoints import N_JOINTS, read_keypoints

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Fit:
    """Source (w, h) -> target (w, h): ``x' = x * scale + offset_x``, ``y' = y * scale``."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int

    @property
    def scale(self) -> float:
        return self.dst_h / self.src_h

    @property
    def scaled_w(self) -> int:
        return max(1, int(round(self.src_w * self.scale)))

    @property
    def offset_x(self) -> int:
        # Negative: crop (centred); positive: pad (centred).
        return (self.dst_w - self.scaled_w) // 2


def fit_to_size(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` (HxWxC uint8) to ``height``, then centre-crop or zero-pad the width to ``width``."""
    import cv2

    fit = Fit(image.shape[1], image.shape[0], width, height)
    if (fit.scaled_w, height) != (image.shape[1], image.shape[0]):
        interp = cv2.INTER_AREA if fit.scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (fit.scaled_w, height), interpolation=interp)
    off = fit.offset_x
    if off < 0:
        return np.ascontiguousarray(image[:, -off:-off + width])
    if off > 0 or image.shape[1] != width:
        out = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
        out[:, off:off + image.shape[1]] = image
        return out
    return image


def fit_keypoints(keypoints: np.ndarray, src_w: int, src_h: int, width: int, height: int) -> np.ndarray:
    """Apply :func:`fit_to_size`'s transform to keypoints (..., 137, 3); confidence unchanged."""
    fit = Fit(src_w, src_h, width, height)
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[..., 0] = out[..., 0] * fit.scale + fit.offset_x
    out[..., 1] = out[..., 1] * fit.scale
    return out


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    from pipeline.footage.images import read_image

    image = read_image(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot read image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def indexed_images(folder: Path, what: str) -> dict[int, Path]:
    """Frame index -> image path of a numbered folder (000000.jpg/.png ...); errors name the folder."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found")
    found = {int(p.stem): p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit()}
    if not found:
        raise ValueError(f"{folder}: no {what} images (000000.jpg/.png ...) in folder")
    return found


@dataclass
class Clip:
    """One clip's aligned files; ``keypoints[i]`` is frame ``indices[i]`` in its frames' pixels."""

    frames_dir: Path
    render_dir: Path
    keypoints_path: Path
    indices: list[int]
    frame_paths: list[Path]
    pose_paths: list[Path]
    keypoints: np.ndarray
    width: int
    height: int
    fps: float


def load_clip(frames_dir: str | Path, render_dir: str | Path, keypoints_path: str | Path, *,
              check_frame: int | None = None) -> Clip:
    """Check that frames, stick figures and keypoints line up and are one chain (the keypoints detected
    on these frames, the stick figures drawn from these keypoints: :func:`pipeline.pose.chain.check_chain`);
    errors name the file and the problem.

    Only the images of frame ``check_frame`` (default: the first) are read, to check their sizes:
    evaluation passes a held-out frame so that it never opens a training image.
    """
    import cv2

    from pipeline.footage.extract import check_frames_complete
    from pipeline.footage.images import read_image

    frames_dir, render_dir, keypoints_path = Path(frames_dir), Path(render_dir), Path(keypoints_path)
    meta_path = frames_dir / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: frames metadata not found (run `edn extract` first)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: invalid JSON ({exc})") from exc
    missing = [k for k in ("width", "height", "fps") if k not in meta]
    if missing:
        raise ValueError(f"{meta_path}: metadata lacks {missing}")
    check_frames_complete(frames_dir)  # a lost frame is named, not taken for a shorter clip
    frames = indexed_images(frames_dir, "frame")
    poses = indexed_images(render_dir, "stick-figure")
    if len(frames) != len(poses):
        raise ValueError(f"{render_dir}: {len(poses)} stick figures but {frames_dir} has {len(frames)} frames")
    if set(frames) != set(poses):
        diff = sorted(set(frames) ^ set(poses))[:5]
        raise ValueError(f"{render_dir}: stick-figure indices differ from {frames_dir} (e.g. {diff})")
    indices = sorted(frames)
    if indices != list(range(indices[0], indices[0] + len(indices))):
        raise ValueError(f"{frames_dir}: frame numbering has gaps; consecutive frames are needed")
    check = indices[0] if check_frame is None else check_frame
    if check not in frames:
        raise ValueError(f"{frames_dir}: frame {check} not in the clip ({indices[0]}-{indices[-1]})")
    first_frame = read_image(frames[check], cv2.IMREAD_UNCHANGED)
    first_pose = read_image(poses[check], cv2.IMREAD_UNCHANGED)
    if first_frame is None or first_pose is None:
        bad = frames[check] if first_frame is None else poses[check]
        raise ValueError(f"{bad}: cannot read image")
    if first_frame.shape[:2] != first_pose.shape[:2]:
        raise ValueError(f"{poses[check]}: stick figure is {first_pose.shape[1]}x{first_pose.shape[0]} "
                         f"but frame {frames[check]} is {first_frame.shape[1]}x{first_frame.shape[0]}")
    height, width = first_frame.shape[:2]

    track = read_keypoints(keypoints_path)
    check_chain(keypoints_path, track, frames_dir=frames_dir, frames_meta=meta, render_dir=render_dir)
    kp = np.full((len(indices), N_JOINTS, 3), np.nan, dtype=np.float32)
    kp[..., 2] = 0.0
    row = {int(f): i for i, f in enumerate(track.frames)}
    hits = [i for i, f in enumerate(indices) if f in row]
    if not hits:
        raise ValueError(f"{keypoints_path}: no keypoint frame matches the frames in {frames_dir}")
    kp[hits] = track.data[[row[indices[i]] for i in hits]]
    # Keypoints are in the detector's pixels; bring them to these frames' size if they differ.
    kp_h = float(track.meta.get("height", height))
    if kp_h != height:
        kp[..., :2] *= height / kp_h
    return Clip(frames_dir, render_dir, keypoints_path, indices, [frames[i] for i in indices],
                [poses[i] for i in indices], kp, width, height, float(meta["fps"]))


def split_holdout(n_frames: int, holdout: float) -> tuple[range, range]:
    """Positions (0-based) used for training and the held-out tail of a clip of ``n_frames``."""
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    n_held = int(round(n_frames * holdout))
    return range(0, n_frames - n_held), range(n_frames - n_held, n_frames)


class PairDataset:
    """Samples (t, t+1) of consecutive training frames of all clips, at the model resolution.

    Each item is a dict: ``pose_t, pose_t1, real_t, real_t1`` uint8 (3, H, W) tensors (a quarter
    of float32's bytes between the workers and the GPU; ``pipeline.gan.task.batch_to_device`` makes
    them float in [-1, 1] on the device), each of the four images decoded once; ``box_t1`` int64 (4,) face box of frame t+1 (-1s when none); ``has_face``;
    ``clip`` and ``frame`` (index of frame t) for bookkeeping.

    ``excluded``: per clip, frame indices (the frames' numbering) that no sample may use,
    e.g. frames pose QC does not call ok; a pair is kept only when both its frames are allowed.

    ``augment`` (:mod:`pipeline.gan.augment`; training only): each sample mirrored, jittered and its
    stick figures given detector faults as drawn for (seed, epoch, index); the item index may then be
    ``(epoch, index)``. ``plates`` (uint8 (n_clips, 3, H, W)) and ``plate_unknown`` (bool (n_clips, 1, H, W)):
    with augmentation, each item also carries its clip's ``plate`` (and ``plate_unknown``) transformed as
    its frames are; with ``lambda_new_pose`` or ``lambda_mismatch`` also ``new_pose_t, new_pose_t1``, its stick
    figures with limbs turned (:func:`pipeline.gan.augment.turn_limbs`), and with ``lambda_new_pose_plate``
    ``new_plate_t, new_plate_t1``, bool (1, H, W), True outside the body those keypoints outline
    (:func:`pipeline.pose.body_region.body_mask`). Without augmentation (or all its
    settings 0) items are exactly as they always were.
    """

    def __init__(self, clips: list[Clip], width: int, height: int, holdout: float = 0.2,
                 face_box_size: int | None = None, require_face: bool = False,
                 excluded: list[set[int]] | None = None, augment: Augmentation | None = None,
                 plates: Any = None, plate_unknown: Any = None):
        from pipeline.gan.models.face import face_box

        self.clips, self.width, self.height = clips, width, height
        self.augment = augment if augment is not None and augment.active else None
        self.face_box_size = face_box_size
        self.plates, self.plate_unknown = plates, plate_unknown
        self.keypoints: list[np.ndarray] = []
        self.drawing = [render_settings(clip) for clip in clips] if self.augment is not None else []
        self.items: list[tuple[int, int]] = []
        self.held_out: list[list[int]] = []
        self.boxes: list[np.ndarray] = []
        # each clip's standing height at the model size (median over its frames), for the new poses' body masks
        self.body_heights: list[float] = []
        if excluded is not None and len(excluded) != len(clips):
            raise ValueError(f"excluded frames given for {len(excluded)} clips but there are {len(clips)}")
        self.excluded = [set(e) for e in excluded] if excluded is not None else [set() for _ in clips]
        for c, clip in enumerate(clips):
            train, held = split_holdout(len(clip.indices), holdout)
            if len(train) < 2:
                raise ValueError(f"{clip.frames_dir}: {len(clip.indices)} frames leave fewer than 2 for training "
                                 f"after holding out {holdout:.0%}")
            self.held_out.append([clip.indices[i] for i in held])
            kp = fit_keypoints(clip.keypoints, clip.width, clip.height, width, height)
            self.keypoints.append(kp)
            if self.augment is not None and self.augment.lambda_new_pose_plate > 0:
                self.body_heights.append(clip_body_height(kp, clip.fps))
            boxes = np.full((len(clip.indices), 4), -1, dtype=np.int64)
            if face_box_size is not None:
                for i in range(len(clip.indices)):
                    box = face_box(kp[i], width, height, face_box_size)
                    if box is not None:
                        boxes[i] = box
            self.boxes.append(boxes)
            for t in train[:-1]:
                if clip.indices[t] in self.excluded[c] or clip.indices[t + 1] in self.excluded[c]:
                    continue  # a frame pose QC rejects: neither a target nor a previous frame
                if require_face and boxes[t + 1, 0] < 0:
                    continue  # no face and no nose: no face loss for this sample
                self.items.append((c, t))
        if not self.items:
            raise ValueError("no training samples" + (" with a detectable face" if require_face else "")
                             + " in " + ", ".join(str(c.frames_dir) for c in clips))

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, path: Path) -> Any:
        import torch

        image = fit_to_size(read_rgb(path), self.width, self.height)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def __getitem__(self, k: int | tuple[int, int]) -> dict[str, Any]:
        import torch

        epoch, k = k if isinstance(k, tuple) else (0, k)
        if self.augment is not None:
            return self._augmented(epoch, k)
        c, t = self.items[k]
        clip = self.clips[c]
        box = self.boxes[c][t + 1]
        return {
            "pose_t": self._load(clip.pose_paths[t]), "pose_t1": self._load(clip.pose_paths[t + 1]),
            "real_t": self._load(clip.frame_paths[t]), "real_t1": self._load(clip.frame_paths[t + 1]),
            "box_t1": torch.from_numpy(box.copy()), "has_face": bool(box[0] >= 0),
            "clip": c, "frame": clip.indices[t],
        }

    def _augmented(self, epoch: int, k: int) -> dict[str, Any]:
        """Item ``k`` under the augmentation drawn for (seed, epoch, k): both frames and the plate under one
        transform, the stick figures re-drawn from the transformed keypoints with the input's faults."""
        import torch

        from pipeline.gan.augment import draw_sample, pose_faults, transform_image, transform_keypoints, turn_limbs
        from pipeline.gan.models.face import face_box

        aug = self.augment
        c, t = self.items[k]
        clip = self.clips[c]
        draw = draw_sample(aug, epoch, k, self.width, self.height)

        def tensor(image: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

        def frame(i: int) -> Any:
            return tensor(transform_image(fit_to_size(read_rgb(clip.frame_paths[i]), self.width, self.height), draw))

        item: dict[str, Any] = {"real_t": frame(t), "real_t1": frame(t + 1)}
        moved = [transform_keypoints(self.keypoints[c][i], draw) for i in (t, t + 1)]
        for name, i, kp in (("pose_t", t, moved[0]), ("pose_t1", t + 1, moved[1])):
            faulty = pose_faults(kp, aug, draw.rng, self.height)
            if draw.identity and np.array_equal(faulty, kp, equal_nan=True):
                item[name] = self._load(clip.pose_paths[i])  # as drawn: the stored image is the same bytes
            else:
                item[name] = tensor(render_stick_figure(clip, to_frame_pixels(clip, faulty, self.width, self.height),
                                                        self.width, self.height, *self.drawing[c]))
        if aug.new_poses:  # the same pair's figures with limbs turned: a pose without a frame
            turns = aug.new_pose_turns(epoch, k)
            for name, kp in (("new_pose_t", moved[0]), ("new_pose_t1", moved[1])):
                turned = turn_limbs(kp, turns)
                pixels = to_frame_pixels(clip, turned, self.width, self.height)
                item[name] = tensor(render_stick_figure(clip, pixels, self.width, self.height, *self.drawing[c]))
                if aug.lambda_new_pose_plate > 0:  # where the new pose's body cannot be: the plate's pixels
                    height = self.body_heights[c] * math.sqrt(abs(np.linalg.det(draw.matrix[:, :2])))
                    body = body_mask(turned, height, self.width, self.height)
                    item[name.replace("new_pose", "new_plate")] = torch.from_numpy(~body)[None]
        box = self.boxes[c][t + 1]
        if self.face_box_size is not None and not draw.identity:
            found = face_box(moved[1], self.width, self.height, self.face_box_size)
            box = np.array(found if found is not None else (-1, -1, -1, -1), dtype=np.int64)
        item.update({"box_t1": torch.from_numpy(np.array(box, dtype=np.int64)), "has_face": bool(box[0] >= 0),
                     "clip": c, "frame": clip.indices[t]})
        if self.plates is not None:
            plate = np.ascontiguousarray(self.plates[c].numpy().transpose(1, 2, 0))
            item["plate"] = tensor(transform_image(plate, draw))
        if self.plate_unknown is not None:
            unknown = self.plate_unknown[c, 0].numpy().astype(np.uint8)
            item["plate_unknown"] = torch.from_numpy(transform_image(unknown, draw, nearest=True) > 0)[None]
        return item


def clip_body_height(keypoints: np.ndarray, fps: float) -> float:
    """The median standing height of a clip's (frames, 137, 3) keypoints, in their pixels
    (:func:`pipeline.pose.body_region.body_heights`); NaN when no frame shows two segments."""
    heights = body_heights(keypoints, fps)
    return float(np.nanmedian(heights)) if np.isfinite(heights).any() else float("nan")


def render_settings(clip: Clip) -> tuple[bool, bool]:
    """(face, hands) with which ``edn render`` drew a clip's stick figures (its meta.json), so that a
    re-drawn figure is drawn the same way; the figures must be at the frames' size (load_clip checks)."""
    path = clip.render_dir / "meta.json"
    try:
        params = json.loads(path.read_text())["provenance"]["params"]
        return bool(params["face"]), bool(params["hands"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: augmentation re-draws the stick figures as `edn render` drew them and needs "
                         f"its face and hands settings from this file ({exc!r}); render the clip again") from exc


def to_frame_pixels(clip: Clip, keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """Keypoints at the model size back in the clip's frame pixels: :func:`fit_keypoints` undone."""
    fit = Fit(clip.width, clip.height, width, height)
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] - fit.offset_x) / fit.scale
    out[..., 1] = out[..., 1] / fit.scale
    return out


def render_stick_figure(clip: Clip, keypoints: np.ndarray, width: int, height: int, face: bool = True,
                        hands: bool = True) -> np.ndarray:
    """RGB stick figure of (137, 3) keypoints in the clip's frame pixels at the model size, by the path of
    the stored ones: drawn by ``edn render`` at the frames' size, then fitted (:func:`fit_to_size`), so
    lines keep the widths and anti-aliasing of every stored figure."""
    import cv2

    from pipeline.pose.render import render_frame

    bgr = render_frame(keypoints, (clip.width, clip.height), face=face, hands=hands)
    return fit_to_size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), width, height)
