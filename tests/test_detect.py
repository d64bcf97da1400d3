"""Pose detection: the MediaPipe mapping, OpenPose JSON input, one person, missing frames, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.pose.detect import (MP_FACE_TO_OPENPOSE68, MP_POSE_TO_BODY25, VISIBILITY_THRESHOLD, detect,
                                  map_holistic, pick_person, read_openpose_json)
from pipeline.pose.keypoints import BODY, FACE, LEFT_HAND, RIGHT_HAND, J, read_keypoints

OPENPOSE_JSON = Path(__file__).parent / "data" / "openpose"


def _pose33() -> np.ndarray:
    """33 MediaPipe pose landmarks in pixels, all visible, each at a distinct place."""
    pose = np.zeros((33, 3))
    pose[:, 0] = 100 + np.arange(33) * 3.0
    pose[:, 1] = 50 + np.arange(33) * 5.0
    pose[:, 2] = 0.9
    return pose


def test_pose_mapping_midpoints_and_missing_joints():
    pose = _pose33()
    pose[26, 2] = VISIBILITY_THRESHOLD / 2  # right knee barely visible: a guess, left missing
    joints = map_holistic(pose, None, (None, None), (400, 400))
    for name, mp_index in MP_POSE_TO_BODY25.items():
        if name != "RKnee":
            np.testing.assert_allclose(joints[J[name], :2], pose[mp_index, :2], err_msg=name)
    np.testing.assert_allclose(joints[J["Neck"], :2], (pose[11, :2] + pose[12, :2]) / 2)
    np.testing.assert_allclose(joints[J["MidHip"], :2], (pose[23, :2] + pose[24, :2]) / 2)
    for name in ("LSmallToe", "RSmallToe", "RKnee"):
        assert joints[J[name], 2] == 0 and np.isnan(joints[J[name], 0]), name
    assert not (joints[FACE, 2] > 0).any() and not (joints[LEFT_HAND, 2] > 0).any()


def test_joints_outside_the_frame_are_missing():
    pose = _pose33()
    pose[27] = (-5.0, 120.0, 0.99)  # left ankle left of the frame
    joints = map_holistic(pose, None, (None, None), (400, 400))
    assert joints[J["LAnkle"], 2] == 0


def test_hands_go_to_the_nearer_wrist_whatever_holistic_calls_them():
    pose = _pose33()
    left_wrist, right_wrist = pose[15, :2], pose[16, :2]
    near_left = np.tile(np.r_[left_wrist + 1, 1.0], (21, 1))
    near_right = np.tile(np.r_[right_wrist - 1, 1.0], (21, 1))
    swapped = map_holistic(pose, None, (near_right, near_left), (400, 400))  # labels mirrored
    np.testing.assert_allclose(swapped[LEFT_HAND.start, :2], left_wrist + 1)
    np.testing.assert_allclose(swapped[RIGHT_HAND.start, :2], right_wrist - 1)
    one = map_holistic(pose, None, (None, near_left), (400, 400))  # one hand, labelled right
    assert one[LEFT_HAND.start, 2] == 1 and one[RIGHT_HAND.start, 2] == 0


def test_face_mesh_maps_to_openpose_70_with_pupils_on_the_right_eyes():
    mesh = np.zeros((478, 3))
    mesh[:, 0] = np.arange(478) * 0.5  # x encodes the mesh index
    mesh[:, 1] = 200
    mesh[:, 2] = 1.0
    right_eye = [MP_FACE_TO_OPENPOSE68[i] for i in range(36, 42)]
    left_eye = [MP_FACE_TO_OPENPOSE68[i] for i in range(42, 48)]
    # Put the first iris centre (468) next to the LEFT eye: it must become pupil 69.
    mesh[468, 0] = mesh[left_eye, 0].mean() + 0.1
    mesh[473, 0] = mesh[right_eye, 0].mean() - 0.1
    joints = map_holistic(_pose33(), mesh, (None, None), (400, 400))
    face = joints[FACE]
    assert len(MP_FACE_TO_OPENPOSE68) == 68 and len(set(MP_FACE_TO_OPENPOSE68)) == 68
    np.testing.assert_allclose(face[:68, 0], np.array(MP_FACE_TO_OPENPOSE68) * 0.5)
    assert face[68, 0] == pytest.approx(mesh[473, 0]) and face[69, 0] == pytest.approx(mesh[468, 0])
    no_iris = map_holistic(_pose33(), mesh[:468], (None, None), (400, 400))
    assert no_iris[FACE.start + 68, 0] == pytest.approx(mesh[right_eye, 0].mean(), rel=1e-5)


def test_openpose_json_real_format_sample(clip_frames, tmp_path):
    # The test clip's frames are 144x256; the JSON was written for the clip at 288x512.
    out = tmp_path / "raw.parquet"
    assert main(["detect", str(clip_frames), str(out), "--backend", "openpose-json",
                 "--json-dir", str(OPENPOSE_JSON), "--json-size", "288x512"]) == 0
    track = read_keypoints(out)
    assert len(track.frames) == 24 and (track.meta["width"], track.meta["height"]) == (144, 256)
    assert track.meta["backend"] == "openpose-json"
    assert track.meta["provenance"]["stage"] == "detect"
    assert track.meta["upstream"][-1]["stage"] == "extract"
    # Frame 0 holds a small bystander first, then the dancer: the taller one (the dancer) is
    # kept; its Neck is the file's second person, joint 1, at half scale.
    doc = json.loads((OPENPOSE_JSON / "clip_000000000000_keypoints.json").read_text())
    neck = doc["people"][1]["pose_keypoints_2d"][3:6]
    np.testing.assert_allclose(track.data[0, J["Neck"]], (neck[0] / 2, neck[1] / 2, neck[2]), rtol=1e-6)
    doc1 = json.loads((OPENPOSE_JSON / "clip_000000000001_keypoints.json").read_text())
    neck1 = doc1["people"][0]["pose_keypoints_2d"][3:6]
    np.testing.assert_allclose(track.data[1, J["Neck"], :2], (neck1[0] / 2, neck1[1] / 2), rtol=1e-6)
    # Frame 2: nobody; frames 4-23: no file. Both missing, not errors.
    assert not track.present[2].any() and not track.present[4:].any()
    # Frame 3 has a face (one point missed) and both hands.
    assert track.present[3, FACE].sum() == 69 and not track.present[3, FACE.start + 5]
    assert track.present[3, LEFT_HAND].any() and track.present[3, RIGHT_HAND].any()
    # OpenPose's 0,0,0 for a joint it missed is NaN with confidence 0 in our contract.
    assert np.isnan(track.data[0, J["LSmallToe"], 0]) and track.data[0, J["LSmallToe"], 2] == 0


def test_pick_person_keeps_following_the_same_person():
    def person(cx: float, top: float, height: float) -> np.ndarray:
        joints = np.full((137, 3), np.nan, np.float32)
        joints[:, 2] = 0
        joints[J["Nose"]] = (cx, top, 1)
        joints[J["RAnkle"]] = (cx, top + height, 1)
        return joints

    dancer, walker = person(100, 50, 300), person(400, 20, 200)
    assert pick_person([walker, dancer], None) == 1  # the tallest first
    previous = ((100.0, 200.0), 300.0)
    bigger_walker = person(400, 0, 400)
    assert pick_person([bigger_walker, person(110, 55, 300)], (np.array(previous[0]), previous[1])) == 1
    assert pick_person([walker, dancer], None, crop=(300, 0, 200, 400)) == 0  # only inside the box
    assert pick_person([], None) is None
    # The dancer hidden, only the walker (300 px = 1 body height away) in view: no switch ...
    assert pick_person([walker], (np.array(previous[0]), previous[1]), elapsed=1 / 30) is None
    # ... unless the dancer has been gone long enough to have walked there (6 heights/s).
    assert pick_person([walker], (np.array(previous[0]), previous[1]), elapsed=0.1) == 0


def test_openpose_json_keeps_following_the_first_person(tmp_path, caplog):
    def doc(*people: tuple[float, float]) -> str:
        return json.dumps({"people": [{"pose_keypoints_2d": [v for j in range(25) for v in (
            (x, top, 0.9) if j == J["Nose"] else (x, top + 300, 0.9) if j == J["RAnkle"] else (0, 0, 0))]}
            for x, top in people]})

    folder = tmp_path / "json"
    folder.mkdir()
    # Frames 0-1: the dancer (x 100) and a smaller walker (x 500); 2-3: the walker alone; 4: both.
    for frame, people in enumerate([((100, 50), (500, 150)), ((102, 50), (500, 150)), ((500, 150),),
                                    ((500, 150),), ((104, 50), (500, 150))]):
        (folder / f"clip_{frame:012d}_keypoints.json").write_text(doc(*people))
    with caplog.at_level("WARNING"):
        data = read_openpose_json(folder, 5, fps=30.0)
    assert data[[0, 1, 4], J["Nose"], 0].tolist() == [100, 102, 104]
    assert np.isnan(data[[2, 3], J["Nose"], 0]).all()
    assert "frames 2-3 only people out of reach" in caplog.text


def test_openpose_json_errors_name_the_file(tmp_path, clip_frames):
    bad = tmp_path / "json"
    bad.mkdir()
    (bad / "v_000000000000_keypoints.json").write_text("{not json")
    with pytest.raises(ValueError, match="v_000000000000_keypoints.json"):
        read_openpose_json(bad, 3)
    (bad / "v_000000000000_keypoints.json").write_text(json.dumps(
        {"version": 1.3, "people": [{"pose_keypoints_2d": [1.0, 2.0, 0.5] * 18}]}))
    with pytest.raises(ValueError, match="COCO"):
        read_openpose_json(bad, 3)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_openpose_json(tmp_path / "nowhere", 3)
    assert main(["detect", str(clip_frames), str(tmp_path / "o.parquet"), "--backend", "openpose-json"]) == 2


def test_mediapipe_finds_the_dancer_on_real_frames(clip_frames, tmp_path):
    track = detect(clip_frames, tmp_path / "raw.parquet")
    back = read_keypoints(tmp_path / "raw.parquet")
    np.testing.assert_array_equal(back.data, track.data)
    assert back.meta["backend"] == "mediapipe" and back.meta["detect_summary"]["frames_with_person"] >= 20
    body = back.data[:, BODY]
    ok = back.present[:, J["Nose"]] & back.present[:, J["RAnkle"]]
    assert ok.mean() > 0.8
    assert (body[ok, J["Nose"], 1] < body[ok, J["RAnkle"], 1] - 60).all()  # head well above feet


def test_frames_without_anyone_are_missing_and_an_empty_clip_is_an_error(writable_frames, tmp_path, capsys):
    frames = sorted(writable_frames.glob("*.jpg"))
    black = np.zeros_like(cv2.imread(str(frames[0])))
    for path in frames[8:16]:
        cv2.imwrite(str(path), black)
    track = detect(writable_frames, tmp_path / "some.parquet")
    assert not track.present[8:16].any()
    assert track.present[:8, J["Neck"]].mean() > 0.8
    with pytest.raises(ValueError, match="only 16 of 24 frames"):
        detect(writable_frames, tmp_path / "strict.parquet", min_detected_fraction=0.9)
    for path in frames:
        cv2.imwrite(str(path), black)
    assert main(["detect", str(writable_frames), str(tmp_path / "none.parquet")]) == 2
    err = capsys.readouterr().err
    assert str(writable_frames) in err and "nobody found" in err
    assert not (tmp_path / "none.parquet").exists() and not (tmp_path / "strict.parquet").exists()


def test_crop_box_keeps_coordinates_in_frame_pixels_and_is_checked(clip_frames, tmp_path):
    whole = detect(clip_frames, tmp_path / "a.parquet")
    cropped = detect(clip_frames, tmp_path / "b.parquet", crop=(0, 40, 144, 216))
    both = whole.present[:, J["Neck"]] & cropped.present[:, J["Neck"]]
    assert both.mean() > 0.8
    gap = np.abs(whole.data[both, J["Neck"], :2] - cropped.data[both, J["Neck"], :2])
    assert np.median(gap) < 4  # same person, same pixels: the crop offset was added back
    with pytest.raises(ValueError, match="outside"):
        detect(clip_frames, tmp_path / "c.parquet", crop=(100, 0, 100, 100))


def test_missing_frames_folder_is_named(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "no_frames"), str(tmp_path / "o.parquet")]) == 2
    assert "no_frames" in capsys.readouterr().err
