"""Stand-ins for SLURM's commands (sbatch, srun, squeue, scontrol, sacctmgr) that record every call.

    install(bin_dir, state_dir) -> the PATH entry to put first

What they do, enough for Snakemake's SLURM executor to run a workflow through them on one machine:
- ``sbatch`` records its arguments, gives the job an id and runs its ``--wrap`` script in the
  background (working directory ``-D``, output ``--output``) with the SLURM_* variables a job has:
  the job id, nodes and node list from ``--nodes`` (fake1, fake2, ...), SLURM_CPUS_PER_TASK. No GPU
  variables: the machine has none, and the jobs train on the CPU. A job may be "killed" as SLURM
  would, at its time limit or for memory (see :func:`plan_kill`): its processes get SIGTERM, then
  SIGKILL, and its log gets slurmstepd's line for it.
- ``squeue --name`` answers ``id|STATE`` of the jobs of that name (the executor's status query).
- ``scontrol show config`` (MinJobAge, so the executor keeps squeue), ``show job -o``,
  ``show hostnames``.
- ``srun`` records its arguments and the job's environment, then runs the command once, as the
  job's first task: several nodes are not simulated, the command runs as one node's copy.
- ``sacctmgr`` lists one account, ``my_account`` (profiles/slurm's placeholder).
Every call is a JSON line in ``state_dir/calls.jsonl``: ``{"cmd", "argv", "env", "job"}``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "squeue", "scontrol", "sacctmgr")
ACCOUNT = "my_account"
# Recorded from the job's environment by srun: what a job step sees.
ENV_KEYS = ("SLURM_JOB_ID", "SLURM_CPUS_PER_TASK", "SLURM_JOB_NUM_NODES", "OMP_NUM_THREADS", "SLURM_NODEID")
# sbatch/srun flags that take no value
FLAGS = {"--parsable", "--requeue", "--no-requeue", "--exclusive"}
KILL_LINES = {
    "TIMEOUT": "slurmstepd: error: *** JOB {job} ON fake1 CANCELLED AT {when} DUE TO TIME LIMIT ***",
    "OUT_OF_MEMORY": "slurmstepd: error: Detected 1 oom_kill event in StepId={job}.batch. Some of the step "
                     "tasks have been OOM Killed.",
}


def install(bin_dir: Path, state_dir: Path) -> str:
    """Write the stand-in commands into ``bin_dir``; returns the directory to put first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    for name in COMMANDS:
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\nimport os, sys\nsys.path.insert(0, {str(here)!r})\n"
                          f"os.environ.setdefault('FAKE_SLURM_DIR', {str(state_dir)!r})\n"
                          f"from fake_slurm import main\nsys.exit(main({name!r}, sys.argv[1:]))\n")
        script.chmod(0o755)
    return str(bin_dir)


def plan_kill(state_dir: Path, rule: str, state: str, after_file: str | Path | None = None) -> None:
    """The next job of ``rule`` submitted is killed with ``state`` (TIMEOUT or OUT_OF_MEMORY) once
    ``after_file`` exists (at once when None), as SLURM kills a job at its limit."""
    if state not in KILL_LINES:
        raise ValueError(f"unknown kill state {state!r}: one of {sorted(KILL_LINES)}")
    with _locked(state_dir):
        plans = _read_json(state_dir / "kills.json", [])
        plans.append({"rule": rule, "state": state, "after_file": str(after_file) if after_file else None})
        (state_dir / "kills.json").write_text(json.dumps(plans))


def calls(state_dir: Path, cmd: str | None = None) -> list[dict]:
    """Every recorded call (of ``cmd`` only, when given), in order."""
    path = state_dir / "calls.jsonl"
    if not path.exists():
        return []
    out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [c for c in out if cmd is None or c["cmd"] == cmd]


