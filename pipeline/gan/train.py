"""``edn train``: the pose-to-frame GAN with temporal smoothing (Chan et al. 2019, section 3).

For every sample of consecutive frames (t, t+1) the generator runs twice,
I_t = G(x_t, 0) and I_{t+1} = G(x_{t+1}, I_t) with gradients through I_t, and the
multiscale discriminator judges (x_t, x_{t+1}, I_t, I_{t+1}) against (x_t, x_{t+1}, y_t, y_{t+1}).
Generator loss: LSGAN + feature matching (lambda 10) + VGG19 perceptual (lambda 10, both frames).

The training engine here (the loop, exact resume, checkpoints, logging) is shared with
``edn train-face`` (:mod:`pipeline.gan.train_face`): a stage is a :class:`GANTask` subclass. The
device, precision and ``torchrun`` process group come from :mod:`pipeline.gan.runtime`.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import copy
import csv
import dataclasses
import functools
import hashlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pipeline.gan.augment import Augmentation
from pipeline.gan.checkpoint import load_checkpoint, parameter_checksum, rng_state, save_checkpoint, save_model, \
    set_rng_state, tensors_sha256
from pipeline.gan.compiled import AUTO_MIN_TRAIN_STEPS, COMPILE_MODES, compile_in_place, decide_compile, \
    first_call
from pipeline.gan.data import Clip, PairDataset, load_clip
from pipeline.gan.models.discriminator import TEMPORAL_NC, MultiscaleDiscriminator
from pipeline.gan.models.generator import IMAGE_NC, POSE_NC, CHROMAS, UPSAMPLINGS, PlateComposite, build_generator, \
    default_generator_config, init_weights, sample_plates, tensor_to_image
from pipeline.gan.memory import StepMemory, check_step_fits, pose_step_memory
from pipeline.gan.models.losses import VGGLoss, VGGWeightsNotFound, feature_matching_loss, find_vgg_weights, \
    lsgan_loss, mask_binary_prior, masked_l1_loss, multiscale_l1_loss
from pipeline.gan.runtime import PRECISIONS, Runtime, all_gather, data_workers, determinism, seed_everything, \
    set_float32_math, start_runtime
from pipeline.gan.tensorboard_log import open_board
from pipeline.provenance import atomic_path, provenance, write_json

log = logging.getLogger(__name__)

ClipFiles = tuple[str | Path, str | Path, str | Path]  # frames dir, stick-figure dir, keypoints Parquet
# Settings that may differ between a checkpoint and the run resuming it (training length and
# housekeeping); every other setting shapes the networks, losses or data order and must match.
# (init_global is a path: the weights it held are part of the checkpoint's "inputs" fingerprint.)
_FREE_ON_RESUME = {"epochs", "niter_decay", "device", "checkpoint_every", "checkpoint_minutes", "sample_every",
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
    # Training-data augmentation (pipeline.gan.augment; 0: off): mirror probability; scale, shift (share of
    # the frame) and rotation (degrees) jitter amplitudes; the stick figure's dropped-joint probability and
    # joint noise (share of the height), on the generator's input only
    mirror: float = 0.0
    jitter_scale: float = 0.0
    jitter_shift: float = 0.0
    jitter_rotation: float = 0.0
    pose_drop: float = 0.0
    pose_noise: float = 0.0

    def __post_init__(self) -> None:
        Augmentation.of(self)  # refuses bad augmentation settings by name
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


def agree_on_vgg(vgg_loss: bool, no_vgg: str | None, rt: Runtime) -> None:
    """Every rank must train with the same losses (their values are all-reduced by position): a VGG
    decision that differs between ranks (``vgg_loss: auto`` with the weights on some nodes only) is an error."""
    decisions = all_gather((bool(vgg_loss), no_vgg), rt)
    if len({on for on, _ in decisions}) > 1:
        found = [rank for rank, (on, _) in enumerate(decisions) if on]
        missing = "; ".join(f"rank {rank}: {why}" for rank, (on, why) in enumerate(decisions) if not on)
        raise RuntimeError(f"the VGG loss would be on for ranks {found} only ({missing}): every process must "
                           "see the same VGG19 weight file (train: vgg_weights on a shared file system), or set "
                           "vgg_loss: false (--no-vgg-loss)")


def agree_on_memory(estimate: Callable[[], StepMemory], rt: Runtime, what: str) -> None:
    """Refuse the run on every rank when the training step cannot fit any rank's device (one rank
    stopping alone would leave the others waiting for it); the estimate is logged otherwise."""
    try:
        fitted, refusal = check_step_fits(estimate, rt.device, what), None
    except ValueError as exc:
        fitted, refusal = None, str(exc)
    refusals = [r for r in all_gather(refusal, rt) if r]
    if refusals:
        raise ValueError(refusals[0])
    if rt.is_main:
        log.info("%s: a training step needs %s", what, fitted.describe())


C = TypeVar("C", bound=TrainConfig)


def resolve_vgg(cfg: C) -> tuple[C, str | None]:
    """Settle ``vgg_loss`` to True/False; returns the config and, when VGG is off, why.

    True: the weights must exist (:class:`VGGWeightsNotFound` otherwise). "auto": use them when
    found. Nothing is ever downloaded and random VGG weights are never used.
    """
    if cfg.vgg_loss is False:
        return cfg, "disabled by --no-vgg-loss"
    try:
        path = find_vgg_weights(cfg.vgg_weights)
    except VGGWeightsNotFound as exc:
        if cfg.vgg_loss != "auto":
            raise
        return dataclasses.replace(cfg, vgg_loss=False), f"vgg_loss auto: {exc}"
    return dataclasses.replace(cfg, vgg_loss=True, vgg_weights=str(path)), None


# --------------------------------------------------------------------------------------- GAN tasks

def _split(pred: list[list[torch.Tensor]], n: int) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    return [[f[:n] for f in s] for s in pred], [[f[n:] for f in s] for s in pred]


class GANTask(abc.ABC):
    """A generator ``G`` trained against a multiscale discriminator ``D`` with pix2pixHD's losses.

    Subclasses build the networks, turn a batch into conditioned fakes and reals and call
    :meth:`optimise`; :func:`run_training` does everything else.
    """

    model_file = "model.pt"

    def __init__(self, cfg: TrainConfig, rt: Runtime, generator: nn.Module, discriminator: MultiscaleDiscriminator,
                 model_config: dict[str, Any]):
        self.cfg, self.rt, self.model_config = cfg, rt, model_config
        # fp32 math is process-wide in torch: set when a task is built, so every training run and benchmark row
        # computes in the precision it records (IEEE fp32 unless tf32).
        set_float32_math(rt.precision)
        self.G = rt.prepare(generator)
        self.D = rt.prepare(discriminator)
        self.D_ddp = rt.wrap(self.D)
        self.vgg = VGGLoss(cfg.vgg_weights, cfg.lambda_vgg).to(rt.device) if cfg.vgg_loss else None
        self.models = {"G": self.G, "D": self.D}
        # fused: one kernel over all parameters instead of a loop of small ones per tensor (make bench-train's
        # Adam rows); the same update up to float rounding. (torch has no fused Adam for other devices: meta.)
        fused = rt.device.type in ("cpu", "cuda")
        self.optimizers = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), fused=fused)
                           for k, m in self.models.items()}
        # Not optimised; checkpointed with the networks (exact resume); the saved model when on.
        self.ema = WeightEMA(self.G, cfg.ema_decay) if cfg.ema_decay > 0 else None
        if self.ema is not None:
            self.models["G_ema"] = self.ema
        # fp16 gradients underflow without loss scaling; the scales are checkpointed (exact resume)
        self.scalers = {k: torch.amp.GradScaler(rt.device.type) for k in self.optimizers} \
            if rt.precision == "fp16" else {}

    def compiled_modules(self) -> list[nn.Module]:
        """The networks ``compile`` compiles: everything a step runs forward (and backward through)."""
        return [self.G, self.D] + ([self.vgg] if self.vgg is not None else [])

    def inputs(self, batch: dict[str, torch.Tensor], *keys: str) -> list[torch.Tensor]:
        return [batch_to_device(batch[k], self.rt) for k in keys]

    # Parameters of G left unchanged by the current update (see :meth:`frozen_parameters`).
    frozen: list[nn.Parameter] = []

    def frozen_parameters(self, epoch: int) -> list[nn.Parameter]:
        """Parameters of G that take no update in ``epoch`` (none unless a task freezes some)."""
        return []

    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler = self.scalers.get(name)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if name == "G":
            # Their gradients are computed (and all-reduced by DDP, whose buckets must stay the same)
            # and then dropped: Adam leaves a parameter without a gradient untouched.
            for p in self.frozen:
                p.grad = None
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    def optimise(self, fake_in: torch.Tensor, real_in: torch.Tensor, fake: torch.Tensor, real: torch.Tensor,
                 vgg_weight: float = 1.0, extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """One generator update, then one discriminator update.

        ``fake_in``/``real_in`` are the discriminator inputs (condition and images, ``fake_in``
        with gradients to G); ``fake``/``real`` the images for the VGG and L1 losses; ``extra``
        weighted generator losses of the task's own (added to the generator's loss and logged).
        """
        rt, cfg = self.rt, self.cfg
        # Generator: D's weights take no gradient here (and no DDP hooks fire).
        self.D.requires_grad_(False)
        with rt.autocast():
            pred_fake = self.D(fake_in)
            with torch.no_grad():
                pred_real = self.D(real_in)
        losses = {"G_GAN": lsgan_loss(pred_fake, True),
                  "G_FM": feature_matching_loss(pred_fake, pred_real, cfg.n_layers_d, cfg.lambda_feat)}
        if self.vgg is not None:
            with rt.autocast():
                losses["G_VGG"] = vgg_weight * self.vgg(fake, real)
        if cfg.lambda_l1 > 0:
            losses["G_L1"] = cfg.lambda_l1 * multiscale_l1_loss(fake, real, cfg.l1_scales)
        losses.update(extra or {})
        self._update("G", sum(losses.values()))
        if self.ema is not None:
            self.ema.update(self.G)

        # Discriminator: fake and real in one forward (one DDP forward per backward; instance
        # norm keeps the samples independent).
        self.D.requires_grad_(True)
        with rt.autocast():
            pred = self.D_ddp(torch.cat([fake_in.detach(), real_in], dim=0))
        pred_fake_d, pred_real_d = _split(pred, fake_in.shape[0])
        losses["D_fake"] = lsgan_loss(pred_fake_d, False)
        losses["D_real"] = lsgan_loss(pred_real_d, True)
        self._update("D", 0.5 * (losses["D_fake"] + losses["D_real"]))
        return losses

    @abc.abstractmethod
    def step(self, batch: dict[str, torch.Tensor], visuals: bool = False
             ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
        """One optimisation step: the losses by name, and images for a sample grid when asked."""

    def write_outputs(self, path: Path, meta: dict[str, Any]) -> None:
        model = self.ema.average if self.ema is not None else self.G
        save_model(path, model, self.model_config, **meta, weights="ema" if self.ema is not None else "last")


class WeightEMA(nn.Module):
    """An exponential moving average of a network's weights (buffers copied as they are).

    The decay ramps up from 0 as min(decay, (1 + n) / (10 + n)) after n updates, so a short run's
    average is not dominated by its first, untrained weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.average = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1.0 + float(self.updates)) / (10.0 + float(self.updates)))
        averaged = list(self.average.parameters())
        torch._foreach_lerp_(averaged, [p.detach() for p in model.parameters()], 1.0 - decay)
        for mine, theirs in zip(self.average.buffers(), model.buffers()):
            mine.copy_(theirs)
        self.updates += 1


