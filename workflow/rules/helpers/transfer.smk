# Helpers of the rules after training (workflow/rules/transfer.smk): ablation flags, models, evaluation
# and loss-figure options, and what they make (transfer_targets, the Snakefile's `all`).
# What they compute is pipeline/plan/ (targets, flags), tested without Snakemake; these bind it to the run.
from pipeline.plan import flags as plan_flags
from pipeline.plan import targets as plan_targets


def ablation_train_flags(wildcards):
    return plan_flags.ablation_train_flags(config, ABLATIONS, wildcards.ablation)


def transfer_models(wildcards):
    return plan_targets.transfer_models(config, wildcards.subject)


def evaluate_models(wildcards):
    return plan_targets.evaluate_models(config, ABLATIONS, wildcards.subject)


def model_flags(wildcards, input):
    return plan_flags.model_flags(dict(input.items()))


def ablation_flags(wildcards):
    return plan_flags.ablation_flags(ABLATIONS, wildcards.subject)


def subject_transfers(wildcards):
    return plan_targets.subject_transfers(transfer_pairs(), wildcards.subject)


def transfer_flags(wildcards, input):
    return plan_flags.transfer_flags(input.transfers)


def evaluate_flags():
    return plan_flags.evaluate_flags(config)


def loss_runs(wildcards):
    return plan_flags.loss_run_flags(plan_targets.loss_runs(config, ABLATIONS, wildcards.subject))


def loss_models(wildcards):
    return plan_targets.loss_models(config, ABLATIONS, wildcards.subject)


def subject_frames(wildcards):
    return plan_targets.subject_frames(TARGETS, wildcards.subject)


def real_frame_flags(wildcards, input):
    return plan_flags.real_frame_flags(input.real)


def transfer_targets():
    return plan_targets.transfer_targets(transfer_pairs(), SUBJECTS)
