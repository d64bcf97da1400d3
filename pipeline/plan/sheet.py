"""The video sheet and the checks the workflow makes before any job: the tab-separated sheet read
with pandas and validated row by row by its JSON schema, every config number finite, model sizes the
downsamplings divide, and each row's crop box, trim and frame rate against its video's header.
Errors name the sheet (or the config key) and the row."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

# Optional columns: an empty field where the sheet has no such column.
OPTIONAL_COLUMNS = ("subject", "crop", "rotation", "fps", "start", "end", "openpose_json")
# The sheet's values stay Python str: pandas' inferred string dtype (pyarrow) encodes them as UTF-8, and a
# file name need not be UTF-8 (its other bytes are held as surrogate escapes).
PYTHON_STRINGS = ("future.infer_string", False)


def check_finite(value: Any, where: str = "") -> None:
    """What the schema cannot say: every number of the config is finite (its minimum and maximum let NaN
    through, and .inf through where a key has no maximum)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config {where} = {value} must be a finite number")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        check_finite(item, f"{where}.{key}" if where else str(key))


def read_sheet(path: str | Path) -> pd.DataFrame:
    """The tab-separated sheet as text columns, as written, indexed by line number: only whole lines
    starting with `#` are comments (a `#` inside a path is part of it); empty fields past the header's
    columns (a tab at a row's end) add none; bytes that are not UTF-8 stay the file name's bytes
    (surrogate escapes, as Python's os functions take them). Errors name the sheet and the row."""
    with pd.option_context(*PYTHON_STRINGS):
        return _read_sheet(path)


def _read_sheet(path: str | Path) -> pd.DataFrame:
    text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{path}: video sheet is empty (a header line of column names comes first)")
    # Every field of every line: as many columns as the longest line has tabs (a quoted tab counts too,
    # which only adds an empty column). The python engine keeps surrogate escapes as they are.
    width = max(line.count("\t") for _, line in lines) + 1
    table = pd.read_csv(io.StringIO("\n".join(line for _, line in lines)), sep="\t", header=None,
                        names=range(width), dtype=object, keep_default_na=False, engine="python",
                        skip_blank_lines=False)
    table = table.fillna("").apply(lambda column: column.str.strip())
    header = list(table.iloc[0])
    while header and not header[-1]:
        header.pop()
    rows = table.iloc[1:]
    for (number, _), (_, row) in zip(lines[1:], rows.iterrows()):
        filled = [i for i, value in enumerate(row) if value]
        if filled and filled[-1] >= len(header):
            raise ValueError(f"{path}: row {number} has {filled[-1] + 1} fields, the header names {len(header)} "
                             "columns")
    sheet = rows.iloc[:, :len(header)].copy()
    sheet.columns = header
    sheet.index = [number for number, _ in lines[1:]]
    return sheet.astype(object)


def load_videos(path: str | Path, schema: str | Path) -> pd.DataFrame:
    """The video sheet as a DataFrame indexed by name, each row valid under the JSON ``schema``
    (workflow/schemas/videos.schema.yaml); errors name the sheet and the row."""
    from snakemake.utils import validate

    if not Path(path).is_file():
        raise ValueError(f"{path}: video sheet not found (config key 'videos')")
    with pd.option_context(*PYTHON_STRINGS):
        sheet = read_sheet(path)
        for column in OPTIONAL_COLUMNS:
            if column not in sheet.columns:
                sheet[column] = ""
        for line, row in sheet.iterrows():
            try:
                validate(row.to_dict(), schema=str(schema))
            except Exception as exc:
                raise ValueError(f"{path}: row {line} ({row.get('name', '?')}): {exc}") from None
            for column in ("path", "openpose_json"):
                try:
                    row[column].encode("utf-8")
                except UnicodeEncodeError:
                    # Snakemake keeps its inputs' names in UTF-8 text files (its lock); `edn` alone takes any name.
                    shown = row[column].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    raise ValueError(f"{path}: row {line} ({row['name']}): {column} {shown!r} is not UTF-8, which "
                                     "the workflow needs for its file records; rename it, or give a link to it with "
                                     "a UTF-8 name") from None
        duplicated = sheet["name"][sheet["name"].duplicated()].tolist()
        if duplicated:
            raise ValueError(f"{path}: video names must be unique, repeated: {duplicated}")
        if not (sheet["role"] == "target").any():
            raise ValueError(f"{path}: no video has role 'target'")
        return sheet.set_index("name", drop=False)


def check_config_sizes(config: dict[str, Any]) -> None:
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


def check_crops(sheet: pd.DataFrame, path: str | Path) -> None:
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


def check_spans(sheet: pd.DataFrame, path: str | Path) -> None:
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


def check_frame_rates(sheet: pd.DataFrame, path: str | Path) -> None:
    """Each sheet fps within what `edn extract --fps` takes (the schema's pattern allows 0 and any size)."""
    from pipeline.footage.commands import FRAME_RATE

    for name, row in sheet.iterrows():
        if row["fps"]:
            try:
                FRAME_RATE.check(float(row["fps"]), "fps", row["fps"])
            except ValueError as exc:
                raise ValueError(f"{path}: video {name}: {exc}") from None


def transfer_pairs(config: dict[str, Any], sources: list[str], subjects: list[str]) -> list[tuple[str, str]]:
    """(source, subject) pairs: the config's list, else every source to every subject."""
    pairs = [(p["source"], p["target"]) for p in config.get("pairs", [])]
    for source, subject in pairs:
        if source not in sources:
            raise ValueError(f"config pairs: {source!r} is not a source video in {config['videos']}")
        if subject not in subjects:
            raise ValueError(f"config pairs: {subject!r} is not a target subject in {config['videos']}")
    return pairs or [(s, t) for s in sources for t in subjects]