class TemporalPair(nn.Module):
    """Both generator passes of one sample in one forward (one DDP forward per backward).

    ``temporal=False`` (the frame-by-frame ablation): the generator sees the stick figure alone and
    only frame t+1 is made; returns (None, I_{t+1}).
    """

    def __init__(self, generator: nn.Module, temporal: bool = True):
        super().__init__()
        self.generator, self.temporal = generator, temporal

    def forward(self, pose_t: torch.Tensor, pose_t1: torch.Tensor, plate: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        extra = () if plate is None else (plate,)  # a plate generator: each sample's own plate
        if not self.temporal:
            return None, self.generator(pose_t1, *extra)
        fake_t = self.generator(torch.cat([pose_t, torch.zeros_like(pose_t)], dim=1), *extra)
        fake_t1 = self.generator(torch.cat([pose_t1, fake_t.to(pose_t1.dtype)], dim=1), *extra)
        return fake_t, fake_t1


def pose_model_configs(cfg: TrainConfig, n_plates: int = 1) -> tuple[dict[str, Any], int]:
    """The pose generator's architecture record and the discriminator's input channels of ``cfg``."""
    divisor = 2 ** (cfg.n_downsample + (1 if cfg.local_enhancer else 0))
    if cfg.width % divisor or cfg.height % divisor:
        raise ValueError(f"--width {cfg.width} and --height {cfg.height} must be multiples of {divisor} "
                         f"({cfg.n_downsample} downsamplings{' + local enhancer' if cfg.local_enhancer else ''})")
    config = default_generator_config(
        kind="local" if cfg.local_enhancer else "global", ngf=cfg.ngf, n_downsample=cfg.n_downsample,
        n_blocks=cfg.n_blocks, n_blocks_local=cfg.n_blocks_local, width=cfg.width, height=cfg.height,
        temporal=cfg.temporal, background=cfg.background, n_plates=n_plates, upsample=cfg.upsample,
        chroma=cfg.chroma)
    return config, TEMPORAL_NC if cfg.temporal else POSE_NC + IMAGE_NC  # frame-by-frame: D judges (x_t, frame_t)


class PoseTask(GANTask):
    """The temporally smoothed pose-to-frame GAN, or with ``temporal=False`` the frame-by-frame one."""

    model_file = "generator.pt"

    def __init__(self, cfg: TrainConfig, rt: Runtime, plates: torch.Tensor | None = None,
                 plate_unknown: torch.Tensor | None = None):
        """``plates``: uint8 (n_clips, 3, H, W) background plates at the model size (background plate);
        ``plate_unknown``: bool (n_clips, 1, H, W), their inpainted pixels (``lambda_mask``)."""
        if (cfg.background == "plate") != (plates is not None):
            raise ValueError("background plate needs one plate per clip (--clip-plate), and only it takes plates")
        if cfg.lambda_mask > 0 and plate_unknown is None:
            raise ValueError("lambda_mask needs the plates' inpainted areas (plate_unknown)")
        self.plate_unknown = None if plate_unknown is None else plate_unknown.to(rt.device)
        config, d_nc = pose_model_configs(cfg, 1 if plates is None else len(plates))
        generator = build_generator(config)
        discriminator = MultiscaleDiscriminator(d_nc, cfg.ndf, cfg.n_layers_d, cfg.num_d)
        initialise(cfg, generator, discriminator)
        if plates is not None:
            with torch.no_grad():  # on the host, where the generator is built; the one uint8 -> [-1, 1] conversion
                generator.plate.copy_(to_model_range(plates))
            if cfg.mask_init is not None:
                generator.set_mask_bias(cfg.mask_init)
        if cfg.init_global is not None:
            init_local_from_global(generator, config, cfg.init_global)
        super().__init__(cfg, rt, generator, discriminator, config)
        self.pair = rt.wrap(TemporalPair(self.G, cfg.temporal))

    def frozen_parameters(self, epoch: int) -> list[nn.Parameter]:
        # pix2pixHD's niter_fix_global: only the local branch learns at first.
        if self.cfg.local_enhancer and epoch < self.cfg.niter_fix_global:
            return list(self.G.model.parameters())
        return []

    def step(self, batch: dict[str, torch.Tensor], visuals: bool = False
             ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
        pose_t, pose_t1, real_t, real_t1 = self.inputs(batch, "pose_t", "pose_t1", "real_t", "real_t1")
        # a plate generator: each sample's own clip's plate, as augmentation moved it when it did
        plate = batch_to_device(batch["plate"], self.rt) if "plate" in batch else \
            sample_plates(self.G, batch.get("clip"))
        mask_terms = isinstance(self.G, PlateComposite) and (
            self.cfg.lambda_fg > 0 or self.cfg.lambda_mask_binary > 0 or self.cfg.lambda_mask > 0)
        if mask_terms:
            self.G.parts = []  # each generator pass leaves its foreground and mask here
        with self.rt.autocast():
            fake_t, fake_t1 = self.pair(pose_t, pose_t1, plate)
        extra = self.mask_losses(self.G.parts, [pose_t, pose_t1][-len(self.G.parts):],
                                 [real_t, real_t1][-len(self.G.parts):], plate, batch.get("clip"),
                                 batch.get("plate_unknown")) if mask_terms else {}
        if mask_terms:
            self.G.parts = None
        if fake_t is None:  # frame-by-frame: D judges frame t+1 alone with its stick figure
            real_seq = torch.cat([pose_t1, real_t1], dim=1)
            fake_seq = torch.cat([pose_t1, fake_t1.to(pose_t1.dtype)], dim=1)
            fakes, reals, vgg_weight = fake_t1, real_t1, 1.0
        else:
            real_seq = torch.cat([pose_t, pose_t1, real_t, real_t1], dim=1)
            fake_seq = torch.cat([pose_t, pose_t1, fake_t.to(pose_t.dtype), fake_t1.to(pose_t.dtype)], dim=1)
            # VGG on both frames stacked: the mean over the stack times 2 is the sum of both frames' losses.
            fakes, reals, vgg_weight = torch.cat([fake_t, fake_t1]), torch.cat([real_t, real_t1]), 2.0
        losses = self.optimise(fake_seq, real_seq, fakes, reals, vgg_weight, extra)
        losses["L1"] = F.l1_loss(fake_t1.detach().float(), real_t1.float())  # monitoring only
        return losses, [pose_t1[0], fake_t1[0], real_t1[0]] if visuals else None

    def mask_losses(self, parts: list[tuple[torch.Tensor, torch.Tensor]], poses: list[torch.Tensor],
                    reals: list[torch.Tensor], plate: torch.Tensor, clips: Any,
                    unknown: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The plate generator's own terms, summed over its passes: the foreground against the real frame in
        the person's box (from the stick figure), the mask's binarisation prior, and the mask against where
        the real frame differs from the plate (the plate's inpainted pixels left out: ``unknown``, the
        batch's own when augmentation moved the plates, else each clip's)."""
        from pipeline.gan.plate import foreground_target, stick_figure_region

        cfg, out = self.cfg, {}
        # the person's box of each pass, shared by the two terms that need it
        regions = [stick_figure_region(pose) for pose in poses] if cfg.lambda_mask > 0 or cfg.lambda_fg > 0 else []
        if cfg.lambda_mask > 0:
            unknown = self.plate_unknown[torch.as_tensor(clips, device=self.plate_unknown.device)] if unknown is None \
                else self.rt.tensor(unknown)
            known = 1.0 - unknown.float()
            out["G_MASK_PLATE"] = cfg.lambda_mask * sum(
                masked_l1_loss(mask, foreground_target(real, plate, region), known)
                for (_, mask), region, real in zip(parts, regions, reals))
        if cfg.lambda_fg > 0:
            out["G_FG"] = cfg.lambda_fg * sum(masked_l1_loss(fg, real, region)
                                              for (fg, _), region, real in zip(parts, regions, reals))
        if cfg.lambda_mask_binary > 0:
            out["G_MASK"] = cfg.lambda_mask_binary * sum(mask_binary_prior(mask) for _, mask in parts)
        return out


def initialise(cfg: TrainConfig, generator: nn.Module, discriminator: nn.Module) -> None:
    """``weight_init: normal``: pix2pixHD's N(0, 0.02) for both networks (before any weights are loaded)."""
    if cfg.weight_init == "normal":
        init_weights(generator)
        init_weights(discriminator)


def batch_to_device(images: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """A batch of images as the model takes it: uint8 (N, 3, H, W) from the data workers (a quarter of
    float32's bytes through the loader and the host-to-device copy) -> float in [-1, 1] on the device.

    Float input (already converted) passes through unchanged.
    """
    return to_model_range(rt.tensor(images))


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1] where they are; float input passes through unchanged."""
    return images.float().div_(127.5).sub_(1.0) if images.dtype == torch.uint8 else images


def init_local_from_global(local: nn.Module, config: dict[str, Any], global_path: str | Path) -> None:
    """Load a trained global generator (``edn train`` without --local-enhancer) into the global part
    of ``local``, a LocalEnhancer built from ``config``; errors name the file and the mismatch."""
    from pipeline.gan.models.generator import load_global_into_local, load_generator

    global_model, global_config = load_generator(global_path)
    load_global_into_local(local, config, global_model, global_config, global_path)


def scaled_lr(cfg: TrainConfig, world: int) -> float:
    """The learning rate this run uses: ``lr``, or with ``lr_scaling: linear`` lr x global batch."""
    return cfg.lr * cfg.batch_size * world if cfg.lr_scaling == "linear" else cfg.lr


# ------------------------------------------------------------------------------------------ engine

def _step_decay_factor(total_steps: int, decay_steps: int) -> Callable[[int], float]:
    """Per step (the scheduler steps after every update): constant, then linear over the last
    ``decay_steps`` so that the last update runs at lr / decay_steps and the rate after it is 0."""
    n_const = total_steps - decay_steps

    def factor(step: int) -> float:
        if decay_steps <= 0:
            return 1.0
        return max(0.0, min(1.0, (total_steps - step) / decay_steps)) if step >= n_const else 1.0

    return factor


def _decay_factor(epochs: int, niter_decay: int) -> Callable[[int], float]:
    """pix2pixHD's schedule: constant, then minus lr/niter_decay after each of the last epochs."""
    n_const = epochs - niter_decay

    def factor(epoch: int) -> float:
        if niter_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - max(0, epoch - n_const) / niter_decay)

    return factor


def _write_grid(path: Path, images: list[torch.Tensor]) -> None:
    import cv2

    from pipeline.footage.images import write_image

    grid = np.concatenate([tensor_to_image(t) for t in images], axis=1)
    with atomic_path(path) as tmp:
        if not write_image(tmp, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"{path}: cannot write sample image")


class _EpochOrder:
    """The sample order of the current epoch (set before each pass), as a sampler of a loader built once."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.indices))

    def __len__(self) -> int:
        return len(self.indices)


def _restorer(task: GANTask) -> Callable[[], None]:
    """A function that puts the task's networks, optimisers, loss scales and random generators back as they
    are now (undoing a first compiled step that failed part way)."""
    saved = copy.deepcopy({"models": {k: m.state_dict() for k, m in task.models.items()},
                           "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
                           "scalers": {k: s.state_dict() for k, s in task.scalers.items()}})
    rng = rng_state()

    def restore() -> None:
        for kind, objects in (("models", task.models), ("optimizers", task.optimizers), ("scalers", task.scalers)):
            for k, obj in objects.items():
                obj.load_state_dict(copy.deepcopy(saved[kind][k]))
        set_rng_state(rng)

    return restore


def _worker_init(worker_id: int) -> None:
    import cv2

    from pipeline.footage.media import die_with_parent

    die_with_parent()  # a SIGKILLed trainer leaves no data worker behind
    cv2.setNumThreads(1)  # one decode thread per worker: the workers are the parallelism
    sys.excepthook = _trainer_hung_up


def _trainer_hung_up(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """A data worker's ``sys.excepthook``. Multiprocessing's descriptor-sharing server (the thread that hands
    a batch's shared memory to the trainer) reports through it when the trainer hangs up mid-handover, which
    the trainer does only when it stops (Ctrl-C, or an error it reports itself): that goes to the debug log,
    not the terminal. Any other error is printed as ever."""
    if issubclass(exc_type, ConnectionError):
        log.debug("data worker: the trainer hung up", exc_info=(exc_type, exc, tb))
        return
    sys.__excepthook__(exc_type, exc, tb)


class _LossLog:
    """``losses.csv`` (rank 0): one row per step; on resume, rows past the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.columns: list[str] | None = None
        rows = []
        if path.exists() and resume_step > 0:
            with path.open(newline="") as f:
                rows = list(csv.reader(f))
        if rows:
            self.columns = rows[0]
            kept = [r for r in rows[1:] if r and int(r[0]) <= resume_step]
            with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
                csv.writer(f).writerows([self.columns, *kept])
        elif path.exists():
            path.unlink()  # a fresh run: the old rows belong to a run that no longer exists

    def append(self, step: int, epoch: int, lr: float, losses: dict[str, float]) -> None:
        row = {"step": step, "epoch": epoch, "lr": lr, **losses}
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with self.path.open("a", newline="") as f:
            # repr keeps every digit: resumed runs are compared to uninterrupted ones.
            csv.writer(f).writerow([repr(row[c]) if isinstance(row.get(c), float) else row.get(c, "")
                                    for c in self.columns])


def checkpoint_mismatch(state: dict[str, Any], stage: str, cfg: TrainConfig, rt: Runtime,
                        inputs: dict[str, Any]) -> str | None:
    """Why a checkpoint cannot continue this run (other settings, inputs, process count or a precision
    it does not record), or None when this run is its continuation."""
    old, new = state["config"], cfg.as_dict()
    changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
               if k not in _FREE_ON_RESUME and old.get(k) != new.get(k)]
    if state.get("stage") != stage:
        changed.append(f"stage {state.get('stage')} -> {stage}")
    if state.get("world", 1) != rt.world:
        # The data order and the optimiser state belong to that many processes: no exact resume otherwise.
        changed.append(f"processes {state.get('world', 1)} -> {rt.world}")
    if state.get("inputs") != inputs:
        changed.append("input clips or model")
    if state.get("precision") not in PRECISIONS[1:]:
        changed.append("no record of the precision it computed in")
    if rt.precision == "fp16" and "scalers" not in state:
        changed.append("fp16 without its loss scales")
    return "; ".join(changed) or None


def loss_log_gap(path: Path, step: int) -> str | None:
    """Why a checkpoint at ``step`` cannot be continued for want of its loss log (``losses.csv`` missing, or
    ending before that step: deleted or lost), or None. The log is only ever appended to, so continuing would
    leave it with a hole (or, for a finished run, no log at all); the training starts over instead, which
    gives the same losses again."""
    if step == 0:
        return None
    if not path.is_file():
        return f"its loss log {path} is missing"
    with path.open(newline="") as f:
        last = max((int(r[0]) for r in list(csv.reader(f))[1:] if r and r[0].isdigit()), default=0)
    return None if last >= step else f"its loss log {path} ends at step {last}, the checkpoint at step {step}"


def start_over(out_dir: Path, ckpt_path: Path, why: str) -> None:
    """Remove what a run that cannot be continued left in ``out_dir``: its checkpoint, sample grids and
    TensorBoard events (losses.csv is rewritten by the new run), so the folder ends as a fresh run's."""
    log.warning("%s: %s: starting over", ckpt_path, why)
    ckpt_path.unlink()
    for sample in (out_dir / "samples").glob("step_*.png"):
        sample.unlink()
    board = out_dir / "tensorboard"
    if board.is_dir() and not board.is_symlink():
        shutil.rmtree(board)


def follow_checkpoint_precision(ckpt_path: Path, state: dict[str, Any], cfg: TrainConfig, rt: Runtime) -> None:
    """A resumed ``precision: auto`` run computes in the precision its checkpoint was made in (a run moved to
    another machine does not change precision midway); an explicit precision is a setting that must match."""
    made_in = state["precision"]
    if cfg.precision == "auto" and made_in != rt.precision and made_in in ("bf16", "fp32"):  # auto's choices
        rt.precision = made_in
        rt.precision_reason = f"auto: resumed from {ckpt_path}, made in {made_in} (here: {rt.precision_reason})"
        set_float32_math(made_in)


def run_training(stage: str, task: GANTask, dataset: PairDataset, out_dir: Path, cfg: TrainConfig, rt: Runtime,
                 record: dict[str, Any], model_path: Path | None = None) -> dict[str, Any]:
    """The loop shared by both GANs: data order, resume, logging, checkpoints, samples, final model.

    ``record`` (written to run.json) must hold ``inputs``, the fingerprint a resumed
    checkpoint is checked against. Returns the record.
    """
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from tqdm import tqdm

    lr = scaled_lr(cfg, rt.world)
    for o in task.optimizers.values():
        for group in o.param_groups:
            group["lr"] = lr

    out_dir = Path(out_dir)
    model_path = Path(model_path) if model_path is not None else out_dir / task.model_file
    ckpt_path = out_dir / "checkpoint.pt"
    # DistributedSampler with one replica is a seeded shuffle too: one data order for 1 and N processes,
    # a pure function of (seed, epoch), so a position in it is just the step.
    sampler = DistributedSampler(dataset, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    factor = _step_decay_factor(total, cfg.niter_decay * steps_per_epoch) if cfg.lr_schedule == "step" \
        else _decay_factor(cfg.epochs, cfg.niter_decay)
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in task.optimizers.items()}
    stop = min(total, cfg.max_steps) if cfg.max_steps is not None else total

    order = _EpochOrder()
    # Built once: persistent workers keep their processes (and open state) from epoch to epoch; each
    # epoch only sets the order, a pure function of (seed, epoch, step), so resume stays exact.
    # Own generator: the loader's seed draw must not advance the global RNG a resumed run restores.
    workers = data_workers(cfg.workers, rt)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=order, num_workers=workers,
                        pin_memory=rt.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
                        persistent_workers=workers > 0, worker_init_fn=_worker_init if workers else None)
    step = 0
    state = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if state is not None:
        why = checkpoint_mismatch(state, stage, cfg, rt, record["inputs"])
        why = f"checkpoint was made with other settings ({why})" if why else \
            loss_log_gap(out_dir / "losses.csv", int(state["step"]))
        if why is not None:
            if rt.world > 1:
                dist.barrier()  # every rank has read it before rank 0 removes it
            if rt.is_main:
                start_over(out_dir, ckpt_path, why)
            state = None
    if state is not None:
        follow_checkpoint_precision(ckpt_path, state, cfg, rt)
        for k, m in task.models.items():
            m.load_state_dict(state["models"][k])
        for k, o in task.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        for k, scaler in task.scalers.items():
            scaler.load_state_dict(state["scalers"][k])
        step = int(state["step"])
        set_rng_state(state["rng"][rt.rank])
        if rt.is_main:
            log.info("%s: resuming at step %d of %d", ckpt_path, step, stop)
    compiled, compile_reason = decide_compile(cfg.compile, rt.device, stop - step, AUTO_MIN_TRAIN_STEPS, "steps",
                                              rt.world)
    if rt.is_main:
        log.info("compile %s", compile_reason)
    if compiled:
        compile_in_place(task.compiled_modules())
    record.update({"stage": stage, "provenance": provenance(stage, cfg.as_dict()), "seed": cfg.seed,
                   "world_size": rt.world, "global_batch": cfg.batch_size * rt.world, "lr_used": lr,
                   "vgg_loss": cfg.vgg_loss, "steps_per_epoch": steps_per_epoch,
                   "total_steps": stop, "device": str(rt.device), "precision": rt.precision,
                   "precision_reason": rt.precision_reason, "compile": compiled,
                   "compile_reason": compile_reason, "status": "running",
                   "resumed_from_step": step or None, "samples": len(dataset), "model": str(model_path)})
    if rt.is_main:
        write_json(out_dir / "run.json", record)
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    loss_log = _LossLog(out_dir / "losses.csv", step) if rt.is_main else None
    board = open_board(out_dir, cfg.tensorboard, step) if rt.is_main else None

    def save(step_now: int) -> None:
        rngs = all_gather(rng_state(), rt)  # collective: every rank's generators
        if rt.is_main:
            save_checkpoint(ckpt_path, {
                "stage": stage, "step": step_now, "epoch": step_now // steps_per_epoch, "world": rt.world,
                "precision": rt.precision, "config": cfg.as_dict(), "vgg_loss": cfg.vgg_loss,
                "inputs": record["inputs"],
                "models": {k: m.state_dict() for k, m in task.models.items()},
                "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                "scalers": {k: s.state_dict() for k, s in task.scalers.items()},
                "sampler": {"seed": cfg.seed, "epoch": step_now // steps_per_epoch,
                            "batch_in_epoch": step_now % steps_per_epoch, "steps_per_epoch": steps_per_epoch},
                "rng": rngs,
            })

    last_save = time.monotonic()
    bar = tqdm(total=stop, initial=step, desc=stage, unit="step", disable=not rt.is_main, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # log files get a line every 30 s
    while step < stop:
        epoch, skip = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        # (epoch, index): augmentation draws each sample's transform from (seed, epoch, index)
        order.indices = [(epoch, i) for i in list(sampler)[skip * cfg.batch_size:]]
        task.frozen = task.frozen_parameters(epoch)
        tick = time.perf_counter()
        for batch in loader:
            step += 1
            want_visuals = rt.is_main and cfg.sample_every > 0 and step % cfg.sample_every == 0
            if compiled:  # this process's first step compiles; on failure it is undone and run eager
                compiled = False
                losses, visuals = first_call(task.compiled_modules(), functools.partial(task.step, batch, want_visuals),
                                             "the training step", undo=_restorer(task))
            else:
                losses, visuals = task.step(batch, want_visuals)
            names = sorted(losses)
            # Rank 0's clock decides a timed checkpoint; the flag rides on the loss all-reduce, so every
            # rank saves at the same step (saving is collective) without a collective of its own.
            due = float(rt.is_main and cfg.checkpoint_minutes > 0
                        and time.monotonic() - last_save >= cfg.checkpoint_minutes * 60)
            values = torch.stack([losses[k].detach().float() for k in names]
                                 + [torch.tensor(due, device=losses[names[0]].device)])
            if rt.world > 1:
                dist.all_reduce(values)
                values /= rt.world
            values, timed = values[:-1], bool(values[-1] > 0)
            lr = task.optimizers["G"].param_groups[0]["lr"]
            if cfg.lr_schedule == "step" or step % steps_per_epoch == 0:
                for s in schedulers.values():
                    s.step()
            if rt.is_main:
                row = dict(zip(names, values.tolist()))
                loss_log.append(step, epoch, lr, row)
                if board is not None:
                    now = time.perf_counter()  # the step's time, data wait included
                    board.step(step, lr, row, now - tick)
                    tick = now
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items()}, refresh=False)
                bar.update(1)
                if visuals is not None:
                    _write_grid(out_dir / "samples" / f"step_{step:07d}.png", visuals)
                    if board is not None:
                        board.sample(step, visuals)
            if step % cfg.checkpoint_every == 0 or step == stop or timed:
                save(step)
                last_save = time.monotonic()
            if step >= stop:
                break
    bar.close()
    if board is not None:
        board.close()
    if stop == 0:
        save(0)

    checksums = {k: all_gather(parameter_checksum(m), rt) for k, m in task.models.items()}
    out_of_sync = [k for k, v in checksums.items() if len(set(v)) > 1]
    if rt.is_main:
        record.update({"status": "out of sync" if out_of_sync else "finished", "final_step": step,
                       "param_checksums": checksums})
        write_json(out_dir / "run.json", record)
        if not out_of_sync:
            task.write_outputs(model_path, {"vgg_loss": cfg.vgg_loss, "step": step, "inputs": record["inputs"],
                                            "provenance": record["provenance"], "training": training_record(record)})
            log.info("%s: written after %d steps", model_path, step)
    if rt.world > 1:
        dist.barrier()
    if out_of_sync:  # on every rank, after the barrier, so no rank waits for another forever
        raise RuntimeError(f"{out_dir}: parameters of {out_of_sync} differ between ranks: {checksums}")
    return record


