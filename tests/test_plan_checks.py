"""What the workflow checks when it plans (pipeline/plan/checks.py): the base config found beside the
Snakefile wherever Snakemake starts, the sheet's numbers against its videos, lost parts of finished outputs
made again; and the data workers capped at the cores."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from pipeline.plan import checks as plan_checks
from pipeline.footage.extract import extract_frames
from pipeline.footage.media import VideoInfo, ffmpeg_exe
from pipeline.footage.timespan import check_span_frames

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _info(duration: float = 2.0, fps: float = 30.0, width: int = 1080, height: int = 1920) -> VideoInfo:
    return VideoInfo("dance.mp4", width, height, fps, 0, None, duration, "h264", "yuv420p")


def _clip(path: Path, width: int, height: int, seconds: float = 0.2) -> Path:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={width}x{height}:rate=25:duration={seconds}", "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", "-y", str(path)], check=True)
    return path


def test_the_base_config_is_the_one_beside_the_workflow(tmp_path):
    assert plan_checks.base_config(REPO) == str(REPO / "config" / "config.yaml")
    assert plan_checks.repository_base_config() == str(REPO / "config" / "config.yaml")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/config/config.yaml: the workflow's base config is "
                                                r"missing; every run reads it first"):
        plan_checks.base_config(tmp_path)


def test_a_trim_that_holds_no_frame_is_refused_naming_the_video_and_its_duration(tmp_path, clip_path, capsys):
    assert check_span_frames(_info(), 0.5, 1.5, None) == 30
    assert check_span_frames(_info(), None, None, 10.0) == 20
    assert check_span_frames(_info(), 1.0, 1.1, 1.0) == 1  # the first source frame in the span
    assert check_span_frames(_info(duration=0.0), 1.0, 1.01, None) == 0  # no duration: not judged
    with pytest.raises(ValueError, match=r"dance.mp4: the trim from 1 s to 1.01 s is shorter than one frame: the "
                                         r"video lasts 2.000 s at 30 fps \(a frame every 0.0333 s\), so it may hold "
                                         r"none; give a span of at least 0.0333 s"):
        check_span_frames(_info(), 1.0, 1.01, None)
    with pytest.raises(ValueError, match="the trim from 1.99 s to 2 s is shorter than one frame"):  # the end
        check_span_frames(_info(), 1.99, None, None)
    # edn extract itself says so, before ffmpeg runs
    from pipeline.cli import main

    assert main(["extract", str(clip_path), str(tmp_path / "f"), "--start", "0.3", "--end", "0.305"]) == 2
    assert f"{clip_path}: the trim from 0.3 s to 0.305 s is shorter than one frame" in capsys.readouterr().err


def test_a_target_too_short_for_the_held_out_split_is_refused_with_the_real_holdout():
    plan_checks.check_holdout_split(3, 0.2, "t.mp4")  # round(0.6) = 1 held out, 2 to train on
    plan_checks.check_holdout_split(2, 0.0, "t.mp4")
    plan_checks.check_holdout_split(0, 0.2, "t.mp4")  # frame count unknown
    with pytest.raises(ValueError, match=r"t.mp4: 2 frames are too few for train: holdout 0.2 \(0 held out, 2 to "
                                         r"train on\).* at least 3 frames"):
        plan_checks.check_holdout_split(2, 0.2, "t.mp4")
    with pytest.raises(ValueError, match=r"holdout 0.5 \(2 held out, 1 to train on\).* at least 4 frames"):
        plan_checks.check_holdout_split(3, 0.5, "t.mp4")


def test_evaluation_without_held_out_frames_names_the_holdout_it_was_trained_with(tmp_path):
    from pipeline.evaluation.evaluate import held_out_frames

    record = {"provenance": {"params": {"holdout": 0.2}},
              "training": {"clips": [{"held_out_frames": []}]}}
    with pytest.raises(ValueError, match=r"no held-out frames for f: the model was trained with holdout 0.2"):
        held_out_frames(tmp_path / "generator.pt", [("f", "r", "k")], record)


def test_clips_of_one_subject_of_other_sizes_are_refused_with_the_crop_that_fixes_them(tmp_path):
    plan_checks.check_subject_sizes({"a": (1080, 1920), "b": (720, 1280)}, 512)  # one shape: one size
    with pytest.raises(ValueError) as caught:
        plan_checks.check_subject_sizes({"a": (1080, 1920), "b": (1088, 1920)}, 512)
    assert ("a 1080x1920 -> 288x512, b 1088x1920 -> 290x512" in str(caught.value)
            and "b: crop 4,0,1080,1920" in str(caught.value))
    # the widths are ffmpeg's, and the crop proposed gives the narrow clip's frames
    narrow, wide = _clip(tmp_path / "narrow.mp4", 144, 256), _clip(tmp_path / "wide.mp4", 146, 256)
    sizes = {name: plan_checks.scaled_width(w, 256, 128) for name, w in (("narrow", 144), ("wide", 146))}
    assert extract_frames(narrow, tmp_path / "n", height=128)["width"] == sizes["narrow"] == 72
    assert extract_frames(wide, tmp_path / "w", height=128)["width"] == sizes["wide"] == 74
    with pytest.raises(ValueError, match=r"wide: crop (\d+),0,(\d+),256") as caught:
        plan_checks.check_subject_sizes({"narrow": (144, 256), "wide": (146, 256)}, 128)
    x, w = (int(v) for v in re.search(r"wide: crop (\d+),0,(\d+),256", str(caught.value)).groups())
    assert extract_frames(wide, tmp_path / "c", height=128, crop=(x, 0, w, 256))["width"] == 72


def test_lost_parts_of_finished_outputs_are_found(tmp_path, clip_frames, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = Path("results/frames/v")
    shutil.copytree(clip_frames, frames)
    render = Path("results/render/v")
    render.mkdir(parents=True)
    for i in range(24):
        (render / f"{i:06d}.png").write_bytes(b"png")
    (render / "meta.json").write_text(json.dumps({"frame_count": 24}))
    run = Path("results/models/s")
    run.mkdir(parents=True)
    (run / "generator.pt").write_bytes(b"model")
    (run / "losses.csv").write_text("step\n1\n")
    (run / "run.json").write_text(json.dumps({"status": "finished", "model": str(run / "generator.pt")}))
    assert plan_checks.lost_outputs(["v", "absent"]) == {}

    (frames / "000005.jpg").unlink()
    (render / "000003.png").unlink()
    (run / "losses.csv").unlink()
    assert plan_checks.lost_outputs(["v"]) == {
        "results/frames/v": "results/frames/v/000005.jpg is missing",
        "results/render/v": "1 of its 24 stick figures are missing",
        "results/models/s/generator.pt": "its loss log results/models/s/losses.csv is missing"}
    # a run still going, or whose model is gone, is the workflow's to rerun as it stands
    (run / "run.json").write_text(json.dumps({"status": "running", "model": str(run / "generator.pt")}))
    assert "results/models/s/generator.pt" not in plan_checks.lost_outputs(["v"])

    # each lost output gets a record, an input of the job that makes it, newer than the output
    assert plan_checks.lost_inputs("results/frames/v") == []
    frames_made = (frames / "meta.json").stat().st_mtime
    # a cluster job reading the Snakefile again records nothing: the main process planned it
    assert plan_checks.record_lost(["v"], planning=False) == {} and not Path("results/lost").exists()
    assert plan_checks.record_lost(["v"]) == {"results/frames/v": "results/frames/v/000005.jpg is missing",
                                              "results/render/v": "1 of its 24 stick figures are missing"}
    assert plan_checks.lost_inputs("results/frames/v") == ["results/lost/frames/v.json"]
    assert plan_checks.lost_inputs("results/render/v") == ["results/lost/render/v.json"]
    record = json.loads(Path("results/lost/frames/v.json").read_text())
    assert record["output"] == "results/frames/v" and [e["what"] for e in record["lost"]] == [
        "results/frames/v/000005.jpg is missing"]
    assert Path("results/lost/frames/v.json").stat().st_mtime >= frames_made
    # found again (a dry run, then the run): the history grows, the record stays the newest file
    plan_checks.record_lost(["v"])
    assert len(json.loads(Path("results/lost/frames/v.json").read_text())["lost"]) == 2


def test_data_workers_beyond_the_cores_are_capped_with_a_line(monkeypatch, caplog):
    import torch

    from pipeline.gan.runtime import Runtime, data_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    rt = Runtime(0, 1, torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="pipeline.gan.runtime"):
        assert data_workers(2, rt) == 2 and data_workers(0, rt) == 0
        assert not caplog.text
        assert data_workers(64, rt) == 2
    assert "train: workers 64 is more than the 2 cores each training process here may use" in caplog.text
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes of the node share the two cores
    assert data_workers(2, rt) == 1


def _overlay(folder: Path, clip: Path) -> Path:
    """A user's overlay: their sheet and one training key; everything else comes from config/config.yaml."""
    sheet = folder / "my.tsv"
    sheet.write_text(f"name\tpath\trole\tsubject\nme\t{clip}\ttarget\tme\nyou\t{clip}\tsource\t\n")
    overlay = folder / "my.yaml"
    overlay.write_text(yaml.safe_dump({"videos": str(sheet), "train": {"epochs": 3}}))
    return overlay


