import numpy as np
import pytest

from pipeline.footage.media import probe_video
from pipeline.footage.video import side_by_side, write_video


def test_written_video_reads_back_with_size_rate_and_count(tmp_path):
    frames = [np.full((65, 47, 3), i * 20, np.uint8) for i in range(7)]  # odd size: padded
    out = tmp_path / "v.mp4"
    assert write_video(frames, out, fps=12.5) == 7
    info = probe_video(out)
    assert (info.width, info.height, info.frame_count, info.fps, info.codec, info.pix_fmt) == (
        48, 66, 7, 12.5, "h264", "yuv420p")


def test_mismatched_frame_and_empty_input(tmp_path):
    with pytest.raises(ValueError, match="expected 8x8"):
        write_video([np.zeros((8, 8, 3), np.uint8), np.zeros((10, 8, 3), np.uint8)], tmp_path / "a.mp4", 5)
    assert not (tmp_path / "a.mp4").exists()
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "b.mp4", 5)


def test_side_by_side_scales_panels_to_one_height():
    out = side_by_side(np.zeros((10, 6, 3), np.uint8), np.zeros((20, 20, 3), np.uint8))
    assert out.shape == (20, 32, 3)
