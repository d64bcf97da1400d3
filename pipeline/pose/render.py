"""Stage 6: stick figures in OpenPose's colours (body 25, face 70, two hands of 21).

Colours follow OpenPose's renderers (BODY_25 and hand palettes, white face), a limb taking
the colour of its second joint as OpenPose draws it. Drawing is integer-exact cv2, so the
same keypoints give the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.pose.keypoints import (BODY, BODY_25_LIMBS, FACE, FACE_CONTOURS, HAND_LIMBS, LEFT_HAND,
                                     RIGHT_HAND, KeypointTrack, present, read_keypoints)
from pipeline.provenance import atomic_dir, provenance, write_json

log = logging.getLogger(__name__)

# OpenPose POSE_BODY_25_COLORS_RENDER (RGB), one per joint.
BODY_25_COLORS = np.array([
    (255, 0, 85), (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
    (85, 255, 0), (0, 255, 0), (255, 0, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
    (0, 170, 255), (0, 85, 255), (0, 0, 255), (255, 0, 170), (170, 0, 255), (255, 0, 255),
    (85, 0, 255), (0, 0, 255), (0, 0, 255), (0, 0, 255), (0, 255, 255), (0, 255, 255), (0, 255, 255),
], dtype=np.uint8)
# OpenPose HAND_COLORS_RENDER (RGB): wrist grey, then four shades per finger.
HAND_COLORS = np.array([
    (100, 100, 100),
    (100, 0, 0), (150, 0, 0), (200, 0, 0), (255, 0, 0),
    (100, 100, 0), (150, 150, 0), (200, 200, 0), (255, 255, 0),
    (0, 100, 50), (0, 150, 75), (0, 200, 100), (0, 255, 125),
    (0, 50, 100), (0, 75, 150), (0, 100, 200), (0, 125, 255),
    (100, 0, 100), (150, 0, 150), (200, 0, 200), (255, 0, 255),
], dtype=np.uint8)
FACE_COLOR = (255, 255, 255)


def _bgr(rgb: np.ndarray | tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rgb)
    return b, g, r


def line_widths(height: int) -> tuple[int, int]:
    """Body and detail (face, hand) line widths for a canvas height: 4 and 2 px at 512."""
    return max(1, round(height / 128)), max(1, round(height / 256))


def draw_pose(canvas: np.ndarray, joints: np.ndarray, *, scale: float = 1.0, face: bool = True,
              hands: bool = True) -> np.ndarray:
    """Draw one frame's (137, 3) keypoints onto a BGR ``canvas`` in place and return it.

    ``scale`` multiplies coordinates (keypoints in other pixels than the canvas).
    """
    import cv2

    body_w, detail_w = line_widths(canvas.shape[0])
    xy = joints[:, :2] * scale
    ok = present(joints)
    pts = np.zeros((len(joints), 2), dtype=np.int32)
    pts[ok] = np.round(xy[ok]).astype(np.int32)

    def seg(a: int, b: int, color: tuple[int, int, int], width: int) -> None:
        if ok[a] and ok[b]:
            cv2.line(canvas, tuple(pts[a]), tuple(pts[b]), color, width, cv2.LINE_AA)

    body0 = BODY.start
    for a, b in BODY_25_LIMBS:
        seg(body0 + a, body0 + b, _bgr(BODY_25_COLORS[b]), body_w)
    for j in range(BODY.start, BODY.stop):
        if ok[j]:
            cv2.circle(canvas, tuple(pts[j]), body_w, _bgr(BODY_25_COLORS[j - body0]), -1, cv2.LINE_AA)
    if face:
        for contour, closed in FACE_CONTOURS:
            idx = [FACE.start + i for i in contour]
            for a, b in zip(idx, idx[1:] + ([idx[0]] if closed else [])):
                seg(a, b, FACE_COLOR, detail_w)
        for pupil in (FACE.start + 68, FACE.start + 69):
            if ok[pupil]:
                cv2.circle(canvas, tuple(pts[pupil]), detail_w, FACE_COLOR, -1, cv2.LINE_AA)
    if hands:
        for part in (LEFT_HAND, RIGHT_HAND):
            for a, b in HAND_LIMBS:
                seg(part.start + a, part.start + b, _bgr(HAND_COLORS[b]), detail_w)
    return canvas


def render_frame(joints: np.ndarray, size: tuple[int, int], *, scale: float = 1.0, face: bool = True,
                 hands: bool = True) -> np.ndarray:
    """A black ``size`` = (width, height) BGR image with the stick figure drawn."""
    width, height = size
    return draw_pose(np.zeros((height, width, 3), dtype=np.uint8), joints, scale=scale, face=face,
                     hands=hands)


def encode_png(bgr: np.ndarray) -> bytes:
    """PNG bytes of a BGR uint8 image: no row filters, zlib level 1 with run-length matching.

    Stick figures are black canvases with a few lines; this takes about a third of the time of
    cv2.imencode's PNG (which filters every row) for files of the same size, and writing them
    was the rendering stage's bottleneck.
    """
    import cv2

    h, w = bgr.shape[:2]
    raw = np.zeros((h, w * 3 + 1), np.uint8)  # each row: filter type 0, then RGB
    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=raw[:, 1:].reshape(h, w, 3))
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    data = packer.compress(raw) + packer.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def render_track(track: KeypointTrack, out_dir: str | Path, size: tuple[int, int] | None = None, *,
                 face: bool = True, hands: bool = True, inputs: tuple[str | Path, ...] = (),
                 keypoints_path: str | Path | None = None) -> int:
    """Write ``out_dir/{frame:06d}.png`` for every frame of ``track``; return the count.

    Keypoints are scaled from the track's frame size to ``size`` when they differ in height;
    widths then follow (same aspect expected). ``out_dir`` may not hold ``inputs``. meta.json
    names the keypoints drawn (``keypoints_path``, their stage and fingerprint:
    :func:`pipeline.pose.chain.render_record`), so later stages can check they go together.
    """
    from pipeline.pose.chain import RENDER_KEY, render_record

    src_w, src_h = int(track.meta["width"]), int(track.meta["height"])
    size = size or (src_w, src_h)
    scale = size[1] / src_h

    from tqdm import tqdm

    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "render", r"\d{6}\.png|meta\.json", inputs=inputs) as tmp:
        def write(i: int) -> None:
            image = render_frame(track.data[i], size, scale=scale, face=face, hands=hands)
            (tmp / f"{int(track.frames[i]):06d}.png").write_bytes(encode_png(image))

        # cv2 drawing, zlib and file writes release the GIL, so threads use both cores.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(tqdm(pool.map(write, range(len(track.frames))), total=len(track.frames),
                      desc=f"render {out_dir.name}", unit="frame", mininterval=1.0))
        write_json(tmp / "meta.json", {
            "width": size[0], "height": size[1], "frame_count": len(track.frames),
            "fps": track.meta.get("fps"),
            "provenance": provenance("render", {"size": list(size), "face": face, "hands": hands}),
            RENDER_KEY: render_record(track, keypoints_path),
        })
    return len(track.frames)


def cli(args: argparse.Namespace) -> int:
    track = read_keypoints(args.keypoints)
    n = render_track(track, args.out_dir, args.size, face=not args.no_face, hands=not args.no_hands,
                     inputs=(args.keypoints,), keypoints_path=args.keypoints)
    log.info("%s: %d stick figures -> %s", args.keypoints, n, args.out_dir)
    return 0
