"""``edn`` commands of the GANs: train, train-face, plate and transfer."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.arguments import CRF, StagePaths, handler
from pipeline.gan.options import COMPILE_MODES, DEVICES, HOLDOUT, PRECISIONS, SWITCH, FaceConfig, TrainConfig, \
    options

DEFAULT = " (default: %(default)s)"
ON_OFF = {True: "on", False: "off", "auto": "auto"}  # a switch's values as the command line spells them


def add_device_options(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """--device and --precision of a command that runs the networks (training also says how it uses fp16)."""
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA if any" + DEFAULT)
    precision = ("auto: bf16 on GPUs with native bf16 (compute capability >= 8) and on CPUs with AMX or "
                 "AVX512-BF16, else fp32 (decided from the hardware alone; a resumed run keeps its checkpoint's)")
    if training:
        precision += ("; fp16 with loss scaling; fp32 is IEEE, tf32 lets CUDA use TF32 for fp32 "
                      "matmuls/convolutions")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=precision + DEFAULT)
    parser.add_argument("--compile", choices=COMPILE_MODES, default="auto",
                        help="torch.compile the networks; auto: on CUDA when the run is long enough to pay the "
                        "compile back (single process); on the CPU eager training and generation compiled "
                        "from 4000 frames; falls back to eager with a log line where it cannot"
                        + DEFAULT)


def clip_paths(args: argparse.Namespace) -> list[Path]:
    """The files and folders of every --clip FRAMES_DIR RENDER_DIR KEYPOINTS, in order."""
    return [path for clip in (getattr(args, "clip", None) or []) for path in clip]


def add_training_options(parser: argparse.ArgumentParser, config: type, stage: str) -> None:
    """Every option of ``config`` (TrainConfig or FaceConfig) that ``stage`` takes, made from its declaration
    (pipeline/gan/options.py): so --help shows the real defaults, and a new option is one declaration."""
    for field, declared in options(config):
        if stage not in declared.stages or field.name in ("device", "precision", "compile"):
            continue
        flag = declared.flag or "--" + field.name.replace("_", "-")
        if declared.check == SWITCH:
            parser.add_argument(flag, choices=tuple(ON_OFF.values()), default=ON_OFF[field.default],
                                help=declared.help + DEFAULT)
        elif isinstance(field.default, bool):  # a flag that turns its default over
            parser.add_argument(flag, dest=field.name, action="store_false" if field.default else "store_true",
                                help=declared.help)
        elif isinstance(declared.check, tuple):
            parser.add_argument(flag, choices=declared.check, default=field.default, help=declared.help + DEFAULT)
        else:
            shown = DEFAULT if field.default is not None and "(default:" not in declared.help else ""
            parser.add_argument(flag, type=declared.check, default=field.default, help=declared.help + shown,
                                metavar=field.name.upper() if declared.check is None else None)
    add_device_options(parser, training=True)
    parser.add_argument("--no-vgg-loss", dest="vgg_loss", action="store_const", const="off",
                        help="same as --vgg-loss off")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add train, train-face, plate and transfer to ``edn``'s subcommands."""
    # Each training option is the TrainConfig/FaceConfig field of the same name with the same default.
    # Those are the paper's: edn train's are the global generator of config/paper.yaml's first phase,
    # edn train-face's its face GAN (tests/test_cli.py checks them against config/paper.yaml); the
    # workflow passes every option from the config, so config/config.yaml's CPU demo sizes apply there.
    for stage, config in (("train", TrainConfig), ("train-face", FaceConfig)):
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
        else:
            p.add_argument("--clip-plate", action="append", type=Path, default=None, metavar="PLATE_PNG",
                           help="`edn plate` image of a clip, one per --clip in the same order (--background plate)")
        add_training_options(p, config, stage)
        p.set_defaults(func=handler(f"pipeline.gan.{stage.replace('-', '_')}", "cli"))

    p = sub.add_parser("plate", help="background plate of a target clip: temporal median without the person")
    p.add_argument("frames", type=Path, help="the clip's frames folder (edn extract)")
    p.add_argument("keypoints", type=Path, help="its keypoint Parquet (masks the person out)")
    p.add_argument("out", type=Path, help="folder for plate.png and plate.json")
    p.add_argument("--holdout", type=HOLDOUT, default=0.0,
                   help="leave out the clip's last fraction, as training holds it out (train --holdout)" + DEFAULT)
    p.set_defaults(func=handler("pipeline.gan.plate", "cli"))

    p = sub.add_parser("transfer", help="a source's normalized poses -> video of the target (paper sec. 4)")
    p.add_argument("normalized", type=Path, help="the source's keypoints normalized to the target (edn normalize)")
    p.add_argument("render_dir", type=Path, help="their stick figures at the target's frame size (edn render)")
    p.add_argument("source_frames", type=Path, help="the source's frames, for the side-by-side video")
    p.add_argument("out", type=Path, help="H.264 MP4 to write")
    p.add_argument("--generator", type=Path, required=True, help="generator.pt of `edn train`")
    p.add_argument("--face", type=Path, default=None, help="face.pt of `edn train-face` (default: no face GAN)")
    p.add_argument("--side-by-side", type=Path, default=None, help="also write source | stick figure | result here")
    p.add_argument("--record", type=Path, default=None, help="JSON record (default: OUT with suffix .json)")
    add_device_options(p)
    p.add_argument("--crf", type=CRF, default=18, help="x264 quality, lower is better" + DEFAULT)
    p.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True,
                   help="carry the source's soundtrack (the frames' span) into the videos" + DEFAULT)
    p.set_defaults(func=handler("pipeline.gan.transfer", "cli"))


def stage_paths(args: argparse.Namespace) -> StagePaths | None:
    """(stage, inputs, outputs) of train, train-face, plate and transfer; None for any other command."""
    from pipeline.provenance import FileOutput, FolderOutput

    c = args.command
    if c in ("train", "train-face"):
        model = args.model_out or args.out_dir / ("face.pt" if c == "train-face" else "generator.pt")
        inputs = (*clip_paths(args), *(args.clip_qc or []), *(getattr(args, "clip_plate", None) or []),
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
    return None
