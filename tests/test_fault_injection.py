"""Kill the pose half at random points, rerun, and get what an uninterrupted run makes."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_workflow import SNAKEMAKE, REPO, snakemake, write_config

pytestmark = pytest.mark.slow
COMPARED = ("frames", "keypoints", "stats", "normalized", "render", "render_transfer")


def _without_provenance(value):
    if isinstance(value, dict):
        return {k: _without_provenance(v) for k, v in value.items() if "provenance" not in k and k != "upstream"}
    if isinstance(value, list):
        return [_without_provenance(v) for v in value]
    return value


def _contents(results: Path) -> dict[str, object]:
    """Every compared artifact, with provenance (times, commands) left out."""
    import pyarrow.parquet as pq

    found = {}
    for top in COMPARED:
        for path in sorted((results / top).rglob("*")):
            if not path.is_file():
                continue
            key = str(path.relative_to(results))
            if path.suffix == ".parquet":
                table = pq.read_table(path)
                meta = json.loads(table.schema.metadata[b"edn"])
                columns = {name: table.column(name).to_numpy(zero_copy_only=False).tobytes()  # NaN-safe
                           for name in table.column_names}
                found[key] = (columns, _without_provenance(meta))
            elif path.suffix == ".json":
                found[key] = _without_provenance(json.loads(path.read_text()))
            else:
                found[key] = path.read_bytes()
    return found


def _jobs_done(workdir: Path) -> int:
    """Jobs finished so far: each writes its benchmark file when it ends."""
    return len(list((workdir / "results" / "benchmarks").rglob("*.tsv")))


def _kill_at(workdir: Path, jobs: int) -> bool:
    """Start the pose half, SIGKILL its process group once ``jobs`` jobs are done; True when it was killed.

    Kill points count progress, not fractions of a wall-clock duration, so every kill lands while
    the run is still going (with two cores another job is usually midway then).
    """
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--cores", "2",
           "--rerun-incomplete", "pose"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while _jobs_done(workdir) < jobs and proc.poll() is None:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it started, at once
    proc.wait()
    snakemake(workdir, "--unlock")
    return killed


def test_killed_and_rerun_pose_half_equals_an_uninterrupted_run(tmp_path, clip_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for workdir in (reference, killed):
        workdir.mkdir()
        write_config(workdir, clip_path)
    snakemake(reference, "pose")
    total = _jobs_done(reference)
    points = sorted(random.Random(11).sample(range(1, total), 3))  # three kills at rising job counts
    kills = [_kill_at(killed, jobs) for jobs in points]
    assert all(kills), (points, total, kills)
    snakemake(killed, "--rerun-incomplete", "pose")
    expected, got = _contents(reference / "results"), _contents(killed / "results")
    assert sorted(got) == sorted(expected)
    differing = [key for key in expected if got[key] != expected[key]]
    assert not differing, differing[:5]
    stale = [str(p) for p in (killed / "results").rglob("*") if re.fullmatch(r"\..+\.[a-z0-9_]{8}\.tmp.*", p.name)]
    assert not stale, stale