# ---------------------------------------------------------------------------------------- stages

def clip_inputs(clips: Sequence[Clip]) -> list[dict[str, Any]]:
    """What a checkpoint's data is: each clip's frames, size and keypoints (values, not file bytes)."""
    return [{"n_frames": len(c.indices), "first_frame": c.indices[0], "size": [c.width, c.height],
             "keypoints_sha256": tensors_sha256({"keypoints": torch.from_numpy(c.keypoints)})} for c in clips]


def clip_records(clips: Sequence[ClipFiles]) -> list[list[str | None]]:
    """Per clip, the SHA-256 of its frames' and stick figures' meta.json (None where absent), run details
    (time, command, host) left out: what made them, so a checkpoint is continued only on the very images it
    was trained on (a render setting changes the images, not the keypoints), and two runs that made the
    same images record the same."""
    from pipeline.provenance import what_was_made

    def digest(path: Path) -> str | None:
        if not path.is_file():
            return None
        made = what_was_made(json.loads(path.read_text()))
        return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()

    return [[digest(Path(frames) / "meta.json"), digest(Path(render) / "meta.json")] for frames, render, _ in clips]


def training_record(record: dict[str, Any]) -> dict[str, Any]:
    """What a model file keeps of its run record, so it needs no run.json beside it: each clip's files and
    held-out frames (``clips``), precision, seed, processes and steps (options: its ``provenance``, clip
    fingerprints: its ``inputs``). ``edn evaluate`` takes the held-out frames from here."""
    keys = ("clips", "precision", "precision_reason", "seed", "world_size", "global_batch", "lr_used", "total_steps",
            "samples", "model_config")
    return {k: record[k] for k in keys if k in record}


