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
from typing import Any, Callable, Sequence


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


def _time(text: str) -> float:
    from pipeline.footage.timespan import parse_time  # re only: `edn --help` stays fast

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _handler(module: str, function: str) -> Callable[[argparse.Namespace], int | None]:
    def run(args: argparse.Namespace) -> int | None:
        return getattr(importlib.import_module(module), function)(args)

    return run


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def stage_paths(args: argparse.Namespace) -> tuple[str, tuple[Any, ...], tuple[Any, ...]] | None:
    """(stage, inputs, outputs) of a parsed command, for the output rule (provenance.check_outputs).

    Every command is listed here, so one rule covers all their outputs (tests/test_slips.py
    checks that none is missing); None only for a command not listed.
    """
    from pipeline.provenance import FileOutput, FolderOutput

    def keypoints(path: Path) -> FileOutput:  # a keypoint file: detect and gather write the same thing
        return FileOutput(path, ".parquet", ("detect", "gather-keypoints"))

    c = args.command
    clips = [p for clip in (getattr(args, "clip", None) or []) for p in clip]
    if c == "fetch-demo":
        return c, (), (FolderOutput(args.out_dir, ("SOURCE.json", "Demo_SinglePerson/", "Demo_MultiPerson/"),
                                    "SOURCE.json"),)
    if c == "extract":
        return c, (args.video,), (FolderOutput(args.out_dir),)
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
    if c == "plot":
        inputs = {"tracks": ("raw", "smooth"), "qc": ("raw_qc", "smooth_qc"),
                  "normalization": ("normalized", "source_stats", "target_stats"),
                  "bones": ("normalized", "target_stats"), "stability": ("record",), "losses": ()}[args.figure]
        paths = [getattr(args, name) for name in inputs] + [Path(d) for _, d in (getattr(args, "run", None) or [])]
        return c, (*paths, *(getattr(args, "real", None) or [])), (FileOutput(args.out, ".png"),)
    if c == "render":
        return c, (args.keypoints,), (FolderOutput(args.out_dir),)
    if c in ("train", "train-face"):
        model = args.model_out or args.out_dir / ("face.pt" if c == "train-face" else "generator.pt")
        inputs = (*clips, *(args.clip_qc or []), *(getattr(args, "clip_plate", None) or []),
                  getattr(args, "init_global", None), getattr(args, "generator", None), args.vgg_weights)
        run = FolderOutput(args.out_dir, ("checkpoint.pt", "run.json", "losses.csv", "samples/", "tensorboard/"),
                           "run.json")
        return c, inputs, (run, FileOutput(model, ".pt"))
    if c == "plate":
        return c, (args.frames, args.keypoints), (FolderOutput(args.out, ("plate.png", "plate.json"), "plate.json"),)
    if c == "transfer":
        outputs = [FileOutput(args.out, ".mp4"), FileOutput(args.record or args.out.with_suffix(".json"), ".json")]
        if args.side_by_side is not None:
            outputs.append(FileOutput(args.side_by_side, ".mp4"))
        return c, (args.normalized, args.render_dir, args.source_frames, args.generator, args.face), tuple(outputs)
    if c == "evaluate":
        ablations = [a.split("=", 1)[1] for a in (args.ablation or []) if "=" in a]
        return c, (*clips, args.generator, args.face, args.frame_by_frame, *ablations, args.lpips_weights), \
            (FolderOutput(args.out_dir),)
    if c == "doctor":  # reads the config and probes the machine; writes nothing
        return c, (), ()
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edn", description="Everybody Dance Now pipeline stages.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    p = sub.add_parser("fetch-demo", help="download the pose2sim wheel and extract its demo videos")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--wheel-dir", type=Path, default=None, help="use/keep the wheel here")
    p.set_defaults(func=_handler("pipeline.footage.demo_data", "cli"))

    p = sub.add_parser("doctor", help="what this machine offers for a run of the config; exit 1 if it lacks a need")
    p.add_argument("--configfile", type=Path, nargs="+", action="extend", default=None,
                   help="merged over config/config.yaml in order, as snakemake --configfile")
    p.add_argument("--profile", type=Path, default=None, help="workflow profile to check (e.g. profiles/slurm)")
    p.set_defaults(func=_handler("pipeline.doctor", "cli"))

    p = sub.add_parser("extract", help="video -> frames (ffmpeg) plus meta.json")
    p.add_argument("video", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: source's)")
    p.add_argument("--height", type=int, default=512, help="working height in pixels")
    p.add_argument("--rotation", type=int, default=None, choices=(0, 90, 180, 270),
                   help="clockwise rotation to apply instead of the file's metadata")
    p.add_argument("--crop", type=_box, default=None, help="x,y,w,h in source pixels after rotation")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="keep only the first N frames")
    p.add_argument("--start", type=_time, default=None, help="trim: first second to use (s or [hh:]mm:ss[.ms])")
    p.add_argument("--end", type=_time, default=None, help="trim: last second to use (s or [hh:]mm:ss[.ms])")
    p.set_defaults(func=_handler("pipeline.footage.extract", "cli"))

    p = sub.add_parser("detect", help="frames -> keypoints Parquet (OpenPose layout)")
    p.add_argument("frames_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--backend", choices=("mediapipe", "openpose-json"), default="mediapipe")
    p.add_argument("--json-dir", type=Path, default=None, help="OpenPose --write_json folder")
    p.add_argument("--json-size", type=_size, default=None,
                   help="WxH of the images OpenPose saw (default: the frames' size)")
    p.add_argument("--crop", type=_box, default=None,
                   help="x,y,w,h in frame pixels: only the person inside this box is kept")
    p.add_argument("--min-detected-fraction", type=float, default=0.0,
                   help="fail when fewer frames than this fraction have a person")
    p.add_argument("--start", type=int, default=0, help="first frame of a chunk (see gather-keypoints)")
    p.add_argument("--stop", type=int, default=None, help="frame after the chunk's last (default: the end)")
    p.add_argument("--warmup", type=int, default=0,
                   help="frames before --start the tracker sees first, then dropped (mediapipe)")
    p.set_defaults(func=_handler("pipeline.pose.detect", "cli"))

    p = sub.add_parser("gather-keypoints", help="chunks of `edn detect --start/--stop` -> one keypoint file")
    p.add_argument("frames_dir", type=Path, help="the frames folder the chunks were detected on")
    p.add_argument("out", type=Path)
    p.add_argument("chunks", type=Path, nargs="+")
    p.add_argument("--min-detected-fraction", type=float, default=0.0,
                   help="fail when fewer frames than this fraction have a person")
    p.set_defaults(func=_handler("pipeline.pose.detect", "cli_gather"))

    p = sub.add_parser("smooth", help="median pre-smoothing with short-gap filling")
    p.add_argument("input", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--window", type=int, default=5, help="median window in frames (odd)")
    p.add_argument("--max-gap", type=int, default=5, help="fill gaps up to this many frames")
    p.add_argument("--qc", type=Path, default=None,
                   help="`edn qc` verdicts of INPUT: implausible frames count as missing, no smoothing across a break")
    p.set_defaults(func=_handler("pipeline.pose.smooth", "cli"))

    p = sub.add_parser("qc", help="per-frame pose quality control (limbs, body box, spikes, jumps, person changes)")
    p.add_argument("keypoints", type=Path)
    p.add_argument("out", type=Path, help="Parquet: frame, ok, plausible, break, reasons, scores")
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
        p.add_argument(f"--{name}", type=float, default=default, help=f"{text} (default: %(default)s)")
    p.set_defaults(func=_handler("pipeline.pose.quality", "cli"))

    p = sub.add_parser("stats", help="ankle and height statistics of one or more keypoint files")
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("out", type=Path)
    p.set_defaults(func=_handler("pipeline.pose.stats", "cli"))

    p = sub.add_parser("normalize", help="map source poses into the target's frame")
    p.add_argument("source", type=Path)
    p.add_argument("source_stats", type=Path)
    p.add_argument("target_stats", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--method", choices=("paper", "retarget"), default="paper")
    p.add_argument("--center-x", action="store_true",
                   help="shift x so the source's mean position lands on the target's")
    p.add_argument("--qc", type=Path, default=None,
                   help="`edn qc` verdicts of SOURCE: frames not ok are repaired (interpolated or held)")
    p.add_argument("--max-repaired-share", type=float, default=0.1,
                   help="warn, with the frame ranges and reasons, when QC repairs more than this share of the "
                        "frames (default: %(default)s)")
    p.add_argument("--max-repair-gap", type=int, default=10,
                   help="runs of bad frames up to this long are interpolated, longer ones hold the last good pose"
                   " (default: %(default)s)")
    p.set_defaults(func=_handler("pipeline.pose.normalize", "cli"))

    p = sub.add_parser("plot", help="diagnostic figures (PNG) for the report")
    plots = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    q = plots.add_parser("tracks", help="raw against smoothed keypoint tracks of a few joints")
    q.add_argument("raw", type=Path)
    q.add_argument("smooth", type=Path)
    q.add_argument("out", type=Path)
    q.set_defaults(func=_handler("pipeline.evaluation.plots", "cli_tracks"))
    q = plots.add_parser("qc", help="pose QC verdicts over time, raw and smoothed")
    q.add_argument("raw_qc", type=Path)
    q.add_argument("smooth_qc", type=Path)
    q.add_argument("out", type=Path)
    q.set_defaults(func=_handler("pipeline.evaluation.plots", "cli_qc"))
    q = plots.add_parser("normalization", help="ankle histograms, far/near positions, heights and the mapping")
    q.add_argument("normalized", type=Path)
    q.add_argument("source_stats", type=Path)
    q.add_argument("target_stats", type=Path)
    q.add_argument("out", type=Path)
    q.set_defaults(func=_handler("pipeline.evaluation.plots", "cli_normalization"))
    q = plots.add_parser("bones", help="per-bone length ratio to the target, paper mapping against retargeting")
    q.add_argument("normalized", type=Path)
    q.add_argument("target_stats", type=Path)
    q.add_argument("out", type=Path)
    q.set_defaults(func=_handler("pipeline.evaluation.plots", "cli_bones"))

    p = sub.add_parser("render", help="keypoints -> stick-figure PNGs")
    p.add_argument("keypoints", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--size", type=_size, default=None, help="WxH (default: the keypoints' frame size)")
    p.add_argument("--no-face", action="store_true")
    p.add_argument("--no-hands", action="store_true")
    p.set_defaults(func=_handler("pipeline.pose.render", "cli"))

    # Training. Each option is the TrainConfig/FaceConfig field of the same name with the same
    # default (tests/test_train.py checks both), so --help shows the real defaults.
    dflt = " (default: %(default)s)"
    for stage in ("train", "train-face"):
        face = stage == "train-face"
        p = sub.add_parser(stage, help="face GAN on the frozen generator's output (paper sec. 3.3)" if face
                           else "pose -> frame GAN with temporal smoothing (paper sec. 3)")
        p.add_argument("out_dir", type=Path,
                       help="run folder: checkpoint.pt (a rerun resumes from it), run.json, losses.csv, samples/")
        p.add_argument("--clip", nargs=3, action="append", required=True, type=Path,
                       metavar=("FRAMES_DIR", "RENDER_DIR", "KEYPOINTS"),
                       help="a clip of the target: frames, their stick figures, keypoint Parquet; repeat per clip")
        p.add_argument("--clip-qc", action="append", type=Path, default=None, metavar="QC",
                       help="`edn qc` verdicts of a clip's keypoints, one per --clip in the same order: pairs with a "
                       "frame that is not ok are not trained on")
        p.add_argument("--model-out", type=Path, default=None,
                       help=f"model file to write (default: OUT_DIR/{'face' if face else 'generator'}.pt)")
        if face:
            p.add_argument("--generator", type=Path, required=True,
                           help="generator.pt of `edn train`; frozen, and sets the resolution")
            p.add_argument("--face-ngf", type=int, default=32, help="face generator's first filters" + dflt)
            p.add_argument("--face-n-downsample", type=int, default=3, help="face generator downsamplings" + dflt)
            p.add_argument("--face-n-blocks", type=int, default=5, help="face generator residual blocks" + dflt)
            p.add_argument("--face-size", type=int, default=None,
                           help="face box side in model pixels (default: height / 4, 128 at 512)")
        else:
            p.add_argument("--width", type=int, default=512, help="model width in pixels" + dflt)
            p.add_argument("--height", type=int, default=256, help="model height in pixels" + dflt)
            p.add_argument("--ngf", type=int, default=64, help="generator's first filters" + dflt)
            p.add_argument("--n-downsample", type=int, default=4, help="global generator downsamplings" + dflt)
            p.add_argument("--n-blocks", type=int, default=9, help="global generator residual blocks" + dflt)
            p.add_argument("--local-enhancer", action="store_true",
                           help="pix2pixHD's local enhancer around a global generator of 2 x ngf")
            p.add_argument("--n-blocks-local", type=int, default=3, help="local enhancer residual blocks" + dflt)
            p.add_argument("--init-global", default=None, metavar="GENERATOR_PT",
                           help="start the local enhancer's global part from this global generator.pt "
                           "(trained with ngf = 2 x --ngf at half the resolution; the reference schedule)")
            p.add_argument("--niter-fix-global", type=int, default=0,
                           help="first epochs in which only the local enhancer's own layers learn" + dflt)
            p.add_argument("--no-temporal", dest="temporal", action="store_false",
                           help="the paper's frame-by-frame ablation: no previous-frame input, single-frame "
                           "discriminator")
            p.add_argument("--background", choices=("none", "plate"), default="none",
                           help="none: the paper's generator; plate: it also sees the clip's background plate "
                           "and paints a foreground and a soft mask over it (needs --clip-plate)" + dflt)
            p.add_argument("--clip-plate", action="append", type=Path, default=None, metavar="PLATE_PNG",
                           help="`edn plate` image of a clip, one per --clip in the same order (--background plate)")
            p.add_argument("--lambda-l1", type=float, default=0.0,
                           help="pixel L1 reconstruction weight (0: the paper's losses only)" + dflt)
        p.add_argument("--epochs", type=int, default=40, help="passes over the training pairs" + dflt)
        p.add_argument("--niter-decay", type=int, default=20,
                       help="last epochs, over which the learning rate falls linearly to 0" + dflt)
        p.add_argument("--batch-size", type=int, default=1, help="samples per step and process" + dflt)
        p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate" + dflt)
        p.add_argument("--lr-scaling", choices=("none", "linear"), default="none",
                       help="none: --lr as given whatever the GPU count; linear: --lr x batch-size x processes"
                       + dflt)
        p.add_argument("--beta1", type=float, default=0.5, help="Adam beta1" + dflt)
        p.add_argument("--ndf", type=int, default=64, help="discriminator's first filters" + dflt)
        p.add_argument("--n-layers-d", type=int, default=3, help="discriminator layers (3: 70x70 patches)" + dflt)
        p.add_argument("--num-d", type=int, default=1 if face else 3, help="discriminator scales" + dflt)
        p.add_argument("--lambda-feat", type=float, default=10.0, help="feature-matching loss weight" + dflt)
        p.add_argument("--lambda-vgg", type=float, default=10.0, help="VGG perceptual loss weight" + dflt)
        p.add_argument("--vgg-loss", choices=("on", "off", "auto"), default="on",
                       help="VGG19 perceptual loss; on: stop when its weights are missing; auto: use it when "
                       "they are found" + dflt)
        p.add_argument("--no-vgg-loss", dest="vgg_loss", action="store_const", const="off",
                       help="same as --vgg-loss off")
        p.add_argument("--vgg-weights", default=None,
                       help="VGG19 ImageNet weights (vgg19-dcbbb0d1.pth; default: the torch hub cache)")
        p.add_argument("--seed", type=int, default=0, help="seed of weights and data order" + dflt)
        p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if any" + dflt)
        p.add_argument("--precision", choices=("auto", "bf16", "fp16", "tf32", "fp32"), default="auto",
                       help="auto: bf16 on GPUs with native bf16 (compute capability >= 8), else fp32; fp16 "
                       "with loss scaling; fp32 is IEEE, tf32 lets CUDA use TF32 for fp32 matmuls/convolutions" + dflt)
        p.add_argument("--channels-last", action="store_true",
                       help="channels_last memory format (off: InstanceNorm returns NCHW, so it costs transposes)")
        p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints" + dflt)
        p.add_argument("--checkpoint-minutes", type=float, default=0.0,
                       help="also checkpoint when this many minutes passed since the last one, 0: off" + dflt)
        p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids, 0: none" + dflt)
        p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all")
        p.add_argument("--holdout", type=float, default=0.2, help="last fraction of every clip kept out" + dflt)
        p.add_argument("--workers", type=int, default=2, help="data loading processes" + dflt)
        p.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower)")
        p.add_argument("--tensorboard", choices=("on", "off", "auto"), default="auto",
                       help="TensorBoard events (losses, lr, step time, samples) in OUT_DIR/tensorboard; auto: "
                       "when the package is installed" + dflt)
        p.set_defaults(func=_handler(f"pipeline.{stage.replace('-', '_')}", "cli"))

    p = sub.add_parser("plate", help="background plate of a target clip: temporal median without the person")
    p.add_argument("frames", type=Path, help="the clip's frames folder (edn extract)")
    p.add_argument("keypoints", type=Path, help="its keypoint Parquet (masks the person out)")
    p.add_argument("out", type=Path, help="folder for plate.png and plate.json")
    p.set_defaults(func=_handler("pipeline.gan.plate", "cli"))

    # Transfer, evaluation and their figures.
    p = sub.add_parser("transfer", help="a source's normalized poses -> video of the target (paper sec. 4)")
    p.add_argument("normalized", type=Path, help="the source's keypoints normalized to the target (edn normalize)")
    p.add_argument("render_dir", type=Path, help="their stick figures at the target's frame size (edn render)")
    p.add_argument("source_frames", type=Path, help="the source's frames, for the side-by-side video")
    p.add_argument("out", type=Path, help="H.264 MP4 to write")
    p.add_argument("--generator", type=Path, required=True, help="generator.pt of `edn train`")
    p.add_argument("--face", type=Path, default=None, help="face.pt of `edn train-face` (default: no face GAN)")
    p.add_argument("--side-by-side", type=Path, default=None, help="also write source | stick figure | result here")
    p.add_argument("--record", type=Path, default=None, help="JSON record (default: OUT with suffix .json)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if any" + dflt)
    p.add_argument("--precision", choices=("auto", "bf16", "fp16", "tf32", "fp32"), default="auto",
                   help="auto: bf16 on GPUs with native bf16 (compute capability >= 8), else fp32" + dflt)
    p.add_argument("--crf", type=int, default=18, help="x264 quality, lower is better" + dflt)
    p.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True,
                   help="carry the source's soundtrack (the frames' span) into the videos" + dflt)
    p.set_defaults(func=_handler("pipeline.gan.transfer", "cli"))

    p = sub.add_parser("evaluate", help="the paper's metrics on the target's held-out frames (paper sec. 5)")
    p.add_argument("out_dir", type=Path, help="metrics.parquet, frames.parquet, tables.md/.html, samples.png, "
                   "evaluation.json")
    p.add_argument("--clip", nargs=3, action="append", required=True, type=Path,
                   metavar=("FRAMES_DIR", "RENDER_DIR", "KEYPOINTS"),
                   help="a clip of the target, as given to `edn train`, in the same order; repeat per clip")
    p.add_argument("--generator", type=Path, required=True,
                   help="generator.pt of `edn train`; its run.json beside it lists the held-out frames")
    p.add_argument("--face", type=Path, default=None, help="face.pt of `edn train-face` (row temporal_face)")
    p.add_argument("--frame-by-frame", type=Path, default=None,
                   help="generator.pt of `edn train --no-temporal` (row frame_by_frame)")
    p.add_argument("--rows", nargs="+", choices=("frame_by_frame", "temporal", "temporal_face"),
                   default=["temporal", "temporal_face"], help="ablations to evaluate" + dflt)
    p.add_argument("--ablation", action="append", metavar="NAME=GENERATOR_PT",
                   help="one more row NAME, generated like temporal by this generator.pt (trained on the same "
                   "clips with other options); repeat per ablation")
    p.add_argument("--clip-batch", type=int, default=4,
                   help="held-out clips generated together as one batch per step" + dflt)
    p.add_argument("--lpips-weights", default=None,
                   help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth; default: the torch hub cache)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if any" + dflt)
    p.add_argument("--precision", choices=("auto", "bf16", "fp16", "tf32", "fp32"), default="auto",
                   help="auto: bf16 on GPUs with native bf16 (compute capability >= 8), else fp32" + dflt)
    p.add_argument("--samples", type=int, default=4, help="held-out frames in the sample grid" + dflt)
    p.set_defaults(func=_handler("pipeline.evaluation.evaluate", "cli"))

    q = plots.add_parser("losses", help="training loss curves of one or more run folders (losses.csv)")
    q.add_argument("out", type=Path)
    q.add_argument("--run", nargs=2, action="append", required=True, metavar=("NAME", "RUN_DIR"),
                   help="a titled run folder holding losses.csv; repeat")
    q.set_defaults(func=_handler("pipeline.evaluation.plots", "cli_losses"))
    q = plots.add_parser("stability", help="consecutive-frame differences of a transfer video against real footage")
    q.add_argument("record", type=Path, help="the JSON record of `edn transfer`")
    q.add_argument("out", type=Path)
    q.add_argument("--real", type=Path, action="append", required=True, metavar="FRAMES_DIR",
                   help="frames of the target's real footage; repeat per clip")
    q.set_defaults(func=_handler("pipeline.evaluation.plots", "cli_stability"))

    force = "replace an existing output file that another command wrote (never an input)"
    for name, stage in sub.choices.items():
        if name != "plot":
            stage.add_argument("--force", action="store_true", help=force)
    for figure in plots.choices.values():
        figure.add_argument("--force", action="store_true", help=force)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        checked = stage_paths(args)
        if checked is not None:
            from pipeline.provenance import check_outputs

            check_outputs(*checked, force=args.force)
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:
        # Our stages raise these with messages naming the file and the problem.
        logging.getLogger("edn").debug("traceback", exc_info=True)
        print(f"edn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
