"""Start training with one process per GPU, on one or several nodes, from SLURM's environment.

    python -m pipeline.gan.launch [--gpus N] [--cpu-procs N] [--dry-run] -- edn train OUT_DIR ...

Outside SLURM: one process (the command itself) unless --gpus/--cpu-procs ask for more, then
`torchrun --standalone`. Inside a SLURM allocation the allocation decides:
- processes per node: SLURM_GPUS_ON_NODE, else the devices in CUDA_VISIBLE_DEVICES, else
  --cpu-procs (CPU training with gloo);
- one node: `torchrun --standalone` (it picks a free local port, so jobs sharing a node do not
  collide);
- several nodes: the launcher first re-runs itself once per node through
  `srun --ntasks-per-node=1`; each copy starts `torchrun --nnodes=N --node-rank=$SLURM_NODEID`
  with the first host of `scontrol show hostnames $SLURM_JOB_NODELIST` as the rendezvous address
  and a port derived from the job id (29500-32499: below Linux's ephemeral range, 32768-60999).
torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for `edn train`, which resumes from its checkpoint.
CPU processes (no GPU from SLURM or --gpus) get `--device cpu` appended, so that a GPU on the node
is not taken by `device: auto`; --gpus beyond what CUDA_VISIBLE_DEVICES lists is refused.
The job's threads (OMP_NUM_THREADS, set by Snakemake to the CPUs the job has on the node) are shared
among the processes of a node, so N processes on N x C CPUs run C threads each, not N x C.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from typing import Callable, Mapping, Sequence

from pipeline.arguments import Number

# Set in the per-node copies started by srun, so they do not fan out again.
PER_NODE_MARK = "EDN_LAUNCH_PER_NODE"
BASE_PORT = 29500
# Ports BASE_PORT .. BASE_PORT + PORT_SPAN - 1: the highest, 32499, stays below 32768, where Linux's
# default ephemeral range (net.ipv4.ip_local_port_range) starts, so no outgoing connection holds it.
PORT_SPAN = 3000


def slurm_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM node list ("gpu[01-03],big7") the way SLURM itself does."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def scontrol_job(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True)
    return out.stdout


def complete_slurm_env(env: Mapping[str, str], query: Callable[[str], str] = scontrol_job) -> dict[str, str]:
    """Fill in the node count, node list and CPUs per task when only the job id made it into our
    environment.

    Snakemake's jobstep executor strips SLURM_* (all but the job id) before running a job
    that declares the `mpi` resource (the multi-node case), so ask SLURM for them.
    """
    full = dict(env)
    if in_slurm(full) and not (full.get("SLURM_JOB_NUM_NODES") or full.get("SLURM_NNODES")):
        fields = dict(f.split("=", 1) for f in query(full["SLURM_JOB_ID"]).split() if "=" in f)
        full["SLURM_JOB_NUM_NODES"] = fields["NumNodes"].split("-")[0]
        full.setdefault("SLURM_JOB_NODELIST", fields["NodeList"])
        if fields.get("CPUs/Task", "").isdigit():
            full.setdefault("SLURM_CPUS_PER_TASK", fields["CPUs/Task"])
    return full


def visible_gpus(env: Mapping[str, str]) -> int:
    """GPUs this node's share of the allocation has (0 when none)."""
    on_node = env.get("SLURM_GPUS_ON_NODE", "").strip()
    if on_node.isdigit():
        return int(on_node)
    devices = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    # SLURM writes "NoDevFiles" when GRES were requested but none are bound
    if devices and devices != "NoDevFiles":
        return len([d for d in devices.split(",") if d.strip()])
    return 0


# Variables through which SLURM (or the user) hands a job its GPUs; "NoDevFiles": GRES asked, none bound.
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


def allocated_gpus(env: Mapping[str, str]) -> str | None:
    """The first variable saying this job was given GPUs, as "NAME=value"; None when none does."""
    for name in GPU_VARIABLES:
        value = env.get(name, "").strip()
        if not value or value in ("NoDevFiles", "-1"):  # -1: the usual way to hide every GPU
            continue
        if name == "SLURM_GPUS_ON_NODE" and value == "0":  # a count; the others list device indices
            continue
        return f"{name}={value}"
    return None


def in_slurm(env: Mapping[str, str]) -> bool:
    return bool(env.get("SLURM_JOB_ID"))


def node_count(env: Mapping[str, str]) -> int:
    return int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)


def rendezvous_port(env: Mapping[str, str]) -> int:
    """A per-job port, so two multi-node jobs sharing a first node do not collide."""
    return BASE_PORT + int(env.get("SLURM_JOB_ID", "0")) % PORT_SPAN


def processes_per_node(env: Mapping[str, str], gpus: int = 0, cpu_procs: int = 1) -> int:
    """Inside SLURM the GPUs SLURM bound win; outside, the --gpus the caller asked for."""
    found = gpus_per_node(env, gpus)
    return found if found > 0 else max(1, cpu_procs)


def gpus_per_node(env: Mapping[str, str], gpus: int = 0) -> int:
    """GPUs (one process each) per node: SLURM's inside an allocation, else --gpus, which may not ask for
    more than CUDA_VISIBLE_DEVICES lists when it is set (a process without a GPU of its own would crash)."""
    if in_slurm(env):
        return visible_gpus(env)
    listed = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if gpus > 0 and listed and gpus > visible_gpus(env):
        raise ValueError(f"--gpus {gpus} but CUDA_VISIBLE_DEVICES={listed} lets this node's processes see "
                         f"{visible_gpus(env)}: ask for at most that many")
    return gpus


