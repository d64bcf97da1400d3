import numpy as np
import pytest

from pipeline.gan.plate import estimate_plate
from pipeline.pose.body_region import person_mask
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


# The body drawn at its real widths (shares of standing height H; Drillis & Contini via Winter): each limb
# half as wide as the thigh (0.10 H) or less, the torso between its joints, the head (0.13 H tall).
_TRUE_HALF_WIDTH = {"thigh": 0.05, "other": 0.035, "head": 0.065}


def _dancer_in_one_spot(width=120, height=160, distance=4.0):
    """The pose suite's standard body raising its arms while turning, drawn in magenta over a fixed
    random background at its anthropometric widths; returns frames, (frames, 137, 3) keypoints, the
    background and the body's height in pixels."""
    import cv2

    from pipeline.pose.keypoints import BODY_25_LIMBS, J, N_JOINTS
    from pipeline.pose.pose_suite import BODIES, Camera, motions, project_sequence

    camera = Camera(width=width, height=height)
    motion = next(m for m in motions() if m.name == "arms up")
    pixels, _ = project_sequence(BODIES[0], motion, distance, camera, seed=0)
    size = BODIES[0].height * camera.focal / distance
    bg = _background(height, width, seed=3)
    frames, kps = [], np.zeros((len(pixels), N_JOINTS, 3), dtype=np.float32)
    thigh = {(J["RHip"], J["RKnee"]), (J["LHip"], J["LKnee"])}
    for t, joints in enumerate(pixels):
        kps[t, :25, :2], kps[t, :25, 2] = joints, 0.9
        frame = bg.copy()
        pt = lambda j: tuple(int(round(v)) for v in joints[j])
        for a, b in BODY_25_LIMBS:
            half = _TRUE_HALF_WIDTH["thigh" if (a, b) in thigh else "other"]
            cv2.line(frame, pt(a), pt(b), (255, 0, 255), 2 * int(round(half * size)) + 1)
        torso = np.array([pt(J[n]) for n in ("RShoulder", "LShoulder", "LHip", "RHip")], dtype=np.int32)
        cv2.fillConvexPoly(frame, cv2.convexHull(torso), (255, 0, 255))
        cv2.circle(frame, pt(J["Nose"]), int(round(_TRUE_HALF_WIDTH["head"] * size)), (255, 0, 255), -1)
        frames.append(frame)
    return frames, kps, bg, size


def test_a_dancer_in_one_spot_leaves_the_pixels_between_the_limbs_seen_and_none_of_the_body_leaks_in():
    from pipeline.gan.plate import MIN_BODY_SEEN
    from pipeline.pose.body_region import body_heights, body_mask

    frames, kps, bg, size = _dancer_in_one_spot()
    plate = estimate_plate(frames, kps, fps=30.0)
    box_never_seen = np.logical_and.reduce([person_mask(k, 120, 160) for k in kps])
    # Behind the dancer the box never moves off; between the limbs the body uncovers most of it.
    assert box_never_seen.mean() > 0.05
    assert plate.body_seen.any() and not (plate.body_seen & ~box_never_seen).any()
    # The arms' sweep uncovers the sides of the torso and head: over a third of what the box hides.
    assert plate.body_seen.mean() > box_never_seen.mean() / 3
    heights = body_heights(kps, 30.0)
    free = np.sum([~body_mask(k, h, 120, 160) for k, h in zip(kps, heights)], axis=0)
    assert np.array_equal(plate.body_seen, box_never_seen & (free >= MIN_BODY_SEEN))
    assert np.array_equal(plate.inpainted, box_never_seen & ~plate.body_seen)
    assert plate.stats["body_seen_fraction"] == pytest.approx(plate.body_seen.mean())
    # What is called seen is the background exactly: not one pixel of the magenta body reached the plate.
    seen = ~plate.inpainted
    assert np.abs(plate.image[seen].astype(int) - bg[seen].astype(int)).max() <= 1
    # The body's mask covers the body as drawn, in every frame; the heights are the body's.
    assert np.all(np.abs(heights / size - 1) < 0.2)
    for frame, k, h in zip(frames, kps, heights):
        drawn = (frame == (255, 0, 255)).all(axis=2) & ~(bg == (255, 0, 255)).all(axis=2)
        assert not (drawn & ~body_mask(k, h, 120, 160)).any()
    assert MIN_BODY_SEEN >= 3  # a median of three outvotes one frame whose body reaches past the mask


def test_a_pixel_the_body_uncovers_in_too_few_frames_is_inpainted_not_guessed():
    from pipeline.gan.plate import MIN_BODY_SEEN

    frames, kps, _, _ = _dancer_in_one_spot()
    many = estimate_plate(frames, kps, fps=30.0)
    few = estimate_plate(frames[:MIN_BODY_SEEN - 1], kps[:MIN_BODY_SEEN - 1], fps=30.0)
    assert many.body_seen.any() and not few.body_seen.any()


def test_body_mask_without_a_height_is_the_box_and_without_joints_is_empty():
    from pipeline.pose.body_region import body_mask

    kp = np.zeros((N_JOINTS, 3), dtype=np.float32)
    kp[:2] = [[10, 10, 1], [20, 30, 1]]
    assert np.array_equal(body_mask(kp, float("nan"), 64, 48), person_mask(kp, 64, 48))
    assert not body_mask(np.zeros((N_JOINTS, 3), np.float32), 50.0, 64, 48).any()


def test_edn_plate_with_holdout_never_looks_at_the_held_out_frames(tmp_path):
    import json

    import cv2

    from pipeline.cli import main
    from pipeline.pose.keypoints import KeypointTrack, write_keypoints

    bg = _background()
    frames, kps = _figure_clip(bg)
    for f in frames[6:]:
        f[40:, :10] = 0  # the held-out half shows something else in a corner: the plate must not
    fdir = tmp_path / "frames"
    fdir.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(fdir / f"{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    write_keypoints(tmp_path / "kp.parquet", KeypointTrack(kps, np.arange(len(frames)), {"height": 48, "width": 64, "fps": 25.0}))
    assert main(["plate", "--holdout", "0.5", str(fdir), str(tmp_path / "kp.parquet"), str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "plate.json").read_text())
    assert record["frames_used"] == [0, 5] and record["frames"] == 6 and record["provenance"]["params"]["holdout"] == 0.5
    assert record["frames_dir"] == str(fdir)  # the folder, beside the count of frames used
    plate = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "plate.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(plate[40:, :10].astype(int) - bg[40:, :10].astype(int)).max() <= 1
