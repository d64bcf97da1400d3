"""What a training job asks a cluster for, from the config's ``train:`` gpus (per node), nodes, workers and
mem_mb: its threads (the CPUs of a node), its resources (GPUs, nodes, tasks) and its memory, which grows
after each attempt SLURM killed for memory. Facts of the run (submitting or not, --cores, the SLURM
executor's log folder) are arguments: the ``.smk`` files read them from Snakemake."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.cluster import memory_mb


def train_processes(train: Mapping[str, Any]) -> int:
    """Training processes per node: one per GPU, else train: cpu_processes."""
    return train["gpus"] or train["cpu_processes"]


def on_cluster(non_local_exec: bool, environ: Mapping[str, str]) -> bool:
    """Submitting to a cluster (``non_local_exec``), or running inside a SLURM job (``environ`` has its
    SLURM_JOB_ID), whose own Snakemake must compute the same threads: they become OMP_NUM_THREADS."""
    return non_local_exec or bool(environ.get("SLURM_JOB_ID"))


def train_threads(train: Mapping[str, Any], non_local_exec: bool, environ: Mapping[str, str], cores: int | None,
                  local_threads: int) -> int:
    """A training job's threads: on a cluster its CPUs per node, each process plus its data workers
    (the launcher splits them among the processes); locally ``local_threads`` (every core).

    Snakemake would silently lower them to ``cores`` (--cores, the profile's cores; None when unset),
    leaving the processes and workers fewer CPUs than they need: when submitting, that is an error."""
    if not on_cluster(non_local_exec, environ):
        return local_threads
    procs, workers = train_processes(train), train["workers"]
    threads = procs * (workers + 1)
    if non_local_exec and cores is not None and threads > cores:
        raise ValueError(f"config train: {procs} process(es) per node x (workers {workers} "
                         f"+ 1) = {threads} CPUs per training job, more than the profile's cores: {cores}; "
                         f"raise cores (profiles/slurm/config.yaml) to at least {threads}, or lower train: workers")
    return threads


def train_resources(train: Mapping[str, Any], mem_mb: int | Callable[..., int]) -> dict[str, Any]:
    """Resources of a training rule, with ``mem_mb`` (a number or Snakemake's callable of a job).

    One node: ``gpu`` (the SLURM executor's --gpus, a job total, here also the node's). Several nodes: the
    executor has no GPUs-per-node resource and would run the job as one task spanning the nodes (srun -n1),
    so the job declares ``mpi`` (Snakemake then runs it without its own srun), one task per node (torchrun's
    launcher) and --gpus-per-node."""
    nodes, gpus = train["nodes"], train["gpus"]
    resources: dict[str, Any] = {"gpu": gpus, "nodes": nodes, "mem_mb": mem_mb}
    if nodes > 1:
        extra = "--ntasks-per-node=1" + (f" --gpus-per-node={gpus}" if gpus else "")
        resources.update(gpu=0, mpi="srun", tasks=nodes, slurm_extra=extra)
    return resources


def slurm_job_logs(rule: str, wildcards: Sequence[str], logdir: str | None, workdir: str | Path) -> Path | None:
    """The folder where Snakemake's SLURM executor writes the logs of a job of ``rule`` with these wildcard
    values: ``logdir`` (its setting; None when not submitting to SLURM) under ``workdir``, the working folder
    Snakemake started in, as the executor resolves it."""
    if logdir is None:
        return None
    return Path(workdir) / logdir / f"rule_{rule}" / "_".join(wildcards).replace(os.sep, "_")


def train_mem_mb(train: Mapping[str, Any], log_dir: str | Path | None) -> int:
    """Memory per node: train: mem_mb per process, one more share for every attempt SLURM killed for
    memory (its logs in ``log_dir`` say so). A time-limit kill resumes from the checkpoint with the same request."""
    return memory_mb(train["mem_mb"], train_processes(train), log_dir)
