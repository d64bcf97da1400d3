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


def _trim_source(workdir, start, end):
    """The sheet of write_config with start and end columns, the source trimmed to start..end."""
    sheet = workdir / "videos.tsv"
    lines = sheet.read_text().splitlines()
    lines[0] += "\tstart\tend"
    lines[1] += "\t\t"
    lines[2] += f"\t{start}\t{end}"
    sheet.write_text("\n".join(lines) + "\n")


def test_trim_past_the_video_or_backwards_is_refused_at_start(tmp_path, clip_path):
    write_config(tmp_path, clip_path)
    # the clip lasts 0.4 s
    for (start, end), message in {("0.1", "0:01"): "end 1 s lies past the video's end (0.400 s)",
                                  ("0.3", "0.2"): "start 0.3 s must come before end 0.2 s"}.items():
        write_config(tmp_path, clip_path)  # a fresh sheet each time
        _trim_source(tmp_path, start, end)
        done = snakemake(tmp_path, "-n", check=False)
        assert done.returncode != 0
        assert "video clip_source" in done.stdout + done.stderr and message in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def test_trim_in_a_bad_format_is_refused_by_the_schema(tmp_path, clip_path):
    write_config(tmp_path, clip_path)
    _trim_source(tmp_path, "1:75", "")
    done = snakemake(tmp_path, "-n", check=False)
    assert done.returncode != 0
    assert "row 3 (clip_source)" in done.stdout + done.stderr and "1:75" in done.stdout + done.stderr


def test_a_trim_reaches_extract(tmp_path, clip_path):
    write_config(tmp_path, clip_path)
    _trim_source(tmp_path, "0.1", "0:00.3")
    done = snakemake(tmp_path, "-n", "-p", "results/frames/clip_source", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--start 0.1 --end 0:00.3" in done.stdout
