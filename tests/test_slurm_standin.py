"""The workflow through profiles/slurm and the real SLURM executor plugin, with stand-in SLURM commands
(tests/fake_slurm.py) that record what a cluster would be asked: no slurmctld, no GPUs, CPU only.

Each run trains the tiny generator of one subject (inputs made beforehand) and checks the recorded
sbatch/srun lines for one GPU, four GPUs on one node and two nodes of four GPUs, and what a job
killed at its time limit or for memory is resubmitted with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import fake_slurm
from test_slurm import TINY_TRAIN, ensure_plugin

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROFILE = REPO / "profiles" / "slurm"
WORKERS = 1  # data workers per process: a job asks (workers + 1) CPUs per process
NODE_CPUS = 32  # a typical node with 4 GPUs; the profile's recipe once asked 4 tasks x 32 CPUs of it


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_clip) -> Path:
    """A target clip already extracted, detected, rendered and pose-checked (edn qc), to copy from."""
    ensure_plugin()
    frames, render, keypoints = synthetic_clip
    root = tmp_path_factory.mktemp("standin_inputs")
    shutil.copytree(frames, root / "results" / "frames" / "va")
    shutil.copytree(render, root / "results" / "render" / "va")
    (root / "results" / "keypoints" / "va").mkdir(parents=True)
    shutil.copy(keypoints, root / "results" / "keypoints" / "va" / "smooth.parquet")
    (root / "results" / "qc" / "va").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pipeline.cli", "qc", str(keypoints),
                    str(root / "results" / "qc" / "va" / "smooth.parquet")], check=True, capture_output=True)
    return root


def workdir(tmp_path: Path, prepared: Path, **train) -> Path:
    work = tmp_path / "work"
    shutil.copytree(prepared, work)
    for qc in (work / "results" / "qc").rglob("*.parquet"):
        qc.touch()  # newer than the keypoints it was made from, so Snakemake does not redo it
    (work / "va.mp4").touch()
    (work / "videos.tsv").write_text("name\tpath\trole\tsubject\nva\tva.mp4\ttarget\ts\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "videos.tsv"
    config["train"].update({**TINY_TRAIN, "epochs": 1, "workers": WORKERS, "cpu_processes": 1, "background": "none",
                            "checkpoint_every": 1, **train})
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return work


def run_workflow(work: Path, state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    path = fake_slurm.install(work.parent / "fakebin", state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{path}:{BIN}:{env.get('PATH', '')}", FAKE_SLURM_DIR=str(state))
    cmd = [str(BIN / "snakemake"), "--workflow-profile", str(PROFILE), "-s", str(REPO / "Snakefile"),
           "--configfile", "config.yaml", "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "2", *args,
           "results/models/s/generator.pt", "--allowed-rules", "train_generator"]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-6000:]}\nrecorded: {fake_slurm.calls(state)}")
    return done


def sbatch_options(state: Path) -> list[dict[str, str]]:
    return [fake_slurm.options(c["argv"])[0] for c in fake_slurm.calls(state, "sbatch")]


@pytest.mark.slow  # about a minute each on 2 cores: the executor polls every 10 s
@pytest.mark.parametrize("gpus, nodes", [(1, 1), (4, 1), (4, 2)], ids=["1gpu", "4gpus_1node", "2nodes_x_4gpus"])
def test_training_submissions_a_scheduler_accepts(tmp_path, prepared, gpus, nodes):
    state = tmp_path / "slurm"
    work = workdir(tmp_path, prepared, gpus=gpus, nodes=nodes, mem_mb=3000)
    run_workflow(work, state)
    (sbatch,) = sbatch_options(state)
    cpus = gpus * (WORKERS + 1)  # one CPU per process plus its data workers
    # One task per node; CPUs per node = tasks per node x CPUs per task, within the node
    assert sbatch["--cpus-per-task"] == str(cpus)
    assert int(sbatch.get("--ntasks-per-node", "1")) * cpus <= NODE_CPUS  # SLURM reserves tasks x CPUs a node
    assert sbatch["--nodes"] == str(nodes)
    assert sbatch["--mem"] == str(3000 * gpus)  # memory per node, scaled with its GPUs
    assert sbatch["-p"] == "gpu" and sbatch["-t"] == "720" and sbatch["-A"] == "my_account"
    srun = [fake_slurm.options(c["argv"])[0] for c in fake_slurm.calls(state, "srun")]
    if nodes == 1:
        # the plugin's --gpus is a job total: on one node it is the node's GPUs
        assert sbatch["--gpus"] == str(gpus) and "--ntasks-per-node" not in sbatch
        (step,) = srun  # Snakemake's job step: one task with every CPU and GPU of the job
        assert step["-n"] == "1" and step["--cpus-per-task"] == str(cpus) and step["--gpus"] == str(gpus)
        assert step["--nodes"] == "1"
    else:
        # GPUs per node, never a total spread over nodes; one task (a launcher, then torchrun) per node
        assert "--gpus" not in sbatch and sbatch["--gpus-per-node"] == str(gpus)
        assert sbatch["--ntasks"] == str(nodes) and sbatch["--ntasks-per-node"] == "1"
        assert "--ntasks-per-gpu" not in sbatch
        (step,) = srun  # no job step of Snakemake's (mpi): the launcher's own srun, one copy per node
        assert step["--nodes"] == str(nodes) and step["--ntasks"] == str(nodes)
        assert step["--ntasks-per-node"] == "1" and step["--cpus-per-task"] == str(cpus)
    record = json.loads((work / "results" / "models" / "s" / "run.json").read_text())
    assert record["status"] == "finished"
    job = fake_slurm.calls(state, "sbatch")[0]["job"]
    assert record["provenance"]["slurm_job_id"] == job  # trained inside the stand-in job
    # the SLURM log of the successful job is kept where docs/hpc.md says
    assert (work / "results" / "logs" / "slurm" / "rule_train_generator" / "s" / f"{job}.log").is_file()


@pytest.mark.slow
def test_a_job_stopped_at_its_time_limit_resumes_with_the_same_memory(tmp_path, prepared):
    state = tmp_path / "slurm"
    work = workdir(tmp_path, prepared, gpus=1, mem_mb=3000, epochs=4)
    ckpt = work / "results" / "models" / "s" / "checkpoint.pt"
    fake_slurm.plan_kill(state, "train_generator", "TIMEOUT", after_file=ckpt)
    run_workflow(work, state)
    first, second = sbatch_options(state)
    assert first["--mem"] == second["--mem"] == "3000"  # a time limit is not a memory problem
    assert first["-t"] == second["-t"]
    jobs = [c["job"] for c in fake_slurm.calls(state, "sbatch")]
    log = (work / "results" / "logs" / "slurm" / "rule_train_generator" / "s" / f"{jobs[0]}.log").read_text()
    assert "DUE TO TIME LIMIT" in log
    record = json.loads((work / "results" / "models" / "s" / "run.json").read_text())
    # the retry went on from the checkpoint the first job left, not from step 0
    assert record["status"] == "finished" and record["resumed_from_step"] >= 1
    assert record["provenance"]["slurm_job_id"] == jobs[1]


@pytest.mark.slow
def test_a_job_killed_for_memory_comes_back_with_more(tmp_path, prepared):
    state = tmp_path / "slurm"
    work = workdir(tmp_path, prepared, gpus=1, mem_mb=3000)
    fake_slurm.plan_kill(state, "train_generator", "OUT_OF_MEMORY")
    fake_slurm.plan_kill(state, "train_generator", "OUT_OF_MEMORY")
    run_workflow(work, state)
    assert [o["--mem"] for o in sbatch_options(state)] == ["3000", "6000", "9000"]


def test_a_training_job_wider_than_the_profiles_cores_stops_before_submitting(tmp_path, prepared):
    # Snakemake would lower the job's threads to --cores: the job would get fewer CPUs than it needs.
    state = tmp_path / "slurm"
    work = workdir(tmp_path, prepared, gpus=4, workers=3)
    done = run_workflow(work, state, "--cores", "8", check=False)
    assert done.returncode != 0
    assert "16 CPUs per training job, more than the profile's cores: 8" in done.stdout + done.stderr
    assert fake_slurm.calls(state, "sbatch") == []


def test_only_slurms_out_of_memory_kills_count_as_memory_failures(tmp_path):
    from pipeline.cluster import memory_mb, oom_killed_attempts

    logs = tmp_path / "rule_train_generator" / "s"
    logs.mkdir(parents=True)
    (logs / "1.log").write_text("slurmstepd: error: *** JOB 1 ON n1 CANCELLED AT 2026-12-02T01:00:00 DUE TO "
                                "TIME LIMIT ***\n")
    (logs / "2.log").write_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert oom_killed_attempts(logs) == 0  # a time limit, and GPU memory that more host memory would not fix
    (logs / "3.log").write_text("slurmstepd: error: Detected 1 oom_kill event in StepId=3.0. Some of the step "
                                "tasks have been OOM Killed.\n")
    (logs / "4.log").write_text("slurmstepd: error: Exceeded job memory limit\n")  # SLURM before 21.08
    assert oom_killed_attempts(logs) == 2
    assert memory_mb(8000, 4, logs) == 8000 * 4 * 3
    assert memory_mb(8000, 4, tmp_path / "missing") == memory_mb(8000, 4, None) == 32000
    with pytest.raises(ValueError, match="processes per node"):
        memory_mb(8000, 0, None)
