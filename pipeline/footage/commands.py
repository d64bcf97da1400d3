"""``edn`` commands of the footage: fetch-demo and extract."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.arguments import MAX_FRAME_HEIGHT, Number, StagePaths, box, handler, positive_int

# Frame rates extract can give the stages: from 1 fps (below it consecutive frames are separate
# poses, not one movement: the median smoothing, the QC's speeds and the generator's previous frame
# all assume they are close in time) to 1000 (above the 960 fps of high-speed cameras).
FRAME_RATE = Number(float, 1, 1000, unit="frames per second")
# Heights ffmpeg's scaler and every encoder take (even: yuv420p halves it), up to MAX_FRAME_HEIGHT.
FRAME_HEIGHT = Number(int, 16, MAX_FRAME_HEIGHT, even=True, unit="pixels")


def seconds(text: str) -> float:
    """A time as seconds or ``[hh:]mm:ss[.ms]`` -> seconds."""
    from pipeline.footage.timespan import parse_time  # re only: `edn --help` stays fast

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add fetch-demo and extract to ``edn``'s subcommands."""
    p = sub.add_parser("fetch-demo", help="download the pose2sim wheel and extract its demo videos")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--wheel-dir", type=Path, default=None, help="use/keep the wheel here")
    p.set_defaults(func=handler("pipeline.footage.demo_data", "cli"))

    p = sub.add_parser("extract", help="video -> frames (ffmpeg) plus meta.json")
    p.add_argument("video", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--fps", type=FRAME_RATE, default=None, help="output frame rate (default: source's)")
    p.add_argument("--height", type=FRAME_HEIGHT, default=512, help="working height in pixels")
    p.add_argument("--rotation", type=int, default=None, choices=(0, 90, 180, 270),
                   help="clockwise rotation to apply instead of the file's metadata")
    p.add_argument("--crop", type=box, default=None, help="x,y,w,h in source pixels after rotation")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg")
    p.add_argument("--max-frames", type=positive_int, default=None, help="keep only the first N frames")
    p.add_argument("--start", type=seconds, default=None, help="trim: first second to use (s or [hh:]mm:ss[.ms])")
    p.add_argument("--end", type=seconds, default=None, help="trim: last second to use (s or [hh:]mm:ss[.ms])")
    p.add_argument("--damaged", choices=("fail", "keep"), default="fail",
                   help="a video with decoding errors: fail naming it (default), or keep its concealed or repeated "
                        "frames with a warning and the count in meta.json")
    p.set_defaults(func=handler("pipeline.footage.extract", "cli"))


def stage_paths(args: argparse.Namespace) -> StagePaths | None:
    """(stage, inputs, outputs) of fetch-demo and extract; None for any other command."""
    from pipeline.provenance import FolderOutput

    c = args.command
    if c == "fetch-demo":
        return c, (), (FolderOutput(args.out_dir, ("SOURCE.json", "Demo_SinglePerson/", "Demo_MultiPerson/"),
                                    "SOURCE.json"),)
    if c == "extract":
        return c, (args.video,), (FolderOutput(args.out_dir),)
    return None
