"""``edn``: one subcommand per pipeline stage.

Only argparse is imported here; each handler imports its stage module, so ``edn --help``
stays fast and the GPU machine (no mediapipe there) runs ``edn train``/``edn transfer``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _box(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"box width and height must be positive, got {text!r}")
    return x, y, w, h


def _handler(module: str, function: str) -> Callable[[argparse.Namespace], int | None]:
    def run(args: argparse.Namespace) -> int | None:
        return getattr(importlib.import_module(module), function)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edn", description="Everybody Dance Now pipeline stages.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    p = sub.add_parser("fetch-demo", help="download the pose2sim wheel and extract its demo videos")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--wheel-dir", type=Path, default=None, help="use/keep the wheel here")
    p.set_defaults(func=_handler("pipeline.demo_data", "cli"))

    p = sub.add_parser("extract", help="video -> frames (ffmpeg) plus meta.json")
    p.add_argument("video", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: source's)")
    p.add_argument("--height", type=int, default=512, help="working height in pixels")
    p.add_argument("--rotation", type=int, default=None, choices=(0, 90, 180, 270),
                   help="clockwise rotation to apply instead of the file's metadata")
    p.add_argument("--crop", type=_box, default=None, help="x,y,w,h in source pixels after rotation")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg")
    p.add_argument("--max-frames", type=int, default=None, help="keep only the first N frames")
    p.set_defaults(func=_handler("pipeline.extract", "cli"))

    p = sub.add_parser("detect", help="frames -> keypoints Parquet (OpenPose layout)")
    p.add_argument("frames_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--backend", choices=("mediapipe", "openpose-json"), default="mediapipe")
    p.add_argument("--json-dir", type=Path, default=None, help="OpenPose --write_json folder")
    p.add_argument("--crop", type=_box, default=None,
                   help="x,y,w,h in frame pixels: only the person inside this box is kept")
    p.add_argument("--model-complexity", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--min-detected-fraction", type=float, default=0.0,
                   help="fail when fewer frames than this fraction have a person")
    p.set_defaults(func=_handler("pipeline.detect", "cli"))

    p = sub.add_parser("smooth", help="median pre-smoothing with short-gap filling")
    p.add_argument("input", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--window", type=int, default=5, help="median window in frames (odd)")
    p.add_argument("--max-gap", type=int, default=5, help="fill gaps up to this many frames")
    p.set_defaults(func=_handler("pipeline.smooth", "cli"))

    p = sub.add_parser("stats", help="ankle and height statistics of one or more keypoint files")
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("out", type=Path)
    p.set_defaults(func=_handler("pipeline.stats", "cli"))

    p = sub.add_parser("normalize", help="map source poses into the target's frame")
    p.add_argument("source", type=Path)
    p.add_argument("source_stats", type=Path)
    p.add_argument("target_stats", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--method", choices=("paper", "retarget"), default="paper")
    p.add_argument("--center-x", action="store_true",
                   help="shift x so the source's mean position lands on the target's")
    p.set_defaults(func=_handler("pipeline.normalize", "cli"))

    p = sub.add_parser("render", help="keypoints -> stick-figure PNGs")
    p.add_argument("keypoints", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--size", type=_size, default=None, help="WxH (default: the keypoints' frame size)")
    p.add_argument("--no-face", action="store_true")
    p.add_argument("--no-hands", action="store_true")
    p.set_defaults(func=_handler("pipeline.render", "cli"))

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Our stages raise these with messages naming the file and the problem.
        logging.getLogger("edn").debug("traceback", exc_info=True)
        print(f"edn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
