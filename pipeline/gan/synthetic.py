"""A synthetic clip with everything a training or transfer run reads, for tests and benchmarks.

No footage or pose detector is needed: a figure with a face, drawn on a gradient, sways and waves;
its keypoints, stick figures and frames agree with each other.
"""

from __future__ import annotations

from pathlib import Path


def make_synthetic_clip(root: Path, n_frames: int = 8, width: int = 64, height: int = 128,
                        fps: float = 30.0, face_pattern: bool = False) -> tuple[Path, Path, Path]:
    """A clip: frames (JPEG + meta.json), stick figures, keypoint Parquet.

    A figure with a face sways sideways and waves; the frames paint the same figure (clothes
    along the limbs, a skin-coloured head) on a gradient, so frame and stick figure correspond.
    ``face_pattern``: a larger head that tilts (period 12 frames) and holds fine stripes and two
    eyes turning with it; its 70 face keypoints (an outline and two pupils) tilt too, so the
    pattern is a function of the pose (the face GAN's test). Returns (frames_dir, render_dir, keypoints_path).
    """
    import json

    import cv2
    import numpy as np

    from pipeline.pose.keypoints import BODY_25_LIMBS, FACE, J, KeypointTrack, chain_provenance, empty_track, \
        write_keypoints
    from pipeline.pose.render import render_track
    from pipeline.provenance import provenance

    s = height / 400  # the figure is laid out on a 200x400 canvas
    body = {"Nose": (100, 60), "Neck": (100, 100), "RShoulder": (70, 100), "LShoulder": (130, 100),
            "RElbow": (60, 150), "LElbow": (140, 150), "RWrist": (55, 200), "LWrist": (145, 200),
            "MidHip": (100, 200), "RHip": (85, 200), "LHip": (115, 200), "RKnee": (85, 280),
            "LKnee": (115, 280), "RAnkle": (85, 360), "LAnkle": (115, 360)}
    data = empty_track(n_frames)
    angles = np.linspace(0, 2 * np.pi, 70, endpoint=False)
    head = (24, 30) if face_pattern else (14, 18)  # face outline half-axes on the 200x400 canvas
    tilts = 0.6 * np.sin(2 * np.pi * np.arange(n_frames) / 12) if face_pattern else np.zeros(n_frames)
    for t in range(n_frames):
        dx = 6 * np.sin(2 * np.pi * t / n_frames)
        for name, (x, y) in body.items():
            wave = -25 * np.sin(np.pi * t / n_frames) if name in ("RWrist", "LWrist") else 0
            data[t, J[name]] = ((x + dx) * s + (width - 200 * s) / 2, (y + wave) * s, 1.0)
        nose = data[t, J["Nose"], :2]
        ex, ey = head[0] * s * np.cos(angles), head[1] * s * np.sin(angles)
        if face_pattern:  # the last two face points are the pupils
            ex[68:], ey[68:] = np.array([-9, 9]) * s, np.array([-8, -8]) * s
        c, sn = np.cos(tilts[t]), np.sin(tilts[t])
        data[t, FACE, 0] = nose[0] + c * ex - sn * ey
        data[t, FACE, 1] = nose[1] + sn * ex + c * ey
        data[t, FACE, 2] = 0.9
    # The frames' record starts the keypoints' lineage, as `edn extract` then `edn detect` leave it.
    frames_record = provenance("synthetic-clip", {"root": str(root), "n_frames": n_frames, "width": width,
                                                  "height": height, "fps": fps, "face_pattern": face_pattern})
    track = KeypointTrack(data, np.arange(n_frames), chain_provenance(
        {"width": width, "height": height, "fps": fps, "provenance": frames_record},
        provenance("synthetic-keypoints", {"root": str(root)})))

    frames_dir, render_dir, kp_path = root / "frames", root / "render", root / "keypoints.parquet"
    frames_dir.mkdir(parents=True)
    ramp = np.linspace(40, 200, height, dtype=np.float32)[:, None]
    for t in range(n_frames):
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0], image[..., 1], image[..., 2] = ramp, 120, 255 - ramp  # BGR background
        pts = {j: tuple(int(round(v)) for v in data[t, j, :2]) for j in range(25) if data[t, j, 2] > 0}
        for a, b in BODY_25_LIMBS:
            if a in pts and b in pts:
                cv2.line(image, pts[a], pts[b], (30, 30, 160), max(2, int(12 * s)))
        if face_pattern:
            _patterned_face(image, data[t, J["Nose"], :2], (head[0] * s, head[1] * s), tilts[t], data[t, FACE][68:, :2])
        else:
            cv2.ellipse(image, pts[J["Nose"]], (int(16 * s), int(20 * s)), 0, 0, 360, (120, 170, 230), -1)
        cv2.imwrite(str(frames_dir / f"{t:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (frames_dir / "meta.json").write_text(json.dumps({"width": width, "height": height, "fps": fps,
                                                      "frame_count": n_frames, "provenance": frames_record}))
    render_track(track, render_dir, keypoints_path=kp_path)
    write_keypoints(kp_path, track)
    return frames_dir, render_dir, kp_path


def _patterned_face(image, centre, axes, tilt: float, pupils) -> None:
    """Paint, in place, a face ellipse tilted by ``tilt`` radians holding stripes 4 px wide across the
    tilt and dark eyes at ``pupils``: detail a small generator blurs and the face GAN can restore."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, tuple(int(round(v)) for v in centre), tuple(int(round(v)) for v in axes),
                float(np.degrees(tilt)), 0, 360, 255, -1)
    ys, xs = np.nonzero(mask)
    across = (xs - centre[0]) * np.cos(tilt) + (ys - centre[1]) * np.sin(tilt)
    light = (np.floor(across / 4) % 2 == 0)[:, None]
    image[ys, xs] = np.where(light, (150, 190, 240), (40, 60, 110))  # BGR skin and dark stripes
    for x, y in pupils:
        cv2.circle(image, (int(round(x)), int(round(y))), max(2, int(round(axes[0] / 6))), (20, 20, 20), -1)
