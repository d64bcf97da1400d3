import hashlib
import json
import zipfile

import pytest

from pipeline.footage import demo_data


def _fake_wheel(path):
    with zipfile.ZipFile(path, "w") as z:
        for s in demo_data.SETS:
            for c in demo_data.CAMERAS:
                z.writestr(f"Pose2Sim/{s}/videos/{c}.mp4", f"{s}/{c}".encode())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_extracts_every_demo_video(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setattr(demo_data, "SHA256", _fake_wheel(wheels / demo_data.WHEEL))
    written = demo_data.fetch_demo(tmp_path / "demo", wheels)
    assert written == demo_data.demo_videos(tmp_path / "demo")
    assert (tmp_path / "demo/Demo_MultiPerson/cam03.mp4").read_bytes() == b"Demo_MultiPerson/cam03"
    record = json.loads((tmp_path / "demo/SOURCE.json").read_text())
    assert record["package"] == "pose2sim==0.10.49" and len(record["videos"]) == 8


def test_checksum_mismatch_refuses_the_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels / demo_data.WHEEL)  # a wheel that is not the real one
    with pytest.raises(ValueError, match="sha256"):
        demo_data.fetch_demo(tmp_path / "demo", wheels)
    assert not (tmp_path / "demo").exists()
