# Everybody Dance Now (Chan, Ginosar, Zhou, Efros, 2019) as a Snakemake workflow.
# Entry point: rules live in workflow/rules/, logic in the `pipeline` package (`edn` CLI).
from snakemake.utils import min_version

min_version("9.20")


# Beside this Snakefile, not in the working folder: read first wherever Snakemake starts (-s, --directory,
# a SLURM job); a missing one stops the run, naming it.
from pipeline.plan.checks import base_config


configfile: base_config(workflow.basedir)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pose.smk"
include: "workflow/rules/plate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/transfer.smk"


wildcard_constraints:
    video="|".join(VIDEOS.index) or "NONE",
    source="|".join(SOURCES.index) or "NONE",
    subject="|".join(SUBJECTS) or "NONE",
    ablation="|".join(ABLATIONS) or "NONE",


rule all:
    input:
        pose_targets(),
        transfer_targets(),
    default_target: True


# `snakemake pose`: the pose half only (frames to stick figures and their figures), no training.
rule pose:
    input:
        pose_targets(),
