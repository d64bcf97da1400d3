# Helpers of the data rules (workflow/rules/data.smk): the demo videos, each video's extraction options.
DEMO_DIR = config.get("demo_dir", "resources/demo")
DEMO_VIDEOS = [f"{DEMO_DIR}/{s}/{c}.mp4" for s in ("Demo_SinglePerson", "Demo_MultiPerson")
               for c in ("cam01", "cam02", "cam03", "cam04")]


def video_path(wildcards):
    return VIDEOS.loc[wildcards.video, "path"]


def extract_options(wildcards):
    """Per-video extraction flags from the sheet (crop, rotation, fps, start, end) and the config (damaged)."""
    row = VIDEOS.loc[wildcards.video]
    flags = []
    if row["crop"]:
        flags += ["--crop", row["crop"].replace(" ", "")]
    if row["rotation"]:
        flags += ["--rotation", row["rotation"]]
    if row["fps"]:
        flags += ["--fps", row["fps"]]
    for key in ("start", "end"):
        if row[key]:
            flags += [f"--{key}", row[key]]
    if config["extract"]["damaged"] != "fail":  # the default adds no flag: existing frames need no rerun
        flags += ["--damaged", config["extract"]["damaged"]]
    return " ".join(shlex.quote(f) for f in flags)
