"""``edn doctor``: each thing a run may need, present and absent (monkeypatched), and its verdict."""

from __future__ import annotations

import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from pipeline import doctor
from pipeline.cli import main
from pipeline.doctor import MISSING, OK, WARN

REPO = Path(__file__).resolve().parents[1]


def rows_by_name(rows):
    return {row.name: row for row in rows}


@pytest.fixture
def workdir(tmp_path, monkeypatch, clip_path):
    """A working directory with config/config.yaml (the repo's) and a sheet of the test clip
    (0.4 s at 60 fps, 288x512)."""
    (tmp_path / "config").mkdir()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "config/videos.tsv"
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "config" / "videos.tsv").write_text(
        "name\tpath\trole\tsubject\tcrop\tstart\tend\n"
        f"target\t{clip_path}\ttarget\tsubj\t\t\t\n"
        f"source\t{clip_path}\tsource\t\t0,0,144,256\t0.1\t0.3\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_gpus_and_bf16(monkeypatch):
    monkeypatch.setattr(doctor, "gpu_list", lambda: [])
    rows = rows_by_name(doctor.torch_rows({"train": {"gpus": 1, "precision": "auto"}}))
    assert rows["torch"].status == OK and rows["GPU"].status == WARN and "bf16" not in rows
    rows = rows_by_name(doctor.torch_rows({"train": {"gpus": 1, "precision": "bf16"}}))
    assert rows["bf16"].status == MISSING and "no native bf16" in rows["CPU"].detail  # conftest: none

    monkeypatch.setattr(doctor, "gpu_list", lambda: [("NVIDIA H100 80GB HBM3", 79.6, True)])
    rows = rows_by_name(doctor.torch_rows({"train": {"gpus": 1, "precision": "bf16"}}))
    assert rows["GPU 0"].detail == "NVIDIA H100 80GB HBM3, 80 GiB, bf16 yes"
    assert "bf16" not in rows and "GPU" not in rows
    monkeypatch.setattr(doctor, "gpu_list", lambda: [("Tesla V100", 32.0, False)])
    assert rows_by_name(doctor.torch_rows({"train": {"precision": "bf16"}}))["bf16"].status == MISSING
    monkeypatch.setattr("pipeline.gan.runtime.cpu_bf16_feature", lambda: "amx")  # a CPU computes it
    rows = rows_by_name(doctor.torch_rows({"train": {"precision": "bf16"}}))
    assert "bf16" not in rows and "native bf16 (amx)" in rows["CPU"].detail

    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    assert [(r.name, r.status) for r in doctor.torch_rows({})] == [("torch", MISSING)]


def test_ffmpeg_and_its_encoders(monkeypatch):
    rows = rows_by_name(doctor.ffmpeg_rows({"transfer": {"audio": True}}))  # the real one: imageio-ffmpeg's
    assert (rows["ffmpeg"].status, rows["ffmpeg libx264"].status, rows["ffmpeg aac"].status) == (OK, OK, OK)

    monkeypatch.setattr(doctor, "ffmpeg_encoders", lambda exe: ("ffmpeg version x", {"libx264"}))
    assert rows_by_name(doctor.ffmpeg_rows({"transfer": {"audio": True}}))["ffmpeg aac"].status == MISSING
    assert rows_by_name(doctor.ffmpeg_rows({"transfer": {"audio": False}}))["ffmpeg aac"].status == WARN
    monkeypatch.setattr(doctor, "ffmpeg_encoders", lambda exe: ("ffmpeg version x", {"aac"}))
    assert rows_by_name(doctor.ffmpeg_rows({}))["ffmpeg libx264"].status == MISSING

    def no_ffmpeg():
        raise RuntimeError("no ffmpeg on PATH and imageio-ffmpeg is not installed")

    monkeypatch.setattr("pipeline.footage.media.ffmpeg_exe", no_ffmpeg)
    assert doctor.ffmpeg_rows({})[0].status == MISSING


def test_mediapipe_models(monkeypatch):
    sheet = [{"name": "a", "openpose_json": ""}]
    assert doctor.mediapipe_rows({}, sheet)[0].status == OK  # the installed wheel's models
    monkeypatch.setattr(doctor, "MEDIAPIPE_MODELS", doctor.MEDIAPIPE_MODELS + ("pose_landmark/gone.tflite",))
    row = doctor.mediapipe_rows({}, sheet)[0]
    assert row.status == MISSING and "pose_landmark/gone.tflite" in row.detail
    # every video with OpenPose JSON: MediaPipe is not needed
    assert doctor.mediapipe_rows({}, [{"name": "a", "openpose_json": "json/"}])[0].status == WARN
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)
    assert doctor.mediapipe_rows({}, sheet)[0].status == MISSING
    assert doctor.mediapipe_rows({"detect": {"backend": "openpose-json"}}, sheet)[0].status == "info"


