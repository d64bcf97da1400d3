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
    from pipeline.launch import slurm_hostnames

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    assert slurm_hostnames("gpu[07-09],big1") == ["gpu07", "gpu08", "gpu09", "big1"]


# A minimal real DDP training loop: what `edn train` does at its core (process group from
# torchrun's RANK/WORLD_SIZE, gradients all-reduced by DDP, rank 0 checkpoints, resume from
# the checkpoint). It runs through pipeline.launch inside one SLURM allocation.
DDP_TRAIN = r'''
import os, sys, time
from pathlib import Path
import torch
import torch.distributed as dist

out, steps, pause = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
ckpt, start = out / "checkpoint.pt", 0
if ckpt.exists():
    state = torch.load(ckpt)
    model.module.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); start = state["step"]
print(f"rank={rank} world={world} job={os.environ.get('SLURM_JOB_ID')} start={start}", flush=True)
for step in range(start, steps):
    g = torch.Generator().manual_seed(step * world + rank)
    x = torch.randn(8, 4, generator=g)
    loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    weights = model.module.weight.detach().clone()
    gathered = [torch.zeros_like(weights) for _ in range(world)]
    dist.all_gather(gathered, weights)
    assert all(torch.equal(w, weights) for w in gathered), "replicas diverged"
    if rank == 0:
        tmp = out / "checkpoint.tmp"
        torch.save({"model": model.module.state_dict(), "opt": opt.state_dict(), "step": step + 1}, tmp)
        os.replace(tmp, ckpt)
    time.sleep(pause)
dist.barrier()
if rank == 0:
    (out / "model.pt").write_bytes(ckpt.read_bytes())
dist.destroy_process_group()
'''

TRAIN_RULE = """
rule train_generator:  # named as the workflow's rule, so profiles/slurm-test gives it its resources
    output: "model/model.pt"
    log: "logs/train.log"
    params: steps={steps}, pause={pause}
    shell:
        "{python} -m pipeline.launch --cpu-procs 2 -- {python} ddp_train.py model {{params.steps}} {{params.pause}}"
        " >> {{log}} 2>&1"
"""


def write_training(workdir: Path, steps: int, pause: float) -> Path:
    (workdir / "ddp_train.py").write_text(DDP_TRAIN)
    # the checkpoint lives beside, not as, a declared output: Snakemake deletes the declared
    # outputs of a failed job, and a killed job must keep its checkpoint
    (workdir / "model").mkdir()
    snakefile = workdir / "Snakefile"
    snakefile.write_text(TRAIN_RULE.format(steps=steps, pause=pause, python=sys.executable))
    return snakefile


def ranks_started(log: str) -> list[tuple[int, int, str, int]]:
    return [(int(r), int(w), j, int(s)) for r, w, j, s in
            re.findall(r"rank=(\d+) world=(\d+) job=(\d+) start=(\d+)", log)]


def test_two_process_cpu_training_inside_one_allocation(cluster, tmp_path):
    snakefile = write_training(tmp_path, steps=4, pause=0)
    submit(cluster, tmp_path, snakefile=snakefile)
    log = (tmp_path / "logs" / "train.log").read_text()
    assert "torch.distributed.run" in log and "--nproc-per-node=2" in log  # launcher's command
    started = ranks_started(log)
    assert sorted(r for r, *_ in started) == [0, 1] and {w for _, w, *_ in started} == {2}
    assert len({j for *_, j, _ in started}) == 1, "both processes in one SLURM job"
    import torch

    state = torch.load(tmp_path / "model" / "model.pt")
    assert state["step"] == 4


def test_cancelled_training_resumes_from_its_checkpoint(cluster, tmp_path):
    import time

    import torch

    snakefile = write_training(tmp_path, steps=16, pause=0.5)
    env = dict(cluster.env, PATH=f"{BIN}:{cluster.env.get('PATH', '')}")
    first = subprocess.Popen([SNAKEMAKE, "-s", str(snakefile), "--workflow-profile", str(TEST_PROFILE),
                              "--retries", "0"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = tmp_path / "model" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not (ckpt.exists() and torch.load(ckpt)["step"] >= 3):
        assert time.monotonic() < deadline and first.poll() is None, "training never checkpointed"
        time.sleep(0.5)
    running = [j for j, s in job_states(cluster).items() if s == "RUNNING"]
    assert len(running) == 1
    cluster.run("scancel", running[0])
    output, _ = first.communicate(timeout=120)
    assert first.returncode != 0, output[-3000:]
    cancelled_at = torch.load(ckpt)["step"]
    assert 3 <= cancelled_at < 16 and not (tmp_path / "model" / "model.pt").exists()

    submit(cluster, tmp_path, "--rerun-incomplete", snakefile=snakefile)
    started = ranks_started((tmp_path / "logs" / "train.log").read_text())
    resumed = [s for r, _, j, s in started if j != running[0]]
    assert len(resumed) == 2 and min(resumed) >= cancelled_at > 0, started
    assert torch.load(tmp_path / "model" / "model.pt")["step"] == 16


POSE_STAGES = ("extract", "detect", "smooth", "stats", "normalize", "render")


def test_pose_half_through_slurm_equals_a_local_run(cluster, tmp_path_factory, clip_path):
    missing = [s for s in POSE_STAGES if not (REPO / "pipeline" / f"{s}.py").exists()]
    if missing:
        pytest.skip(f"pose stages not in the tree yet: {missing}")
    import numpy as np

    from pipeline.keypoints import read_keypoints
    from test_workflow import planned_rules, write_config

    local, remote = tmp_path_factory.mktemp("pose_local"), tmp_path_factory.mktemp("pose_slurm")
    for workdir in (local, remote):
        write_config(workdir, clip_path)
    done = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml",
                           "--cores", "2"], cwd=local, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    rule_jobs = sum(planned_rules(done.stdout + done.stderr).values())
    before = set(job_states(cluster))
    submit(cluster, remote, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml")
    slurm_jobs = set(job_states(cluster)) - before
    # the light per-video stages went as one group job, not one submission each
    assert 0 < len(slurm_jobs) < rule_jobs, (slurm_jobs, rule_jobs)
    parquets = sorted(p.relative_to(local) for p in local.glob("results/**/*.parquet"))
    assert parquets and parquets == sorted(p.relative_to(remote) for p in remote.glob("results/**/*.parquet"))
    for rel in parquets:
        a, b = read_keypoints(local / rel), read_keypoints(remote / rel)
        np.testing.assert_array_equal(a.frames, b.frames, err_msg=str(rel))
        np.testing.assert_array_equal(a.data, b.data, err_msg=str(rel))  # NaN == NaN here
        assert (a.meta["width"], a.meta["height"]) == (b.meta["width"], b.meta["height"])
