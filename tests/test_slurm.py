"""Submission through a real single-node SLURM (tests/slurm_cluster.py) with the SLURM profile.

Starts slurmctld, slurmd and munged once for the module (installing Debian's packages when
missing, as root) and the executor plugin from requirements-slurm.txt when it is missing.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slurm_cluster import SlurmUnavailable, slurm_cluster

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
TEST_PROFILE = REPO / "profiles" / "slurm-test"
pytestmark = pytest.mark.slurm


def ensure_plugin() -> None:
    """The SLURM executor from requirements-slurm.txt (no-deps: see that file for why)."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-deps", "-r", str(REPO / "requirements-slurm.txt")], check=True)


@pytest.fixture(scope="module")
def cluster():
    ensure_plugin()
    try:
        with slurm_cluster() as running:
            yield running
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))


def submit(cluster, workdir: Path, *args: str, snakefile: Path | None = None,
           check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "--workflow-profile", str(TEST_PROFILE), *args]
    if snakefile is not None:
        cmd[1:1] = ["-s", str(snakefile)]
    env = dict(cluster.env, PATH=f"{BIN}:{cluster.env.get('PATH', '')}")
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                             f"{done.stderr[-6000:]}")
    return done


def job_states(cluster) -> dict[str, str]:
    """SLURM job id -> state for every job the cluster still remembers (MinJobAge)."""
    return {line.split()[0]: line.split()[-1] for line in cluster.squeue_all().splitlines() if line.strip()}


TWO_RULES = """
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    log: "logs/a.log"
    shell: "echo SLURM_JOB_ID=$SLURM_JOB_ID > {log}; echo a > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    log: "logs/b.log"
    shell: "echo SLURM_JOB_ID=$SLURM_JOB_ID > {log}; cat {input} > {output}; echo b >> {output}"
"""


