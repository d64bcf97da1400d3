"""How pipeline.gan.launch turns SLURM's environment into a torchrun command (no SLURM needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.gan import launch

TRAIN = ["edn", "train", "out", "--clip", "f", "r", "k"]
PY = "/venv/bin/python"
TORCHRUN = [PY, "-m", "torch.distributed.run", "--no-python"]


def build(env, **kw):
    hosts = kw.pop("hostnames", lambda nodelist: {"gpu[07-08]": ["gpu07", "gpu08"]}[nodelist])
    return launch.build_command(TRAIN, env, python=PY, hostnames=hosts, **kw)


def test_outside_slurm_one_process_is_the_command_itself():
    assert build({}) == TRAIN
    assert build({"CUDA_VISIBLE_DEVICES": "0,1"}) == TRAIN  # outside SLURM only --gpus counts


def test_outside_slurm_gpus_or_cpu_procs_start_standalone_torchrun():
    assert build({}, gpus=2) == [*TORCHRUN, "--standalone", "--nnodes=1", "--nproc-per-node=2", *TRAIN]
    assert build({}, cpu_procs=3) == [*TORCHRUN, "--standalone", "--nnodes=1", "--nproc-per-node=3", *TRAIN,
                                      "--device", "cpu"]


def test_one_node_takes_gpu_count_from_slurm():
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_NUM_NODES": "1", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_JOB_NODELIST": "gpu07"}
    # SLURM's allocation wins over what the rule asked for
    assert build(env, gpus=1) == [*TORCHRUN, "--standalone", "--nnodes=1", "--nproc-per-node=4", *TRAIN]


def test_cuda_visible_devices_counts_when_slurm_gpus_on_node_is_absent():
    env = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "2,3,5"}
    assert "--nproc-per-node=3" in build(env)
    # GRES asked but nothing bound: CPU processes, not a crash
    assert build({"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "NoDevFiles"}, cpu_procs=2)[-len(TRAIN) - 3] \
        == "--nproc-per-node=2"


def test_slurm_without_gpus_uses_cpu_procs_or_one_process():
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_NUM_NODES": "1"}
    assert build(env) == TRAIN
    assert build(env, cpu_procs=2) == [*TORCHRUN, "--standalone", "--nnodes=1", "--nproc-per-node=2", *TRAIN,
                                       "--device", "cpu"]


def test_several_nodes_fan_out_one_launcher_per_node_first():
    env = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_JOB_NODELIST": "gpu[07-08]"}
    cmd = build(env, gpus=4)
    assert cmd[:6] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                       f"--export=ALL,{launch.PER_NODE_MARK}=1"]
    assert cmd[6:9] == [PY, "-m", "pipeline.gan.launch"]
    assert cmd[-len(TRAIN) - 1:] == ["--", *TRAIN]


def test_fan_out_asks_the_jobs_cpus_per_task_for_each_node_copy():
    env = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[07-08]",
           "SLURM_CPUS_PER_TASK": "16"}
    assert "--cpus-per-task=16" in build(env)[:7]  # else srun gives the node's copy one CPU
    del env["SLURM_CPUS_PER_TASK"]
    assert not any(a.startswith("--cpus-per-task") for a in build(env))


def test_rendezvous_ports_stay_below_the_ephemeral_range():
    ports = {launch.rendezvous_port({"SLURM_JOB_ID": str(job)}) for job in range(0, 100_000, 7)}
    assert min(ports) == launch.BASE_PORT and max(ports) < 32768  # Linux: ephemeral ports from 32768
    assert len(ports) == launch.PORT_SPAN


def test_node_threads_are_shared_by_its_processes():
    assert launch.process_env({"OMP_NUM_THREADS": "16"}, 4)["OMP_NUM_THREADS"] == "4"
    assert launch.process_env({"SLURM_CPUS_PER_TASK": "6"}, 4)["OMP_NUM_THREADS"] == "1"
    assert launch.process_env({"OMP_NUM_THREADS": "8"}, 1)["OMP_NUM_THREADS"] == "8"  # one process: as given
    assert "OMP_NUM_THREADS" not in launch.process_env({}, 4)


def test_per_node_copy_starts_torchrun_with_rank_and_rendezvous_from_slurm():
    env = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_JOB_NODELIST": "gpu[07-08]", launch.PER_NODE_MARK: "1"}
    assert build(env) == [*TORCHRUN, "--nnodes=2", "--nproc-per-node=4", "--node-rank=1",
                          "--master-addr=gpu07", f"--master-port={launch.BASE_PORT + 1234}", *TRAIN]


def test_multi_node_without_nodelist_is_an_error():
    env = {"SLURM_JOB_ID": "9", "SLURM_NNODES": "3", launch.PER_NODE_MARK: "1"}
    with pytest.raises(RuntimeError, match="SLURM_JOB_NODELIST"):
        build(env)


def test_node_count_is_asked_from_slurm_when_the_jobstep_stripped_it():
    line = "JobId=77 JobName=x NumNodes=2-2 NumCPUs=8 NumTasks=2 CPUs/Task=4 NodeList=gpu[07-08] BatchHost=gpu07"
    env = launch.complete_slurm_env({"SLURM_JOB_ID": "77"}, query=lambda job_id: {"77": line}[job_id])
    assert env["SLURM_JOB_NUM_NODES"] == "2" and env["SLURM_JOB_NODELIST"] == "gpu[07-08]"
    assert env["SLURM_CPUS_PER_TASK"] == "4"
    assert build(env)[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=4"]
    # nothing is asked outside SLURM or when SLURM's variables are there
    untouched = {"SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "1"}
    assert launch.complete_slurm_env(untouched, query=None) == untouched
    assert launch.complete_slurm_env({}, query=None) == {}


def test_empty_training_command_is_refused():
    with pytest.raises(ValueError, match="edn train"):
        launch.build_command([], {})


def test_cli_dry_run_prints_the_command():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-m", "pipeline.gan.launch", "--cpu-procs", "2", "--dry-run", "--", *TRAIN],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == [sys.executable, "-m", "torch.distributed.run", "--no-python", "--standalone",
                                   "--nnodes=1", "--nproc-per-node=2", *TRAIN, "--device", "cpu"]



def test_cpu_processes_train_on_the_cpu_even_beside_a_gpu():
    # Two CPU processes on a one-GPU box: with device auto both would take CUDA and rank 1 has no GPU.
    cmd = build({"CUDA_VISIBLE_DEVICES": "0"}, cpu_procs=2)
    assert cmd[-len(TRAIN) - 2:] == [*TRAIN, "--device", "cpu"]
    # an explicit --device auto is overridden (argparse keeps the last), an explicit cuda is a contradiction
    assert build_cmd([*TRAIN, "--device", "auto"], {}, cpu_procs=2)[-2:] == ["--device", "cpu"]
    for asks_cuda in (["--device", "cuda"], ["--device=cuda"]):
        with pytest.raises(ValueError, match="--cpu-procs starts CPU processes .* asks --device cuda"):
            build_cmd([*TRAIN, *asks_cuda], {}, cpu_procs=2)
    # one process, or GPU processes: the command is left as it is
    assert build({}) == TRAIN and build({}, gpus=2)[-len(TRAIN):] == TRAIN
    # SLURM bound GPUs: GPU processes, whatever --cpu-procs says
    assert build({"SLURM_JOB_ID": "1", "SLURM_GPUS_ON_NODE": "2"}, cpu_procs=4)[-len(TRAIN):] == TRAIN


def test_more_gpu_processes_than_visible_gpus_are_refused():
    with pytest.raises(ValueError, match=r"--gpus 2 but CUDA_VISIBLE_DEVICES=0 lets this node's processes see 1"):
        build({"CUDA_VISIBLE_DEVICES": "0"}, gpus=2)
    assert "--nproc-per-node=2" in build({"CUDA_VISIBLE_DEVICES": "0,1"}, gpus=2)


def test_gpus_given_to_the_job_are_read_from_every_variable():
    assert launch.allocated_gpus({}) is None
    for hidden in ({"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "-1"},
                   {"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, {"SLURM_GPUS_ON_NODE": "0"}):
        assert launch.allocated_gpus(hidden) is None, hidden
    assert launch.allocated_gpus({"CUDA_VISIBLE_DEVICES": "0"}) == "CUDA_VISIBLE_DEVICES=0"
    assert launch.allocated_gpus({"SLURM_JOB_GPUS": "0"}) == "SLURM_JOB_GPUS=0"  # a device index, not a count
    assert launch.allocated_gpus({"SLURM_STEP_GPUS": "2,3"}) == "SLURM_STEP_GPUS=2,3"
    assert launch.allocated_gpus({"SLURM_GPUS_ON_NODE": "1"}) == "SLURM_GPUS_ON_NODE=1"


def build_cmd(cmd, env, **kw):
    return launch.build_command(cmd, env, python=PY, hostnames=None, **kw)

def test_cli_starts_each_process_with_its_share_of_the_threads(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    # the "training command" prints the thread count it was started with; one process: exec'd directly
    cmd = [sys.executable, "-m", "pipeline.gan.launch", "--", sys.executable, "-c",
           "import os; print(os.environ['OMP_NUM_THREADS'])"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(env, OMP_NUM_THREADS="6"), check=True)
    assert done.stdout.strip() == "6"
    # several processes (torchrun): each gets its share
    done = subprocess.run([sys.executable, "-m", "pipeline.gan.launch", "--cpu-procs", "2", "--dry-run", "--", "x"],
                          capture_output=True, text=True, env=dict(env, OMP_NUM_THREADS="6"), check=True)
    assert "OMP_NUM_THREADS=3 per process" in done.stderr