def _planned_training(cwd: Path, *args: str) -> list[str]:
    done = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "2", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    commands = [line.strip() for line in done.stdout.splitlines() if "pipeline.cli train" in line]
    assert commands, done.stdout[-2000:]
    return sorted(commands)


@pytest.mark.slow
def test_one_overlay_plans_the_same_training_from_any_folder(tmp_path, clip_path):
    """From the repository, from another folder with -s, and with --directory: the base config is read
    each time, so the planned training commands are the same and carry its keys (not the schema's defaults)."""
    elsewhere, run_dir = tmp_path / "elsewhere", tmp_path / "run"
    elsewhere.mkdir()
    run_dir.mkdir()
    overlay = _overlay(tmp_path, clip_path)
    in_repo = _planned_training(REPO, "--configfile", str(overlay))
    with_s = _planned_training(elsewhere, "-s", str(REPO / "Snakefile"), "--configfile", str(overlay))
    with_directory = _planned_training(elsewhere, "-s", str(REPO / "Snakefile"), "--directory", str(run_dir),
                                       "--configfile", str(overlay))
    assert in_repo == with_s == with_directory
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"]
    generator = next(c for c in in_repo if "--model-out results/models/me/generator.pt" in c)
    assert "--epochs 3" in generator  # the overlay
    for key in ("background", "upsample", "chroma"):  # the base config's, which the schema's defaults are not
        assert f"--{key} {base[key]}" in generator, key


