"""What ``edn train`` and ``edn train-face`` take besides their inputs: :class:`TrainConfig` and
:class:`FaceConfig`, their checks, and which of them a resumed run may change (the options of
pix2pixHD's ``options/``). Recorded in run.json, the checkpoints and the model files.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline.gan.compiled import COMPILE_MODES
from pipeline.gan.models.generator import CHROMAS, UPSAMPLINGS
from pipeline.gan.runtime import PRECISIONS

# Settings that may differ between a checkpoint and the run resuming it (training length and
# housekeeping); every other setting shapes the networks, losses or data order and must match.
# (init_global is a path: the weights it held are part of the checkpoint's "inputs" fingerprint.)
FREE_ON_RESUME = {"epochs", "niter_decay", "device", "checkpoint_every", "checkpoint_minutes", "sample_every",
                  "max_steps", "workers", "deterministic", "vgg_weights", "init_global", "tensorboard", "compile"}
_POSITIVE = ("width", "height", "epochs", "batch_size", "ngf", "n_downsample", "n_blocks", "ndf", "n_layers_d",
             "num_d", "checkpoint_every")
_REAL = ("lr", "beta1", "lambda_feat", "lambda_vgg", "lambda_l1", "checkpoint_minutes", "holdout")

LR_SCALING = ("none", "linear")
WEIGHT_INITS = ("default", "normal")
LR_SCHEDULES = ("epoch", "step")


@dataclass
class TrainConfig:
    """Everything ``edn train`` takes besides its inputs; recorded in run.json and the checkpoints."""

    width: int = 512
    height: int = 256
    # The defaults are the paper's global generator (config/paper.yaml's first phase; tests/test_cli.py).
    epochs: int = 20
    niter_decay: int = 10  # linear learning-rate decay to zero over the last N epochs (pix2pixHD)
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    ngf: int = 64
    n_downsample: int = 4
    n_blocks: int = 9
    n_blocks_local: int = 3
    # The generator's upsampling: transpose (pix2pixHD's stride-2 transposed convolutions) or resize
    # (nearest 2x, then a 3x3 convolution: no checkerboard; pipeline.gan.models.generator.upsample_layer)
    upsample: str = "transpose"
    # The foreground's colour: full (the network's own) or half (chroma low-passed as 4:2:0 footage carries
    # it, luma untouched; pipeline.gan.models.generator.ChromaLowPass)
    chroma: str = "full"
    local_enhancer: bool = False
    ndf: int = 64
    n_layers_d: int = 3
    num_d: int = 3
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    vgg_loss: bool | str = True  # True, False, or "auto": use VGG when its weights are found
    vgg_weights: str | None = None  # None: the torch hub cache
    seed: int = 0
    device: str = "auto"
    # auto: bf16 on GPUs with native bf16, else fp32; fp16 uses a grad scaler; fp32 is IEEE (TF32 off),
    # tf32 lets CUDA matmuls and convolutions use TF32
    precision: str = "auto"
    # InstanceNorm2d hands back NCHW for channels_last input, so conv -> norm pairs pay transposes:
    # off unless a benchmark on the machine shows it faster
    channels_last: bool = False
    # torch.compile the networks (pipeline.gan.compiled): auto (on CUDA, when the run is long enough to pay
    # the compile back), on, off; the losses agree with eager to float rounding
    compile: str = "auto"
    checkpoint_every: int = 500
    # Also a checkpoint once this many minutes have passed since the last one (0: steps only), so a job
    # stopped at its time limit loses at most that much whatever a step costs on the GPU it got.
    checkpoint_minutes: float = 0.0
    sample_every: int = 500  # 0: no sample grids
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in all
    holdout: float = 0.2
    workers: int = 2
    deterministic: bool = False
    # False: the paper's frame-by-frame ablation (no previous-frame input, single-frame discriminator)
    temporal: bool = True
    background: str = "none"  # "plate": the generator composites a foreground over the clip's plate
    lambda_l1: float = 0.0  # pixel L1 reconstruction weight; 0 = the paper's losses
    # The L1 averaged over this many scales (1, 1/2, 1/4...): more weight on low frequencies, which the
    # adversarial terms leave unanchored without VGG19
    l1_scales: int = 1
    # Background plate: L1 of the foreground against the real frame inside the person's box (from the
    # stick figure), so the foreground is the person wherever the mask may show it
    lambda_fg: float = 0.0
    lambda_mask_binary: float = 0.0  # background plate: prior pushing the mask to 0 or 1 (4 m (1 - m))
    # Background plate: L1 of the mask against where the real frame differs from the plate inside the
    # person's box (pipeline.gan.plate.foreground_target); the plate's inpainted pixels are unknown, not
    # background, and take no part
    lambda_mask: float = 0.0
    mask_init: float | None = None  # background plate: the mask's starting value (None: PyTorch's init, ~0.5)
    weight_init: str = "default"  # normal: pix2pixHD's N(0, 0.02) convolution weights; default: PyTorch's
    lr_schedule: str = "epoch"  # epoch: pix2pixHD's steps after each epoch; step: linear to 0 at the last step
    ema_decay: float = 0.0  # > 0: the saved generator is an exponential moving average of its weights
    # The reference schedule's second phase: the local enhancer's global part starts from this
    # global generator.pt (ngf = 2 x ngf) and takes no updates for the first niter_fix_global epochs.
    init_global: str | None = None
    niter_fix_global: int = 0
    # Learning rate with several processes/samples per step: "none" keeps lr; "linear" multiplies it
    # by the global batch (batch_size x processes; the paper's batch is 1).
    lr_scaling: str = "none"
    tensorboard: bool | str = "auto"  # events under RUN_DIR/tensorboard; auto: when the package is installed

    def __post_init__(self) -> None:
        bad = [f"{k}={getattr(self, k)}" for k in _POSITIVE if getattr(self, k) < 1]
        bad += [f"niter_decay={self.niter_decay}"] if not 0 <= self.niter_decay <= self.epochs else []
        bad += [f"lr={self.lr}"] if not self.lr > 0 else []
        bad += [f"{k}={getattr(self, k)}" for k in _REAL if not math.isfinite(getattr(self, k))]
        bad += [f"beta1={self.beta1}"] if not 0 <= self.beta1 < 1 else []
        bad += [f"vgg_loss={self.vgg_loss!r}"] if self.vgg_loss not in (True, False, "auto") else []
        bad += [f"tensorboard={self.tensorboard!r}"] if self.tensorboard not in (True, False, "auto") else []
        bad += [f"device={self.device!r}"] if self.device not in ("auto", "cpu", "cuda") else []
        bad += [f"precision={self.precision!r}"] if self.precision not in PRECISIONS else []
        bad += [f"compile={self.compile!r}"] if self.compile not in COMPILE_MODES else []
        bad += [f"max_steps={self.max_steps}"] if self.max_steps is not None and self.max_steps < 0 else []
        bad += [f"holdout={self.holdout}"] if not 0 <= self.holdout < 1 else []
        bad += [f"checkpoint_minutes={self.checkpoint_minutes}"] if not self.checkpoint_minutes >= 0 else []
        bad += [f"workers={self.workers}"] if self.workers < 0 else []
        bad += [f"background={self.background!r}"] if self.background not in ("none", "plate") else []
        bad += [f"upsample={self.upsample!r}"] if self.upsample not in UPSAMPLINGS else []
        bad += [f"chroma={self.chroma!r}"] if self.chroma not in CHROMAS else []
        bad += [f"lambda_l1={self.lambda_l1}"] if self.lambda_l1 < 0 else []
        bad += [f"l1_scales={self.l1_scales}"] if not 1 <= self.l1_scales <= 8 else []
        bad += [f"{k}={getattr(self, k)}" for k in ("lambda_fg", "lambda_mask_binary", "lambda_mask")
                if getattr(self, k) < 0]
        bad += [f"mask_init={self.mask_init}"] if self.mask_init is not None and not 0 < self.mask_init < 1 else []
        bad += [f"weight_init={self.weight_init!r}"] if self.weight_init not in WEIGHT_INITS else []
        bad += [f"lr_schedule={self.lr_schedule!r}"] if self.lr_schedule not in LR_SCHEDULES else []
        bad += [f"ema_decay={self.ema_decay}"] if not 0 <= self.ema_decay < 1 else []
        bad += [f"lr_scaling={self.lr_scaling!r}"] if self.lr_scaling not in LR_SCALING else []
        bad += [f"niter_fix_global={self.niter_fix_global}"] if not 0 <= self.niter_fix_global <= self.epochs else []
        if (self.init_global is not None or self.niter_fix_global) and not self.local_enhancer:
            bad += [f"init_global={self.init_global!r}, niter_fix_global={self.niter_fix_global} "
                    "without local_enhancer"]
        if bad:
            raise ValueError(f"invalid training settings: {', '.join(bad)} (finite numbers, sizes and counts >= 1, "
                             "0 <= beta1 < 1, "
                             "0 <= niter_decay <= epochs, 0 <= niter_fix_global <= epochs, 0 <= holdout < 1, "
                             "checkpoint_minutes >= 0, vgg_loss true/false/auto, lr_scaling none/linear, "
                             "compile auto/on/off, init_global and niter_fix_global need the local enhancer, "
                             "loss weights >= 0, l1_scales 1-8, 0 < mask_init < 1, weight_init default/normal, "
                             "lr_schedule epoch/step, 0 <= ema_decay < 1, upsample transpose/resize, chroma full/half)")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


C = TypeVar("C", bound=TrainConfig)


@dataclass
class FaceConfig(TrainConfig):
    """:class:`TrainConfig` plus the face generator; the main generator's fields come from generator.pt."""

    epochs: int = 5  # config/paper.yaml's train: face: schedule
    niter_decay: int = 2
    num_d: int = 1  # one 70x70 PatchGAN: the crop is small
    face_ngf: int = 32
    face_n_downsample: int = 3
    face_n_blocks: int = 5
    face_size: int | None = None  # box side in model pixels; None: height / 4 (128 at 512)

    def __post_init__(self) -> None:
        super().__post_init__()
        divisor = 2 ** self.face_n_downsample
        if min(self.face_ngf, self.face_n_downsample, self.face_n_blocks) < 1:
            raise ValueError("face_ngf, face_n_downsample and face_n_blocks must be >= 1")
        if self.face_size is not None and (self.face_size < divisor or self.face_size % divisor):
            raise ValueError(f"--face-size {self.face_size} must be a positive multiple of {divisor} "
                             f"(the face generator downsamples {self.face_n_downsample} times)")


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The config of the parsed options of gan/commands.py (every option has a config field of the same name)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    for key in ("vgg_loss", "tensorboard"):
        if key in values:
            values[key] = {"on": True, "off": False, "auto": "auto"}[values[key]]
    return cls(**values)
