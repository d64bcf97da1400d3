# What several families of rules need: config and sheet validation, the video sheet (VIDEOS, TARGETS,
# SOURCES, SUBJECTS), ABLATIONS, transfer pairs, stage code inputs, the shell prefix, torch threads.
# A helper of one family is in helpers/<family>.smk, included at the top of that family's rule file.
import shlex
import sys
from pathlib import Path

import pandas as pd
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

from pipeline.plan.checks import check_sheet, lost_inputs, record_lost
from pipeline.plan.sheet import PYTHON_STRINGS, check_config_sizes, check_crops, check_finite, check_frame_rates, \
    check_spans, load_videos
from pipeline.plan.sheet import transfer_pairs as pairs_of

validate(config, schema="../schemas/config.schema.yaml")
# The sheet and the start-of-run checks are plain Python (pipeline/plan/sheet.py, tested without Snakemake).
# The sheet's values stay Python str: pandas' inferred string dtype (pyarrow) encodes them as UTF-8, and a
# file name need not be UTF-8 (its other bytes are held as surrogate escapes).
pd.set_option(*PYTHON_STRINGS)
check_finite(config)

# Rules run `python -m pipeline.cli STAGE ...`. With a conda env deployed, its python runs our
# package from the workflow's folder; otherwise the interpreter running Snakemake (the venv's)
# comes first on PATH, so a non-activated `.venv/bin/snakemake` works too.
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{PYTHONPATH:+:$PYTHONPATH}}; ")
else:
    shell.prefix(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\"; ")


check_config_sizes(config)
ABLATIONS = config["evaluate"]["ablations"] or {}  # NAME -> train: overrides; null: none (config/paper.yaml)
VIDEOS = load_videos(config["videos"], Path(workflow.basedir) / "workflow" / "schemas" / "videos.schema.yaml")
check_crops(VIDEOS, config["videos"])
check_spans(VIDEOS, config["videos"])
check_frame_rates(VIDEOS, config["videos"])
check_sheet(VIDEOS, config["videos"], config)
# An output that lost a part Snakemake cannot see (a frame in a folder, a model's loss log) gets a lost record,
# an input of the job that makes it (lost_inputs): newer than the output, it has the output made again.
record_lost(VIDEOS.index, planning=workflow.is_main_process)
TARGETS = VIDEOS[VIDEOS["role"] == "target"]
SOURCES = VIDEOS[VIDEOS["role"] == "source"]
SUBJECTS = sorted(TARGETS["subject"].unique())


def transfer_pairs():
    """(source, subject) pairs: the config's list, else every source to every subject."""
    return pairs_of(config, list(SOURCES.index), SUBJECTS)


def stage_code(*command, runner=None):
    """The source files `edn COMMAND` imports (started by `python -m RUNNER` when given) as a rule's input,
    so editing any of them reruns that stage and what follows, and editing another module reruns nothing
    (pipeline/plan/code.py reads the imports)."""
    from pipeline.plan.code import stage_code as command_files

    return command_files(*command, runner=runner, root=Path(workflow.basedir))


# Snakemake sets OMP_NUM_THREADS, torch's intra-op threads, to a job's `threads` (1 unless the rule
# says): rules that run a network (training, transfer, evaluation) take every core the run has. They
# hold the gpu resource one at a time anyway, and a step on two threads is faster than on one
# (docs/benchmarks.md, training speed). On SLURM the profile's set-threads gives transfer
# and evaluate theirs, and the SLURM executor asks `--cpus-per-task` = threads.
TORCH_THREADS = max(1, workflow.cores or 1)
