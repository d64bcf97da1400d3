"""What ``edn train`` and ``edn train-face`` take besides their inputs, each option declared once
(pix2pixHD's ``options/``): its type and default (the dataclass field), and in the field's
:class:`Option` its help, range or choices, which commands take it, whether an ablation may change it,
whether a resumed run may, and the CPU demo's value where config/config.yaml departs from the default.

``edn``'s parser (pipeline/gan/commands.py), the configs' checks (:meth:`TrainConfig.__post_init__`) and
the workflow's flags are made from these declarations; tests/test_options.py holds the JSON schema's
``train`` keys, ``evaluate.ablations``, config/config.yaml and config/README.md to them. Only the standard
library is imported here, so ``edn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline.arguments import Number, non_negative_int, positive_int

# The values a choice takes; the modules that act on them import them from here.
PRECISIONS = ("auto", "bf16", "fp16", "tf32", "fp32")
COMPILE_MODES = ("auto", "on", "off")  # the config's true/false are on/off
UPSAMPLINGS = ("transpose", "resize")
CHROMAS = ("full", "half")
SWITCH = (True, False, "auto")  # on the command line: on, off, auto
DEVICES = ("auto", "cpu", "cuda")

# Ranges. Maxima bound what memory grows with: a model side up to 4x the paper's largest (2048), filters up
# to 16x the paper's 64; the model that fits is then decided by the training step's memory estimate
# (pipeline/gan/memory.py).
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
MINUTES = Number(float, 0)
PROBABILITY = Number(float, 0, 1)
SHARE = Number(float, 0, below=1)  # of the frame: 1 would move or scale the person out of it
DEGREES = Number(float, 0, 180)
FACE_SIDE = Number(int, 8, 8192, unit="pixels")

POSE, FACE, BOTH = ("train",), ("train-face",), ("train", "train-face")
KEEP = object()  # Option.demo: config/config.yaml keeps the default


@dataclass(frozen=True)
class Option:
    """What a training option is besides its type and default."""

    help: str
    check: Number | tuple[Any, ...] | None = None  # a number's range, or the values it takes; None: a flag or path
    stages: tuple[str, ...] = BOTH  # the edn commands that take it
    ablation: bool = False  # evaluate.ablations may change it (a generator or loss option)
    resume: bool = False  # may differ between a checkpoint and the run resuming it (length and housekeeping)
    demo: Any = KEEP  # config/config.yaml's value where the CPU demo departs from the default
    flag: str | None = None  # the command-line spelling when not --NAME (a flag that turns a default off)
    config: str | None = None  # its config key when not train: NAME (None: train: NAME; "": none)


def option(default: Any, help: str, check: Number | tuple[Any, ...] | None = None,
           stages: tuple[str, ...] = BOTH, **details: Any) -> Any:
    """A config field declared with its :class:`Option`."""
    return field(default=default, metadata={"option": Option(help, check, stages, **details)})


def declaration(cls: type, name: str) -> Option:
    return cls.__dataclass_fields__[name].metadata["option"]


def options(cls: type) -> list[tuple[dataclasses.Field, Option]]:
    """Each field of a config class with its declaration, in order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls)]


