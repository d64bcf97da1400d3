"""``edn`` commands of the GANs: train, train-face, plate and transfer."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.arguments import CRF, Number, StagePaths, handler, non_negative_int, positive_int

DEFAULT = " (default: %(default)s)"

# The range of each numeric option of train, train-face and transfer; the JSON schema's keys of the
# same name take the same (tests/test_ranges.py compares them). Maxima bound what memory grows with:
# a model side up to 4x the paper's largest (2048), filters up to 16x the paper's 64, and the model
# that fits is then decided by the training step's memory estimate (pipeline/gan/memory.py).
MODEL_SIDE = Number(int, 16, 8192, unit="pixels")
FILTERS = Number(int, 1, 1024)
DOWNSAMPLINGS = Number(int, 1, 8)  # 2**8 = 256: a 8192-pixel side keeps 32 pixels at the bottleneck
BLOCKS = Number(int, 1, 64)
LAYERS = Number(int, 1, 8)  # discriminator layers or scales: each halves the picture
WEIGHT = Number(float, 0)  # a loss weight: 0 turns the loss off
MASK_INIT = Number(float, above=0, below=1)  # the mask is a sigmoid's value, never exactly 0 or 1
L1_SCALES = Number(int, 1, 8)  # each scale halves the picture, as the discriminator's scales do
EMA_DECAY = Number(float, 0, below=1)  # 1 would never move the average
LEARNING_RATE = Number(float, maximum=1, above=0)  # Adam moves each weight by about lr per step
BETA = Number(float, 0, below=1)  # Adam's moving average forgets nothing at 1 and diverges above
SEED = Number(int, 0, 2 ** 32 - 1)  # numpy's seed range (seed_everything seeds numpy too)
HOLDOUT = Number(float, 0, below=1)  # a share of each clip; 1 would leave nothing to train on
WORKERS = Number(int, 0, 64)  # data processes, each with its own copy of the clips' frames
SAMPLES_PER_STEP = Number(int, 1, 1024)
PROBABILITY = Number(float, 0, 1)
SHARE = Number(float, 0, below=1)  # of the frame: 1 would move or scale the person out of it
DEGREES = Number(float, 0, 180)


def add_device_options(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """--device and --precision of a command that runs the networks (training also says how it uses fp16)."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA if any" + DEFAULT)
    precision = ("auto: bf16 on GPUs with native bf16 (compute capability >= 8) and on CPUs with AMX or "
                 "AVX512-BF16, else fp32 (decided from the hardware alone; a resumed run keeps its checkpoint's)")
    if training:
        precision += ("; fp16 with loss scaling; fp32 is IEEE, tf32 lets CUDA use TF32 for fp32 "
                      "matmuls/convolutions")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "tf32", "fp32"), default="auto",
                        help=precision + DEFAULT)
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile the networks; auto: on CUDA when the run is long enough to pay the "
                        "compile back (single process); on the CPU eager training and generation compiled "
                        "from 4000 frames; falls back to eager with a log line where it cannot"
                        + DEFAULT)


def add_augmentation_options(parser: argparse.ArgumentParser) -> None:
    """The pose GAN's training-data augmentation (pipeline/gan/augment.py; 0 turns each off)."""
    parser.add_argument("--mirror", type=PROBABILITY, default=0.0,
                        help="probability that a training pair is mirrored (stick figures re-drawn with left and "
                        "right exchanged)" + DEFAULT)
    parser.add_argument("--jitter-scale", type=SHARE, default=0.0,
                        help="each pair scaled by 1 +- up to this (frames, plate, stick figures alike)" + DEFAULT)
    parser.add_argument("--jitter-shift", type=SHARE, default=0.0,
                        help="each pair shifted by up to this share of the frame's width and height" + DEFAULT)
    parser.add_argument("--jitter-rotation", type=DEGREES, default=0.0,
                        help="each pair rotated by up to this many degrees about the frame's centre" + DEFAULT)
    parser.add_argument("--pose-drop", type=PROBABILITY, default=0.0,
                        help="probability that an input stick figure loses a joint (and its hand), as a detector "
                        "does; the real frames are not touched" + DEFAULT)
    parser.add_argument("--pose-noise", type=SHARE, default=0.0,
                        help="input stick figures' joints moved by a normal draw of this share of the height"
                        + DEFAULT)


