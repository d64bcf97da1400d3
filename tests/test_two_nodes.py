"""Two nodes for real: the launcher's multi-node path (pipeline.gan.launch inside a two-node SLURM job) run
on this machine. A stand-in ``srun`` starts one copy of the launcher per node, as SLURM does, each with its
SLURM_NODEID; each copy starts its node's torchrun, and the two meet at a rendezvous on the loopback address
(a stand-in ``scontrol`` names 127.0.0.1 as every node). Two CPU processes with gloo train a few steps on a
tiny synthetic clip, and their losses and weights equal those of one node running both processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pipeline.gan import launch
from test_train import TINY_FLAGS, clip_flags, losses, run_json

# srun: one task per node of the step (--ntasks), each with the job's environment, --export's additions and
# its node's SLURM_NODEID/SLURM_PROCID; --kill-on-bad-exit: a task that fails stops the others.
SRUN = '''
    import os, subprocess, sys, time
    args = sys.argv[1:]
    options = {}
    while args and args[0].startswith("--"):
        key, _, value = args.pop(0).partition("=")
        options[key] = value
    env = dict(os.environ)
    for item in options.get("--export", "ALL").split(",")[1:]:
        key, _, value = item.partition("=")
        env[key] = value
    tasks = [subprocess.Popen(args, env={**env, "SLURM_NODEID": str(i), "SLURM_PROCID": str(i), "SLURM_LOCALID": "0"})
             for i in range(int(options["--ntasks"]))]
    while any(t.poll() is None for t in tasks):
        if any(t.poll() for t in tasks):
            for t in tasks:
                t.poll() is None and t.kill()
        time.sleep(0.1)
    sys.exit(max(t.returncode for t in tasks))
'''
# scontrol show hostnames NODELIST: every node is this machine, reached at the loopback address.
SCONTROL = '''
    import re, sys
    assert sys.argv[1:3] == ["show", "hostnames"], sys.argv
    first, last = map(int, re.fullmatch(r"\\w+\\[(\\d+)-(\\d+)\\]", sys.argv[3]).groups())
    print("\\n".join("127.0.0.1" for _ in range(first, last + 1)))
'''


def _stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, body in (("srun", SRUN), ("scontrol", SCONTROL)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
        path.chmod(0o755)


def _free_rendezvous_job_id() -> str:
    """A job id whose rendezvous port (launch.rendezvous_port) is free on the loopback address now."""
    for offset in range(os.getpid() % launch.PORT_SPAN, os.getpid() % launch.PORT_SPAN + launch.PORT_SPAN):
        port = launch.BASE_PORT + offset % launch.PORT_SPAN
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return str(offset % launch.PORT_SPAN)
    raise RuntimeError("no free port for the rendezvous")


def _train(run: Path, clip, env: dict[str, str], cpu_procs: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline.gan.launch", "--cpu-procs", str(cpu_procs), "--", sys.executable, "-m",
               "pipeline.cli", "train", *clip_flags(clip), *TINY_FLAGS, "--no-vgg-loss", "--max-steps", "3",
               "--checkpoint-every", "100", "--", str(run)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_two_nodes_meet_at_the_rendezvous_and_train_as_one_node_does(tmp_path, synthetic_clip):
    plain = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    plain["OMP_NUM_THREADS"] = "1"  # each process one thread in both layouts: the same kernels, the same sums
    _stand_ins(tmp_path / "bin")
    job = _free_rendezvous_job_id()
    two_nodes = {**plain, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{plain['PATH']}", "SLURM_JOB_ID": job,
                 "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "loopback[1-2]"}
    done = _train(tmp_path / "two_nodes", synthetic_clip, two_nodes, cpu_procs=1)
    launched = [line for line in done.stderr.splitlines() if line.startswith("launch: ")]
    assert launched[0].startswith("launch: srun --nodes=2 --ntasks=2 --ntasks-per-node=1")  # the fan-out
    for node in (0, 1):  # then each node's torchrun, its rank among the nodes and the loopback rendezvous
        assert any(f"--nnodes=2 --nproc-per-node=1 --node-rank={node} --master-addr=127.0.0.1 "
                   f"--master-port={launch.rendezvous_port({'SLURM_JOB_ID': job})}" in line for line in launched)
    _train(tmp_path / "one_node", synthetic_clip, plain, cpu_procs=2)

    two, one = run_json(tmp_path / "two_nodes"), run_json(tmp_path / "one_node")
    assert two["world_size"] == one["world_size"] == 2 and two["final_step"] == one["final_step"] == 3
    assert losses(tmp_path / "two_nodes") == losses(tmp_path / "one_node")  # every digit of every loss
    a = torch.load(tmp_path / "two_nodes" / "generator.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "one_node" / "generator.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
