"""``edn`` commands of the evaluation: evaluate, coverage, measure-transfer and plot (the report's figures)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.arguments import CRF, Number, StagePaths, handler
from pipeline.gan.commands import DEFAULT, HOLDOUT, add_device_options, clip_paths

# Held-out clips generated at once (each holds (rows + 1) MediaPipe trackers of ~0.2 GB) and frames
# in the sample grid (one row of pictures each): both grow memory.
CLIP_BATCH = Number(int, 1, 64)
GRID_SAMPLES = Number(int, 1, 64)

# The inputs (argument names) of each figure; --run folders and --real frames are added to them.
FIGURE_INPUTS = {"tracks": ("raw", "smooth"), "qc": ("raw_qc", "smooth_qc"),
                 "normalization": ("normalized", "source_stats", "target_stats"),
                 "bones": ("normalized", "target_stats"), "losses": (), "stability": ("record",),
                 "transfer": ("record",)}


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add evaluate and plot (with one subcommand per figure) to ``edn``'s subcommands."""
    p = sub.add_parser("evaluate", help="the paper's metrics on the target's held-out frames (paper sec. 5)")
    p.add_argument("out_dir", type=Path, help="metrics.parquet, frames.parquet, tables.md/.html, samples.png, "
                   "evaluation.json")
    p.add_argument("--clip", nargs=3, action="append", required=True, type=Path,
                   metavar=("FRAMES_DIR", "RENDER_DIR", "KEYPOINTS"),
                   help="a clip of the target, as given to `edn train`, in the same order; repeat per clip")
    p.add_argument("--generator", type=Path, required=True,
                   help="generator.pt of `edn train`; the training record inside it lists the held-out frames")
    p.add_argument("--face", type=Path, default=None, help="face.pt of `edn train-face` (row temporal_face)")
    p.add_argument("--frame-by-frame", type=Path, default=None,
                   help="generator.pt of `edn train --no-temporal` (row frame_by_frame)")
    p.add_argument("--rows", nargs="+", choices=("frame_by_frame", "temporal", "temporal_face"),
                   default=["temporal", "temporal_face"], help="ablations to evaluate" + DEFAULT)
    p.add_argument("--ablation", action="append", metavar="NAME=GENERATOR_PT",
                   help="one more row NAME, generated like temporal by this generator.pt (trained on the same "
                   "clips with other options); repeat per ablation")
    p.add_argument("--transfer", action="append", metavar="SOURCE=RECORD_JSON",
                   help="a transfer record of `edn measure-transfer` onto this target: a row of the transfer table; "
                   "repeat per source")
    p.add_argument("--clip-batch", type=CLIP_BATCH, default=4,
                   help="held-out clips generated together as one batch per step" + DEFAULT)
    p.add_argument("--lpips-weights", default=None,
                   help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth; default: the torch hub cache)")
    add_device_options(p)
    p.add_argument("--samples", type=GRID_SAMPLES, default=4, help="held-out frames in the sample grid" + DEFAULT)
    p.set_defaults(func=handler("pipeline.evaluation.evaluate", "cli"))

    p = sub.add_parser("measure-transfer", help="re-detect a transfer video's poses against the poses it was given")
    p.add_argument("video", type=Path, help="the MP4 of `edn transfer`")
    p.add_argument("generation_record", type=Path, help="its JSON record (`edn transfer --record`)")
    p.add_argument("normalized", type=Path, help="the normalized keypoints it was made from")
    p.add_argument("render_dir", type=Path, help="their stick figures (edn render), for the side-by-side video")
    p.add_argument("source_frames", type=Path, help="the source's frames, for the side-by-side video")
    p.add_argument("--record", type=Path, required=True,
                   help="the transfer's JSON: the generation record with per-frame and summary fidelity and coverage")
    p.add_argument("--coverage", type=Path, default=None, help="`edn coverage --source` of this source and target")
    p.add_argument("--per-frame", type=Path, default=None, help="Parquet: one row per frame")
    p.add_argument("--side-by-side", type=Path, default=None,
                   help="source | stick figure | result, frames without a body and uncovered poses marked")
    p.add_argument("--crf", type=CRF, default=18, help="x264 quality, lower is better" + DEFAULT)
    p.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True,
                   help="carry the source's soundtrack into the side-by-side video" + DEFAULT)
    p.set_defaults(func=handler("pipeline.evaluation.fidelity", "cli"))

    p = sub.add_parser("coverage", help="which source poses the target's training frames never show (keypoints only)")
    p.add_argument("out", type=Path, help="JSON: the target's gaps and, with --source, each source frame's coverage")
    p.add_argument("--target", type=Path, nargs="+", required=True, help="the target subject's keypoint files")
    p.add_argument("--source", type=Path, default=None,
                   help="the source's keypoints (normalized or raw); without it: the target's gaps alone")
    p.add_argument("--mirror", action="store_true",
                   help="the training poses' mirror images count as trained on (training with train: mirror > 0)")
    p.add_argument("--holdout", type=HOLDOUT, default=0.2,
                   help="the last share of each target clip kept out of training (train: holdout)")
    p.set_defaults(func=handler("pipeline.evaluation.coverage", "cli"))
    add_plot_commands(sub)


