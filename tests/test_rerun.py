"""A rerun after a changed setting equals a fresh run: the workflow is run, a key of each family is changed,
the workflow is run again in the same folder, and its training losses, models, transfer and evaluation
records are those of the changed config run whole in an empty folder while the CPU is busy with other work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_workflow import TINY_TRAIN, snakemake, write_config

pytestmark = pytest.mark.slow
# Fewer rows than the default evaluation (no frame-by-frame or ablation training; their runs restart through
# the same training engine) keep each of the five workflow runs short.
BASE = {"evaluate": {"ablations": None, "rows": ["temporal", "temporal_face"]}}


def _without_run_details(value):
    """A record without what differs between two runs of the same inputs: provenance, times, paths, hosts."""
    volatile = ("provenance", "created", "command", "host", "seconds", "per_second", "elapsed", "wall")
    if isinstance(value, dict):
        return {k: _without_run_details(v) for k, v in value.items() if not any(w in k for w in volatile)}
    if isinstance(value, list):
        return [_without_run_details(v) for v in value]
    return value


def _results(workdir: Path) -> dict[str, object]:
    """Training losses, model weights, and the transfer and evaluation records of a workflow folder."""
    results = workdir / "results"
    found: dict[str, object] = {}
    for path in sorted(results.rglob("losses.csv")):
        found[str(path.relative_to(results))] = path.read_text()
    for path in sorted(results.rglob("*.pt")):
        if path.name == "checkpoint.pt":
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "skipped" in state:  # a face.pt without a face GAN (the clip's face is anonymised): its reason
            found[str(path.relative_to(results))] = state["skipped"]
            continue
        found[str(path.relative_to(results))] = {k: v.numpy().tobytes() for k, v in state["state_dict"].items()}
    for top in ("transfer", "evaluation"):
        for path in sorted((results / top).rglob("*.json")):
            found[str(path.relative_to(results))] = _without_run_details(json.loads(path.read_text()))
    assert any(k.endswith("losses.csv") for k in found) and any(k.endswith(".pt") for k in found), sorted(found)
    return found


def _fresh_run_while_busy(workdir: Path, clip: Path, **config) -> dict[str, object]:
    workdir.mkdir()
    write_config(workdir, clip, **config)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        snakemake(workdir)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return _results(workdir)


def _differences(a: dict[str, object], b: dict[str, object]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def test_changed_keys_rerun_to_what_a_fresh_run_makes(tmp_path, clip_path):
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, clip_path, **BASE)
    snakemake(work)
    before = _results(work)

    # the pose half: a smoothing window; everything downstream reruns, training over checkpoints of the old tracks
    pose = {**BASE, "smooth": {"window": 7}}
    write_config(work, clip_path, **pose)
    snakemake(work)
    rerun = _results(work)
    assert rerun != before
    fresh = _fresh_run_while_busy(tmp_path / "fresh_pose", clip_path, **pose)
    assert not _differences(rerun, fresh), _differences(rerun, fresh)

    # training (learning rate), face (its generator's blocks), transfer (x264 quality), evaluation (samples)
    changed = {**pose, "train": {"lr": 1e-4, "face": {**TINY_TRAIN["face"], "n_blocks": 2}},
               "transfer": {"crf": 23}, "evaluate": {**BASE["evaluate"], "samples": 2}}
    write_config(work, clip_path, **changed)
    snakemake(work)
    rerun = _results(work)
    assert _differences(rerun, fresh), "the changed keys changed nothing"
    fresh = _fresh_run_while_busy(tmp_path / "fresh_all", clip_path, **changed)
    assert not _differences(rerun, fresh), _differences(rerun, fresh)
    done = snakemake(work, "-n")  # and then nothing is left to do
    assert "Nothing to be done" in done.stdout + done.stderr
