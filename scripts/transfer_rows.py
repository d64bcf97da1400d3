"""One evaluation row of training options, judged on the transfer: the workflow in its own folder.

    python scripts/transfer_rows.py --base results --out rows/mirror_s0 --seed 0 --set mirror=0.5

The folder gets the base run's pose half (frames, keypoints, QC, statistics, plates and target stick
figures, hard-linked: nothing upstream of training is computed again), an overlay config with the
seed and the options, and runs the workflow (`snakemake -s Snakefile`, the repository's config first)
up to every transfer's measurement and the held-out evaluation of the temporal row. It prints one
JSON line: each source's body-found share, PCK (of the joints given and of those found) and median
joint error on the transfer, the held-out body SSIM and colour noise, and the training's wall time.
The sheet (``--videos``) is by default ``scripts/transfer_rows.tsv``: the demo's target and four sources. The rows in docs/evaluation.md ("Training
that generalises") were made with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# What training reads from the base run; normalization, coverage and everything after training are redone.
UPSTREAM = ("frames", "keypoints", "qc", "stats", "plate", "render")
# The demo's target and four sources: the demo's two (cameras 3 and 4) and the two other cameras of the
# same multi-person clip, never used to choose anything.
FOUR_SOURCES = Path(__file__).with_name("transfer_rows.tsv")


def value(text: str) -> object:
    return yaml.safe_load(text)


def prepare(base: Path, out: Path, seed: int, options: dict[str, object], sheet: Path) -> Path:
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    for name in UPSTREAM:
        if not (results / name).exists():
            shutil.copytree(base / name, results / name, copy_function=os.link)
    resources = out / "resources"
    if not resources.exists():
        resources.symlink_to((base.parent / "resources").resolve())
    overlay = {"videos": str(sheet), "train": {"seed": seed, **options},
               "evaluate": {"rows": ["temporal"], "ablations": None}}
    (out / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return out / "overlay.yaml"


def targets(sheet: Path) -> list[str]:
    """Each transfer's record and each subject's evaluation: what a row reads."""
    import csv

    lines = [line for line in sheet.read_text().splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    sources = [r["name"] for r in rows if r["role"] == "source"]
    subjects = sorted({r["subject"] for r in rows if r["role"] == "target"})
    return ([f"results/transfer/{s}/{t}.json" for s in sources for t in subjects]
            + [f"results/evaluation/{t}/tables.md" for t in subjects])


def summary(out: Path) -> dict[str, object]:
    import pandas as pd

    row: dict[str, object] = {}
    for record in sorted((out / "results" / "transfer").glob("*/*.json")):
        if record.name.endswith("_generation.json"):
            continue
        f = json.loads(record.read_text())["fidelity"]
        row[record.parent.name] = {"body_found": f["body_found_share"], "pck_given": f["pck_given"],
                                   "pck": f["pck"], "median_joint_error": f["median_joint_error"]}
    for metrics in (out / "results" / "evaluation").glob("*/metrics.parquet"):
        m = pd.read_parquet(metrics)
        m = m[m["ablation"] == "temporal"]

        def pick(table: str, metric: str) -> float:
            return float(m[(m["table"] == table) & (m["metric"] == metric)]["value"].iloc[0])

        row["heldout_body_ssim"] = round(pick("body", "ssim"), 4)
        row["heldout_chroma_ratio"] = round(pick("chroma_noise", "ratio"), 3)
    bench = next((out / "results" / "benchmarks" / "train").glob("*.tsv"), None)
    if bench is not None:
        row["train_seconds"] = float(pd.read_csv(bench, sep="\t")["s"].iloc[0])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="results/ of a finished run of the same sheet")
    parser.add_argument("--out", type=Path, required=True, help="the row's own folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a train: option")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--videos", type=Path, default=FOUR_SOURCES,
                        help="the sheet: its targets trained, each source transferred and measured")
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.set)
    sheet = args.videos.resolve()
    overlay = prepare(args.base.resolve(), args.out, args.seed, {k: value(v) for k, v in options.items()}, sheet)
    snakemake = Path(sys.executable).parent / "snakemake"
    done = subprocess.run([str(snakemake), "-s", str(REPO / "Snakefile"), "--configfile",
                           str(REPO / "config" / "config.yaml"), str(overlay), "--cores", str(args.cores),
                           *targets(sheet), "--rerun-triggers", "input", "params",
                           "--quiet", "rules"],
                          cwd=args.out, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # this checkout's code, whatever is installed
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        return done.returncode
    print(json.dumps({"out": str(args.out), "seed": args.seed, "options": options, **summary(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
