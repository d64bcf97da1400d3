"""A GAN training task (pix2pixHD's model class): a generator ``G`` against a multiscale discriminator
``D`` with pix2pixHD's losses, their optimisers, loss scales and the weights' moving average. Each
stage subclasses :class:`GANTask` (``train``: the pose GAN, ``train_face``: the face GAN); the loop
that runs one is :mod:`pipeline.gan.engine`."""

from __future__ import annotations

import abc
import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.gan.checkpoint import save_model
from pipeline.gan.models.discriminator import MultiscaleDiscriminator
from pipeline.gan.models.losses import VGGLoss, feature_matching_loss, lsgan_loss, multiscale_l1_loss
from pipeline.gan.options import TrainConfig
from pipeline.gan.runtime import Runtime, set_float32_math


def _split(pred: list[list[torch.Tensor]], *sizes: int) -> list[list[list[torch.Tensor]]]:
    """The discriminator's outputs for a batch stacked from parts of these sizes, part by part."""
    bounds = [0]
    for n in sizes:
        bounds.append(bounds[-1] + n)
    return [[[f[a:b] for f in s] for s in pred] for a, b in zip(bounds[:-1], bounds[1:])]


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
                 vgg_weight: float = 1.0, extra: dict[str, torch.Tensor] | None = None,
                 unmatched_in: torch.Tensor | None = None, unmatched_weight: float = 0.0,
                 mismatched_in: torch.Tensor | None = None, mismatched_weight: float = 0.0) -> dict[str, torch.Tensor]:
        """One generator update, then one discriminator update.

        ``fake_in``/``real_in`` are the discriminator inputs (condition and images, ``fake_in``
        with gradients to G); ``fake``/``real`` the images for the VGG and L1 losses; ``extra``
        weighted generator losses of the task's own (added to the generator's loss and logged).
        ``unmatched_in``: discriminator inputs of generated images that have no real image to match (new
        poses): G is scored on D's verdict alone, ``unmatched_weight`` x LSGAN (``G_NEW``), and D learns
        them as fakes (``D_new``). ``mismatched_in``: discriminator inputs of real images with a condition they
        do not match (new poses' stick figures), learnt as fakes (``D_mismatch``, ``mismatched_weight`` x LSGAN
        in D's loss): D then judges whether the image matches its condition, not only whether it is real.
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
        if unmatched_in is not None:
            with rt.autocast():
                losses["G_NEW"] = unmatched_weight * lsgan_loss(self.D(unmatched_in), True)
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
        parts = [fake_in.detach(), real_in] + ([unmatched_in.detach()] if unmatched_in is not None else []) \
            + ([mismatched_in] if mismatched_in is not None else [])
        with rt.autocast():
            pred = self.D_ddp(torch.cat(parts, dim=0))
        pred_parts = _split(pred, *(len(p) for p in parts))
        losses["D_fake"] = lsgan_loss(pred_parts[0], False)
        losses["D_real"] = lsgan_loss(pred_parts[1], True)
        d_loss = losses["D_fake"] + losses["D_real"]
        if unmatched_in is not None:
            losses["D_new"] = lsgan_loss(pred_parts[2], False)
            d_loss = d_loss + losses["D_new"]
        if mismatched_in is not None:
            losses["D_mismatch"] = lsgan_loss(pred_parts[-1], False)
            d_loss = d_loss + mismatched_weight * losses["D_mismatch"]
        self._update("D", 0.5 * d_loss)
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



def batch_to_device(images: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """A batch of images as the model takes it: uint8 (N, 3, H, W) from the data workers (a quarter of
    float32's bytes through the loader and the host-to-device copy) -> float in [-1, 1] on the device.

    Float input (already converted) passes through unchanged.
    """
    return to_model_range(rt.tensor(images))


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1] where they are; float input passes through unchanged."""
    return images.float().div_(127.5).sub_(1.0) if images.dtype == torch.uint8 else images
