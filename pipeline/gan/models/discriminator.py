"""pix2pixHD's PatchGAN and multiscale discriminators, returning intermediate features for feature matching.

In Everybody Dance Now the discriminator judges two consecutive stick figures plus two
consecutive frames (real or generated): 12 input channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.gan.models.generator import get_norm_layer

TEMPORAL_NC = 12  # x_t, x_{t+1}, frame_t, frame_{t+1}


class NLayerDiscriminator(nn.Module):
    """70x70 PatchGAN (n_layers=3): a list of each block's output, the last being the patch scores."""

    def __init__(self, input_nc: int = TEMPORAL_NC, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 use_sigmoid: bool = False):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        kw, padw = 4, int(math.ceil((4 - 1.0) / 2))  # pix2pixHD pads 2 (not 1): same count, wider maps
        blocks: list[list[nn.Module]] = [[nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw),
                                          nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for _ in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            blocks.append([nn.Conv2d(nf_prev, nf, kw, stride=2, padding=padw), norm_layer(nf),
                           nn.LeakyReLU(0.2, True)])
        nf_prev, nf = nf, min(nf * 2, 512)
        blocks.append([nn.Conv2d(nf_prev, nf, kw, stride=1, padding=padw), norm_layer(nf), nn.LeakyReLU(0.2, True)])
        blocks.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        if use_sigmoid:
            blocks[-1].append(nn.Sigmoid())
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the input downsampled 1, 2, 4... times (3x3 average pooling)."""

    def __init__(self, input_nc: int = TEMPORAL_NC, ndf: int = 64, n_layers: int = 3, num_d: int = 3,
                 norm: str = "instance", use_sigmoid: bool = False):
        super().__init__()
        self.n_layers, self.num_d = n_layers, num_d
        self.discriminators = nn.ModuleList(
            NLayerDiscriminator(input_nc, ndf, n_layers, norm, use_sigmoid) for _ in range(num_d))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """One feature list per scale, full resolution first."""
        results = []
        for i, d in enumerate(self.discriminators):
            results.append(d(x))
            if i != self.num_d - 1:
                x = self.downsample(x)
        return results
