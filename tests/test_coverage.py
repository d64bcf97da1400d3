"""Pose coverage: synthetic targets and sources whose uncovered limbs are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.evaluation.coverage import SEGMENTS, THRESHOLD, chain_distances, coverage, segment_angles, target_gaps
from pipeline.pose.keypoints import J, KeypointTrack, write_keypoints
from test_stats import pose


def raise_arm(frame: np.ndarray, side: str, degrees: float) -> np.ndarray:
    """The arm of ``side`` ("R"/"L") swung about its shoulder to ``degrees`` from hanging down (towards the
    body's outside), straight; the hand follows its wrist."""
    frame = frame.copy()
    shoulder = frame[J[f"{side}Shoulder"], :2]
    upper = np.linalg.norm(frame[J[f"{side}Elbow"], :2] - shoulder)
    fore = np.linalg.norm(frame[J[f"{side}Wrist"], :2] - frame[J[f"{side}Elbow"], :2])
    outward = -1.0 if side == "R" else 1.0  # the template faces the camera: its right arm is on the image left
    a = math.radians(degrees)
    direction = np.array([outward * math.sin(a), math.cos(a)])  # 0: down, 90: sideways, 180: up
    old_wrist = frame[J[f"{side}Wrist"], :2].copy()
    frame[J[f"{side}Elbow"], :2] = shoulder + upper * direction
    frame[J[f"{side}Wrist"], :2] = shoulder + (upper + fore) * direction
    hand = slice(95, 116) if side == "L" else slice(116, 137)
    frame[hand, :2] += frame[J[f"{side}Wrist"], :2] - old_wrist
    return frame


def track(frames: list[np.ndarray]) -> KeypointTrack:
    return KeypointTrack(np.stack(frames), np.arange(len(frames)), {"width": 640, "height": 512, "fps": 25.0})


def swinging(max_degrees: float, n: int = 60) -> list[np.ndarray]:
    """Both arms swinging between hanging (0) and ``max_degrees``."""
    base = pose(300, 450, 250)
    out = []
    for i in range(n):
        d = max_degrees * (1 - math.cos(2 * math.pi * i / n)) / 2
        out.append(raise_arm(raise_arm(base, "R", d), "L", d))
    return out


def test_tolerances_follow_from_limb_widths() -> None:
    # 2 asin(d / 2L): a forearm (0.146 H long, 0.049 H across) may turn ~19 degrees, a thigh ~24.
    tol = {s.name: math.degrees(s.tolerance) for s in SEGMENTS}
    assert tol["left forearm"] == pytest.approx(19.3, abs=0.2)
    assert tol["right thigh"] == pytest.approx(23.6, abs=0.2)
    assert all(10 < t < 60 for t in tol.values())


def test_a_source_inside_the_target_motion_is_covered() -> None:
    target = np.stack(swinging(90))
    source = track(swinging(80, n=37))  # other phases of a smaller swing
    result = coverage(source, target)
    assert result["uncovered"] == 0
    assert result["median_distance"] < THRESHOLD


def test_arms_above_the_head_are_uncovered_and_named() -> None:
    target = np.stack(swinging(60))  # arms never above shoulder height
    frames = swinging(60, n=20) + [raise_arm(raise_arm(pose(300, 450, 250), "R", 175), "L", 10)] * 5
    result = coverage(track(frames), target)
    assert result["uncovered"] == 5
    assert result["uncovered_ranges"] == "20-24"
    (limb,) = result["limbs"]
    assert limb["chain"] == "right arm" and "pointing up" in limb["what"] and limb["ranges"] == "20-24"
    assert all(result["per_frame"]["uncovered"][20:]) and not any(result["per_frame"]["uncovered"][:20])


def test_scale_and_position_do_not_matter() -> None:
    target = np.stack(swinging(90))
    moved = [f.copy() for f in swinging(90, n=23)]
    for f in moved:
        f[:, :2] = f[:, :2] * 0.4 + (50, -30)
    assert coverage(track(moved), target)["uncovered"] == 0


def test_a_limb_the_target_never_shows_is_uncovered() -> None:
    target = np.stack(swinging(45))
    target[:, J["LWrist"]] = (np.nan, np.nan, 0.0)  # the left forearm is never seen
    result = coverage(track(swinging(45, n=10)), target)
    assert result["uncovered"] == 10
    assert any("left forearm" in limb["what"] and "never seen" in limb["what"] for limb in result["limbs"])


def test_chain_needs_one_frame_for_all_its_segments() -> None:
    # Target: upper arm raised with forearm hanging, or upper arm hanging with forearm raised; never both up.
    base = pose(300, 450, 250)
    up = raise_arm(base, "R", 170)
    bent = up.copy()
    bent[J["RWrist"], :2] = bent[J["RElbow"], :2] + (0, 40)  # forearm hanging from a raised elbow
    low = base.copy()
    low[J["RWrist"], :2] = low[J["RElbow"], :2] - (0, 40)  # forearm up from a hanging elbow
    dist, _ = chain_distances(segment_angles(up[None]), segment_angles(np.stack([bent, low])))
    assert dist[0, 1] > THRESHOLD  # right arm: no one frame has both segments up
    assert dist[0, 0] < THRESHOLD  # trunk unchanged


def test_target_gaps_say_what_to_film() -> None:
    gaps = target_gaps(np.stack(swinging(60)))
    assert "up" in gaps["never"]["right forearm"] and "down" not in gaps["never"]["right forearm"]
    assert any(s.startswith("right forearm never points") for s in gaps["film_more"])


def test_cli_with_and_without_source(tmp_path) -> None:
    target, source = tmp_path / "t.parquet", tmp_path / "s.parquet"
    write_keypoints(target, KeypointTrack(np.stack(swinging(60, n=50)), np.arange(50),
                                          {"width": 640, "height": 512, "fps": 25.0, "provenance": {}}))
    frames = swinging(60, n=8) + [raise_arm(pose(300, 450, 250), "L", 175)] * 2
    write_keypoints(source, KeypointTrack(np.stack(frames), np.arange(10),
                                          {"width": 640, "height": 512, "fps": 25.0, "provenance": {}}))
    assert main(["coverage", "--target", str(target), "--", str(tmp_path / "gaps.json")]) == 0
    gaps = json.loads((tmp_path / "gaps.json").read_text())
    assert "source" not in gaps and gaps["target"]["training_frames"] == 40  # holdout 0.2 of 50
    assert main(["coverage", "--target", str(target), "--source", str(source), "--holdout", "0",
                 "--", str(tmp_path / "cov.json")]) == 0
    record = json.loads((tmp_path / "cov.json").read_text())
    assert record["source"]["uncovered_ranges"] == "8-9"
    assert record["provenance"]["stage"] == "coverage"


def test_mirrored_training_poses_cover_the_other_side() -> None:
    from pipeline.evaluation.coverage import with_mirrored

    target = np.stack([raise_arm(pose(300, 450, 250), "R", d) for d in range(0, 180, 10)])  # right arm only
    source = track([raise_arm(pose(300, 450, 250), "L", 170)] * 3)  # the left arm up
    assert coverage(source, target)["uncovered"] == 3
    assert coverage(source, with_mirrored(target))["uncovered"] == 0
    assert len(with_mirrored(target)) == 2 * len(target)
