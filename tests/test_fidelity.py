"""Transfer fidelity: known offsets give known errors; real footage re-detected agrees with its own poses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.fidelity import MAIN, MIN_BODY_JOINTS, PCK_THRESHOLD, compare, coverage_relation, \
    measure_transfer, summarize
from pipeline.evaluation.tables import transfer_tables
from pipeline.pose.keypoints import J, KeypointTrack, write_keypoints
from test_stats import pose


def frames_of(n: int, height: float = 200.0) -> np.ndarray:
    return np.stack([pose(100, 400, height) for _ in range(n)])


def test_known_offsets_give_known_errors_and_pck() -> None:
    given = frames_of(3)
    heights = np.full(3, 200.0)
    found = given.copy()
    found[1, :, 0] += 0.05 * 200  # within PCK's 0.1 body heights
    found[2, :, 0] += 0.25 * 200  # beyond it
    out = compare(given, found, heights)
    assert out["joint_error"] == pytest.approx([0.0, 0.05, 0.25], abs=1e-4)
    assert out["pck"].tolist() == [1.0, 1.0, 0.0]
    assert out["body_found"].all() and (out["joints_found"] == len(MAIN)).all()
    assert out["error_left_arm"] == pytest.approx([0.0, 0.05, 0.25], abs=1e-4)
    summary = summarize(out, None)
    assert summary["pck"] == pytest.approx(2 / 3, abs=1e-4) and summary["median_joint_error"] == pytest.approx(0.05, abs=1e-4)
    assert summary["pck_given"] == summary["pck"]  # every given joint found


def test_a_lost_body_is_a_miss_of_pck_given_but_spares_pck_of_the_joints_found() -> None:
    """Two generators on the same four frames: one draws every pose a little off; the other draws the two easy
    frames exactly and loses the body on the two hard ones. Measured on what was found, the second looks
    perfect; over the joints given, it is the worse."""
    given = frames_of(4)
    heights = np.full(4, 200.0)
    off = given.copy()
    off[:, :, 0] += 0.05 * 200  # within the threshold everywhere
    off[2:, :, 0] += 0.1 * 200  # beyond it on the hard frames
    lost = given.copy()
    lost[2:, MAIN] = (np.nan, np.nan, 0.0)
    steady, dropping = summarize(compare(given, off, heights), None), summarize(compare(given, lost, heights), None)
    assert dropping["pck"] == 1.0 and dropping["median_joint_error"] == 0.0 and steady["pck"] == 0.5
    assert dropping["pck_given"] == 0.5 and steady["pck_given"] == 0.5
    off[3, :, 0] -= 0.1 * 200  # one hard frame drawn well: only the steady generator gains
    assert summarize(compare(given, off, heights), None)["pck_given"] == 0.75
    # a joint the pose does not give is neither a hit nor a miss
    partial = given.copy()
    partial[0, MAIN[0]] = (np.nan, np.nan, 0.0)
    out = compare(partial, given, heights)
    assert out["joints_given"].tolist() == [len(MAIN) - 1] + [len(MAIN)] * 3 and out["pck_given"].tolist() == [1.0] * 4


def test_a_body_needs_most_of_the_main_joints() -> None:
    given = frames_of(2)
    found = given.copy()
    lost = MAIN[: len(MAIN) - MIN_BODY_JOINTS + 1]  # one joint fewer than a body needs is left
    found[0, lost] = (np.nan, np.nan, 0.0)
    found[1, MAIN[: len(MAIN) - MIN_BODY_JOINTS]] = (np.nan, np.nan, 0.0)  # exactly enough are left
    out = compare(given, found, np.full(2, 200.0))
    assert out["body_found"].tolist() == [False, True]
    assert out["joints_found"].tolist() == [MIN_BODY_JOINTS - 1, MIN_BODY_JOINTS]


def test_errors_are_in_body_heights_not_pixels() -> None:
    small, large = frames_of(1, 100.0), frames_of(1, 400.0)
    for given, h in ((small, 100.0), (large, 400.0)):
        found = given.copy()
        found[:, :, 1] += 0.08 * h
        out = compare(given, found, np.full(1, h))
        assert out["pck"][0] == 1.0 and out["joint_error"][0] == pytest.approx(0.08, abs=1e-4)


def test_uncovered_frames_that_fail_show_in_the_relation() -> None:
    per_frame = {"body_found": np.array([True] * 6 + [False, True]),
                 "joint_error": np.array([0.02, 0.03, 0.02, 0.04, 0.03, 0.05, np.nan, 0.4])}
    coverage = {"per_frame": {"distance": [0.2, 0.3, 0.1, 0.4, 0.5, 0.6, 3.0, 2.5],
                              "uncovered": [False] * 6 + [True, True]}}
    relation = coverage_relation(per_frame, coverage)
    assert relation["covered"] == {"frames": 6, "body_found_share": 1.0, "median_joint_error": 0.03}
    assert relation["uncovered"]["body_found_share"] == 0.5 and relation["uncovered"]["median_joint_error"] == 0.4
    assert relation["spearman_distance_error"] > 0.8
    tables = transfer_tables({"dance": {"fidelity": {**summarize({**per_frame, "_pooled": np.array([0.02, 0.4]),
                                                                  **{f"error_{k}": np.zeros(8) for k in
                                                                     ("head", "right_arm", "left_arm", "right_leg",
                                                                      "left_leg")}}, None),
                                                     "coverage_relation": relation},
                                        "coverage": {"uncovered_share": 0.25}}})
    assert tables[0][2][0][:3] == ["dance", "8", "88"] and tables[0][2][0][-1] == "25"
    assert tables[1][2][0][1] == "100 / 50"


@pytest.mark.slow
def test_real_footage_re_detected_agrees_with_its_own_poses(tmp_path, clip_frames) -> None:
    """The test clip's frames as the "transfer video" and their own detected poses as the poses given: a body
    in every frame and joints within PCK's tolerance; grey frames in the middle lose the body and are marked."""
    from pipeline.footage.video import write_video
    from pipeline.gan.data import read_rgb
    from pipeline.pose.detect import detect
    from pipeline.pose.render import render_track

    track = detect(clip_frames, tmp_path / "raw.parquet")
    track.meta.update(width=144, height=256, fps=60.0, normalize={"target": {
        "ankle_far": 200.0, "ankle_near": 240.0, "height_far": 200.0, "height_near": 220.0}})
    write_keypoints(tmp_path / "normalized.parquet", track)
    render_track(track, tmp_path / "render", size=(144, 256))
    images = [read_rgb(p)[..., ::-1] for p in sorted(clip_frames.glob("*.jpg"))]
    n = len(images)
    grey = [np.full_like(images[0], 128) if 10 <= i < 14 else im for i, im in enumerate(images)]
    write_video(grey, tmp_path / "video.mp4", 60.0)
    generation = {"size": [144, 256], "frames": n, "fps": 60.0, "audio": False, "models": {}}
    (tmp_path / "generation.json").write_text(json.dumps(generation))
    record = measure_transfer(tmp_path / "video.mp4", tmp_path / "generation.json", tmp_path / "normalized.parquet",
                              tmp_path / "render", clip_frames, tmp_path / "record.json",
                              side_by_side_out=tmp_path / "side.mp4", per_frame_out=tmp_path / "frames.parquet")
    found = np.array(record["fidelity"]["per_frame"]["body_found"])
    assert not found[10:14].any()
    assert found[np.r_[0:10, 16:n]].all()
    assert record["fidelity"]["pck"] > 0.8 and record["fidelity"]["median_joint_error"] < PCK_THRESHOLD / 2
    assert record["models"] == {} and record["measure_provenance"]["stage"] == "measure-transfer"
    frames = pd.read_parquet(tmp_path / "frames.parquet")
    assert len(frames) == n and frames["body_found"].sum() == found.sum()
    from pipeline.footage.media import probe_video

    assert probe_video(tmp_path / "side.mp4").frame_count == n
    assert json.loads((tmp_path / "record.json").read_text())["fidelity"]["frames"] == n
    # A right wrist moved by half a body height in the poses given: its arm's error follows.
    moved = track.copy()
    moved.data[:, J["RWrist"], 1] -= 100
    write_keypoints(tmp_path / "moved.parquet", moved)
    worse = measure_transfer(tmp_path / "video.mp4", tmp_path / "generation.json", tmp_path / "moved.parquet",
                             tmp_path / "render", clip_frames, tmp_path / "moved.json")
    assert worse["fidelity"]["limb_median_error"]["right_arm"] > record["fidelity"]["limb_median_error"]["right_arm"]
    assert worse["fidelity"]["pck"] < record["fidelity"]["pck"]
