import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.pose.keypoints import (N_JOINTS, KeypointFileError, KeypointTrack, empty_track, read_keypoints,
                                     write_keypoints)


def test_round_trip_follows_the_contract(tmp_path):
    data = empty_track(3)
    data[0, 0] = (10.5, 20.25, 0.9)
    data[2, 136] = (1.0, 2.0, 1.0)
    data[1, 5] = (7.0, 8.0, 0.0)  # zero confidence means missing, whatever x, y say
    meta = {"width": 288, "height": 512, "fps": 60.0, "backend": "test"}
    write_keypoints(tmp_path / "k.parquet", KeypointTrack(data, [0, 1, 7], meta))
    table = pq.read_table(tmp_path / "k.parquet")
    assert table.num_rows == 3 * N_JOINTS
    assert str(table.schema.field("frame").type) == "int32"
    assert str(table.schema.field("joint").type) == "int16"
    for col in ("x", "y", "confidence"):
        assert str(table.schema.field(col).type) == "float"
    back = read_keypoints(tmp_path / "k.parquet")
    assert back.frames.tolist() == [0, 1, 7]
    assert back.meta == meta
    np.testing.assert_array_equal(back.data[0, 0], np.float32([10.5, 20.25, 0.9]))
    assert np.isnan(back.data[1, 5, :2]).all() and back.data[1, 5, 2] == 0
    assert back.present.sum() == 2


def test_bad_files_are_named(tmp_path):
    with pytest.raises(KeypointFileError, match="not found"):
        read_keypoints(tmp_path / "none.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"garbage")
    with pytest.raises(KeypointFileError, match="junk.parquet"):
        read_keypoints(junk)


def test_write_requires_frame_size(tmp_path):
    with pytest.raises(ValueError, match="width"):
        write_keypoints(tmp_path / "k.parquet", KeypointTrack(empty_track(1), [0], {"fps": 1}))
