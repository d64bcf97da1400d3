# Helpers of the pose rules (workflow/rules/pose.smk): detection chunks and options, qc and render flags,
# and what the pose half makes (pose_targets, the Snakefile's `all` and `pose`).
# What they compute is pipeline/plan/ (targets, flags), tested without Snakemake; these bind it to the run.
from pipeline.plan import flags as plan_flags
from pipeline.plan import targets as plan_targets


def detect_options(wildcards):
    return plan_flags.detect_options(config, VIDEOS, wildcards.video)


def n_chunks(video):
    """Detection chunks of a video, from its extracted frames: extract is a checkpoint."""
    frames_dir = checkpoints.extract.get(video=video).output[0]
    return plan_flags.n_chunks(frames_dir, config["detect"]["chunk_frames"])


def detect_chunks(wildcards):
    return plan_targets.detect_chunks(wildcards.video, n_chunks(wildcards.video))


def chunk_range(wildcards):
    chunk_frames = config["detect"]["chunk_frames"]
    return plan_flags.chunk_range(chunk_frames, int(wildcards.chunk), n_chunks(wildcards.video))


def pose_targets():
    return plan_targets.pose_targets(list(VIDEOS.index), list(TARGETS.index), list(SOURCES.index), SUBJECTS,
                                     transfer_pairs())


def subject_keypoints(wildcards):
    return plan_targets.subject_keypoints(TARGETS, wildcards.subject)


def qc_flags():
    return plan_flags.qc_flags(config)


def render_flags():
    return plan_flags.render_flags(config)
