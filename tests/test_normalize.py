"""Global pose normalization (Chan et al. Sec. 3.2) on poses with known mapped answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.pose.keypoints import FACE, LEFT_HAND, J, KeypointTrack, read_keypoints, write_keypoints
from pipeline.pose.normalize import normalize_track
from pipeline.pose.stats import ankle_points, head_top
from test_stats import pose, walking_track

SOURCE = {"ankle_far": 300.0, "ankle_near": 450.0, "height_far": 150.0, "height_near": 250.0,
          "frame_width": 640, "frame_height": 512, "ankle_x_mean": 200.0}
TARGET = {"ankle_far": 350.0, "ankle_near": 500.0, "height_far": 180.0, "height_near": 300.0,
          "frame_width": 1024, "frame_height": 576, "ankle_x_mean": 260.0}
K_FAR, K_NEAR = 180 / 150, 300 / 250


def source_track(frames: list[np.ndarray]) -> KeypointTrack:
    return KeypointTrack(np.stack(frames), np.arange(len(frames)),
                         {"width": 640, "height": 512, "fps": 25.0, "provenance": {"stage": "smooth"}})


def height_of(frame: np.ndarray) -> float:
    return float(ankle_points(frame[None])[1][0] - head_top(frame[None])[0])


def test_far_near_and_halfway_map_exactly() -> None:
    src = source_track([pose(210, 300, 150), pose(190, 450, 250), pose(205, 375, 200)])
    out = normalize_track(src, SOURCE, TARGET)
    ax, ay = ankle_points(out.data)
    assert ay == pytest.approx([350, 500, 425], abs=1e-3)
    assert ax == pytest.approx([210, 190, 205], abs=1e-3)  # x of the ankle point stays put
    k_half = (K_FAR + K_NEAR) / 2
    assert [height_of(f) for f in out.data] == pytest.approx([180, 300, 200 * k_half], abs=1e-3)
    assert out.meta["mapping"]["p"] == pytest.approx([0, 1, 0.5])
    assert out.meta["mapping"]["k"] == pytest.approx([K_FAR, K_NEAR, k_half], abs=1e-5)


def test_face_and_hand_scale_about_the_ankle_point() -> None:
    frame = pose(210, 375, 200)
    out = normalize_track(source_track([frame]), SOURCE, TARGET).data[0]
    k = (K_FAR + K_NEAR) / 2
    anchor_src, anchor_dst = np.array([210, 375]), np.array([210, 425])
    for joint in (FACE.start + 8, LEFT_HAND.start + 12, J["RWrist"]):
        expected = anchor_dst + k * (frame[joint, :2] - anchor_src)
        assert out[joint, :2] == pytest.approx(expected, abs=1e-3)


def test_missing_ankles_reuse_last_valid_mapping() -> None:
    frames = [pose(200, 300, 150), pose(200, 450, 250), pose(220, 400, 230), pose(230, 420, 240)]
    for i in (0, 2):
        frames[i][[J["RAnkle"], J["LAnkle"]]] = (np.nan, np.nan, 0.0)
    src = source_track(frames)
    out = normalize_track(src, SOURCE, TARGET)
    m = out.meta["mapping"]
    assert m["valid"] == [False, True, False, True]
    for i, ref in ((0, 1), (2, 1)):  # before the first valid frame: the first valid one
        for key in ("k", "translate_x", "translate_y", "p"):
            assert m[key][i] == pytest.approx(m[key][ref])
        nose = src.data[i, J["Nose"], :2]
        assert out.data[i, J["Nose"], 0] == pytest.approx(m["k"][ref] * nose[0] + m["translate_x"][ref], abs=1e-3)
        assert out.data[i, J["Nose"], 1] == pytest.approx(m["k"][ref] * nose[1] + m["translate_y"][ref], abs=1e-3)
        assert not out.present[i, [J["RAnkle"], J["LAnkle"]]].any()


def test_center_x_shifts_the_mean_ankle_point() -> None:
    src = source_track([pose(150, 300, 150), pose(250, 450, 250)])
    plain = normalize_track(src, SOURCE, TARGET)
    centred = normalize_track(src, SOURCE, TARGET, center_x=True)
    shift = TARGET["ankle_x_mean"] - SOURCE["ankle_x_mean"]
    assert ankle_points(centred.data)[0] == pytest.approx([150 + shift, 250 + shift], abs=1e-3)
    assert np.allclose(centred.data[..., 0], plain.data[..., 0] + shift, equal_nan=True, atol=1e-3)
    assert np.allclose(centred.data[..., 1], plain.data[..., 1], equal_nan=True)


def test_extrapolation_is_linear_then_clamped() -> None:
    # p = 1.2 (linear extrapolation) and p = 5 (clamped to 2).
    src = source_track([pose(200, 480, 270), pose(200, 1050, 300)])
    m = normalize_track(src, SOURCE, TARGET).meta["mapping"]
    assert m["p"] == pytest.approx([1.2, 2.0])
    assert m["mapped_ankle_y"][0] == pytest.approx(350 + 1.2 * 150)
    assert m["k"][0] == pytest.approx(K_FAR + 1.2 * (K_NEAR - K_FAR))


def test_degenerate_source_uses_one_position() -> None:
    flat = dict(SOURCE, ankle_far=400.0, ankle_near=400.0, height_far=200.0, height_near=200.0)
    src = source_track([pose(200, 400, 200), pose(200, 430, 200)])
    out = normalize_track(src, flat, TARGET)
    assert out.meta["mapping"]["p"] == [0.0, 0.0]
    assert ankle_points(out.data)[1] == pytest.approx([350, 350 + 30 * 180 / 200], abs=1e-3)
    assert height_of(out.data[0]) == pytest.approx(180, abs=1e-3)


def test_meta_target_size_and_provenance() -> None:
    src = source_track([pose(200, 300, 150)])
    out = normalize_track(src, SOURCE, TARGET, center_x=True)
    assert (out.meta["width"], out.meta["height"], out.meta["fps"]) == (1024, 576, 25.0)
    assert out.meta["provenance"]["stage"] == "normalize"
    assert out.meta["provenance"]["params"] == {"method": "paper", "center_x": True, "keep_in_view": False}
    assert out.meta["upstream"] == [{"stage": "smooth"}]
    assert out.meta["normalize"]["target"]["ankle_far"] == 350.0
    assert "bone_ratios" in out.meta
    json.dumps(out.meta)


def test_no_ankle_anywhere_raises() -> None:
    frame = pose(200, 300, 150)
    frame[[J["RAnkle"], J["LAnkle"]]] = (np.nan, np.nan, 0.0)
    with pytest.raises(ValueError, match="ankle"):
        normalize_track(source_track([frame]), SOURCE, TARGET)
    with pytest.raises(ValueError, match="method"):
        normalize_track(source_track([pose(200, 300, 150)]), SOURCE, TARGET, method="magic")


def test_cli_round_trip(tmp_path, capsys) -> None:
    src_kp, tgt_kp = tmp_path / "src.parquet", tmp_path / "tgt.parquet"
    write_keypoints(src_kp, walking_track(n=600))
    write_keypoints(tgt_kp, walking_track(far=320, near=480, h_far=170, h_near=280, n=600, size=(800, 600)))
    s_json, t_json, out = tmp_path / "s.json", tmp_path / "t.json", tmp_path / "out" / "norm.parquet"
    assert main(["stats", str(src_kp), str(s_json)]) == 0
    assert main(["stats", str(tgt_kp), str(t_json)]) == 0
    for method in ("paper", "retarget"):
        assert main(["normalize", str(src_kp), str(s_json), str(t_json), str(out),
                     "--method", method, "--center-x"]) == 0
        track = read_keypoints(out)
        assert (track.meta["width"], track.meta["height"]) == (800, 600)
        assert track.meta["provenance"]["params"]["source"] == str(src_kp)
        assert len(track.meta["mapping"]["p"]) == 600
        t_stats = json.loads(t_json.read_text())
        ay = ankle_points(track.data)[1]
        assert ay.min() == pytest.approx(t_stats["ankle_far"], abs=5)
        assert ay.max() == pytest.approx(t_stats["ankle_near"], abs=5)
    assert set(track.meta) >= {"bone_ratios_before", "bone_ratios_after"}

    # Errors name the file.
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["normalize", str(src_kp), str(bad), str(t_json), str(out)]) == 2
    err = capsys.readouterr().err
    assert "edn normalize: error:" in err and "bad.json" in err
    bad_kp = tmp_path / "bad.parquet"
    bad_kp.write_text("nope")
    assert main(["normalize", str(bad_kp), str(s_json), str(t_json), str(out)]) == 2
    err = capsys.readouterr().err
    assert "edn normalize: error:" in err and "bad.parquet" in err
    assert main(["normalize", str(src_kp), str(t_json), str(t_json), str(out)]) == 2
    assert "frame size" in capsys.readouterr().err


def sideways_walk(n: int = 200, span: float = 900.0) -> KeypointTrack:
    """A source walking from x = 100 to 100 + span at one depth: wider than the target's 1024 px frame once
    centred (its mean position lands on the target's), so both ends leave it."""
    return source_track([pose(100 + span * i / (n - 1), 375, 200) for i in range(n)])


def test_keep_in_view_holds_the_whole_body_in_the_frame_smoothly() -> None:
    src, stats = sideways_walk(span=1400.0), {**SOURCE, "ankle_x_mean": 800.0}
    cut = normalize_track(src, stats, {**TARGET, "ankle_x_mean": 512.0}, center_x=True)
    kept = normalize_track(src, stats, {**TARGET, "ankle_x_mean": 512.0}, center_x=True, view=True)
    x_cut, x_kept = cut.data[..., 0], kept.data[..., 0]
    assert np.nanmax(x_cut) > 1024 and np.nanmin(x_cut) < 0  # today's behaviour leaves the frame both ways
    assert np.nanmin(x_kept) >= 0 and np.nanmax(x_kept) <= 1024
    assert np.nanmin(kept.data[..., 1]) >= 0 and np.nanmax(kept.data[..., 1]) <= 576
    shift = x_kept[:, J["Neck"]] - x_cut[:, J["Neck"]]
    # Smooth: the shift changes by at most a few pixels a frame, and the middle of the walk is untouched.
    assert np.abs(np.diff(shift)).max() < 12
    assert np.abs(shift[95:105]).max() < 0.5
    # The pose itself is unchanged: every joint moves by its frame's one shift.
    assert np.allclose(x_kept - x_cut, shift[:, None], atol=1e-3, equal_nan=True)
    record = kept.meta["keep_in_view"]
    assert record["frames"] and "keep_in_view" in record["warning"] and record["max_shift_x"] > 100
    assert not kept.meta["outside_frame"]["frames"] and cut.meta["outside_frame"]["frames"]


def test_keep_in_view_leaves_a_source_inside_the_frame_alone() -> None:
    src, stats = sideways_walk(span=100.0), {**SOURCE, "ankle_x_mean": 150.0}
    plain = normalize_track(src, stats, TARGET, center_x=True)
    kept = normalize_track(src, stats, TARGET, center_x=True, view=True)
    assert np.allclose(plain.data, kept.data, equal_nan=True)
    assert kept.meta["keep_in_view"]["warning"] is None and kept.meta["normalize"]["keep_in_view"] is True


def test_keep_in_view_centres_a_body_larger_than_the_frame() -> None:
    giant = {**TARGET, "height_far": 700.0, "height_near": 900.0}
    kept = normalize_track(sideways_walk(n=10, span=10.0), SOURCE, giant, center_x=True, view=True)
    record = kept.meta["keep_in_view"]
    assert record["larger_than_frame"] and "centred" in record["warning"]