def options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """sbatch/srun options as {name: value} (``--cpus-per-task=4``, ``--mem 8000``, ``-n1``, ``-A x``)
    and the command after them (srun's program and its arguments)."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
        elif arg in FLAGS:
            key, value = arg, ""
        elif arg.startswith("--") or len(arg) == 2:
            key, value = arg, argv[i + 1]
            i += 1
        else:  # -n1
            key, value = arg[:2], arg[2:]
        opts[key] = value
        i += 1
    return opts, argv[i:]


def main(name: str, argv: list[str]) -> int:
    state_dir = Path(os.environ["FAKE_SLURM_DIR"])
    if name == "sbatch":
        return sbatch(state_dir, argv)
    if name == "srun":
        return srun(state_dir, argv)
    _record(state_dir, name, argv)
    if name == "squeue":
        wanted = options(argv)[0].get("--name")
        for job in _jobs(state_dir):
            if wanted is None or job["name"] == wanted:
                print(f"{job['id']}|{job['state']}")
        return 0
    if name == "scontrol":
        return scontrol(state_dir, argv)
    if name == "sacctmgr":
        print(ACCOUNT)
        return 0
    raise SystemExit(f"fake_slurm: unknown command {name}")


def sbatch(state_dir: Path, argv: list[str]) -> int:
    opts, _ = options(argv)
    wrap = opts.get("--wrap")
    if wrap is None:
        print("sbatch: error: only --wrap scripts are simulated", file=sys.stderr)
        return 1
    comment = opts.get("--comment", "")
    rule = re.sub(r"_wildcards_.*$", "", comment).removeprefix("rule_")
    with _locked(state_dir):
        jobs = _jobs(state_dir)
        job_id = str(1000 + len(jobs))
        plans = _read_json(state_dir / "kills.json", [])
        kill = next((p for p in plans if p["rule"] == rule), None)
        if kill is not None:
            plans.remove(kill)
            (state_dir / "kills.json").write_text(json.dumps(plans))
        nodes = int(opts.get("--nodes", "1"))
        job = {"id": job_id, "name": opts.get("--job-name", ""), "rule": rule, "state": "PENDING",
               "nodes": nodes, "cpus_per_task": opts.get("--cpus-per-task"), "kill": kill,
               "output": opts.get("--output", f"slurm-{job_id}.out").replace("%j", job_id),
               "workdir": opts.get("-D", os.getcwd()), "wrap": wrap}
        _write_job(state_dir, job)
    _record(state_dir, "sbatch", argv, job=job_id)
    subprocess.Popen([sys.executable, __file__, "_run", str(state_dir), job_id], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(job_id)
    return 0


def run_job(state_dir: Path, job_id: str) -> None:
    """The background side of sbatch: run the script, or kill it as SLURM would."""
    job = _job(state_dir, job_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_VISIBLE"))}
    nodelist = "fake1" if job["nodes"] == 1 else f"fake[1-{job['nodes']}]"
    env.update(SLURM_JOB_ID=job_id, SLURM_JOBID=job_id, SLURM_JOB_NAME=job["name"], SLURM_JOB_NODELIST=nodelist,
               SLURM_JOB_NUM_NODES=str(job["nodes"]), SLURM_NNODES=str(job["nodes"]), SLURM_NODEID="0",
               SLURM_SUBMIT_DIR=job["workdir"], FAKE_SLURM_DIR=str(state_dir))
    if job["cpus_per_task"]:
        env["SLURM_CPUS_PER_TASK"] = job["cpus_per_task"]
    Path(job["output"]).parent.mkdir(parents=True, exist_ok=True)
    _set_state(state_dir, job_id, "RUNNING")
    with open(job["output"], "ab") as log:
        proc = subprocess.Popen(["/bin/sh", "-c", job["wrap"]], cwd=job["workdir"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        kill = job["kill"]
        while proc.poll() is None:
            if kill and (kill["after_file"] is None or Path(kill["after_file"]).exists()):
                for sig in (signal.SIGTERM, signal.SIGKILL):  # SLURM: SIGTERM, KillWait, SIGKILL
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    time.sleep(1.0)
                proc.wait()
                log.write((KILL_LINES[kill["state"]].format(job=job_id, when=time.strftime("%Y-%m-%dT%H:%M:%S"))
                           + "\n").encode())
                _set_state(state_dir, job_id, kill["state"])
                return
            time.sleep(0.2)
    _set_state(state_dir, job_id, "COMPLETED" if proc.returncode == 0 else "FAILED")


def srun(state_dir: Path, argv: list[str]) -> int:
    opts, command = options(argv)
    _record(state_dir, "srun", argv, job=os.environ.get("SLURM_JOB_ID"))
    if not command:
        print("srun: fatal: no command", file=sys.stderr)
        return 1
    env = dict(os.environ)
    for item in opts.get("--export", "ALL").split(",")[1:]:
        key, _, value = item.partition("=")
        env[key] = value
    if "--cpus-per-task" in opts:
        env["SLURM_CPUS_PER_TASK"] = opts["--cpus-per-task"]
    # the first task of the step only: a multi-node step runs as its first node's copy, alone
    env.update(SLURM_NODEID="0", SLURM_PROCID="0", SLURM_JOB_NUM_NODES="1", SLURM_NNODES="1")
    if command[:2] == ["sh", "-s"]:
        return subprocess.run(command, env=env, stdin=sys.stdin).returncode
    return subprocess.run(command, env=env).returncode


def scontrol(state_dir: Path, argv: list[str]) -> int:
    words = [a for a in argv if a != "-o"]
    if words[:2] == ["show", "config"]:
        print("MinJobAge               = 300 sec")
    elif words[:2] == ["show", "job"]:
        job = _job(state_dir, words[2])
        nodelist = "fake1" if job["nodes"] == 1 else f"fake[1-{job['nodes']}]"
        print(f"JobId={job['id']} JobName={job['name']} JobState={job['state']} NumNodes={job['nodes']} "
              f"NumTasks={job['nodes']} CPUs/Task={job['cpus_per_task'] or 1} NodeList={nodelist}")
    elif words[:2] == ["show", "hostnames"]:
        m = re.fullmatch(r"(\w+)\[(\d+)-(\d+)\]", words[2])
        hosts = [f"{m.group(1)}{i}" for i in range(int(m.group(2)), int(m.group(3)) + 1)] if m else words[2:3]
        print("\n".join(hosts))
    else:
        print(f"scontrol: stand-in does not know {shlex.join(argv)}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------ state files

class _locked:
    def __init__(self, state_dir: Path):
        self.path = state_dir / ".lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def _record(state_dir: Path, cmd: str, argv: list[str], job: str | None = None) -> None:
    entry = {"cmd": cmd, "argv": argv, "job": job, "env": {k: os.environ.get(k) for k in ENV_KEYS}}
    with _locked(state_dir), open(state_dir / "calls.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def _jobs(state_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state_dir / "jobs").glob("*.json"))] \
        if (state_dir / "jobs").is_dir() else []


def _job(state_dir: Path, job_id: str) -> dict:
    return json.loads((state_dir / "jobs" / f"{job_id}.json").read_text())


def _write_job(state_dir: Path, job: dict) -> None:
    (state_dir / "jobs").mkdir(exist_ok=True)
    tmp = state_dir / "jobs" / f".{job['id']}.tmp"
    tmp.write_text(json.dumps(job))
    tmp.replace(state_dir / "jobs" / f"{job['id']}.json")  # readers never see half a file


def _set_state(state_dir: Path, job_id: str, state: str) -> None:
    with _locked(state_dir):
        job = _job(state_dir, job_id)
        job["state"] = state
        _write_job(state_dir, job)


if __name__ == "__main__" and sys.argv[1:2] == ["_run"]:
    run_job(Path(sys.argv[2]), sys.argv[3])
