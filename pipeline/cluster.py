"""What the workflow reads back from SLURM between attempts of a job (no SLURM needed to import).

A retried training job asks for more memory only when SLURM killed an earlier attempt for memory:
a job stopped at its time limit resumes from its checkpoint with the same request (asking for
more would only make it wait longer in the queue). The evidence is the job's own SLURM log, the
file Snakemake's SLURM executor writes per job (``<slurm-logdir>/rule_<rule>/<wildcards>/<jobid>.log``),
which slurmstepd fills with its reason; it works with and without SLURM accounting.
"""

from __future__ import annotations

import re
from pathlib import Path

# slurmstepd's lines for a job or step killed by the cgroup memory limit: "Detected 1 oom_kill
# event in StepId=12.0. Some of the step tasks have been OOM Killed." (SLURM >= 21.08) and
# "Exceeded job memory limit" (older). A CUDA out-of-memory error is not one of them: more host
# memory would not help it. The time limit reads "*** JOB 12 ON n1 CANCELLED AT ... DUE TO TIME LIMIT ***".
OOM_LINE = re.compile(r"slurmstepd: error: .*(oom[-_]kill event|OOM Killed|Exceeded (job|step) memory limit)",
                      re.IGNORECASE)


def oom_killed_attempts(log_dir: str | Path | None) -> int:
    """How many SLURM logs in ``log_dir`` (one job's folder) record an out-of-memory kill; 0 when
    the folder is missing or None."""
    if log_dir is None or not Path(log_dir).is_dir():
        return 0
    found = 0
    for log in Path(log_dir).glob("*.log"):
        try:
            text = log.read_text(errors="replace")
        except OSError:  # deleted between glob and read (the executor prunes old logs)
            continue
        found += bool(OOM_LINE.search(text))
    return found


def memory_mb(per_process_mb: int, processes: int, log_dir: str | Path | None) -> int:
    """Memory per node for a job of ``processes`` processes per node: ``per_process_mb`` each, times
    one more for every earlier attempt that SLURM killed for memory."""
    if per_process_mb < 1 or processes < 1:
        raise ValueError(f"memory per process ({per_process_mb} MB) and processes per node ({processes}) "
                         "must be >= 1")
    return per_process_mb * processes * (1 + oom_killed_attempts(log_dir))
