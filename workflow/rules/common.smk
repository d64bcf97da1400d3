# Helpers shared by the rule files: config and sheet validation, paths, per-video options.
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# Stage commands come from the environment running Snakemake (a conda env, when one is
# deployed, puts its own bin first and wins).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
EDN = "edn"


def load_videos(path):
    """The video sheet as a DataFrame indexed by name; errors name the sheet and the row."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: video sheet not found (config key 'videos')")
    sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    sheet.columns = [c.strip() for c in sheet.columns]
    for column in ("subject", "crop", "rotation", "fps", "openpose_json"):
        if column not in sheet.columns:
            sheet[column] = ""
    sheet = sheet.apply(lambda col: col.str.strip())
    for i, row in sheet.iterrows():
        try:
            validate(row.to_dict(), schema="../schemas/videos.schema.yaml")
        except Exception as exc:
            raise ValueError(f"{path}: row {i + 2} ({row.get('name', '?')}): {exc}") from None
    duplicated = sheet["name"][sheet["name"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: video names must be unique, repeated: {duplicated}")
    if not (sheet["role"] == "target").any():
        raise ValueError(f"{path}: no video has role 'target'")
    return sheet.set_index("name", drop=False)


VIDEOS = load_videos(config["videos"])
TARGETS = VIDEOS[VIDEOS["role"] == "target"]
SOURCES = VIDEOS[VIDEOS["role"] == "source"]
SUBJECTS = sorted(TARGETS["subject"].unique())
DEMO_DIR = config.get("demo_dir", "resources/demo")
DEMO_VIDEOS = [f"{DEMO_DIR}/{s}/{c}.mp4" for s in ("Demo_SinglePerson", "Demo_MultiPerson")
               for c in ("cam01", "cam02", "cam03", "cam04")]


def transfer_pairs():
    """(source, subject) pairs: the config's list, else every source to every subject."""
    pairs = [(p["source"], p["target"]) for p in config.get("pairs", [])]
    for source, subject in pairs:
        if source not in SOURCES.index:
            raise ValueError(f"config pairs: {source!r} is not a source video in {config['videos']}")
        if subject not in SUBJECTS:
            raise ValueError(f"config pairs: {subject!r} is not a target subject in {config['videos']}")
    return pairs or [(s, t) for s in SOURCES.index for t in SUBJECTS]


def video_path(wildcards):
    return VIDEOS.loc[wildcards.video, "path"]


def extract_options(wildcards):
    """Per-video extraction flags from the sheet (crop, rotation, fps)."""
    row = VIDEOS.loc[wildcards.video]
    flags = []
    if row["crop"]:
        flags += ["--crop", row["crop"].replace(" ", "")]
    if row["rotation"]:
        flags += ["--rotation", row["rotation"]]
    if row["fps"]:
        flags += ["--fps", row["fps"]]
    return " ".join(shlex.quote(f) for f in flags)


def detect_options(wildcards):
    """OpenPose JSON from the sheet wins over the configured backend."""
    json_dir = VIDEOS.loc[wildcards.video, "openpose_json"]
    if json_dir:
        return f"--backend openpose-json --json-dir {shlex.quote(json_dir)}"
    return f"--backend {config['detect']['backend']} --model-complexity {config['detect']['model_complexity']}"


def subject_clips(wildcards):
    return [f"results/keypoints/{v}/smooth.parquet" for v in TARGETS.index[TARGETS["subject"] == wildcards.subject]]


def stage_code(stage):
    """A stage's module as an input, so editing it reruns that stage and what follows."""
    return str(Path(workflow.basedir) / "pipeline" / f"{stage}.py")


def pose_targets():
    """Everything the pose half of the workflow makes."""
    targets = [f"results/render/{v}" for v in TARGETS.index]
    targets += [f"results/render_transfer/{s}/{t}" for s, t in transfer_pairs()]
    return targets


def render_flags():
    flags = [] if config["render"]["face"] else ["--no-face"]
    return " ".join(flags + ([] if config["render"]["hands"] else ["--no-hands"]))