@dataclass
class TrainConfig:
    """Everything ``edn train`` takes besides its inputs; recorded in run.json and the checkpoints. The
    defaults are the paper's global generator (config/paper.yaml's first phase; tests/test_cli.py)."""

    width: int = option(512, "model width in pixels", MODEL_SIDE, POSE, demo=144)
    height: int = option(256, "model height in pixels", MODEL_SIDE, POSE)
    epochs: int = option(20, "passes over the training pairs", positive_int, ablation=True, resume=True, demo=4)
    niter_decay: int = option(10, "last epochs, over which the learning rate falls linearly to 0 (pix2pixHD)",
                              non_negative_int, ablation=True, resume=True, demo=2)
    batch_size: int = option(1, "samples per step and process", SAMPLES_PER_STEP)
    lr: float = option(2e-4, "Adam learning rate", LEARNING_RATE, ablation=True)
    beta1: float = option(0.5, "Adam beta1", BETA, config="")
    ngf: int = option(64, "generator's first filters", FILTERS, POSE, ablation=True, demo=16)
    n_downsample: int = option(4, "global generator downsamplings", DOWNSAMPLINGS, POSE, ablation=True, demo=2)
    n_blocks: int = option(9, "global generator residual blocks", BLOCKS, POSE, ablation=True, demo=6)
    n_blocks_local: int = option(3, "local enhancer residual blocks", BLOCKS, POSE, ablation=True)
    upsample: str = option("transpose", "the generator's upsampling: transpose (pix2pixHD's transposed "
                           "convolutions) or resize (nearest 2x then a 3x3 convolution: no checkerboard)",
                           UPSAMPLINGS, POSE, ablation=True, demo="resize")
    chroma: str = option("full", "the generated colour: full (the network's own) or half (chroma at half "
                         "resolution as camera footage carries it, luma untouched)", CHROMAS, POSE, ablation=True,
                         demo="half")
    local_enhancer: bool = option(False, "pix2pixHD's local enhancer around a global generator of 2 x ngf", None,
                                  POSE)
    ndf: int = option(64, "discriminator's first filters", FILTERS, ablation=True, demo=32)
    n_layers_d: int = option(3, "discriminator layers (3: 70x70 patches)", LAYERS, ablation=True)
    num_d: int = option(3, "discriminator scales", LAYERS, ablation=True, demo=2)
    lambda_feat: float = option(10.0, "feature-matching loss weight", WEIGHT, ablation=True)
    lambda_vgg: float = option(10.0, "VGG perceptual loss weight", WEIGHT, config="")
    vgg_loss: bool | str = option(True, "VGG19 perceptual loss; on: stop when its weights are missing; auto: use "
                                  "them when found", SWITCH, ablation=True, demo="auto")
    vgg_weights: str | None = option(None, "VGG19 ImageNet weights, vgg19-dcbbb0d1.pth (default: the torch hub "
                                     "cache)", resume=True)
    seed: int = option(0, "seed of weights and data order", SEED, ablation=True)
    device: str = option("auto", "auto: CUDA if any", DEVICES, resume=True)
    precision: str = option("auto", "auto: bf16 on GPUs and CPUs with native bf16, else fp32", PRECISIONS)
    channels_last: bool = option(False, "channels_last memory format (off: InstanceNorm returns NCHW, so it costs "
                                 "transposes)")
    compile: str = option("auto", "torch.compile the networks", COMPILE_MODES, resume=True)
    checkpoint_every: int = option(500, "steps between checkpoints", positive_int, resume=True, demo=200)
    checkpoint_minutes: float = option(0.0, "also checkpoint when this many minutes passed since the last one, 0: "
                                       "off", MINUTES, resume=True, demo=10)
    sample_every: int = option(500, "steps between sample grids, 0: none", non_negative_int, resume=True, demo=200)
    max_steps: int | None = option(None, "stop after this many steps in all", non_negative_int, resume=True,
                                   config="")
    holdout: float = option(0.2, "last fraction of every clip kept out", HOLDOUT)
    workers: int = option(2, "data loading processes", WORKERS, resume=True)
    deterministic: bool = option(False, "deterministic kernels (slower)", resume=True)
    temporal: bool = option(True, "the paper's frame-by-frame ablation: no previous-frame input, single-frame "
                            "discriminator", None, POSE, flag="--no-temporal", config="")
    background: str = option("none", "none: the paper's generator; plate: it also sees the clip's background plate "
                             "and paints a foreground and a soft mask over it (needs --clip-plate)", ("none", "plate"),
                             POSE, ablation=True, demo="plate")
    lambda_l1: float = option(0.0, "pixel L1 reconstruction weight (0: the paper's losses only)", WEIGHT,
                              ablation=True, demo=100.0)
    l1_scales: int = option(1, "the L1 averaged over this many scales (1, 1/2, 1/4...)", L1_SCALES, ablation=True)
    lambda_fg: float = option(0.0, "background plate: L1 weight of the foreground against the real frame inside "
                              "the person's box (from the stick figure)", WEIGHT, POSE, ablation=True)
    lambda_mask_binary: float = option(0.0, "background plate: weight of the prior 4 m (1 - m) that pushes the mask "
                                       "to 0 or 1", WEIGHT, POSE, ablation=True)
    lambda_mask: float = option(0.0, "background plate: L1 weight of the mask against where the real frame differs "
                                "from the plate inside the person's box (the plate's inpainted pixels left out)",
                                WEIGHT, POSE, ablation=True)
    mask_init: float | None = option(None, "background plate: the mask's starting value, 0-1 (default: PyTorch's "
                                     "init, ~0.5)", MASK_INIT, POSE, ablation=True)
    weight_init: str = option("default", "normal: pix2pixHD's N(0, 0.02) weights; default: PyTorch's",
                              ("default", "normal"), ablation=True)
    lr_schedule: str = option("epoch", "epoch: the rate drops after each of the last --niter-decay epochs "
                              "(pix2pixHD); step: it falls linearly every step, to 0 after the last",
                              ("epoch", "step"), ablation=True)
    ema_decay: float = option(0.0, "> 0: the saved model is an exponential moving average of the weights with "
                              "this decay", EMA_DECAY, ablation=True, demo=0.99)
    init_global: str | None = option(None, "start the local enhancer's global part from this global generator.pt "
                                     "(trained with ngf = 2 x --ngf at half the resolution; the reference schedule)",
                                     None, POSE, resume=True, config="")
    niter_fix_global: int = option(0, "first epochs in which only the local enhancer's own layers learn",
                                   non_negative_int, POSE)
    lr_scaling: str = option("none", "none: --lr as given whatever the GPU count; linear: --lr x batch-size x "
                             "processes", ("none", "linear"))
    tensorboard: bool | str = option("auto", "TensorBoard events (losses, lr, step time, samples) in "
                                     "OUT_DIR/tensorboard; auto: when the package is installed", SWITCH, resume=True)
    # Training-data augmentation of the pose GAN (pipeline.gan.augment; 0 turns each off)
    # The demo mirrors half its pairs: better on the transfer of four sources on three seeds (docs/evaluation.md).
    mirror: float = option(0.0, "probability that a training pair is mirrored (stick figures re-drawn with left and "
                           "right exchanged)", PROBABILITY, POSE, ablation=True, demo=0.5)
    jitter_scale: float = option(0.0, "each pair scaled by 1 +- up to this (frames, plate, stick figures alike)", SHARE,
                                 POSE, ablation=True)
    jitter_shift: float = option(0.0, "each pair shifted by up to this share of the frame's width and height", SHARE,
                                 POSE, ablation=True)
    jitter_rotation: float = option(0.0, "each pair rotated by up to this many degrees about the frame's centre",
                                    DEGREES, POSE, ablation=True)
    pose_drop: float = option(0.0, "probability that an input stick figure loses a joint (and its hand), as a "
                              "detector does; the real frames are not touched", PROBABILITY, POSE, ablation=True)
    pose_noise: float = option(0.0, "input stick figures' joints moved by a normal draw of this share of the height",
                               SHARE, POSE, ablation=True)
    lambda_new_pose: float = option(0.0, "weight of the discriminator's verdict on frames drawn from new poses: each "
                                    "pair's stick figures with limbs turned within the joints' range of motion (no "
                                    "frame to match: no pixel, VGG or feature-matching loss)", WEIGHT, POSE,
                                    ablation=True)
    lambda_mismatch: float = option(0.0, "weight of the discriminator's loss on the real frames shown with a new "
                                    "pose's stick figures, learnt as fakes (a frame that does not match its "
                                    "figure: the matching-aware discriminator of GAN-CLS)", WEIGHT, POSE,
                                    ablation=True)
    lambda_new_pose_plate: float = option(0.0, "background plate, with lambda_new_pose: L1 weight of a new pose's "
                                          "frames against the plate outside the body its keypoints outline (limbs, "
                                          "torso and head at anthropometric widths), where a real frame shows the "
                                          "background", WEIGHT, POSE, ablation=True)

    def __post_init__(self) -> None:
        bad = [why for f, o in options(type(self))
               if (why := _refusal(f.name, getattr(self, f.name), f.default, o.check))]
        if not 0 <= self.niter_decay <= self.epochs:
            bad.append(f"niter_decay={self.niter_decay!r} (at most epochs, {self.epochs})")
        if not 0 <= self.niter_fix_global <= self.epochs:
            bad.append(f"niter_fix_global={self.niter_fix_global!r} (at most epochs, {self.epochs})")
        if (self.init_global is not None or self.niter_fix_global) and not self.local_enhancer:
            bad.append(f"init_global={self.init_global!r}, niter_fix_global={self.niter_fix_global} without "
                       "local_enhancer")
        if self.lambda_new_pose_plate > 0 and (self.background != "plate" or self.lambda_new_pose <= 0):
            bad.append(f"lambda_new_pose_plate={self.lambda_new_pose_plate} needs background: plate and "
                       f"lambda_new_pose > 0 (has background: {self.background}, lambda_new_pose: "
                       f"{self.lambda_new_pose})")
        if bad:
            raise ValueError(f"invalid training settings: {'; '.join(bad)}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _refusal(name: str, value: Any, default: Any, check: Number | tuple[Any, ...] | None) -> str | None:
    """``NAME=VALUE (what it must be)`` when ``value`` is outside the declared range or choices, else None
    (None is taken where it is the default)."""
    if check is None or (value is None and default is None):
        return None
    if isinstance(check, Number):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                check.check(value)
                return None
            except ValueError:
                pass
        return f"{name}={value!r} (must be {check.describe()})"
    if value in check and type(value) in {type(c) for c in check}:
        return None
    return f"{name}={value!r} (one of {', '.join(map(str, check))})"


C = TypeVar("C", bound=TrainConfig)


def _face(name: str, default: Any, **changes: Any) -> Any:
    """A :class:`TrainConfig` option with the face GAN's default and declaration changes."""
    declared = declaration(TrainConfig, name)
    return field(default=default, metadata={"option": dataclasses.replace(declared, **changes)})


@dataclass
class FaceConfig(TrainConfig):
    """:class:`TrainConfig` plus the face generator; the main generator's fields come from generator.pt.
    The defaults are config/paper.yaml's ``train: face:``."""

    epochs: int = _face("epochs", 5, config="face.epochs", demo=3)
    niter_decay: int = _face("niter_decay", 2, config="face.niter_decay", demo=1)
    num_d: int = _face("num_d", 1, help="discriminator scales (one 70x70 PatchGAN: the crop is small)", config="",
                       ablation=False)
    lambda_l1: float = _face("lambda_l1", 0.0, config="face.lambda_l1", ablation=False, demo=100.0)
    face_ngf: int = option(32, "face generator's first filters", FILTERS, FACE, config="face.ngf", demo=16)
    face_n_downsample: int = option(3, "face generator downsamplings", DOWNSAMPLINGS, FACE, config="face.n_downsample")
    face_n_blocks: int = option(5, "face generator residual blocks", BLOCKS, FACE, config="face.n_blocks", demo=3)
    face_size: int | None = option(None, "face box side in model pixels (default: height / 4, 128 at 512)", FACE_SIDE,
                                   FACE, config="face.size")
    # A majority of the samples must show the face the residual is to learn: a crop without face
    # landmarks has no face drawn in its stick figure, so nothing tells the residual where eyes and mouth go.
    face_min_landmarks: float = option(0.5, "write face.pt without a face GAN (transfer and evaluation then apply "
                                       "none) when face landmarks are found on fewer of the training frames than "
                                       "this share", PROBABILITY, FACE, config="face.min_landmarks")

    def __post_init__(self) -> None:
        super().__post_init__()
        divisor = 2 ** self.face_n_downsample
        if self.face_size is not None and self.face_size % divisor:
            raise ValueError(f"--face-size {self.face_size} must be a positive multiple of {divisor} "
                             f"(the face generator downsamples {self.face_n_downsample} times)")


def free_on_resume(cls: type = TrainConfig) -> set[str]:
    """Settings that may differ between a checkpoint and the run resuming it; every other setting shapes the
    networks, losses or data order and must match (init_global is a path: the weights it held are part of the
    checkpoint's "inputs" fingerprint)."""
    return {f.name for f, o in options(cls) if o.resume}


def config_key(cls: type, name: str) -> str | None:
    """The option's key under the config's ``train:`` (``face.ngf`` for the face GAN's), None when the config
    has none."""
    key = declaration(cls, name).config
    return name if key is None else key or None


def workflow_default(cls: type, name: str) -> Any:
    """config/config.yaml's value of an option: the CPU demo's where it is declared, else the default."""
    declared = declaration(cls, name)
    return cls.__dataclass_fields__[name].default if declared.demo is KEEP else declared.demo


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The config of the parsed options of gan/commands.py (every option has a config field of the same name)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    for key in ("vgg_loss", "tensorboard"):
        if key in values:
            values[key] = {"on": True, "off": False, "auto": "auto"}[values[key]]
    return cls(**values)
