"""Median pre-smoothing and short-gap filling with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.pose.keypoints import KeypointTrack, empty_track, read_keypoints, write_keypoints
from pipeline.pose.smooth import FILL_CONFIDENCE_FACTOR, smooth_track

META = {"width": 640, "height": 480, "fps": 30.0, "provenance": {"stage": "detect"}}


def track_of(x: np.ndarray, y: np.ndarray | None = None, frames: np.ndarray | None = None,
             joint: int = 3) -> KeypointTrack:
    """A track where only ``joint`` is seen; NaN in ``x`` marks a missing frame."""
    x = np.asarray(x, dtype=float)
    y = np.full_like(x, 100.0) if y is None else np.asarray(y, dtype=float)
    data = empty_track(len(x))
    ok = np.isfinite(x)
    data[ok, joint] = np.stack([x[ok], y[ok], np.full(ok.sum(), 0.8)], axis=1)
    frames = np.arange(len(x)) if frames is None else frames
    return KeypointTrack(data, frames, dict(META))


def test_one_frame_spikes_removed_and_step_kept() -> None:
    x = np.where(np.arange(40) < 20, 10.0, 50.0)
    x[8] = 200.0  # isolated spikes on both plateaus
    x[30] = -90.0
    out = smooth_track(track_of(x), window=5, max_gap=5)
    sx = out.data[:, 3, 0]
    assert np.allclose(sx[:20], 10.0) and np.allclose(sx[20:], 50.0)  # the step stays at frame 20


def test_linear_motion_is_unchanged_including_ends_and_gap_edges() -> None:
    t = np.arange(30, dtype=float)
    x = 3.0 * t + 7
    x[12:15] = np.nan
    out = smooth_track(track_of(x, y=2.0 * t), window=7, max_gap=5)
    assert np.allclose(out.data[:, 3, 0], 3.0 * t + 7, atol=1e-4)
    assert np.allclose(out.data[:, 3, 1], 2.0 * t, atol=1e-4)


def test_short_gap_filled_linearly_long_and_end_gaps_stay_missing() -> None:
    t = np.arange(40, dtype=float)
    x = 2.0 * t
    x[:3] = np.nan      # leading gap
    x[10:13] = np.nan   # 3 frames: filled
    x[20:27] = np.nan   # 7 frames: too long
    x[37:] = np.nan     # trailing gap
    out = smooth_track(track_of(x), window=5, max_gap=5)
    sx, conf = out.data[:, 3, 0], out.data[:, 3, 2]
    assert np.allclose(sx[10:13], 2.0 * t[10:13], atol=1e-4)
    assert np.allclose(conf[10:13], FILL_CONFIDENCE_FACTOR * 0.8)
    for gap in (slice(0, 3), slice(20, 27), slice(37, 40)):
        assert np.isnan(sx[gap]).all() and (conf[gap] == 0).all()
    assert not out.present[:, 0].any()  # joints never seen stay missing


def test_max_gap_boundary_and_zero() -> None:
    x = np.arange(20, dtype=float)
    x[5:10] = np.nan  # exactly 5 frames
    assert smooth_track(track_of(x), window=1, max_gap=5).present[5:10, 3].all()
    assert not smooth_track(track_of(x), window=1, max_gap=4).present[5:10, 3].any()
    assert not smooth_track(track_of(x), window=1, max_gap=0).present[5:10, 3].any()


def test_absent_frame_numbers_are_missing_frames() -> None:
    frames = np.array([0, 1, 2, 3, 6, 7, 8, 9, 30, 31])
    out = smooth_track(track_of(frames * 4.0, frames=frames), window=3, max_gap=2)
    assert out.frames.tolist() == list(range(32))
    assert np.allclose(out.data[4:6, 3, 0], [16.0, 20.0])  # 2-frame hole filled
    assert not out.present[10:30, 3].any()                  # 20-frame hole kept
    assert out.meta["smooth_summary"] == {"frames_in": 10, "frames_out": 32, "joints_filled": 2}


def test_missing_neighbours_do_not_poison_the_median() -> None:
    # A spike right after a missing frame: the (3, 5) pair is skipped, (2, 6) still votes.
    x = np.array([10, 10, 10, np.nan, 200, 10, 10, 10], dtype=float)
    out = smooth_track(track_of(x), window=5, max_gap=0)
    sx = out.data[:, 3, 0]
    assert np.isnan(sx[3])
    assert np.allclose(np.delete(sx, 3), 10.0)


@pytest.mark.parametrize("window,max_gap,message", [
    (4, 5, "odd"), (0, 5, "odd"), (-3, 5, "odd"), (5, -1, "max_gap"), (2.5, 1, "integer")])
def test_validation(window, max_gap, message) -> None:
    with pytest.raises(ValueError, match=message):
        smooth_track(track_of(np.arange(10.0)), window=window, max_gap=max_gap)


def test_long_track_is_fast_and_shape_preserving() -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 500, (5000, 137, 3)).astype(np.float32)
    data[..., 2] = 0.9
    data[rng.random((5000, 137)) < 0.1] = (np.nan, np.nan, 0.0)
    out = smooth_track(KeypointTrack(data, np.arange(5000), dict(META)), window=5, max_gap=5)
    assert out.data.shape == data.shape
    assert out.present.mean() > 0.99


def test_cli_round_trip_keeps_provenance(tmp_path, capsys) -> None:
    x = np.arange(30, dtype=float)
    x[10:12] = np.nan
    src = tmp_path / "raw.parquet"
    write_keypoints(src, track_of(x))
    out = tmp_path / "smooth.parquet"
    assert main(["smooth", str(src), str(out), "--window", "3", "--max-gap", "2"]) == 0
    track = read_keypoints(out)
    assert track.present[10:12, 3].all()
    assert track.meta["provenance"]["stage"] == "smooth"
    assert track.meta["provenance"]["params"]["window"] == 3
    assert track.meta["provenance"]["params"]["max_gap"] == 2
    assert track.meta["upstream"] == [{"stage": "detect"}]
    assert (track.meta["width"], track.meta["height"], track.meta["fps"]) == (640, 480, 30.0)

    with pytest.raises(SystemExit) as refused:  # an even window is refused by the option's own type
        main(["smooth", str(src), str(out), "--window", "4"])
    assert refused.value.code == 2 and "odd whole number" in capsys.readouterr().err
    bad = tmp_path / "bad.parquet"
    bad.write_text("garbage")
    assert main(["smooth", str(bad), str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert "edn smooth: error:" in err and "bad.parquet" in err
