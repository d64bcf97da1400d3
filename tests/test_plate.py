import numpy as np

from pipeline.gan.plate import estimate_plate, person_mask
from pipeline.pose.keypoints import N_JOINTS


def _background(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _figure_clip(background, n=12, shift=0):
    """A bright 10x6 figure walking across ``background``; keypoints at its corners."""
    frames, kps = [], []
    h, w = background.shape[:2]
    for t in range(n):
        bg = np.roll(background, shift * t, axis=1)
        frame = bg.copy()
        x = 4 + t * 4
        frame[20:30, x:x + 6] = 255
        kp = np.zeros((N_JOINTS, 3), dtype=np.float32)
        kp[:2, :2] = [[x, 20], [x + 5, 29]]
        kp[:2, 2] = 1.0
        frames.append(frame)
        kps.append(kp)
    return frames, np.stack(kps)


def test_plate_recovers_background_under_moving_figure():
    bg = _background()
    frames, kps = _figure_clip(bg)
    plate = estimate_plate(frames, kps)
    assert np.abs(plate.image.astype(int) - bg.astype(int)).max() <= 1
    assert plate.filled_fraction == 0.0
    assert not plate.moving_camera
    assert plate.residual < 1.0


def test_person_mask_covers_figure_and_margin():
    kp = np.zeros((N_JOINTS, 3), dtype=np.float32)
    kp[:2] = [[10, 10, 1], [20, 30, 1]]
    mask = person_mask(kp, 64, 48, margin=0.1)
    assert mask[10:31, 10:21].all() and mask[8, 8] and not mask[0, 0]
    assert not person_mask(np.zeros((N_JOINTS, 3), np.float32), 64, 48).any()


def test_shifting_background_is_a_moving_camera():
    frames, kps = _figure_clip(_background(), shift=3)
    plate = estimate_plate(frames, kps)
    assert plate.moving_camera and plate.residual > 12


def test_edn_plate_writes_plate_and_record(tmp_path):
    import json

    import cv2

    from pipeline.cli import main
    from pipeline.pose.keypoints import KeypointTrack, write_keypoints

    bg = _background()
    frames, kps = _figure_clip(bg)
    fdir = tmp_path / "frames"
    fdir.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(fdir / f"{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    write_keypoints(tmp_path / "kp.parquet", KeypointTrack(kps, np.arange(len(frames)), {"height": 48, "width": 64, "fps": 25.0}))
    assert main(["plate", str(fdir), str(tmp_path / "kp.parquet"), str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "plate.json").read_text())
    assert record["moving_camera"] is False and record["provenance"]["stage"] == "plate"
    plate = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "plate.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(plate.astype(int) - bg.astype(int)).max() <= 1


def test_pixels_always_covered_are_inpainted_and_counted():
    bg = np.full((48, 64, 3), 100, dtype=np.uint8)
    frames, kps = _figure_clip(bg, n=5)
    kps[:, :2, :2] = [[30, 20], [35, 29]]  # the figure's box never moves
    for f in frames:
        f[20:30, 30:36] = 255
    plate = estimate_plate(frames, kps, margin=0.0)
    assert 0 < plate.filled_fraction < 0.05
    assert np.abs(plate.image[25, 32].astype(int) - 100).max() <= 5  # filled from the background around it
