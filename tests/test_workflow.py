"""The workflow end to end on the real 24-frame clip: extraction through stick figures, and (with
tiny models, checked in test_report.py) training, transfer and evaluation.

Also: a no-op rerun does nothing, a parameter change reruns only its stage and what follows,
a config that breaks the schema is refused with a clear message, and `snakemake --lint` is clean.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.pose.keypoints import read_keypoints
from pipeline.pose.quality import read_qc

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
pytestmark = pytest.mark.slow
# Models small enough that rule all's training, transfer and evaluation take seconds on this clip.
TINY_TRAIN = dict(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, epochs=1, niter_decay=0,
                  workers=0, sample_every=10, checkpoint_every=100,
                  face={"epochs": 1, "niter_decay": 0, "ngf": 4, "n_blocks": 1, "size": None})


def write_config(workdir: Path, clip: Path, **overrides) -> Path:
    sheet = workdir / "videos.tsv"
    sheet.write_text(
        "name\tpath\trole\tsubject\tcrop\trotation\tfps\n"
        f"clip_target\t{clip}\ttarget\tsubj\t\t\t\n"
        f"clip_source\t{clip}\tsource\t\t0,64,288,448\t\t30\n"
    )
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = str(sheet)
    config["extract"]["height"] = 256
    config["train"].update(TINY_TRAIN)
    for key, value in overrides.items():
        config[key].update(value)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--cores", "2", *args]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def planned_rules(output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's job stats table."""
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)
            if m.group(1) != "total"}


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory, clip_path):
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, clip_path)
    snakemake(workdir)
    return workdir


def test_pose_half_produces_every_artifact(workflow_run):
    wd = workflow_run
    target = read_keypoints(wd / "results/keypoints/clip_target/smooth.parquet")
    assert len(target.frames) == 24 and target.meta["width"] == 144 and target.meta["height"] == 256
    assert target.present[:, 1].mean() > 0.8  # the dancer's neck is found in most frames
    source = read_keypoints(wd / "results/keypoints/clip_source/raw.parquet")
    assert len(source.frames) == 12  # 30 fps of a 0.4 s clip
    assert (source.meta["width"], source.meta["height"]) == (164, 256)  # the crop box
    normalized = read_keypoints(wd / "results/normalized/clip_source/subj.parquet")
    assert (normalized.meta["width"], normalized.meta["height"]) == (144, 256)
    assert len(list((wd / "results/render/clip_target").glob("*.png"))) == 24
    assert len(list((wd / "results/render_transfer/clip_source/subj").glob("*.png"))) == 12
    qc = read_qc(wd / "results/qc/clip_source/smooth.parquet")[0]
    assert len(qc["frame"]) == 12  # one verdict per smoothed frame
    assert normalized.meta["qc_repair"]["max_repair_gap"] == 10  # normalize got the source's QC
    for rule in ("extract", "detect", "qc", "smooth", "render"):
        assert list((wd / "results/logs" / rule).glob("*.log")), rule
        assert list((wd / "results/benchmarks" / rule).glob("*.tsv")), rule


def test_nothing_changed_nothing_reruns(workflow_run):
    done = snakemake(workflow_run, "-n")
    assert "Nothing to be done" in done.stdout + done.stderr


def test_editing_a_stage_module_reruns_that_stage_and_what_follows(workflow_run):
    """Each rule lists its stage's module as an input: an edited pipeline/pose/render.py reruns rendering
    and the training, transfer and evaluation on its stick figures, but nothing upstream. (A
    ``touch`` alone does not: Snakemake sees the same content.)"""
    module = REPO / "pipeline" / "pose" / "render.py"
    text, before = module.read_bytes(), module.stat()
    try:
        module.write_bytes(text + b"# edited\n")
        done = snakemake(workflow_run, "-n")
    finally:  # the module exactly as it was, time included
        module.write_bytes(text)
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    rules = planned_rules(done.stdout + done.stderr)
    downstream = {"render_target", "render_transfer", "train_generator", "train_face", "transfer", "evaluate"}
    assert downstream <= set(rules), rules
    # (the plate reruns too: it reads frames through pipeline/gan/data.py, whose augmentation draws stick figures)
    assert not {"extract", "detect", "smooth", "qc", "normalize"} & set(rules), rules
    again = snakemake(workflow_run, "-n")  # the module back as it was: nothing to do again
    assert "Nothing to be done" in again.stdout + again.stderr


