"""The whole workflow on the real 24-frame clip with tiny models, ending in the Snakemake report,
which a real headless browser (Debian's chromium) opens.

Chromium is installed with apt when missing (as root); without root or apt the browser test is
skipped, saying why. The workflow run is shared by the tests of this module.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.footage.media import probe_video
from test_workflow import snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, clip_path):
    """`snakemake` (rule all: pose half, both GANs, the frame-by-frame model, the paper_generator
    ablation, transfer, evaluation, figures), then `snakemake --report report.html`."""
    workdir = tmp_path_factory.mktemp("report")
    write_config(workdir, clip_path)  # tiny models (test_workflow.TINY_TRAIN)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(workdir / "torch"))  # no VGG19 or AlexNet weights: both said so
        snakemake(workdir)
        snakemake(workdir, "--report", "report.html")
    return workdir


def test_rule_all_makes_the_videos_the_evaluation_and_the_figures(report_run):
    wd = report_run
    video = probe_video(wd / "results/transfer/clip_source/subj.mp4")
    # the source: 12 frames at 30 fps (see test_workflow); the model is 64x128
    assert (video.frame_count, video.fps, video.width, video.height) == (12, 30.0, 64, 128)
    assert (video.codec, video.pix_fmt) == ("h264", "yuv420p")
    assert probe_video(wd / "results/transfer/clip_source/subj_side_by_side.mp4").frame_count == 12
    tables = (wd / "results/evaluation/subj/tables.md").read_text()
    assert "Frame-by-frame (separate model, no previous-frame input)" in tables
    # The clip's dancer is anonymised: no face landmarks, so no Face GAN is trained or applied, and the tables say so.
    assert "Temporal smoothing + Face GAN" not in tables and "No Face GAN row: face landmarks on 0%" in tables
    # The transfer measured itself: fidelity and coverage in its JSON, a table, a figure.
    record = json.loads((wd / "results/transfer/clip_source/subj.json").read_text())
    fidelity = record["fidelity"]
    assert fidelity["frames"] == 12 and len(fidelity["per_frame"]["body_found"]) == 12
    assert 0 <= fidelity["body_found_share"] <= 1 and record["coverage"]["frames"] == 12
    assert record["models"]["face"]["skipped"] and "generation_seconds" in record
    assert "Transfer: poses re-detected" in tables and "| clip_source | 12 |" in tables
    assert json.loads((wd / "results/coverage/target/subj.json").read_text())["target"]["training_frames"] > 0
    assert "paper_generator" in tables  # config.yaml's evaluate: ablations, a row named by it
    assert "unavailable" in tables  # no AlexNet weights in this TORCH_HOME
    assert "held-out" in tables and "clip_target: frames 19-23" in tables  # the last fifth of 24 frames
    for figure in ("plots/losses/subj.png", "plots/stability/clip_source/subj.png", "evaluation/subj/samples.png",
                   "plots/transfer/clip_source/subj.png"):
        assert (wd / "results" / figure).stat().st_size > 5000, figure
    for rule in ("transfer", "evaluate", "train_frame_by_frame", "train_ablation", "plot_losses", "plot_stability",
                 "measure_transfer", "plot_transfer", "coverage", "coverage_target"):
        assert list((wd / "results/logs" / rule).glob("*.log")), rule
        assert list((wd / "results/benchmarks" / rule).glob("*.tsv")), rule
    assert "Nothing to be done" in (lambda d: d.stdout + d.stderr)(snakemake(wd, "-n"))


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, installed when missing (needs root and apt)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (needs root and apt-get to install Debian's chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            pytest.skip(f"installing chromium failed ({' '.join(cmd)}): {done.stderr.strip()[-300:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no `chromium` is on PATH")
    return found


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_opens_in_a_browser_with_its_figures(report_run, chromium, tmp_path):
    import cv2

    report = report_run / "report.html"
    url = report.as_uri()
    dom = headless(chromium, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # What the page drew (scripts and styles removed): the result categories and the description.
    body = dom.stdout[dom.stdout.find("<body"):]
    drawn = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    drawn = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", drawn)).split())
    assert "Results Background plate Evaluation Keypoints Normalization Training Transfer" in drawn, drawn[:2000]  # the menu
    assert "Everybody Dance Now (Chan, Ginosar, Zhou, Efros, 2019" in drawn
    # The results the page lists, with their rendered captions.
    data = " ".join(html.unescape(dom.stdout.replace("\\n", " ")).split())
    for text in ("subj.mp4", "subj_side_by_side.mp4", "tables.html", "samples.png", "clip_target.png",
                 "Motion transfer: subj performing the moves of clip_source",
                 "Temporal stability of the transfer video clip_source -> subj",
                 "The paper's evaluation (Chan et al. 2019, sec. 5, Tables 1-4) for target subj",
                 "Training losses of subj", "Held-out frames of subj",
                 "How faithfully the transfer of clip_source onto subj", "Pose coverage of clip_source"):
        assert text in data, text

    shot = tmp_path / "report.png"
    done = headless(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900", url)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (900, 1280)
    assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # drawn, not a blank page

    # Every picture the report embeds decodes to a real image.
    pngs = re.findall(r"data:image/png;charset=[^;]*;filename=([^;]+);base64,([A-Za-z0-9+/=]+)", report.read_text())
    names = {name for name, _ in pngs}
    assert {"samples.png", "subj.png", "clip_target.png"} <= names, names
    for name, data in pngs:
        picture = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.std() > 5, name
