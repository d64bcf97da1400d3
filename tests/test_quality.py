"""Pose quality control: synthetic bad frames are flagged, clean ones pass, and the stages that use
the verdicts (smoothing, training pairs, normalization's repair, transfer's flag, stats' fallback)
do what the verdicts say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.cli import build_parser, main
from pipeline.pose.keypoints import BODY, J, KeypointTrack, empty_track, read_keypoints, write_keypoints
from pipeline.pose.normalize import normalize_track, repair_track, repaired_frames
from pipeline.pose.quality import DEFAULTS, bad_frames, qc_track, quality_scores, read_qc, write_qc
from pipeline.pose.smooth import smooth_track
from test_stats import pose, walking_track

N = 120


def clean_track() -> KeypointTrack:
    """A subject walking between far and near: scale and position change smoothly."""
    return walking_track(n=N, period=60)


def verdicts(track: KeypointTrack) -> dict[str, np.ndarray]:
    return quality_scores(track)


def two_people(switch: int = 60) -> KeypointTrack:
    """Person A (left, 180 px tall) until ``switch``, then person B (right, 260 px) at once."""
    frames = [pose(150 + t, 400.0, 180.0) if t < switch else pose(450 + t, 440.0, 260.0) for t in range(N)]
    return KeypointTrack(np.stack(frames), np.arange(N), {"width": 640, "height": 512, "fps": 30.0})


def test_clean_walk_passes_every_frame() -> None:
    scores = verdicts(clean_track())
    assert scores["ok"].all(), [r for r in scores["reasons"] if r]
    assert np.nanmax(scores["max_limb_ratio"]) < 1.05 and np.nanmax(scores["jump"]) < 0.5  # body heights/s


def test_limb_three_times_too_long_is_flagged() -> None:
    track = clean_track()
    elbow, wrist = track.data[40, J["RElbow"], :2], track.data[40, J["RWrist"], :2]
    track.data[40, J["RWrist"], :2] = elbow + 3 * (wrist - elbow)
    scores = verdicts(track)
    assert not scores["ok"][40] and not scores["plausible"][40]
    assert "limb:RElbow-RWrist" in scores["reasons"][40] and scores["max_limb_ratio"][40] > 2.5
    assert scores["ok"][np.arange(N) != 40].all()


def test_joint_teleport_is_flagged() -> None:
    track = clean_track()
    track.data[70, J["LKnee"], :2] += (220.0, -130.0)  # the knee lands far from its leg
    scores = verdicts(track)
    assert not scores["plausible"][70]
    assert "limb:LHip-LKnee" in scores["reasons"][70] and "limb:LKnee-LAnkle" in scores["reasons"][70]
    assert scores["ok"][np.arange(N) != 70].all()


def test_two_skeletons_mixed_are_flagged() -> None:
    track = two_people(switch=N)  # person A throughout ...
    other = pose(450.0, 440.0, 260.0)
    legs = [J[n] for n in ("MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "RHeel", "LHeel",
                           "RBigToe", "LBigToe", "RSmallToe", "LSmallToe")]
    track.data[50:53, legs] = other[legs]  # ... with person B's legs in three frames
    scores = verdicts(track)
    assert not scores["plausible"][50:53].any()
    assert all("limb:Neck-MidHip" in r for r in scores["reasons"][50:53])
    assert scores["plausible"][:50].all() and scores["plausible"][53:].all()


def test_change_of_person_is_a_break_not_a_bad_pose() -> None:
    scores = verdicts(two_people(switch=60))
    assert scores["break"][60] and not scores["ok"][60] and scores["plausible"][60]
    assert "jump" in scores["reasons"][60] and "switch" in scores["reasons"][60]  # moved and 1.44x scale
    assert scores["ok"][np.arange(N) != 60].all()


def test_same_place_other_size_is_a_switch() -> None:
    frames = [pose(200.0, 400.0, 180.0 if t < 30 else 300.0) for t in range(N)]
    scores = verdicts(KeypointTrack(np.stack(frames), np.arange(N), {"width": 640, "height": 512, "fps": 30.0}))
    assert scores["break"][30] and scores["scale_change"][30] == pytest.approx(300 / 180, rel=1e-3)
    assert np.flatnonzero(~scores["ok"]).tolist() == [30]


def test_frame_without_body_and_body_larger_than_frame() -> None:
    track = clean_track()
    track.data[10] = empty_track(1)[0]
    scores = verdicts(track)
    assert scores["reasons"][10] == "no body" and not scores["plausible"][10]
    narrow = clean_track()
    narrow.meta["width"] = 40  # every body box is wider than a 40 px frame
    assert all("box>frame" in r for r in verdicts(narrow)["reasons"])


def test_cli_writes_verdicts_with_provenance(tmp_path) -> None:
    track = clean_track()
    track.data[40, J["RWrist"], :2] += (300.0, 0.0)
    write_keypoints(tmp_path / "raw.parquet", track)
    assert main(["qc", str(tmp_path / "raw.parquet"), str(tmp_path / "qc.parquet"), "--limb-long", "2.5"]) == 0
    columns, meta = read_qc(tmp_path / "qc.parquet")
    assert columns["frame"].tolist() == list(range(N))
    assert bad_frames(tmp_path / "qc.parquet") == {40}
    assert meta["provenance"]["stage"] == "qc" and meta["thresholds"]["limb_long"] == 2.5
    assert meta["summary"]["not_ok"] == [40] and meta["summary"]["by_reason"] == {"limb": 1, "spike": 1}
    assert meta["upstream"][0]["stage"] == "synthetic"
    (tmp_path / "junk.parquet").write_text("x")
    assert main(["qc", str(tmp_path / "junk.parquet"), str(tmp_path / "q2.parquet")]) == 2


def test_qc_figure_is_drawn(tmp_path) -> None:
    import cv2

    track = two_people(switch=60)
    track.data[30, J["RWrist"], :2] += (300.0, 0.0)
    write_keypoints(tmp_path / "raw.parquet", track)
    assert main(["qc", str(tmp_path / "raw.parquet"), str(tmp_path / "qc.parquet")]) == 0
    assert main(["plot", "qc", str(tmp_path / "qc.parquet"), str(tmp_path / "qc.parquet"),
                 str(tmp_path / "qc.png")]) == 0
    image = cv2.imread(str(tmp_path / "qc.png"))
    assert image is not None and image.std() > 10
    assert ((image[..., 2] > 180) & (image[..., 1] < 80) & (image[..., 0] < 80)).any()  # the red bad frame


def test_cli_defaults_are_the_module_defaults() -> None:
    args = build_parser().parse_args(["qc", "in.parquet", "out.parquet"])
    assert {k: getattr(args, k) for k in DEFAULTS} == DEFAULTS


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="limb_long=0.9"):
        quality_scores(clean_track(), {"limb_long": 0.9})
    with pytest.raises(ValueError, match="unknown"):
        quality_scores(clean_track(), {"limbs": 2})


# ---------------------------------------------------------------------------------- smoothing

def _qc_columns(track: KeypointTrack) -> dict[str, np.ndarray]:
    return qc_track(track)[0]


def test_smoothing_does_not_cross_a_change_of_person() -> None:
    track = two_people(switch=60)
    # A gap around the switch, as when the detector loses the person: 300 px (~1 body height)
    # in 4 frames at 30 fps is 7.5 heights/s, faster than jump_speed allows a body to move.
    track.data[58:61] = empty_track(3)
    qc = _qc_columns(track)
    assert qc["break"][61] and qc["jump"][61] > DEFAULTS["jump_speed"]
    mixed = smooth_track(track, window=5, max_gap=5)
    split = smooth_track(track, window=5, max_gap=5, qc=qc)
    neck = J["Neck"]
    assert mixed.present[58:61, neck].all()  # without QC: filled from A to B, a person in between
    assert not split.present[58:61, neck].any()  # with QC: not interpolated across the break
    assert np.allclose(split.data[:58, BODY], track.data[:58, BODY], atol=1e-3)
    assert np.allclose(split.data[61:, BODY], track.data[61:, BODY], atol=1e-3)
    assert split.meta["smooth_summary"]["segments"] == [[0, 60], [61, N - 1]]


def test_smoothing_window_stops_at_a_break() -> None:
    # A person change with no gap: the median at the last frames of A must not see B.
    qc = _qc_columns(two_people(switch=60))
    out = smooth_track(two_people(switch=60), window=9, max_gap=5, qc=qc)
    assert np.allclose(out.data[:, BODY], two_people(switch=60).data[:, BODY], atol=1e-3)


def test_implausible_raw_frames_are_missing_before_smoothing() -> None:
    track = clean_track()
    truth = track.data[41, J["RWrist"], :2].copy()
    track.data[40:43, J["RWrist"], :2] += (250.0, 0.0)  # three bad frames: a median of 5 keeps them
    qc = _qc_columns(track)
    assert np.flatnonzero(~qc["plausible"]).tolist() == [40, 41, 42]
    plain = smooth_track(track, window=5, max_gap=5)
    assert plain.data[41, J["RWrist"], 0] > truth[0] + 100  # the garbage got through
    out = smooth_track(track, window=5, max_gap=5, qc=qc)
    assert np.allclose(out.data[41, J["RWrist"], :2], truth, atol=1.0)  # refilled from its neighbours
    assert out.meta["smooth_summary"]["frames_dropped_by_qc"] == [40, 41, 42]


def test_smooth_cli_takes_the_qc_file(tmp_path) -> None:
    write_keypoints(tmp_path / "raw.parquet", two_people(switch=60))
    assert main(["qc", str(tmp_path / "raw.parquet"), str(tmp_path / "qc.parquet")]) == 0
    assert main(["smooth", str(tmp_path / "raw.parquet"), str(tmp_path / "s.parquet"),
                 "--qc", str(tmp_path / "qc.parquet")]) == 0
    out = read_keypoints(tmp_path / "s.parquet")
    assert out.meta["provenance"]["params"]["qc"] == str(tmp_path / "qc.parquet")
    assert len(out.meta["smooth_summary"]["segments"]) == 2


# ------------------------------------------------------------------------- normalization repair

STATS = {"ankle_far": 380.0, "ankle_near": 460.0, "height_far": 180.0, "height_near": 260.0,
         "frame_width": 640, "frame_height": 512, "ankle_x_mean": 300.0}


def test_short_bad_runs_are_interpolated_long_ones_hold_the_last_good_pose() -> None:
    track = clean_track()
    truth = track.data.copy()
    ok = np.ones(N, dtype=bool)
    ok[[0, 1]] = False      # at the start: the first good pose is held
    ok[30:33] = False       # 3 frames: interpolated
    ok[60:80] = False       # 20 frames: longer than max_repair_gap
    for t in np.flatnonzero(~ok):
        track.data[t, J["LWrist"], :2] += 500.0  # garbage that must not survive
    qc = {"frame": track.frames, "ok": ok}
    out, repaired = repair_track(track, qc, max_repair_gap=10)
    assert repaired == {"interpolated": [30, 31, 32], "held": [0, 1] + list(range(60, 80))}
    w = (31 - 29) / (33 - 29)
    assert np.allclose(out.data[31, :, :2], truth[29, :, :2] + w * (truth[33, :, :2] - truth[29, :, :2]), atol=1e-3)
    assert np.allclose(out.data[60:80, :, :2], truth[59, :, :2], atol=1e-4)
    assert np.allclose(out.data[0:2, :, :2], truth[2, :, :2], atol=1e-4)
    assert (out.data[30:33, :, 2] < truth[30:33, :, 2]).all()  # repaired joints: lower confidence, present
    assert np.array_equal(out.data[ok], truth[ok])


def test_interpolation_that_is_itself_implausible_is_replaced_by_holding() -> None:
    # Before the bad run the right knee is unseen, after it the person stands 120 px further
    # right: the knee held from the right side and the hip moving in between make a thigh twice
    # too long, so the run holds the last good pose instead.
    frames = [pose(200.0, 400.0, 180.0) if t < 53 else pose(320.0, 400.0, 180.0) for t in range(N)]
    track = KeypointTrack(np.stack(frames), np.arange(N), {"width": 640, "height": 512, "fps": 30.0})
    track.data[49, J["RKnee"]] = (np.nan, np.nan, 0.0)
    ok = np.ones(N, dtype=bool)
    ok[50:53] = False
    out, repaired = repair_track(track, {"frame": track.frames, "ok": ok}, max_repair_gap=10)
    assert repaired == {"interpolated": [], "held": [50, 51, 52]}
    assert np.allclose(out.data[50:53, :, :2], track.data[49, :, :2], equal_nan=True)
    assert quality_scores(out)["plausible"].all()


def test_normalize_records_repairs_and_the_cli_reads_qc(tmp_path) -> None:
    track = clean_track()
    track.data[40, J["RWrist"], :2] += (300.0, 0.0)
    write_keypoints(tmp_path / "src.parquet", track)
    (tmp_path / "s.json").write_text(json.dumps(STATS))
    assert main(["qc", str(tmp_path / "src.parquet"), str(tmp_path / "qc.parquet")]) == 0
    assert main(["normalize", str(tmp_path / "src.parquet"), str(tmp_path / "s.json"), str(tmp_path / "s.json"),
                 str(tmp_path / "n.parquet"), "--qc", str(tmp_path / "qc.parquet")]) == 0
    out = read_keypoints(tmp_path / "n.parquet")
    assert repaired_frames(out) == {40}
    assert out.meta["qc_repair"]["interpolated"] == [40]
    assert repaired_frames(normalize_track(track, STATS, STATS)) == set()
    partial = {"frame": track.frames[:50], "ok": np.ones(50, dtype=bool)}
    with pytest.raises(ValueError, match="lack 70 of the track's 120 frames"):
        normalize_track(track, STATS, STATS, qc=partial)


def test_two_person_source_gives_no_implausible_output_pose(tmp_path) -> None:
    """The bar: QC, smoothing on it, QC again, normalization with repair; QC of the result is clean."""
    track = two_people(switch=60)
    rng = np.random.default_rng(0)
    track.data[:, BODY, :2] += rng.normal(0, 0.7, track.data[:, BODY, :2].shape)
    other = pose(520.0, 440.0, 260.0)
    mixed = [J[n] for n in ("MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle")]
    track.data[30:33, mixed] = other[mixed]        # the detector mixes the two people ...
    track.data[45, J["LWrist"], :2] += (0, 200.0)  # ... stretches one arm ...
    track.data[80:95] = track.data[79]             # ... and, from 80, holds a mixed skeleton for long
    track.data[80:95, mixed] = pose(140.0, 470.0, 260.0)[mixed]
    raw_qc = _qc_columns(track)
    assert not raw_qc["plausible"][[30, 31, 32, 45]].any() and not raw_qc["plausible"][80:95].any()
    smoothed = smooth_track(track, window=5, max_gap=5, qc=raw_qc)
    smooth_qc = _qc_columns(smoothed)
    source_stats = {**STATS, "ankle_far": 399.0, "ankle_near": 441.0}
    out = normalize_track(smoothed, source_stats, STATS, qc=smooth_qc)
    assert repaired_frames(out) >= set(np.flatnonzero(~smooth_qc["ok"]).tolist())
    assert quality_scores(out)["plausible"].all()
    assert out.meta["qc_repair"]["implausible_after_repair"] == []
    assert not quality_scores(normalize_track(smoothed, source_stats, STATS))["plausible"].all()  # without repair


def test_frames_still_implausible_after_repair_are_held_from_the_nearest_good_frame() -> None:
    # A stale verdict calls frame 40 ok although its wrist is 3x out: the independent QC of the
    # repaired poses catches it and holds the nearest ok, plausible frame instead.
    track = clean_track()
    elbow = track.data[40, J["RElbow"], :2].copy()
    track.data[40, J["RWrist"], :2] = elbow + 3 * (track.data[40, J["RWrist"], :2] - elbow)
    ok = np.ones(N, dtype=bool)
    ok[70] = False
    out, repaired = repair_track(track, {"frame": track.frames, "ok": ok})
    assert repaired["implausible_held"] == [40] and 40 in repaired["held"] and repaired["interpolated"] == [70]
    assert np.allclose(out.data[40, :, :2], track.data[39, :, :2])
    assert (out.data[40, BODY, 2] < track.data[39, BODY, 2]).all()  # marked as repaired
    assert quality_scores(out)["plausible"].all()


def test_repairing_more_than_the_share_warns_with_ranges_and_reasons(caplog) -> None:
    track = clean_track()
    qc = qc_track(track)[0]
    qc["ok"][10:25] = False  # 15 of 120 frames (12.5 %) not ok
    qc["reasons"][10:25] = "limb:RElbow-RWrist 2.0x"
    out = normalize_track(track, STATS, STATS, qc=qc, max_repaired_share=0.1)
    record = out.meta["qc_repair"]
    assert record["repaired_share"] == pytest.approx(15 / 120) and record["follows_source"] == pytest.approx(105 / 120)
    assert "15 of 120 frames (12%" in caplog.text and "frames 10-24" in caplog.text and "limb 15" in caplog.text
    caplog.clear()
    quiet = normalize_track(track, STATS, STATS, qc=qc, max_repaired_share=0.2)
    assert quiet.meta["qc_repair"]["warning"] is None and "frames 10-24" not in caplog.text


def test_label_of_the_share_that_follows_the_source() -> None:
    from pipeline.gan.transfer import label_follows

    low, high = np.zeros((256, 128, 3), np.uint8), np.zeros((256, 128, 3), np.uint8)
    label_follows(low, 0.5)
    label_follows(high, 0.95)
    assert (low[-20:, :, 2] > 200).any() and not (low[:200] > 0).any()  # red, at the foot only
    assert (high[-20:] > 200).all(axis=-1).any()  # white when nearly everything follows


# ------------------------------------------------------------------------------------ transfer

def test_repaired_frames_are_flagged_on_the_stick_figure_panel() -> None:
    from pipeline.gan.transfer import mark_repaired

    panel = np.zeros((128, 64, 3), np.uint8)
    mark_repaired(panel)
    assert (panel[0, :, 2] == 255).all() and (panel[:, 0, 2] == 255).all() and (panel[..., :2] == 0).all()
    assert (panel[10:30, 5:60, 2] > 0).any()  # the label


# ------------------------------------------------------------------------------------- training

def test_pair_dataset_skips_pairs_with_a_bad_frame(tmp_path, synthetic_clip_factory) -> None:
    from pipeline.gan.data import PairDataset, load_clip

    clip = load_clip(*synthetic_clip_factory(tmp_path / "clip", n_frames=10))
    everything = PairDataset([clip], 64, 128, holdout=0.2)
    assert [t for _, t in everything.items] == list(range(7))
    skipping = PairDataset([clip], 64, 128, holdout=0.2, excluded=[{3}])
    assert [t for _, t in skipping.items] == [0, 1, 4, 5, 6]  # (2,3) and (3,4) left out
    assert all({item["frame"], item["frame"] + 1}.isdisjoint({3}) for item in (skipping[k] for k in range(5)))
    with pytest.raises(ValueError, match="2 clips"):
        PairDataset([clip], 64, 128, excluded=[set(), set()])


def test_training_run_lists_the_excluded_frames(tmp_path, synthetic_clip_factory) -> None:
    from pipeline.gan.train import TrainConfig, train

    frames, render, keypoints = synthetic_clip_factory(tmp_path / "clip", n_frames=10)
    track = read_keypoints(keypoints)
    scores, meta = qc_track(track)
    scores["ok"][[2, 5]] = False  # as if QC had rejected two frames
    write_qc(tmp_path / "qc.parquet", scores, meta)
    cfg = TrainConfig(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0,
                      vgg_loss=False, sample_every=0, max_steps=0)
    record = train(tmp_path / "run", [(frames, render, keypoints)], cfg, clip_qc=[tmp_path / "qc.parquet"])
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["clips"][0]["qc_excluded_frames"] == [2, 5] and run["clips"][0]["qc"] == str(tmp_path / "qc.parquet")
    assert record["samples"] == 3  # of the 7 training pairs, (0,1), (3,4) and (6,7) touch neither 2 nor 5
    with pytest.raises(ValueError, match="one QC file per clip"):
        train(tmp_path / "run2", [(frames, render, keypoints)], cfg, clip_qc=[tmp_path / "qc.parquet"] * 2)


# ---------------------------------------------------------------------------------------- stats

def test_stats_fall_back_to_one_scale_when_near_is_not_taller(tmp_path, caplog) -> None:
    from pipeline.evaluation.plots import plot_normalization
    from pipeline.pose.stats import compute_stats

    inverted = walking_track(h_far=250.0, h_near=150.0, n=600, period=300)  # smaller when nearer
    stats = compute_stats([inverted])
    assert "near height" in stats["fallback"] and "far height" in stats["fallback"]
    assert stats["height_far"] == stats["height_near"] > 0
    assert "near height" in caplog.text
    normal = compute_stats([walking_track(n=600, period=300)])
    assert normal["fallback"] is None and normal["height_near"] > normal["height_far"]
    degenerate = compute_stats([walking_track(near=300.0, n=300, period=300)])
    assert "degenerate" in degenerate["fallback"]

    import cv2

    mapped = normalize_track(inverted, stats, normal)
    plot_normalization(mapped, stats, normal, tmp_path / "with_note.png")
    plot_normalization(mapped, normal, normal, tmp_path / "without.png")
    with_note, without = (cv2.imread(str(tmp_path / f)) for f in ("with_note.png", "without.png"))
    assert with_note.shape[0] > without.shape[0]  # the note adds a line under the figure
    tail = with_note[without.shape[0] - 5:]
    assert ((tail[..., 2] > 150) & (tail[..., 0] < 100)).any()  # in red


@pytest.mark.slow
def test_transfer_flags_repaired_frames_in_the_side_by_side_video(tmp_path, synthetic_clip_factory) -> None:
    import cv2

    from pipeline.gan.train import TrainConfig, train
    from pipeline.gan.transfer import transfer

    frames, render, keypoints = synthetic_clip_factory(tmp_path / "clip", n_frames=6)
    train(tmp_path / "run", [(frames, render, keypoints)],
          TrainConfig(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0,
                      vgg_loss=False, sample_every=0, max_steps=1))
    track = read_keypoints(keypoints)
    track.meta["qc_repair"] = {"interpolated": [3], "held": [], "max_repair_gap": 10}
    write_keypoints(tmp_path / "normalized.parquet", track)
    record = transfer(tmp_path / "normalized.parquet", render, frames, tmp_path / "run" / "generator.pt",
                      tmp_path / "out.mp4", side_by_side_out=tmp_path / "sbs.mp4", device="cpu")
    assert record["qc_repaired"] == 1 and record["qc_repaired_frames"] == [3]
    assert record["follows_source"] == pytest.approx(5 / 6, abs=1e-4)
    video = cv2.VideoCapture(str(tmp_path / "sbs.mp4"))
    red = []
    while True:
        got, image = video.read()
        if not got:
            break
        red.append(int(((image[..., 2] > 150) & (image[..., 1] < 90) & (image[..., 0] < 90)).sum()))
    assert len(red) == 6
    assert red[3] > max(red[:3] + red[4:]) + 500, red  # the stick figures have red limbs too; the border adds ~800 px