def test_two_rule_workflow_runs_as_slurm_jobs(cluster, tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(TWO_RULES)
    before = set(job_states(cluster))
    submit(cluster, tmp_path, snakefile=snakefile)
    assert (tmp_path / "b.txt").read_text() == "a\nb\n"
    ids = {}
    for rule in ("a", "b"):
        match = re.fullmatch(r"SLURM_JOB_ID=(\d+)\n", (tmp_path / "logs" / f"{rule}.log").read_text())
        assert match, f"rule {rule} did not run inside a SLURM job"
        ids[rule] = match.group(1)
    assert ids["a"] != ids["b"], "each rule is its own submission"
    states = job_states(cluster)
    assert {ids["a"], ids["b"]} <= set(states) - before
    assert states[ids["a"]] == states[ids["b"]] == "COMPLETED"
    # the plugin's per-job SLURM logs go where the profile says
    slurm_logs = list((tmp_path / "results" / "logs" / "slurm").rglob("*.log"))
    assert {p.parent.name for p in slurm_logs} >= {"rule_a", "rule_b"}, slurm_logs


def test_launcher_expands_node_lists_with_scontrol(cluster, monkeypatch):
    from pipeline.gan.launch import slurm_hostnames

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    assert slurm_hostnames("gpu[07-09],big1") == ["gpu07", "gpu08", "gpu09", "big1"]


# The workflow's own training rule (train_generator: `python -m pipeline.gan.launch -- python -m
# pipeline.cli train ...`) on a synthetic clip, inside SLURM allocations of the test cluster.
TINY_TRAIN = {"width": 64, "height": 128, "ngf": 8, "n_downsample": 2, "n_blocks": 1, "ndf": 8, "num_d": 1,
              "n_layers_d": 2, "niter_decay": 0, "workers": 0, "sample_every": 0, "cpu_processes": 2,
              "gpus": 0, "mem_mb": 1000}  # no GPUs on the test cluster: two CPU processes (gloo), 1000 MB each


def training_workdir(workdir: Path, clip: tuple[Path, Path, Path], **train) -> list[str]:
    """A workdir whose target clip is already extracted, detected and rendered; returns the
    snakemake arguments that train its generator (and only that)."""
    import shutil

    frames, render, keypoints = clip
    shutil.copytree(frames, workdir / "results" / "frames" / "va")
    shutil.copytree(render, workdir / "results" / "render" / "va")
    (workdir / "results" / "keypoints" / "va").mkdir(parents=True)
    shutil.copy(keypoints, workdir / "results" / "keypoints" / "va" / "smooth.parquet")
    (workdir / "va.mp4").touch()
    (workdir / "videos.tsv").write_text("name\tpath\trole\tsubject\nva\tva.mp4\ttarget\ts\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "videos.tsv"
    config["train"].update(TINY_TRAIN, **train)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # --allowed-rules takes several values: it goes last
    return ["results/models/s/generator.pt", "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
            "--allowed-rules", "qc", "plate", "train_generator"]


def run_record(workdir: Path) -> dict:
    import json

    return json.loads((workdir / "results" / "models" / "s" / "run.json").read_text())


def checkpoint_step(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError):  # not written yet
        return 0


def test_two_process_cpu_training_inside_one_allocation(cluster, tmp_path, synthetic_clip):
    args = training_workdir(tmp_path, synthetic_clip, epochs=2, checkpoint_every=2)
    submit(cluster, tmp_path, *args)
    log = (tmp_path / "results" / "logs" / "train" / "s.log").read_text()
    assert "torch.distributed.run" in log and "--nproc-per-node=2" in log  # the launcher's command
    record = run_record(tmp_path)
    assert record["status"] == "finished" and record["world_size"] == 2 and record["final_step"] > 2
    assert record["provenance"]["slurm_job_id"] in job_states(cluster), "training ran as a job of this cluster"
    assert job_states(cluster)[record["provenance"]["slurm_job_id"]] == "COMPLETED"
    for checksums in record["param_checksums"].values():
        assert len(set(checksums)) == 1, "the two processes' weights differ"
    assert (tmp_path / "results" / "models" / "s" / "checkpoint.pt").is_file()
    assert (tmp_path / "results" / "models" / "s" / "generator.pt").is_file()


def test_cancelled_training_resumes_from_its_checkpoint(cluster, tmp_path, tmp_path_factory, synthetic_clip):
    import time

    # Enough steps that the job is still running when it is cancelled.
    args = training_workdir(tmp_path, synthetic_clip, epochs=30, checkpoint_every=3)
    env = dict(cluster.env, PATH=f"{BIN}:{cluster.env.get('PATH', '')}")
    first = subprocess.Popen([SNAKEMAKE, "--workflow-profile", str(TEST_PROFILE), "--retries", "0", *args],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = tmp_path / "results" / "models" / "s" / "checkpoint.pt"
    deadline = time.monotonic() + 180
    while checkpoint_step(ckpt) < 6:
        assert time.monotonic() < deadline and first.poll() is None, "training never checkpointed"
        time.sleep(0.5)
    job = run_record(tmp_path)["provenance"]["slurm_job_id"]
    assert job_states(cluster)[job] == "RUNNING"
    cluster.run("scancel", job)
    output, _ = first.communicate(timeout=120)
    assert first.returncode != 0, output[-3000:]
    cancelled_at = checkpoint_step(ckpt)
    total = run_record(tmp_path)["total_steps"]
    assert 6 <= cancelled_at < total and not (tmp_path / "results" / "models" / "s" / "generator.pt").exists()

    submit(cluster, tmp_path, "--rerun-incomplete", *args)
    record = run_record(tmp_path)
    assert record["provenance"]["slurm_job_id"] != job and record["resumed_from_step"] >= cancelled_at
    assert record["status"] == "finished" and record["final_step"] == total
    log = (tmp_path / "results" / "logs" / "train" / "s.log").read_text()
    assert f"resuming at step {record['resumed_from_step']} of {total}" in log

    # Exact resume, whatever step the cancel landed on: every loss of every step equals an
    # uninterrupted run's (the same rule and processes, run locally, never cancelled).
    reference = tmp_path_factory.mktemp("uninterrupted")
    reference_args = training_workdir(reference, synthetic_clip, epochs=30, checkpoint_every=3)
    done = subprocess.run([SNAKEMAKE, "--cores", "2", *reference_args], cwd=reference, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    losses = [(tmp_path if k == 0 else reference) / "results" / "models" / "s" / "losses.csv" for k in range(2)]
    resumed, uninterrupted = (path.read_text().splitlines() for path in losses)
    assert len(resumed) == total + 1 and resumed == uninterrupted


def test_pose_half_through_slurm_equals_a_local_run(cluster, tmp_path_factory, clip_path):
    import numpy as np

    from pipeline.pose.keypoints import read_keypoints
    from test_workflow import planned_rules, write_config

    local, remote = tmp_path_factory.mktemp("pose_local"), tmp_path_factory.mktemp("pose_slurm")
    for workdir in (local, remote):
        write_config(workdir, clip_path)
    done = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
                           "--cores", "2", "pose"], cwd=local, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    rule_jobs = sum(planned_rules(done.stdout + done.stderr).values())
    before = set(job_states(cluster))
    submit(cluster, remote, "pose", "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml")
    slurm_jobs = set(job_states(cluster)) - before
    # the light per-video stages went as one group job, not one submission each
    assert 0 < len(slurm_jobs) < rule_jobs, (slurm_jobs, rule_jobs)
    parquets = sorted(p.relative_to(local) for p in local.glob("results/**/*.parquet"))
    assert parquets and parquets == sorted(p.relative_to(remote) for p in remote.glob("results/**/*.parquet"))
    cluster_jobs = set(job_states(cluster))
    from pipeline.pose.quality import read_qc

    for rel in [r for r in parquets if r.parts[1] == "qc"]:  # pose QC verdicts: same columns, SLURM's job named
        (a_cols, a_meta), (b_cols, b_meta) = read_qc(local / rel), read_qc(remote / rel)
        assert "slurm_job_id" not in a_meta["provenance"], rel
        assert b_meta["provenance"]["slurm_job_id"] in cluster_jobs & slurm_jobs, rel
        assert a_cols.keys() == b_cols.keys(), rel
        for column in a_cols:
            np.testing.assert_array_equal(a_cols[column], b_cols[column], err_msg=f"{rel}: {column}")
    for rel in [r for r in parquets if r.parts[1] != "qc"]:
        a, b = read_keypoints(local / rel), read_keypoints(remote / rel)
        # every artifact records the SLURM job that made it
        assert "slurm_job_id" not in a.meta["provenance"], rel
        assert b.meta["provenance"]["slurm_job_id"] in cluster_jobs & slurm_jobs, rel
        np.testing.assert_array_equal(a.frames, b.frames, err_msg=str(rel))
        np.testing.assert_array_equal(a.data, b.data, err_msg=str(rel))  # NaN == NaN here
        assert (a.meta["width"], a.meta["height"]) == (b.meta["width"], b.meta["height"])
