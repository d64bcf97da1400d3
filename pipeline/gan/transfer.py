"""``edn transfer``: a source's motion on the target (Chan et al. 2019, section 4, "transfer").

The source's poses, normalized into the target's frame (``edn normalize``) and drawn as stick
figures at the target's frame size (``edn render``), are fitted to the model's resolution as in
training and run through the generator frame by frame, each output fed back as the next
frame's previous-frame input; the face GAN refines the face box (from the normalized
keypoints). Frames go to an H.264 MP4 (yuv420p, the source's frame rate) and to a side-by-side
MP4 (source frame | stick figure | result), both then given the source's soundtrack over the
frames' span (``pipeline.footage.audio``); a JSON beside them records models, frames, speed and device.
Normalized keypoints, stick figures and source frames must be one chain (:mod:`pipeline.pose.chain`).
"""

from __future__ import annotations

import argparse
import logging
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pipeline.gan.data import indexed_images, read_rgb
from pipeline.pose.chain import check_chain
from pipeline.pose.keypoints import read_keypoints
from pipeline.pose.normalize import repaired_frames
from pipeline.provenance import provenance, write_json

log = logging.getLogger(__name__)


def _indexed(folder: Path, frames: np.ndarray, what: str) -> list[Path]:
    """The image of each frame index in ``folder``; errors name the folder and the first missing frame."""
    found = indexed_images(folder, what)
    missing = [int(f) for f in frames if int(f) not in found]
    if missing:
        raise ValueError(f"{folder}: no {what} image for {len(missing)} of {len(frames)} frames "
                         f"(first: frame {missing[0]})")
    return [found[int(f)] for f in frames]