def cpu_command(train_cmd: Sequence[str]) -> list[str]:
    """``train_cmd`` for a CPU process: with ``--device cpu``, so that a GPU on the node is not picked up by
    ``device: auto`` (N CPU processes on a one-GPU box would all go for it; rank 1 has no GPU)."""
    cmd = list(train_cmd)
    # options end at the command's own "--" (its positionals, paths, follow it): --device goes before it
    end = cmd.index("--") if "--" in cmd else len(cmd)
    for i, arg in enumerate(cmd[:end]):
        if (arg == "--device" and cmd[i + 1:i + 2] == ["cuda"]) or arg == "--device=cuda":
            raise ValueError("--cpu-procs starts CPU processes (no GPU allocated or asked for) but the "
                             "command asks --device cuda: use --gpus N for GPU processes")
    return [*cmd[:end], "--device", "cpu", *cmd[end:]]  # the last --device wins (argparse)


def torchrun(python: str) -> list[str]:
    # torchrun as a module of the running interpreter: no dependence on PATH inside the job;
    # --no-python because the training command is an executable (`edn train ...`)
    return [python, "-m", "torch.distributed.run", "--no-python"]


def build_command(train_cmd: Sequence[str], env: Mapping[str, str], *, gpus: int = 0, cpu_procs: int = 1,
                  python: str = sys.executable,
                  hostnames: Callable[[str], list[str]] = slurm_hostnames) -> list[str]:
    """The command that starts `train_cmd` with one process per GPU (or per --cpu-procs)."""
    if not train_cmd:
        raise ValueError("no training command given (expected: -- edn train OUT_DIR ...)")
    nnodes = node_count(env) if in_slurm(env) else 1
    if nnodes > 1 and env.get(PER_NODE_MARK) != "1":
        # one launcher per node; each then starts that node's torchrun. The step asks for the job's
        # CPUs per task: without it srun gives each task one CPU (its SLURM_CPUS_PER_TASK default is
        # not read from a stripped environment), and all of a node's processes share that one.
        cpus = env.get("SLURM_CPUS_PER_TASK", "").strip()
        return ["srun", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1",
                *([f"--cpus-per-task={cpus}"] if cpus.isdigit() else []),
                "--kill-on-bad-exit=1", f"--export=ALL,{PER_NODE_MARK}=1",
                python, "-m", "pipeline.gan.launch", f"--gpus={gpus}", f"--cpu-procs={cpu_procs}",
                "--", *train_cmd]
    nproc = processes_per_node(env, gpus, cpu_procs)
    if gpus_per_node(env, gpus) == 0 and (nproc > 1 or nnodes > 1):
        train_cmd = cpu_command(train_cmd)
    if nnodes == 1:
        if nproc == 1:
            return list(train_cmd)
        return [*torchrun(python), "--standalone", "--nnodes=1", f"--nproc-per-node={nproc}", *train_cmd]
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise RuntimeError("SLURM_JOB_NODELIST is not set: cannot find the rendezvous host")
    master = hostnames(nodelist)[0]
    return [*torchrun(python), f"--nnodes={nnodes}", f"--nproc-per-node={nproc}",
            f"--node-rank={int(env.get('SLURM_NODEID', '0'))}", f"--master-addr={master}",
            f"--master-port={rendezvous_port(env)}", *train_cmd]


def process_env(env: Mapping[str, str], nproc: int) -> dict[str, str]:
    """The environment of the started processes: the node's threads (OMP_NUM_THREADS, else SLURM's CPUs
    per task) split among its ``nproc`` processes, at least one each."""
    out = dict(env)
    total = (env.get("OMP_NUM_THREADS") or env.get("SLURM_CPUS_PER_TASK") or "").strip()
    if nproc > 1 and total.isdigit():
        out["OMP_NUM_THREADS"] = str(max(1, int(total) // nproc))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.gan.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=Number(int, 0, 16), default=0,
                        help="GPUs per node outside SLURM (inside, SLURM's allocation decides)")
    parser.add_argument("--cpu-procs", type=Number(int, 1, 256), default=1,
                        help="processes per node when there is no GPU (gloo on CPU)")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    parser.add_argument("train_cmd", nargs=argparse.REMAINDER, help="-- edn train OUT_DIR ...")
    args = parser.parse_args(argv)
    train_cmd = args.train_cmd[1:] if args.train_cmd[:1] == ["--"] else args.train_cmd
    try:
        env = complete_slurm_env(os.environ)
        cmd = build_command(train_cmd, env, gpus=args.gpus, cpu_procs=args.cpu_procs)
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as exc:
        parser.error(str(exc))
    fan_out = cmd[:1] == ["srun"]
    # srun reads some SLURM_* variables as options: it gets our own environment untouched
    env = dict(os.environ) if fan_out else process_env(env, processes_per_node(env, args.gpus, args.cpu_procs))
    threads = "" if fan_out or env.get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS") \
        else f" (OMP_NUM_THREADS={env['OMP_NUM_THREADS']} per process)"
    print(f"launch: {shlex.join(cmd)}{threads}", file=sys.stderr, flush=True)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    # replace this process: SLURM's signals (scancel, time limit) reach torchrun/srun directly
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main())