def add_plot_commands(sub: argparse._SubParsersAction) -> None:
    """``edn plot FIGURE``: one subcommand per figure of the report."""
    p = sub.add_parser("plot", help="diagnostic figures (PNG) for the report")
    plots = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    # Figures whose arguments are only paths: name, help, positional paths (the last is the PNG), handler.
    for name, text, paths, function in (
            ("tracks", "raw against smoothed keypoint tracks of a few joints", ("raw", "smooth"), "cli_tracks"),
            ("qc", "pose QC verdicts over time, raw and smoothed", ("raw_qc", "smooth_qc"), "cli_qc"),
            ("normalization", "ankle histograms, far/near positions, heights and the mapping",
             ("normalized", "source_stats", "target_stats"), "cli_normalization"),
            ("bones", "per-bone length ratio to the target, paper mapping against retargeting",
             ("normalized", "target_stats"), "cli_bones")):
        q = plots.add_parser(name, help=text)
        for path in (*paths, "out"):
            q.add_argument(path, type=Path)
        q.set_defaults(func=handler("pipeline.evaluation.plots", function))
    q = plots.add_parser("losses", help="training loss curves of one or more run folders (losses.csv)")
    q.add_argument("out", type=Path)
    q.add_argument("--run", nargs=2, action="append", required=True, metavar=("NAME", "RUN_DIR"),
                   help="a titled run folder holding losses.csv; repeat")
    q.set_defaults(func=handler("pipeline.evaluation.plots", "cli_losses"))
    q = plots.add_parser("transfer", help="a transfer's fidelity and coverage over time")
    q.add_argument("record", type=Path, help="the transfer's JSON of `edn measure-transfer`")
    q.add_argument("out", type=Path)
    q.set_defaults(func=handler("pipeline.evaluation.plots", "cli_transfer"))
    q = plots.add_parser("stability", help="consecutive-frame differences of a transfer video against real footage")
    q.add_argument("record", type=Path, help="the JSON record of `edn transfer`")
    q.add_argument("out", type=Path)
    q.add_argument("--real", type=Path, action="append", required=True, metavar="FRAMES_DIR",
                   help="frames of the target's real footage; repeat per clip")
    q.set_defaults(func=handler("pipeline.evaluation.plots", "cli_stability"))


def stage_paths(args: argparse.Namespace) -> StagePaths | None:
    """(stage, inputs, outputs) of evaluate and of every plot figure; None for any other command."""
    from pipeline.provenance import FileOutput, FolderOutput

    c = args.command
    if c == "evaluate":
        ablations = [a.split("=", 1)[1] for a in (args.ablation or []) + (args.transfer or []) if "=" in a]
        return c, (*clip_paths(args), args.generator, args.face, args.frame_by_frame, *ablations,
                   args.lpips_weights), (FolderOutput(args.out_dir),)
    if c == "coverage":
        return c, (*args.target, args.source), (FileOutput(args.out, ".json"),)
    if c == "measure-transfer":
        outputs = [FileOutput(args.record, ".json", ("transfer",))]
        outputs += [FileOutput(args.per_frame, ".parquet")] if args.per_frame else []
        outputs += [FileOutput(args.side_by_side, ".mp4", ("transfer",))] if args.side_by_side else []
        return c, (args.video, args.generation_record, args.normalized, args.render_dir, args.source_frames,
                   args.coverage), tuple(outputs)
    if c == "plot":
        paths = [getattr(args, name) for name in FIGURE_INPUTS[args.figure]]
        paths += [Path(d) for _, d in (getattr(args, "run", None) or [])]
        return c, (*paths, *(getattr(args, "real", None) or [])), (FileOutput(args.out, ".png"),)
    return None