def planned_after_editing(workdir: Path, module: Path) -> dict[str, int]:
    """The rules a dry run plans with ``module`` edited (then restored, time included)."""
    text, before = module.read_bytes(), module.stat()
    try:
        module.write_bytes(text + b"# edited\n")
        done = snakemake(workdir, "-n")
    finally:
        module.write_bytes(text)
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    return planned_rules(done.stdout + done.stderr)


def test_editing_a_module_training_imports_retrains(workflow_run):
    """No rule names models/losses.py: training's code input is what `edn train` imports, found by reading
    the imports, so the loss's edit retrains both GANs and reruns what uses them, and nothing upstream."""
    rules = planned_after_editing(workflow_run, REPO / "pipeline" / "gan" / "models" / "losses.py")
    assert {"train_generator", "train_face", "transfer", "evaluate"} <= set(rules), rules
    assert not {"extract", "detect", "smooth", "qc", "render_target", "normalize"} & set(rules), rules


def test_editing_a_module_no_stage_before_the_figures_imports_reruns_only_the_figures(workflow_run):
    rules = set(planned_after_editing(workflow_run, REPO / "pipeline" / "evaluation" / "plots.py")) - {"all"}
    assert rules and all(rule.startswith("plot_") for rule in rules), rules


def test_smoothing_window_change_reruns_only_downstream(workflow_run, clip_path):
    write_config(workflow_run, clip_path, smooth={"window": 7})
    done = snakemake(workflow_run, "-n")
    rules = planned_rules(done.stdout + done.stderr)
    assert "extract" not in rules and "detect" not in rules, rules
    assert rules.get("smooth") == 2 and rules.get("normalize") == 1, rules
    assert rules.get("qc") == 2, rules  # the smoothed tracks' QC, not the raw detections
    assert {"render_target", "render_transfer", "stats_subject", "stats_video"} <= set(rules), rules


def test_lint_is_clean(workflow_run):
    done = snakemake(workflow_run, "--lint", check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_violation_is_refused_clearly(tmp_path, clip_path):
    write_config(tmp_path, clip_path, smooth={"window": "five"})
    done = snakemake(tmp_path, "-n", check=False)
    assert done.returncode != 0
    assert "window" in done.stderr + done.stdout


def test_bad_sheet_row_names_sheet_and_row(tmp_path, clip_path):
    write_config(tmp_path, clip_path)
    sheet = tmp_path / "videos.tsv"
    sheet.write_text(sheet.read_text().replace("\tsource\t", "\tactor\t"))
    done = snakemake(tmp_path, "-n", check=False)
    assert done.returncode != 0
    assert "videos.tsv: row 3 (clip_source)" in done.stderr + done.stdout


def test_not_a_video_fails_with_the_file_named(tmp_path):
    bogus = tmp_path / "holiday.mp4"
    bogus.write_text("not a video")
    write_config(tmp_path, bogus)
    done = snakemake(tmp_path, "results/frames/clip_target", check=False)
    assert done.returncode != 0
    # The sheet gives this video a crop box, so the start-of-run crop check reads its header and
    # stops before any job; without a crop the extract job would fail with the same message.
    assert f"{bogus}: not a readable video" in done.stderr
    assert not (tmp_path / "results/frames/clip_target").exists()


def test_diagnostic_figures_are_made_for_the_report(workflow_run):
    import cv2

    wd = workflow_run
    figures = [wd / "results/plots/tracks/clip_target.png", wd / "results/plots/tracks/clip_source.png",
               wd / "results/plots/normalization/clip_source/subj.png", wd / "results/plots/bones/clip_source/subj.png",
               wd / "results/plots/qc/clip_target.png", wd / "results/plots/qc/clip_source.png"]
    for path in figures:
        image = cv2.imread(str(path))
        assert image is not None and image.std() > 10, path