def clip_paths(args: argparse.Namespace) -> list[Path]:
    """The files and folders of every --clip FRAMES_DIR RENDER_DIR KEYPOINTS, in order."""
    return [path for clip in (getattr(args, "clip", None) or []) for path in clip]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add train, train-face, plate and transfer to ``edn``'s subcommands."""
    # Each training option is the TrainConfig/FaceConfig field of the same name with the same
    # default (tests/test_train.py checks both), so --help shows the real defaults. Those are the
    # paper's: edn train's are the global generator of config/paper.yaml's first phase, edn
    # train-face's its face GAN (tests/test_cli.py checks them against config/paper.yaml); the
    # workflow passes every option from the config, so config/config.yaml's CPU demo sizes apply there.
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
            p.add_argument("--face-ngf", type=FILTERS, default=32, help="face generator's first filters" + DEFAULT)
            p.add_argument("--face-n-downsample", type=DOWNSAMPLINGS, default=3,
                           help="face generator downsamplings" + DEFAULT)
            p.add_argument("--face-n-blocks", type=BLOCKS, default=5, help="face generator residual blocks" + DEFAULT)
            p.add_argument("--face-size", type=Number(int, 8, 8192, unit="pixels"), default=None,
                           help="face box side in model pixels (default: height / 4, 128 at 512)")
            p.add_argument("--face-min-landmarks", type=Number(float, 0, 1), default=0.5,
                           help="write face.pt without a face GAN (transfer and evaluation then apply none) when "
                           "face landmarks are found on fewer of the training frames than this share" + DEFAULT)
        else:
            p.add_argument("--width", type=MODEL_SIDE, default=512, help="model width in pixels" + DEFAULT)
            p.add_argument("--height", type=MODEL_SIDE, default=256, help="model height in pixels" + DEFAULT)
            p.add_argument("--ngf", type=FILTERS, default=64, help="generator's first filters" + DEFAULT)
            p.add_argument("--n-downsample", type=DOWNSAMPLINGS, default=4,
                           help="global generator downsamplings" + DEFAULT)
            p.add_argument("--n-blocks", type=BLOCKS, default=9, help="global generator residual blocks" + DEFAULT)
            p.add_argument("--local-enhancer", action="store_true",
                           help="pix2pixHD's local enhancer around a global generator of 2 x ngf")
            p.add_argument("--n-blocks-local", type=BLOCKS, default=3, help="local enhancer residual blocks" + DEFAULT)
            p.add_argument("--upsample", choices=("transpose", "resize"), default="transpose",
                           help="the generator's upsampling: transpose (pix2pixHD's transposed convolutions) or "
                           "resize (nearest 2x then a 3x3 convolution: no checkerboard)" + DEFAULT)
            p.add_argument("--chroma", choices=("full", "half"), default="full",
                           help="the generated colour: full (the network's own) or half (chroma at half resolution "
                           "as camera footage carries it, luma untouched)" + DEFAULT)
            p.add_argument("--init-global", default=None, metavar="GENERATOR_PT",
                           help="start the local enhancer's global part from this global generator.pt "
                           "(trained with ngf = 2 x --ngf at half the resolution; the reference schedule)")
            p.add_argument("--niter-fix-global", type=non_negative_int, default=0,
                           help="first epochs in which only the local enhancer's own layers learn" + DEFAULT)
            p.add_argument("--no-temporal", dest="temporal", action="store_false",
                           help="the paper's frame-by-frame ablation: no previous-frame input, single-frame "
                           "discriminator")
            p.add_argument("--background", choices=("none", "plate"), default="none",
                           help="none: the paper's generator; plate: it also sees the clip's background plate "
                           "and paints a foreground and a soft mask over it (needs --clip-plate)" + DEFAULT)
            p.add_argument("--clip-plate", action="append", type=Path, default=None, metavar="PLATE_PNG",
                           help="`edn plate` image of a clip, one per --clip in the same order (--background plate)")
            p.add_argument("--lambda-fg", type=WEIGHT, default=0.0,
                           help="background plate: L1 weight of the foreground against the real frame inside the "
                           "person's box (from the stick figure)" + DEFAULT)
            p.add_argument("--lambda-mask-binary", type=WEIGHT, default=0.0,
                           help="background plate: weight of the prior 4 m (1 - m) that pushes the mask to 0 or 1"
                           + DEFAULT)
            p.add_argument("--lambda-mask", type=WEIGHT, default=0.0,
                           help="background plate: L1 weight of the mask against where the real frame differs "
                           "from the plate inside the person's box (the plate's inpainted pixels left out)" + DEFAULT)
            p.add_argument("--mask-init", type=MASK_INIT, default=None,
                           help="background plate: the mask's starting value, 0-1 (default: PyTorch's init, ~0.5)")
            add_augmentation_options(p)
        p.add_argument("--lambda-l1", type=WEIGHT, default=0.0,
                       help="pixel L1 reconstruction weight (0: the paper's losses only)" + DEFAULT)
        p.add_argument("--l1-scales", type=L1_SCALES, default=1,
                       help="the L1 averaged over this many scales (1, 1/2, 1/4...)" + DEFAULT)
        p.add_argument("--weight-init", choices=("default", "normal"), default="default",
                       help="normal: pix2pixHD's N(0, 0.02) weights; default: PyTorch's" + DEFAULT)
        p.add_argument("--lr-schedule", choices=("epoch", "step"), default="epoch",
                       help="epoch: the rate drops after each of the last --niter-decay epochs (pix2pixHD); step: "
                       "it falls linearly every step, to 0 after the last" + DEFAULT)
        p.add_argument("--ema-decay", type=EMA_DECAY, default=0.0,
                       help="> 0: the saved model is an exponential moving average of the weights with this decay"
                       + DEFAULT)
        p.add_argument("--epochs", type=positive_int, default=5 if face else 20, help="passes over the training pairs"
                       + DEFAULT)
        p.add_argument("--niter-decay", type=non_negative_int, default=2 if face else 10,
                       help="last epochs, over which the learning rate falls linearly to 0" + DEFAULT)
        p.add_argument("--batch-size", type=SAMPLES_PER_STEP, default=1, help="samples per step and process" + DEFAULT)
        p.add_argument("--lr", type=LEARNING_RATE, default=2e-4, help="Adam learning rate" + DEFAULT)
        p.add_argument("--lr-scaling", choices=("none", "linear"), default="none",
                       help="none: --lr as given whatever the GPU count; linear: --lr x batch-size x processes"
                       + DEFAULT)
        p.add_argument("--beta1", type=BETA, default=0.5, help="Adam beta1" + DEFAULT)
        p.add_argument("--ndf", type=FILTERS, default=64, help="discriminator's first filters" + DEFAULT)
        p.add_argument("--n-layers-d", type=LAYERS, default=3, help="discriminator layers (3: 70x70 patches)" + DEFAULT)
        p.add_argument("--num-d", type=LAYERS, default=1 if face else 3, help="discriminator scales" + DEFAULT)
        p.add_argument("--lambda-feat", type=WEIGHT, default=10.0, help="feature-matching loss weight" + DEFAULT)
        p.add_argument("--lambda-vgg", type=WEIGHT, default=10.0, help="VGG perceptual loss weight" + DEFAULT)
        p.add_argument("--vgg-loss", choices=("on", "off", "auto"), default="on",
                       help="VGG19 perceptual loss; on: stop when its weights are missing; auto: use it when "
                       "they are found" + DEFAULT)
        p.add_argument("--no-vgg-loss", dest="vgg_loss", action="store_const", const="off",
                       help="same as --vgg-loss off")
        p.add_argument("--vgg-weights", default=None,
                       help="VGG19 ImageNet weights (vgg19-dcbbb0d1.pth; default: the torch hub cache)")
        p.add_argument("--seed", type=SEED, default=0, help="seed of weights and data order" + DEFAULT)
        add_device_options(p, training=True)
        p.add_argument("--channels-last", action="store_true",
                       help="channels_last memory format (off: InstanceNorm returns NCHW, so it costs transposes)")
        p.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints" + DEFAULT)
        p.add_argument("--checkpoint-minutes", type=Number(float, 0), default=0.0,
                       help="also checkpoint when this many minutes passed since the last one, 0: off" + DEFAULT)
        p.add_argument("--sample-every", type=non_negative_int, default=500,
                       help="steps between sample grids, 0: none" + DEFAULT)
        p.add_argument("--max-steps", type=non_negative_int, default=None, help="stop after this many steps in all")
        p.add_argument("--holdout", type=HOLDOUT, default=0.2, help="last fraction of every clip kept out" + DEFAULT)
        p.add_argument("--workers", type=WORKERS, default=2, help="data loading processes" + DEFAULT)
        p.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower)")
        p.add_argument("--tensorboard", choices=("on", "off", "auto"), default="auto",
                       help="TensorBoard events (losses, lr, step time, samples) in OUT_DIR/tensorboard; auto: "
                       "when the package is installed" + DEFAULT)
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
