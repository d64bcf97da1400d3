# Helpers of the data rules (workflow/rules/data.smk): the demo videos, each video's extraction options.
# What they compute is pipeline/plan/ (targets, flags), tested without Snakemake; these bind it to the run.
from pipeline.plan import flags as plan_flags
from pipeline.plan import targets as plan_targets

DEMO_DIR = config.get("demo_dir", "resources/demo")
DEMO_VIDEOS = plan_targets.demo_videos(DEMO_DIR)


def video_path(wildcards):
    return VIDEOS.loc[wildcards.video, "path"]


def extract_options(wildcards):
    return plan_flags.extract_options(config, VIDEOS, wildcards.video)
