# What several families of rules need: config and sheet validation, the video sheet (VIDEOS, TARGETS,
# SOURCES, SUBJECTS), ABLATIONS, transfer pairs, stage code inputs, the shell prefix, torch threads.
# A helper of one family is in helpers/<family>.smk, included at the top of that family's rule file.
import math
import shlex
import sys
from pathlib import Path

import pandas as pd
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")
# The sheet's values stay Python str: pandas' inferred string dtype (pyarrow) encodes them as UTF-8, and a
# file name need not be UTF-8 (its other bytes are held as surrogate escapes).
pd.set_option("future.infer_string", False)


def check_finite(value, where=""):
    """What the schema cannot say: every number of the config is finite (its minimum and maximum let
    NaN through, and .inf through where a key has no maximum)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config {where} = {value} must be a finite number")
    for key, item in value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ():
        check_finite(item, f"{where}.{key}" if where else str(key))


check_finite(config)

# Rules run `python -m pipeline.cli STAGE ...`. With a conda env deployed, its python runs our
# package from the workflow's folder; otherwise the interpreter running Snakemake (the venv's)
# comes first on PATH, so a non-activated `.venv/bin/snakemake` works too.
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{PYTHONPATH:+:$PYTHONPATH}}; ")
else:
    shell.prefix(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\"; ")


def read_sheet(path):
    """The tab-separated sheet as text columns, as written: only whole lines starting with `#` are comments
    (a `#` inside a path is part of it); empty fields past the header's columns (a tab at a row's end) add
    none; bytes that are not UTF-8 stay the file name's bytes (surrogate escapes, as Python's os functions
    take them). Errors name the sheet and the row."""
    import csv

    text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{path}: video sheet is empty (a header line of column names comes first)")
    rows = [next(csv.reader([line], delimiter="\t")) for _, line in lines]  # one row per line, quotes or not
    header = [c.strip() for c in rows[0]]
    while header and not header[-1]:
        header.pop()
    kept = []
    for (number, _), row in zip(lines[1:], rows[1:]):
        if any(v.strip() for v in row[len(header):]):
            raise ValueError(f"{path}: row {number} has {len(row)} fields, the header names {len(header)} columns")
        kept.append([v.strip() for v in row[:len(header)]] + [""] * (len(header) - len(row)))
    return pd.DataFrame(kept, columns=header, index=[number for number, _ in lines[1:]], dtype=object)  # by line


def load_videos(path):
    """The video sheet as a DataFrame indexed by name; errors name the sheet and the row."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: video sheet not found (config key 'videos')")
    sheet = read_sheet(path)
    for column in ("subject", "crop", "rotation", "fps", "start", "end", "openpose_json"):
        if column not in sheet.columns:
            sheet[column] = ""
    for line, row in sheet.iterrows():
        try:
            validate(row.to_dict(), schema="../schemas/videos.schema.yaml")
        except Exception as exc:
            raise ValueError(f"{path}: row {line} ({row.get('name', '?')}): {exc}") from None
        for column in ("path", "openpose_json"):
            try:
                row[column].encode("utf-8")
            except UnicodeEncodeError:
                # Snakemake keeps its inputs' names in UTF-8 text files (its lock); `edn` alone takes any name.
                shown = row[column].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise ValueError(f"{path}: row {line} ({row['name']}): {column} {shown!r} is not UTF-8, which the "
                                 "workflow needs for its file records; rename it, or give a link to it with a "
                                 "UTF-8 name") from None
    duplicated = sheet["name"][sheet["name"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: video names must be unique, repeated: {duplicated}")
    if not (sheet["role"] == "target").any():
        raise ValueError(f"{path}: no video has role 'target'")
    return sheet.set_index("name", drop=False)


def check_config_sizes(config):
    """What the schema cannot say: model sizes that the generator's downsamplings divide, the main
    model's and each ablation's (evaluate: ablations may change n_downsample, not the size)."""
    train = config["train"]
    ablations = config["evaluate"]["ablations"] or {}
    for where, options in [("", train)] + [(f" (evaluate.ablations.{name} sets n_downsample {o['n_downsample']})",
                                            {**train, **o}) for name, o in ablations.items() if "n_downsample" in o]:
        divisor = 2 ** (options["n_downsample"] + (1 if train["local_enhancer"] else 0))
        for key in ("width", "height"):
            if train[key] % divisor:
                raise ValueError(f"config train.{key} = {train[key]} must be a multiple of {divisor} (2 ** n_downsample"
                                 f"{' + 1 for the local enhancer' if train['local_enhancer'] else ''}){where}")


def check_crops(sheet, path):
    """Each sheet crop box inside its video's frame (a header read per cropped video, no decoding)."""
    from pipeline.footage.extract import check_crop
    from pipeline.footage.media import probe_video

    for name, row in sheet.iterrows():
        if not row["crop"] or not Path(row["path"]).is_file():
            continue  # a video made by the workflow (the demo) is checked when extracted
        crop = tuple(int(v) for v in row["crop"].split(","))
        info = probe_video(row["path"], count_frames=False)
        try:
            check_crop(info, int(row["rotation"]) if row["rotation"] else None, crop)
        except ValueError as exc:
            raise ValueError(f"{path}: video {name}: {exc}") from None


def check_spans(sheet, path):
    """Each sheet row's start < end, both within its video (a header read per trimmed video, no decoding)."""
    from pipeline.footage.media import probe_video
    from pipeline.footage.timespan import check_span, parse_time

    for name, row in sheet.iterrows():
        if not (row["start"] or row["end"]):
            continue
        start, end = (parse_time(row[k]) if row[k] else None for k in ("start", "end"))
        # a video made by the workflow (the demo) has no header yet: start < end only; extract checks the rest
        duration = probe_video(row["path"], count_frames=False).duration if Path(row["path"]).is_file() else 0.0
        try:
            check_span(duration, start, end, row["path"])
        except ValueError as exc:
            raise ValueError(f"{path}: video {name}: {exc}") from None


def check_frame_rates(sheet, path):
    """Each sheet fps within what `edn extract --fps` takes (the schema's pattern allows 0 and any size)."""
    from pipeline.footage.commands import FRAME_RATE

    for name, row in sheet.iterrows():
        if row["fps"]:
            try:
                FRAME_RATE.check(float(row["fps"]), "fps", row["fps"])
            except ValueError as exc:
                raise ValueError(f"{path}: video {name}: {exc}") from None


check_config_sizes(config)
ABLATIONS = config["evaluate"]["ablations"] or {}  # NAME -> train: overrides; null: none (config/paper.yaml)
VIDEOS = load_videos(config["videos"])
check_crops(VIDEOS, config["videos"])
check_spans(VIDEOS, config["videos"])
check_frame_rates(VIDEOS, config["videos"])
TARGETS = VIDEOS[VIDEOS["role"] == "target"]
SOURCES = VIDEOS[VIDEOS["role"] == "source"]
SUBJECTS = sorted(TARGETS["subject"].unique())


def transfer_pairs():
    """(source, subject) pairs: the config's list, else every source to every subject."""
    pairs = [(p["source"], p["target"]) for p in config.get("pairs", [])]
    for source, subject in pairs:
        if source not in SOURCES.index:
            raise ValueError(f"config pairs: {source!r} is not a source video in {config['videos']}")
        if subject not in SUBJECTS:
            raise ValueError(f"config pairs: {subject!r} is not a target subject in {config['videos']}")
    return pairs or [(s, t) for s in SOURCES.index for t in SUBJECTS]


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
