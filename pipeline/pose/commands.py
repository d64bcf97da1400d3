"""``edn`` commands of the poses: detect, gather-keypoints, smooth, qc, stats, normalize and render."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.arguments import Number, StagePaths, box, fraction, handler, non_negative_int, positive_int, size


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the pose commands to ``edn``'s subcommands."""
    p = sub.add_parser("detect", help="frames -> keypoints Parquet (OpenPose layout)")
    p.add_argument("frames_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--backend", choices=("mediapipe", "openpose-json"), default="mediapipe")
    p.add_argument("--json-dir", type=Path, default=None, help="OpenPose --write_json folder")
    p.add_argument("--json-size", type=size, default=None,
                   help="WxH of the images OpenPose saw (default: the frames' size)")
    p.add_argument("--crop", type=box, default=None,
                   help="x,y,w,h in frame pixels: only the person inside this box is kept")
    p.add_argument("--min-detected-fraction", type=fraction, default=0.0,
                   help="fail when fewer frames than this fraction have a person")
    p.add_argument("--start", type=non_negative_int, default=0, help="first frame of a chunk (see gather-keypoints)")
    p.add_argument("--stop", type=positive_int, default=None, help="frame after the chunk's last (default: the end)")
    p.add_argument("--warmup", type=non_negative_int, default=0,
                   help="frames before --start the tracker sees first, then dropped (mediapipe)")
    p.set_defaults(func=handler("pipeline.pose.detect", "cli"))

    p = sub.add_parser("gather-keypoints", help="chunks of `edn detect --start/--stop` -> one keypoint file")
    p.add_argument("frames_dir", type=Path, help="the frames folder the chunks were detected on")
    p.add_argument("out", type=Path)
    p.add_argument("chunks", type=Path, nargs="+")
    p.add_argument("--min-detected-fraction", type=fraction, default=0.0,
                   help="fail when fewer frames than this fraction have a person")
    p.set_defaults(func=handler("pipeline.pose.detect", "cli_gather"))

    p = sub.add_parser("smooth", help="median pre-smoothing with short-gap filling")
    p.add_argument("input", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--window", type=Number(int, 1, odd=True), default=5, help="median window in frames (odd)")
    p.add_argument("--max-gap", type=non_negative_int, default=5, help="fill gaps up to this many frames")
    p.add_argument("--qc", type=Path, default=None,
                   help="`edn qc` verdicts of INPUT: implausible frames count as missing, no smoothing across a break")
    p.set_defaults(func=handler("pipeline.pose.smooth", "cli"))

    p = sub.add_parser("qc", help="per-frame pose quality control (limbs, body box, spikes, jumps, person changes)")
    p.add_argument("keypoints", type=Path)
    p.add_argument("out", type=Path, help="Parquet: frame, ok, plausible, break, reasons, scores")
    # Each threshold's range: a factor of a length > 1 (1 would flag a body as it is), a speed,
    # acceleration or share > 0 (the JSON schema's qc: ranges)
    above_one, above_zero = Number(float, above=1), Number(float, above=0)
    for name, default, text in (
            ("limb-long", 1.5, "a limb longer than this times its anthropometric share of the body-size bound"),
            ("box-factor", 1.8, "a body box with a side longer than this times the body-size bound"),
            ("jump-speed", 6.0, "the body's centre faster than this many body heights per second (a break)"),
            ("scale-change", 1.5, "the body's segments changing length by more than this factor in one frame "
                                  "(person change)"),
            ("joint-speed", 6.0, "a joint faster than this many body heights per second ..."),
            ("switch-joints", 0.5, "... for this fraction of the joints at once (person change)"),
            ("spike-accel", 230.0, "a joint off the line of its neighbouring frames by more than this "
                                   "acceleration (body heights per second squared) allows")):
        kind = {"limb-long": above_one, "box-factor": above_one, "scale-change": above_one,
                "switch-joints": Number(float, maximum=1, above=0)}.get(name, above_zero)
        p.add_argument(f"--{name}", type=kind, default=default, help=f"{text} (default: %(default)s)")
    p.set_defaults(func=handler("pipeline.pose.quality", "cli"))

    p = sub.add_parser("stats", help="ankle and height statistics of one or more keypoint files")
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("out", type=Path)
    p.set_defaults(func=handler("pipeline.pose.stats", "cli"))
    add_mapping_commands(sub)


def add_mapping_commands(sub: argparse._SubParsersAction) -> None:
    """normalize and render: the source's poses into the target's frame, and keypoints into stick figures."""
    p = sub.add_parser("normalize", help="map source poses into the target's frame")
    p.add_argument("source", type=Path)
    p.add_argument("source_stats", type=Path)
    p.add_argument("target_stats", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--method", choices=("paper", "retarget"), default="paper")
    p.add_argument("--center-x", action="store_true",
                   help="shift x so the source's mean position lands on the target's")
    p.add_argument("--keep-in-view", action=argparse.BooleanOptionalAction, default=True,
                   help="shift frames smoothly so the whole body stays inside the target's frame (default: on)")
    p.add_argument("--qc", type=Path, default=None,
                   help="`edn qc` verdicts of SOURCE: frames not ok are repaired (interpolated or held)")
    p.add_argument("--max-repaired-share", type=fraction, default=0.1,
                   help="warn, with the frame ranges and reasons, when QC repairs more than this share of the "
                        "frames (default: %(default)s)")
    p.add_argument("--max-repair-gap", type=non_negative_int, default=10,
                   help="runs of bad frames up to this long are interpolated, longer ones hold the last good pose"
                   " (default: %(default)s)")
    p.set_defaults(func=handler("pipeline.pose.normalize", "cli"))

    p = sub.add_parser("render", help="keypoints -> stick-figure PNGs")
    p.add_argument("keypoints", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--size", type=size, default=None, help="WxH (default: the keypoints' frame size)")
    p.add_argument("--no-face", action="store_true")
    p.add_argument("--no-hands", action="store_true")
    p.set_defaults(func=handler("pipeline.pose.render", "cli"))


def stage_paths(args: argparse.Namespace) -> StagePaths | None:
    """(stage, inputs, outputs) of the pose commands; None for any other command."""
    from pipeline.provenance import FileOutput, FolderOutput

    def keypoints(path: Path) -> FileOutput:  # a keypoint file: detect and gather write the same thing
        return FileOutput(path, ".parquet", ("detect", "gather-keypoints"))

    c = args.command
    if c == "detect":
        return c, (args.frames_dir, args.json_dir), (keypoints(args.out),)
    if c == "gather-keypoints":
        return c, (args.frames_dir, *args.chunks), (keypoints(args.out),)
    if c == "smooth":
        return c, (args.input, args.qc), (FileOutput(args.out, ".parquet"),)
    if c == "qc":
        return c, (args.keypoints,), (FileOutput(args.out, ".parquet"),)
    if c == "stats":
        return c, tuple(args.inputs), (FileOutput(args.out, ".json"),)
    if c == "normalize":
        return c, (args.source, args.source_stats, args.target_stats, args.qc), (FileOutput(args.out, ".parquet"),)
    if c == "render":
        return c, (args.keypoints,), (FolderOutput(args.out_dir),)
    return None
