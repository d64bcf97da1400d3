# Helpers of the training rules (workflow/rules/train.smk; transfer.smk's train_frame_by_frame and
# train_ablation use them too): inputs and flags, the global phase, and what a job asks a cluster for.
# What they compute is pipeline/plan/ (targets, flags, train_flags, resources), tested without Snakemake;
# these bind it to the run and to what Snakemake knows of it (executor, --cores, working folder).
import os

from pipeline.plan import flags as plan_flags
from pipeline.plan import resources as plan_resources
from pipeline.plan import targets as plan_targets
from pipeline.plan import train_flags as plan_train_flags


def train_inputs(wildcards):
    return plan_targets.train_inputs(TARGETS, wildcards.subject)


def train_options(wildcards):
    """config['train'], with the job's ablation's overrides (evaluate: ablations) for train_ablation."""
    return plan_flags.train_options(config, ABLATIONS, getattr(wildcards, "ablation", None))


def plate_inputs(wildcards):
    return plan_targets.plate_inputs(train_options(wildcards), TARGETS, wildcards.subject)


def train_plate_flags(wildcards):
    return plan_flags.train_plate_flags(plate_inputs(wildcards))


def train_clip_flags(wildcards):
    return plan_flags.train_clip_flags(train_inputs(wildcards))


def train_qc_flags(wildcards):
    return plan_flags.train_qc_flags(train_inputs(wildcards)["qc"])


def train_flags(stage, overrides=None):
    return plan_train_flags.train_flags(config["train"], stage, overrides)


def compile_option():
    return plan_flags.compile_option(config)


def global_phase():
    return plan_train_flags.global_phase(config["train"])


plan_train_flags.check_ablations(config["train"], ABLATIONS)


def global_generator_input(wildcards):
    return plan_targets.global_generator_input(wildcards.subject, global_phase())


def init_global_flags(wildcards, input):
    return plan_flags.init_global_flags(input.init_global, global_phase())


def train_threads(wildcards):
    # Asked when jobs are planned: the executor is not known yet while the Snakefile is read.
    return plan_resources.train_threads(config["train"], workflow.non_local_exec, os.environ,
                                        workflow.resource_settings.cores, TORCH_THREADS)


def train_resources(rule):
    return plan_resources.train_resources(config["train"], train_mem_mb(rule))


def slurm_job_logs(rule, wildcards):
    """The SLURM executor's log folder of this job (its logdir setting); None when not submitting to SLURM."""
    logdir = getattr(getattr(workflow, "executor_settings", None), "logdir", None)
    return plan_resources.slurm_job_logs(rule, list(wildcards), logdir, workflow.workdir_init)


def train_mem_mb(rule):
    def mem_mb(wildcards):
        return plan_resources.train_mem_mb(config["train"], slurm_job_logs(rule, wildcards))

    return mem_mb
