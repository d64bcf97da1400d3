import numpy as np
import pytest

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
    assert plate.inpainted[25, 32] and plate.inpainted.mean() == plate.filled_fraction and not plate.inpainted[5, 5]


def test_plate_png_marks_the_inpainted_pixels_in_its_alpha_and_training_reads_them(tmp_path):
    import cv2
    import torch

    from pipeline.footage.images import read_image
    from pipeline.gan.plate import plate_of_clip
    from pipeline.gan.train import load_plate_unknown
    from pipeline.pose.keypoints import KeypointTrack, write_keypoints

    frames, kps = _figure_clip(np.full((48, 64, 3), 100, dtype=np.uint8), n=5)
    kps[:, :2, :2] = [[30, 20], [35, 29]]  # the figure's box never moves: its pixels are never seen
    fdir = tmp_path / "frames"
    fdir.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(fdir / f"{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    write_keypoints(tmp_path / "kp.parquet", KeypointTrack(kps, np.arange(5), {"height": 48, "width": 64, "fps": 25.0}))
    plate = plate_of_clip(fdir, tmp_path / "kp.parquet", tmp_path / "out")
    rgba = read_image(tmp_path / "out" / "plate.png", cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (48, 64, 4) and np.array_equal(rgba[..., 3] == 0, plate.inpainted)
    assert np.array_equal(rgba[..., 2::-1], plate.image)  # BGR on disk: the colour is the plate's
    unknown = load_plate_unknown([tmp_path / "out" / "plate.png"], 64, 48)
    assert unknown.shape == (1, 1, 48, 64) and torch.equal(unknown[0, 0], torch.from_numpy(plate.inpainted))
    cv2.imwrite(str(tmp_path / "rgb.png"), rgba[..., :3])
    with pytest.raises(ValueError, match="rgb.png: no alpha channel"):
        load_plate_unknown([tmp_path / "rgb.png"], 64, 48)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: cannot read image"):
        load_plate_unknown([tmp_path / "broken.png"], 64, 48)


def test_foreground_target_is_where_the_frame_leaves_the_plate_inside_the_box():
    import torch

    from pipeline.gan.plate import FOREGROUND_DIFFERENCE, foreground_target

    plate = torch.zeros(1, 3, 8, 8)
    real = plate.clone()
    real[..., 2:4, 2:4] = 0.8  # the person: far from the plate
    real[..., 5, 5] = (FOREGROUND_DIFFERENCE - 4) / 127.5  # noise below the threshold
    real[0, 1, 6, 6] = (FOREGROUND_DIFFERENCE + 4) / 127.5  # one channel above it is enough
    real[..., 0, 7] = 0.8  # outside the person's box
    region = torch.zeros(1, 1, 8, 8)
    region[..., :7, :7] = 1.0
    target = foreground_target(real, plate, region)
    expected = torch.zeros(1, 1, 8, 8)
    expected[..., 2:4, 2:4] = 1.0
    expected[..., 6, 6] = 1.0
    assert torch.equal(target, expected)
