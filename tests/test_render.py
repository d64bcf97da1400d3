import numpy as np
import cv2

from pipeline.cli import main
from pipeline.pose.keypoints import BODY_25_LIMBS, FACE, LEFT_HAND, J, KeypointTrack, empty_track, write_keypoints
from pipeline.pose.render import BODY_25_COLORS, HAND_COLORS, render_frame, render_track


def _pose() -> np.ndarray:
    joints = empty_track(1)[0]
    # A standing figure on a 200x400 canvas: neck above mid-hip above knees above ankles.
    body = {"Nose": (100, 60), "Neck": (100, 100), "RShoulder": (70, 100), "LShoulder": (130, 100),
            "RElbow": (60, 150), "LElbow": (140, 150), "RWrist": (55, 200), "LWrist": (145, 200),
            "MidHip": (100, 200), "RHip": (85, 200), "LHip": (115, 200), "RKnee": (85, 280),
            "LKnee": (115, 280), "RAnkle": (85, 360), "LAnkle": (115, 360)}
    for name, (x, y) in body.items():
        joints[J[name]] = (x, y, 1.0)
    return joints


def test_limb_drawn_where_keypoints_are_in_openpose_colour():
    image = render_frame(_pose(), (200, 400), face=False, hands=False)
    # The shin RKnee(10) -> RAnkle(11) takes the colour of joint 11 (OpenPose draws pairs so).
    b, g, r = image[320, 85]
    assert (r, g, b) == tuple(BODY_25_COLORS[11])
    # Far from every limb the canvas stays black.
    assert not image[20:40, 0:40].any() and not image[380:, :].any()


def test_missing_joint_draws_no_limb():
    joints = _pose()
    joints[J["RAnkle"]] = (np.nan, np.nan, 0.0)
    image = render_frame(joints, (200, 400), face=False, hands=False)
    assert not image[330:345, 80:90].any()


def test_face_and_hands_drawn():
    joints = _pose()
    jaw = FACE.start + np.arange(17)
    joints[jaw, 0] = np.linspace(85, 115, 17)
    joints[jaw, 1] = 45
    joints[jaw, 2] = 1
    hand = LEFT_HAND.start + np.arange(21)
    joints[hand, 0] = 145
    joints[hand, 1] = np.linspace(200, 240, 21)
    joints[hand, 2] = 1
    image = render_frame(joints, (200, 400))
    assert (image[45, 100] == 255).all()  # face lines are white
    b, g, r = image[235, 145]
    assert (r, g, b) in {tuple(c) for c in HAND_COLORS}
    assert render_frame(joints, (200, 400), face=False)[45, 100].sum() == 0


def test_render_track_deterministic_and_scaled(tmp_path):
    data = np.stack([_pose(), _pose()])
    data[1, :, 0] += 10
    track = KeypointTrack(data, np.array([5, 6]), {"width": 200, "height": 400, "fps": 30.0})
    write_keypoints(tmp_path / "kp.parquet", track)
    assert main(["render", str(tmp_path / "kp.parquet"), str(tmp_path / "a")]) == 0
    assert main(["render", str(tmp_path / "kp.parquet"), str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert names == ["000005.png", "000006.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert main(["render", str(tmp_path / "kp.parquet"), str(tmp_path / "half"), "--size", "100x200"]) == 0
    half = cv2.imread(str(tmp_path / "half" / "000005.png"))
    assert half.shape == (200, 100, 3)
    assert half[160, 42:44].any()  # the right shin at half scale


def test_render_bad_keypoint_file_names_it(tmp_path, capsys):
    bogus = tmp_path / "kp.parquet"
    bogus.write_text("nope")
    assert main(["render", str(bogus), str(tmp_path / "out")]) == 2
    assert str(bogus) in capsys.readouterr().err


def test_limb_table_is_openpose_body25():
    assert len(BODY_25_LIMBS) == 24
    assert {j for pair in BODY_25_LIMBS for j in pair} == set(range(25))


def test_png_encoder_round_trips_exactly(tmp_path):
    from pipeline.pose.render import encode_png

    image = render_frame(_pose(), (201, 400))  # odd width: rows are not 4-byte aligned
    image[0, 0] = (1, 2, 3)  # channel order must survive
    path = tmp_path / "p.png"
    path.write_bytes(encode_png(image))
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_COLOR), image)