def qc_exclusions(clips: Sequence[ClipFiles], clip_qc: Sequence[str | Path] | None) -> list[set[int]] | None:
    """Per clip, the frames its QC file does not call ok (None without QC files)."""
    if clip_qc is None or len(clip_qc) == 0:
        return None
    if len(clip_qc) != len(clips):
        raise ValueError(f"--clip-qc given {len(clip_qc)} times for {len(clips)} --clip: one QC file per clip, "
                         "in the same order")
    from pipeline.pose.quality import bad_frames

    return [bad_frames(path) for path in clip_qc]


def run_stage(stage: str, out_dir: str | Path, clips: Sequence[ClipFiles], cfg: C,
              make_task: Callable[[C, Runtime], GANTask], *, model_path: str | Path | None = None,
              dataset_options: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
              record: dict[str, Any] | None = None, clip_qc: Sequence[str | Path] | None = None,
              memory: Callable[[C, bool], StepMemory] | None = None) -> dict[str, Any]:
    """Everything around :func:`run_training`: processes, seeds, the VGG decision, data, run record.

    ``memory``: the step's memory estimate of a config (and whether it computes in half precision);
    a step that cannot fit the device is refused before any data is loaded.

    ``clip_qc``: one `edn qc` file per clip (same order); pairs touching a frame it does not
    call ok are left out, and run.json lists those frames per clip.
    """
    out_dir = Path(out_dir)
    rt = start_runtime(cfg.device, cfg.precision, cfg.channels_last)
    try:
        with determinism(cfg.deterministic, rt):
            requested = cfg.vgg_loss
            cfg, no_vgg = resolve_vgg(cfg)  # first: a missing weight file stops the run before any work
            agree_on_vgg(cfg.vgg_loss, no_vgg, rt)
            if memory is not None:
                agree_on_memory(lambda: memory(cfg, rt.precision in ("bf16", "fp16")), rt,
                                f"{out_dir}: {stage} at {cfg.width}x{cfg.height}, batch size {cfg.batch_size}")
            if no_vgg and rt.is_main:
                log.warning("=" * 72)
                log.warning("VGG perceptual loss OFF (%s). Results will be worse than the paper's; "
                            "recorded as vgg_loss: false in run.json, the checkpoints and the model.", no_vgg)
                log.warning("=" * 72)
            seed_everything(cfg.seed)
            loaded = [load_clip(*c) for c in clips]
            excluded = qc_exclusions(clips, clip_qc)
            dataset = PairDataset(loaded, cfg.width, cfg.height, cfg.holdout, **(dataset_options or {}),
                                  excluded=excluded, augment=Augmentation.of(cfg))
            task = make_task(cfg, rt)
            run_record = {**(record or {}), "params": cfg.as_dict(), "vgg_loss_requested": requested,
                          "vgg_off_reason": no_vgg, "model_config": task.model_config,
                          "clips": [{"frames": str(c.frames_dir), "render": str(c.render_dir),
                                     "keypoints": str(c.keypoints_path), "held_out_frames": held}
                                    for c, held in zip(loaded, dataset.held_out)],
                          "inputs": {"clips": clip_inputs(loaded), "clip_records": clip_records(clips),
                                     **(inputs or {})}}
            if excluded is not None:
                for entry, qc_path, frames in zip(run_record["clips"], clip_qc, excluded):
                    entry.update({"qc": str(qc_path), "qc_excluded_frames": sorted(frames)})
                run_record["inputs"]["qc_excluded_frames"] = [sorted(frames) for frames in excluded]
            return run_training(stage, task, dataset, out_dir, cfg, rt, run_record, model_path)
    finally:
        if rt.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def train(out_dir: str | Path, clips: Sequence[ClipFiles], cfg: TrainConfig,
          model_path: str | Path | None = None, clip_qc: Sequence[str | Path] | None = None,
          clip_plate: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """Train the pose-to-frame generator; writes run.json, losses.csv, samples/, checkpoint.pt in
    ``out_dir`` and the generator to ``model_path`` (default ``out_dir/generator.pt``).

    Resumes automatically from ``out_dir/checkpoint.pt``. ``clip_qc``: see :func:`run_stage`.
    Returns the run record.
    """
    inputs = {}
    if cfg.init_global is not None:  # the weights it starts from, not the path, decide whether a resume fits
        from pipeline.gan.models.generator import load_generator

        inputs["init_global_sha256"] = tensors_sha256(load_generator(cfg.init_global)[0].state_dict())
    make_task: Callable[[TrainConfig, Runtime], GANTask] = PoseTask
    dataset_options = None
    if cfg.background == "plate":
        plates = load_plates(clip_plate, len(clips), cfg.width, cfg.height)
        inputs["plates_sha256"] = tensors_sha256({"plates": plates})
        unknown = None
        if cfg.lambda_mask > 0:
            unknown = load_plate_unknown(clip_plate, cfg.width, cfg.height)
            inputs["plates_unknown_sha256"] = tensors_sha256({"unknown": unknown})
        make_task = functools.partial(PoseTask, plates=plates, plate_unknown=unknown)
        if Augmentation.of(cfg).active:  # the samples carry their plates, moved with their frames
            dataset_options = {"plates": plates, "plate_unknown": unknown}
    elif clip_plate:
        raise ValueError("--clip-plate is for --background plate")
    memory = functools.partial(pose_step_memory, n_plates=len(clips) if cfg.background == "plate" else 1)
    return run_stage("train", out_dir, clips, cfg, make_task, model_path=model_path, inputs=inputs or None,
                     dataset_options=dataset_options,
                     clip_qc=clip_qc, record={"plates": [str(p) for p in clip_plate or []]}, memory=memory)


def load_plates(paths: Sequence[str | Path] | None, n_clips: int, width: int, height: int) -> torch.Tensor:
    """Each clip's `edn plate` image at the model size, fitted like its frames: uint8 (n_clips, 3, H, W)."""
    from pipeline.gan.data import fit_to_size, read_rgb

    if not paths or len(paths) != n_clips:
        raise ValueError(f"background plate: --clip-plate given {len(paths or [])} times for {n_clips} --clip "
                         "(one `edn plate` image per clip, same order)")
    with opencv_on_one_thread():
        return torch.stack([torch.from_numpy(fit_to_size(read_rgb(Path(p)), width, height)).permute(2, 0, 1)
                            for p in paths])


def load_plate_unknown(paths: Sequence[str | Path], width: int, height: int) -> torch.Tensor:
    """Each plate's inpainted pixels (its alpha below 255) at the model size, fitted like its frames:
    bool (n_clips, 1, H, W). A plate without alpha (made before plates carried it) is refused by name."""
    import cv2

    from pipeline.footage.images import read_image
    from pipeline.gan.data import fit_to_size

    masks = []
    for p in paths:
        image = read_image(Path(p), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{p}: cannot read image")
        if image.ndim != 3 or image.shape[2] != 4:
            raise ValueError(f"{p}: no alpha channel marking the plate's inpainted pixels (lambda_mask needs "
                             "it): make the plate again with `edn plate`")
        with opencv_on_one_thread():
            alpha = fit_to_size(np.ascontiguousarray(image[..., 3]), width, height)
        masks.append(torch.from_numpy(alpha < 255)[None])
    return torch.stack(masks)


@contextlib.contextmanager
def opencv_on_one_thread() -> Iterator[None]:
    """Resize plates on one thread: an OpenCV thread pool started in this process would hang the data
    workers forked from it later (measured: the first step never came with --workers 1)."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The config of the parsed options of gan/commands.py (every option has a config field of the same name)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    for key in ("vgg_loss", "tensorboard"):
        if key in values:
            values[key] = {"on": True, "off": False, "auto": "auto"}[values[key]]
    return cls(**values)


def cli(args: argparse.Namespace) -> int:
    train(args.out_dir, [tuple(c) for c in args.clip], config_from_args(TrainConfig, args), args.model_out,
          clip_qc=args.clip_qc, clip_plate=args.clip_plate)
    return 0
