"""Subject statistics (Chan et al. Sec. 3.2) on synthetic subjects with known answers.

Also home of the synthetic pose generator that test_normalize and test_retarget import.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.pose.keypoints import FACE, LEFT_HAND, N_JOINTS, RIGHT_HAND, J, KeypointTrack, write_keypoints
from pipeline.pose.stats import ankle_points, compute_stats, head_top

# A standing person in height units: ankles at y = 0, the eyes (head top) at y = -1.
BODY_TEMPLATE = {
    "Nose": (0.0, -0.955), "Neck": (0.0, -0.86), "RShoulder": (-0.12, -0.84), "RElbow": (-0.17, -0.67),
    "RWrist": (-0.20, -0.50), "LShoulder": (0.12, -0.84), "LElbow": (0.17, -0.67), "LWrist": (0.20, -0.50),
    "MidHip": (0.0, -0.52), "RHip": (-0.06, -0.52), "RKnee": (-0.065, -0.27), "RAnkle": (-0.07, 0.0),
    "LHip": (0.06, -0.52), "LKnee": (0.065, -0.27), "LAnkle": (0.07, 0.0), "REye": (-0.025, -1.0),
    "LEye": (0.025, -1.0), "REar": (-0.05, -0.98), "LEar": (0.05, -0.98), "LBigToe": (0.11, 0.02),
    "LSmallToe": (0.13, 0.02), "LHeel": (0.06, 0.02), "RBigToe": (-0.11, 0.02), "RSmallToe": (-0.13, 0.02),
    "RHeel": (-0.06, 0.02),
}
_angles = 2 * np.pi * np.arange(70) / 70
FACE_TEMPLATE = np.stack([0.045 * np.cos(_angles), -0.95 + 0.06 * np.sin(_angles)], axis=1)
# Hand relative to its wrist: wrist, then 4 joints per finger fanning downward.
HAND_OFFSETS = np.array([(0.0, 0.0)] + [(0.008 * (f - 2), 0.012 * (k + 1)) for f in range(5) for k in range(4)])


def pose(ankle_x: float, ankle_y: float, height: float, arm_scale: float = 1.0) -> np.ndarray:
    """One (137, 3) frame: the template scaled to ``height`` with its ankle point at (x, y).

    ``arm_scale`` lengthens both upper and lower arms (hands ride on the wrists).
    """
    unit = {name: np.array(xy) for name, xy in BODY_TEMPLATE.items()}
    for side in "RL":
        shoulder, elbow, wrist = unit[f"{side}Shoulder"], unit[f"{side}Elbow"], unit[f"{side}Wrist"]
        new_elbow = shoulder + arm_scale * (elbow - shoulder)
        unit[f"{side}Wrist"] = new_elbow + arm_scale * (wrist - elbow)
        unit[f"{side}Elbow"] = new_elbow
    frame = np.zeros((N_JOINTS, 3))
    for name, xy in unit.items():
        frame[J[name], :2] = xy
    frame[FACE, :2] = FACE_TEMPLATE
    frame[LEFT_HAND, :2] = unit["LWrist"] + HAND_OFFSETS
    frame[RIGHT_HAND, :2] = unit["RWrist"] + HAND_OFFSETS * (-1, 1)
    frame[:, :2] = frame[:, :2] * height + (ankle_x, ankle_y)
    frame[:, 2] = 0.9
    return frame


def walking_track(far: float = 300.0, near: float = 450.0, h_far: float = 150.0, h_near: float = 250.0,
                  n: int = 1200, period: int = 600, x: float = 200.0, arm_scale: float = 1.0,
                  size: tuple[int, int] = (640, 512)) -> KeypointTrack:
    """A subject walking back and forth (triangle wave) between far and near, heights linear in y."""
    t = np.arange(n)
    phase = (t % period) / period
    f = far + (near - far) * (1 - np.abs(2 * phase - 1))
    h = h_far + (f - far) * (h_near - h_far) / (near - far) if near > far else np.full(n, h_far)
    data = np.stack([pose(x + 10 * np.sin(i / 40), fi, hi, arm_scale) for i, (fi, hi) in enumerate(zip(f, h))])
    return KeypointTrack(data, t, {"width": size[0], "height": size[1], "fps": 30.0,
                                   "provenance": {"stage": "synthetic"}})


def test_pose_template_has_known_ankle_point_and_height() -> None:
    frame = pose(100.0, 400.0, 200.0)[None]
    ax, ay = ankle_points(frame)
    assert ax[0] == pytest.approx(100.0) and ay[0] == pytest.approx(400.0)
    assert ay[0] - head_top(frame)[0] == pytest.approx(200.0)


def test_far_near_and_heights_recovered() -> None:
    stats = compute_stats([walking_track()])
    assert stats["ankle_far"] == pytest.approx(300, abs=4)
    assert stats["ankle_near"] == pytest.approx(450, abs=4)
    # Heights are linear in ankle y, so the fitted line is exact at the measured positions.
    assert stats["height_far"] == pytest.approx(150 + (stats["ankle_far"] - 300) * 2 / 3, abs=0.5)
    assert stats["height_near"] == pytest.approx(150 + (stats["ankle_near"] - 300) * 2 / 3, abs=0.5)
    assert stats["height_far"] == pytest.approx(150, abs=4) and stats["height_near"] == pytest.approx(250, abs=4)
    assert not stats["degenerate"]
    assert stats["n_frames"] == stats["n_ground_frames"] == 1200
    assert stats["ankle_x_mean"] == pytest.approx(200, abs=1)
    assert stats["frame_width"] == 640 and stats["frame_height"] == 512
    # Proportions relative to the standing height: the template's, independent of depth.
    upper_arm = np.hypot(0.05, 0.17)
    assert stats["bone_ratios"]["RShoulder-RElbow"] == pytest.approx(upper_arm, rel=1e-3)
    assert stats["hand_ratio"] == pytest.approx(np.mean([np.hypot(HAND_OFFSETS[i, 0], HAND_OFFSETS[i, 1])
                                                         for i in (5, 9, 13, 17)]), rel=1e-3)
    json.dumps(stats)  # serialisable as is
    per_frame = stats["per_frame"]
    assert len(per_frame["ankle_y"]) == len(per_frame["height"]) == len(per_frame["ground"]) == 1200
    assert sum(stats["histogram"]["counts_ground"]) == 1200


def test_jumps_are_not_ground_contact_and_do_not_move_far() -> None:
    track = walking_track()
    jump = np.arange(100, 112)  # 0.4 s in the air, apex 80 px above the floor
    lift = 80 * np.sin(np.pi * (jump - 99) / 13)
    track.data[jump, :, 1] -= lift[:, None]
    stats = compute_stats([track])
    ground = np.array(stats["per_frame"]["ground"])
    assert not ground[104:108].any()  # the airborne middle of the jump
    assert ground[:95].all() and ground[120:].all()
    assert stats["ankle_far"] == pytest.approx(300, abs=4)


def test_pooled_clips_and_one_foot_missing() -> None:
    a = walking_track(n=600)
    b = walking_track(n=600)
    b.data[:, J["LAnkle"]] = (np.nan, np.nan, 0.0)  # only the right ankle seen
    stats = compute_stats([a, b])
    assert stats["n_frames"] == 1200
    assert stats["ankle_far"] == pytest.approx(300, abs=4)
    assert stats["ankle_near"] == pytest.approx(450, abs=4)
    assert set(stats["per_frame"]["clip"]) == {0, 1}


def test_degenerate_subject_never_moving_in_depth() -> None:
    stats = compute_stats([walking_track(far=400, near=400, h_far=200, h_near=200, n=300)])
    assert stats["degenerate"]
    assert stats["ankle_far"] == stats["ankle_near"] == pytest.approx(400)
    assert stats["height_far"] == stats["height_near"] == pytest.approx(200)


def test_no_ankle_raises_naming_the_file(tmp_path, capsys) -> None:
    track = walking_track(n=20)
    track.data[:, [J["RAnkle"], J["LAnkle"]]] = (np.nan, np.nan, 0.0)
    path = tmp_path / "noankle.parquet"
    write_keypoints(path, track)
    assert main(["stats", str(path), str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "edn stats: error:" in err and "noankle.parquet" in err and "ankle" in err
    assert not (tmp_path / "s.json").exists()


def test_cli_round_trip(tmp_path) -> None:
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"clip{i}.parquet")
        write_keypoints(paths[-1], walking_track(n=600))
    out = tmp_path / "stats" / "subject.json"
    assert main(["stats", *map(str, paths), str(out)]) == 0
    stats = json.loads(out.read_text())
    assert stats["inputs"] == [str(p) for p in paths]
    assert stats["provenance"]["stage"] == "stats"
    assert stats["upstream"] == [{"stage": "synthetic"}] * 2
    assert stats["ankle_near"] == pytest.approx(450, abs=4)


def test_bad_file_is_a_clear_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    assert main(["stats", str(bad), str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "edn stats: error:" in err and "bad.parquet" in err
