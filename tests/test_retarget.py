"""Limb-proportion retargeting after the paper's mapping, on synthetic subjects."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.pose.keypoints import BODY_25_LIMBS, LEFT_HAND, RIGHT_HAND, J
from pipeline.pose.normalize import normalize_track
from pipeline.pose.retarget import bone_length_ratios, mapped_height, retarget_track, skeleton_order
from pipeline.pose.stats import ankle_points, bone_name, compute_stats, head_top
from test_stats import walking_track

ARMS = ("RShoulder-RElbow", "RElbow-RWrist", "LShoulder-LElbow", "LElbow-LWrist")


@pytest.fixture(scope="module")
def subjects() -> dict:
    """A long-armed source and a target with standard arms, at other depths and sizes."""
    source = walking_track(far=300, near=450, h_far=150, h_near=250, n=600, arm_scale=1.3)
    target = walking_track(far=350, near=500, h_far=120, h_near=200, n=600, x=300)
    s_stats, t_stats = compute_stats([source]), compute_stats([target])
    paper = normalize_track(source, s_stats, t_stats, method="paper")
    retarget = normalize_track(source, s_stats, t_stats, method="retarget")
    return {"source": source, "s": s_stats, "t": t_stats, "paper": paper, "retarget": retarget}


def _bone(track_data: np.ndarray, a: int, b: int) -> np.ndarray:
    return track_data[:, b, :2].astype(float) - track_data[:, a, :2]


def test_skeleton_walk_reaches_every_body_joint_once() -> None:
    order = skeleton_order()
    assert len(order) == 24 and order[0][0] == J["MidHip"]
    assert sorted(child for _, child, _ in order) == sorted(set(range(25)) - {J["MidHip"]})


def test_long_arms_get_target_length_and_keep_directions(subjects) -> None:
    out, paper, t_stats = subjects["retarget"], subjects["paper"], subjects["t"]
    height = mapped_height(np.array(out.meta["mapping"]["p"]), t_stats)
    for a, b in BODY_25_LIMBS:
        name = bone_name(a, b)
        vec_out, vec_paper = _bone(out.data, a, b), _bone(paper.data, a, b)
        length = np.linalg.norm(vec_out, axis=1)
        assert length / height == pytest.approx(t_stats["bone_ratios"][name], rel=0.02), name
        cos = (vec_out * vec_paper).sum(axis=1) / (length * np.linalg.norm(vec_paper, axis=1))
        assert cos == pytest.approx(1.0, abs=1e-6), name
    before, after = out.meta["bone_ratios_before"], out.meta["bone_ratios_after"]
    for name in ARMS:
        assert before[name] == pytest.approx(1.3, rel=0.02)
        assert after[name] == pytest.approx(1.0, rel=0.02)
    assert before["RHip-RKnee"] == pytest.approx(1.0, rel=0.02)


def test_ankle_point_and_height_unchanged(subjects) -> None:
    out, paper = subjects["retarget"], subjects["paper"]
    for a, b in zip(ankle_points(out.data), ankle_points(paper.data)):
        assert a == pytest.approx(b, abs=1e-3)
    # Only the arms differ between source and target, so the head stays where it was.
    assert head_top(out.data) == pytest.approx(head_top(paper.data), abs=1e-2)


def test_hand_moves_rigidly_with_its_wrist(subjects) -> None:
    out, paper = subjects["retarget"], subjects["paper"]
    assert out.meta["retarget"]["hand_scale"] == pytest.approx(1.0, abs=1e-4)
    for hand, wrist in ((LEFT_HAND, J["LWrist"]), (RIGHT_HAND, J["RWrist"])):
        rel_out = out.data[:, hand, :2] - out.data[:, [wrist], :2]
        rel_paper = paper.data[:, hand, :2] - paper.data[:, [wrist], :2]
        assert np.allclose(rel_out, rel_paper, atol=1e-3)
        # The wrist itself moved: the arm got shorter.
        assert np.abs(out.data[:, wrist, :2] - paper.data[:, wrist, :2]).max() > 5


def test_hand_scaled_by_target_size(subjects) -> None:
    t_stats = dict(subjects["t"], hand_ratio=subjects["t"]["hand_ratio"] * 1.5)
    out = retarget_track(subjects["paper"], t_stats, p=np.array(subjects["paper"].meta["mapping"]["p"]))
    paper = subjects["paper"]
    assert out.meta["retarget"]["hand_scale"] == pytest.approx(1.5, rel=1e-3)
    rel_out = out.data[:, LEFT_HAND, :2] - out.data[:, [J["LWrist"]], :2]
    rel_paper = paper.data[:, LEFT_HAND, :2] - paper.data[:, [J["LWrist"]], :2]
    assert np.allclose(rel_out, 1.5 * rel_paper, atol=1e-2)


def test_missing_joints_stay_missing_and_children_keep_mapped_position(subjects) -> None:
    paper, t_stats = subjects["paper"].copy(), subjects["t"]
    gone = np.arange(0, 600, 7)
    paper.data[gone, J["LElbow"]] = (np.nan, np.nan, 0.0)
    out = retarget_track(paper, t_stats)  # p recovered from the mapped ankles
    assert not out.present[gone, J["LElbow"]].any()
    assert out.present[gone, J["LWrist"]].all()
    # The orphaned wrist keeps its globally mapped position (plus the common ankle translation).
    shift = np.stack(ankle_points(out.data), 1)[gone] - np.stack(ankle_points(paper.data), 1)[gone]
    assert np.allclose(out.data[gone, J["LWrist"], :2], paper.data[gone, J["LWrist"], :2] + shift, atol=1e-3)
    assert np.array_equal(out.present, paper.present)


def test_bone_length_ratios_of_target_itself_are_one(subjects) -> None:
    target = walking_track(far=350, near=500, h_far=120, h_near=200, n=600, x=300)
    ratios = bone_length_ratios(target, subjects["t"])
    assert all(r == pytest.approx(1.0, rel=1e-3) for r in ratios.values())



def test_bone_diagnostic_shows_both_mappings_whatever_method_made_the_file(subjects, tmp_path) -> None:
    import cv2

    from pipeline.evaluation.plots import bone_ratio_table, plot_bone_ratios

    from_paper = bone_ratio_table(subjects["paper"], subjects["t"])  # retargeting computed for the figure
    from_retarget = bone_ratio_table(subjects["retarget"], subjects["t"])  # read from the file's metadata
    for table in (from_paper, from_retarget):
        for name in ARMS:
            assert table["paper"][name] == pytest.approx(1.3, rel=0.02)
            assert table["retarget"][name] == pytest.approx(1.0, rel=0.02)
    plot_bone_ratios(subjects["paper"], subjects["t"], tmp_path / "bones.png")
    image = cv2.imread(str(tmp_path / "bones.png"))
    assert image is not None and image.shape[0] > 200 and image.std() > 10
