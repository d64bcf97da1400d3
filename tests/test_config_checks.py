"""Config and sheet errors knowable before any work are refused at workflow start (dry run)."""

from __future__ import annotations

from test_workflow import snakemake, write_config


def test_even_smoothing_window_is_refused_before_any_job(tmp_path, clip_path):
    write_config(tmp_path, clip_path, smooth={"window": 4})
    done = snakemake(tmp_path, "-n", check=False)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "window" in out and "multipleOf" in out
    assert not (tmp_path / "results").exists()


def test_model_size_not_divisible_by_downsamplings_is_refused(tmp_path, clip_path):
    write_config(tmp_path, clip_path, train={"width": 66})
    done = snakemake(tmp_path, "-n", check=False)
    assert done.returncode != 0
    assert "train.width = 66 must be a multiple of 4" in done.stdout + done.stderr


def test_crop_outside_the_video_is_refused_at_start(tmp_path, clip_path):
    write_config(tmp_path, clip_path)
    sheet = tmp_path / "videos.tsv"
    sheet.write_text(sheet.read_text().replace("0,64,288,448", "100,64,288,448"))
    done = snakemake(tmp_path, "-n", check=False)
    assert done.returncode != 0
    assert "video clip_source" in done.stdout + done.stderr
    assert "crop box (100, 64, 288, 448) lies outside the 288x512 frame" in done.stdout + done.stderr


def test_valid_config_passes_the_start_checks(tmp_path, clip_path):
    write_config(tmp_path, clip_path)
    done = snakemake(tmp_path, "-n", "pose", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