@pytest.mark.slow
def test_the_workflow_refuses_bad_numbers_before_any_job(tmp_path, clip_path):
    """A trim shorter than one frame, a target too short for its held-out split, and one subject's clips of two
    frame sizes stop a dry run, each naming the video and the fix."""
    narrow, wide = _clip(tmp_path / "narrow.mp4", 144, 256), _clip(tmp_path / "wide.mp4", 146, 256)
    cases = {
        f"me\t{clip_path}\ttarget\tme\t0.3\t0.305\n": r"video me: .*clip.mp4: the trim from 0.3 s to 0.305 s is "
                                                    r"shorter than one frame: the video lasts 0.400 s",
        f"me\t{clip_path}\ttarget\tme\t0.35\t\n": r"video me: .*clip.mp4: 3 frames are too few for train: holdout "
                                                 r"0.5 \(2 held out, 1 to train on\)",
        f"a\t{narrow}\ttarget\tme\t\t\nb\t{wide}\ttarget\tme\t\t\n": r"subject me: clips of one subject must share "
                                                                     r"a frame size.*b: crop \d+,0,\d+,256",
    }
    for rows, message in cases.items():
        sheet = tmp_path / "sheet.tsv"
        sheet.write_text(f"name\tpath\trole\tsubject\tstart\tend\n{rows}src\t{clip_path}\tsource\t\t\t\n")
        overlay = tmp_path / "my.yaml"
        overlay.write_text(yaml.safe_dump({"videos": str(sheet), "extract": {"height": 128},
                                           "train": {"holdout": 0.5}}))
        done = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n", "--cores", "1", "--configfile",
                               str(overlay)], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode != 0 and re.search(message, done.stdout + done.stderr), done.stdout + done.stderr


def test_doctor_reads_the_workflows_base_config_from_any_folder(tmp_path, monkeypatch):
    from pipeline import doctor

    seen = []
    monkeypatch.setattr(doctor, "diagnose", lambda config, profile: seen.append(config) or [])
    monkeypatch.setattr(doctor, "format_table", lambda rows: "")
    monkeypatch.chdir(tmp_path)  # no config/ here
    overlay = tmp_path / "my.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"epochs": 3}}))
    assert doctor.cli(SimpleNamespace(configfile=[overlay], profile=None)) == 0
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert seen[0]["train"] == {**base["train"], "epochs": 3} and seen[0]["extract"] == base["extract"]