def mark_repaired(panel: np.ndarray) -> np.ndarray:
    """Flag a stick-figure panel (BGR) whose pose QC repaired: a red border and "QC: repaired", in place."""
    import cv2

    h, w = panel.shape[:2]
    border = max(2, h // 64)
    cv2.rectangle(panel, (0, 0), (w - 1, h - 1), (0, 0, 255), border)
    cv2.putText(panel, "QC: repaired", (2 * border, 2 * border + max(8, h // 24)), cv2.FONT_HERSHEY_SIMPLEX,
                max(0.3, h / 700), (0, 0, 255), max(1, h // 256), cv2.LINE_AA)
    return panel


def label_follows(panel: np.ndarray, share: float) -> np.ndarray:
    """Write the share of the source's frames the transfer follows (not repaired by QC) at the panel's foot."""
    import cv2

    h = panel.shape[0]
    colour = (0, 0, 255) if share < 0.9 else (255, 255, 255)
    cv2.putText(panel, f"follows source: {share:.0%} of frames", (max(2, h // 64), h - max(4, h // 40)),
                cv2.FONT_HERSHEY_SIMPLEX, max(0.3, h / 900), colour, max(1, h // 300), cv2.LINE_AA)
    return panel


def _transfer_inputs(normalized: Path, render_dir: Path) -> tuple[Any, tuple[int, int], float, list[Path]]:
    """The normalized keypoints, their frame size and rate, and their stick figures, which must be drawn at
    that size."""
    track = read_keypoints(normalized)
    missing = [k for k in ("width", "height", "fps") if not track.meta.get(k)]
    if missing:
        raise ValueError(f"{normalized}: keypoint metadata lacks {missing} (not written by `edn normalize`?)")
    frame_size = (int(track.meta["width"]), int(track.meta["height"]))
    poses = _indexed(render_dir, track.frames, "stick-figure")
    first = read_rgb(poses[0])
    if (first.shape[1], first.shape[0]) != frame_size:
        raise ValueError(f"{poses[0]}: stick figure is {first.shape[1]}x{first.shape[0]} but {normalized} is in "
                         f"{frame_size[0]}x{frame_size[1]} frames (render it with `edn render` from this file)")
    return track, frame_size, float(track.meta["fps"]), poses


def _panel(source_path: Path, pose: np.ndarray, result: np.ndarray, repaired: bool, follows: float | None,
           height: int) -> np.ndarray:
    """source | stick figure | result (BGR): the stick figure marked where pose QC repaired the frame, and
    labelled with the share of frames that follow the source when any was repaired."""
    import cv2

    from pipeline.footage.images import read_image
    from pipeline.footage.video import side_by_side

    source = read_image(source_path)
    if source is None:
        raise ValueError(f"{source_path}: cannot read source frame")
    pose_bgr = cv2.cvtColor(pose, cv2.COLOR_RGB2BGR)
    if repaired:
        mark_repaired(pose_bgr)
    if follows is not None:
        label_follows(pose_bgr, follows)
    return side_by_side(source, pose_bgr, result, height=height)


def transfer(normalized: str | Path, render_dir: str | Path, source_frames: str | Path, generator: str | Path,
             out: str | Path, *, face: str | Path | None = None, side_by_side_out: str | Path | None = None,
             record_out: str | Path | None = None, device: str = "auto", crf: int = 18,
             precision: str = "auto", audio: bool = True, compile: str = "auto") -> dict[str, Any]:
    """Make the transfer video ``out`` (and the side-by-side video and JSON record); returns the record.

    ``audio``: both videos carry the source's soundtrack over the frames' span (``pipeline.footage.audio``).
    """
    import cv2
    import torch
    from tqdm import tqdm

    from pipeline.footage.media import probe_video
    from pipeline.footage.streams import consecutive_differences, prefetch
    from pipeline.footage.video import VideoEncoder
    from pipeline.gan.generate import face_boxes, generate_frames, load_models, model_pose

    normalized, render_dir, source_frames, out = Path(normalized), Path(render_dir), Path(source_frames), Path(out)
    track, frame_size, fps, poses = _transfer_inputs(normalized, render_dir)
    sources = _indexed(source_frames, track.frames, "source frame") if side_by_side_out else []
    repaired = repaired_frames(track)  # source frames pose QC repaired (edn normalize --qc)
    follows = 1 - len(repaired) / len(track.frames)
    torch.manual_seed(0)  # inference is deterministic; fixed anyway so nothing random slips in unseen
    models = load_models(generator, face, device, precision)
    # The figures drawn from these keypoints, the keypoints of these frames (whose soundtrack the videos get).
    check_chain(normalized, track, frames_dir=source_frames, render_dir=render_dir)
    models.use_compile(compile, len(poses))
    log.info("compile %s", models.compile_reason)
    boxes = face_boxes(track.data, frame_size, models)
    log.info("%s: %d frames at %.6g fps, model %dx%d on %s%s", normalized, len(poses), fps, *models.size,
             models.device, " with the face GAN" if models.face is not None else "")

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    # One pass, nothing written but the videos and nothing held but a few frames. Three threads:
    # stick figures are read and fitted ahead, the generator runs ahead of the encoding in its own
    # thread (on a GPU it is then never kept waiting for the host's work on the last frame), and
    # here each generated frame goes to both encoders and its consecutive difference is taken.
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(VideoEncoder(out, fps, crf=crf, stage="transfer"))
        panel_video = (stack.enter_context(VideoEncoder(side_by_side_out, fps, crf=crf, stage="transfer"))
                       if side_by_side_out else None)
        shown, to_model = itertools.tee(prefetch(model_pose(p, models.size) for p in poses))
        generated = prefetch(zip(shown, generate_frames(models, to_model, boxes)))

        def written() -> Iterator[np.ndarray]:
            """Each generated frame (BGR), once it has gone to both encoders."""
            for i, (pose, frame) in enumerate(tqdm(generated, total=len(poses), desc=f"transfer {out.stem}",
                                                   unit="frame", mininterval=1.0)):
                result = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                main.write(result)
                if panel_video is not None:
                    panel_video.write(_panel(sources[i], pose, result, int(track.frames[i]) in repaired,
                                             follows if repaired else None, models.size[1]))
                yield result

        differences = consecutive_differences(written())  # two frames held at a time
        seconds = time.perf_counter() - started
    soundtrack = audio and _add_soundtrack(source_frames, track.frames, [out, side_by_side_out])

    info = probe_video(out)
    record = {
        "provenance": provenance("transfer", {"normalized": str(normalized), "render": str(render_dir),
                                              "source_frames": str(source_frames), "device": str(models.device),
                                              "precision": models.precision, "crf": crf, "seed": 0}),
        "models": models.records, "frames": len(poses), "first_frame": int(track.frames[0]), "fps": fps,
        "size": list(models.size), "device": str(models.device), "precision": models.precision,
        "precision_reason": models.precision_reason, "compile": models.compiled,
        "compile_reason": models.compile_reason, "generation_seconds": round(seconds, 3),
        "frames_per_second": round(len(poses) / seconds, 3) if seconds > 0 else None,
        "face_boxes": sum(b is not None for b in boxes) if models.face is not None else 0,
        "video": info.as_dict(), "audio": soundtrack,
        "side_by_side": str(side_by_side_out) if side_by_side_out else None,
        "qc_repaired": len(repaired), "qc_repaired_frames": sorted(repaired), "follows_source": round(follows, 4),
        "consecutive_differences": differences,
        "mean_consecutive_difference": float(np.mean(differences)) if differences else None,
    }
    if record_out:
        write_json(record_out, record)
    return record


def _add_soundtrack(source_frames: Path, frames: np.ndarray, videos: list[Path | None]) -> bool:
    """The source's audio under each of ``videos``; False when the source (or its frames' record) has none."""
    from pipeline.footage.audio import add_soundtrack
    from pipeline.footage.extract import read_frames_meta

    meta = read_frames_meta(source_frames)
    if not meta.get("audio"):
        log.info("%s: the source has no soundtrack; the videos are silent", source_frames)
        return False
    if len(frames) and np.any(np.diff(frames) != 1):
        # output frame k is source frame frames[k]: with gaps no one span of audio fits
        log.warning("%s: the frames are not one run (gaps), so the videos are silent", source_frames)
        return False
    for video in videos:
        if video is not None:
            add_soundtrack(video, meta, int(frames[0]), len(frames))
    return True


def cli(args: argparse.Namespace) -> int:
    record = transfer(args.normalized, args.render_dir, args.source_frames, args.generator, args.out,
                      face=args.face, side_by_side_out=args.side_by_side,
                      record_out=args.record or args.out.with_suffix(".json"),
                      device=args.device, crf=args.crf, precision=args.precision, audio=args.audio,
                      compile=args.compile)
    log.info("%s: %d frames at %.6g fps (%.1f generated frames/s on %s)", args.out, record["frames"],
             record["fps"], record["frames_per_second"] or 0.0, record["device"])
    return 0
