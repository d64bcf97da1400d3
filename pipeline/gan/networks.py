"""The networks a training config builds: the pose generator's architecture record and its
discriminator's input, the temporal pair of generator passes, the face discriminator's input, the
weight initialisation and the reference schedule's global-to-local start (pix2pixHD's ``models/``
networks, as the training stages put them together)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.gan.models.discriminator import TEMPORAL_NC
from pipeline.gan.models.generator import IMAGE_NC, POSE_NC, default_generator_config, init_weights
from pipeline.gan.options import TrainConfig

FACE_D_NC = POSE_NC + IMAGE_NC  # the face discriminator's input: stick-figure crop + face crop


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



def initialise(cfg: TrainConfig, generator: nn.Module, discriminator: nn.Module) -> None:
    """``weight_init: normal``: pix2pixHD's N(0, 0.02) for both networks (before any weights are loaded)."""
    if cfg.weight_init == "normal":
        init_weights(generator)
        init_weights(discriminator)


def init_local_from_global(local: nn.Module, config: dict[str, Any], global_path: str | Path) -> None:
    """Load a trained global generator (``edn train`` without --local-enhancer) into the global part
    of ``local``, a LocalEnhancer built from ``config``; errors name the file and the mismatch."""
    from pipeline.gan.models.generator import load_global_into_local, load_generator

    global_model, global_config = load_generator(global_path)
    load_global_into_local(local, config, global_model, global_config, global_path)