def test_vgg_and_alexnet_weights(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache
    rows = rows_by_name(doctor.weight_rows({"train": {"vgg_loss": True}}))
    assert rows["VGG19 weights"].status == MISSING and "make prefetch" in rows["VGG19 weights"].fix
    assert rows["AlexNet weights"].status == WARN
    assert "make prefetch" in rows["AlexNet weights"].fix
    assert rows_by_name(doctor.weight_rows({"train": {"vgg_loss": "auto"}}))["VGG19 weights"].status == WARN

    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    for name in ("vgg19-dcbbb0d1.pth", "alexnet-owt-7be5be79.pth"):
        (tmp_path / "hub" / "checkpoints" / name).write_bytes(b"weights")
    rows = rows_by_name(doctor.weight_rows({"train": {"vgg_loss": True}}))
    assert rows["VGG19 weights"].status == OK and rows["AlexNet weights"].status == OK

    # configured files win over the cache, and a configured file that is absent stops the run
    rows = rows_by_name(doctor.weight_rows({"train": {"vgg_loss": True, "vgg_weights": str(tmp_path / "v.pth")},
                                            "evaluate": {"lpips_weights": str(tmp_path / "a.pth")}}))
    assert rows["VGG19 weights"].status == MISSING and rows["AlexNet weights"].status == MISSING


def test_slurm(monkeypatch, tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text("executor: slurm\ndefault-resources:\n  slurm_partition: gpu\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sbatch
    assert doctor.slurm_rows(None)[0].status == "info"
    assert doctor.slurm_rows(profile)[0].status == MISSING

    (tmp_path / "bin").mkdir()
    for name, script in {"sbatch": "exit 0", "sinfo": 'test "$3" = gpu && echo "gpu up 4"'}.items():
        (tmp_path / "bin" / name).write_text(f"#!/bin/sh\n{script}\n")
        (tmp_path / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    rows = rows_by_name(doctor.slurm_rows(profile))
    assert rows["SLURM"].status == OK and rows["SLURM partition"].status == OK
    assert "gpu up 4" in rows["SLURM partition"].detail
    (profile / "config.yaml").write_text("executor: slurm\ndefault-resources:\n  slurm_partition: cpu\n")
    assert rows_by_name(doctor.slurm_rows(profile))["SLURM partition"].status == MISSING


def test_disk_against_the_frames_the_sheet_will_write(monkeypatch, workdir):
    config = doctor.load_config([Path("config/config.yaml")])
    sheet = doctor.read_sheet(config)
    frames, size, unknown = doctor.frames_estimate(config, sheet)
    # target: 0.4 s x 60 fps at 288x512; source: 0.2 s trimmed, cropped to 144x256, scaled to 288x512
    assert frames == 24 + 12 and unknown == []
    assert size == pytest.approx(36 * 512 * 288 * doctor.BYTES_PER_PIXEL["jpg"], abs=2)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, size - 1))
    assert doctor.disk_rows(config, sheet, Path("results"))[0].status == MISSING
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, 10 * size))
    row = doctor.disk_rows(config, sheet, Path("results"))[0]
    assert row.status == OK and "36 frames" in row.detail


def test_doctor_exits_non_zero_when_the_config_needs_what_is_missing(monkeypatch, workdir, capsys):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(workdir / "hub"))
    monkeypatch.setattr(doctor, "gpu_list", lambda: [])
    assert main(["doctor"]) == 0  # vgg_loss: auto; nothing else needed is missing here
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["check", "status", "found"] and "VGG19 weights    warn" in out
    (workdir / "strict.yaml").write_text("train:\n  vgg_loss: true\n")
    assert main(["doctor", "--configfile", "strict.yaml"]) == 1
    out = capsys.readouterr().out
    assert "VGG19 weights    MISSING" in out and "Missing for this config: VGG19 weights" in out
    (workdir / "lenient.yaml").write_text("train:\n  vgg_loss: auto\n")  # later files win, as in Snakemake
    assert main(["doctor", "--configfile", "strict.yaml", "lenient.yaml"]) == 0
