"""pix2pixHD losses: LSGAN, discriminator feature matching and the VGG19 perceptual loss; beyond the
reference, a multiscale pixel L1 (an anchor while VGG19 weights are absent) and priors of the background
plate's mask.

VGG19 weights are ImageNet weights loaded from a file; random VGG weights are never used
(they would make the perceptual loss meaningless). Without internet, copy the file from a
machine that has it (see :class:`VGGWeightsNotFound`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.gan.checkpoint import load_tensor_file

log = logging.getLogger(__name__)

VGG19_FILE = "vgg19-dcbbb0d1.pth"  # torchvision's IMAGENET1K_V1 weights
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
# Slices of torchvision's vgg19().features ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsNotFound(FileNotFoundError):
    """No VGG19 weight file where we looked; the message says where and how to get one."""


def lsgan_loss(predictions: list[list[torch.Tensor]] | list[torch.Tensor] | torch.Tensor, target_is_real: bool
               ) -> torch.Tensor:
    """Least-squares GAN loss: MSE of each scale's patch scores to 1 (real) or 0 (fake), summed over scales."""
    if isinstance(predictions, torch.Tensor):
        predictions = [predictions]
    loss = torch.zeros((), device=_first(predictions).device)
    for pred in predictions:
        scores = (pred[-1] if isinstance(pred, (list, tuple)) else pred).float()
        target = torch.ones_like(scores) if target_is_real else torch.zeros_like(scores)
        loss = loss + F.mse_loss(scores, target)
    return loss


def _first(predictions: list) -> torch.Tensor:
    item = predictions[0]
    return item[-1] if isinstance(item, (list, tuple)) else item


def feature_matching_loss(pred_fake: list[list[torch.Tensor]], pred_real: list[list[torch.Tensor]],
                          n_layers: int, lambda_feat: float = 10.0) -> torch.Tensor:
    """pix2pixHD's feature matching: L1 between real and fake discriminator features (not the scores).

    Each layer is weighted 4 / (n_layers + 1) and each scale 1 / num_D.
    """
    feat_weight = 4.0 / (n_layers + 1)
    d_weight = 1.0 / len(pred_fake)
    loss = torch.zeros((), device=pred_fake[0][0].device)
    for fake_feats, real_feats in zip(pred_fake, pred_real):
        for fake, real in zip(fake_feats[:-1], real_feats[:-1]):
            loss = loss + d_weight * feat_weight * F.l1_loss(fake.float(), real.detach().float()) * lambda_feat
    return loss


def multiscale_l1_loss(fake: torch.Tensor, real: torch.Tensor, scales: int = 1) -> torch.Tensor:
    """Mean over ``scales`` of the pixel L1 between fake and real at 1, 1/2, 1/4... of their size
    (2x2 average pooling between scales). Scales past the first weigh the low frequencies again: an
    anchor of the image's colours and shapes that the adversarial terms, whose gradients are mostly
    high-frequency, do not give."""
    fake, real = fake.float(), real.float()
    loss = F.l1_loss(fake, real)
    for _ in range(1, scales):
        if min(fake.shape[-2:]) < 2:
            break
        fake, real = F.avg_pool2d(fake, 2), F.avg_pool2d(real, 2)
        loss = loss + F.l1_loss(fake, real)
    return loss / scales


def mask_binary_prior(mask: torch.Tensor) -> torch.Tensor:
    """Mean of 4 m (1 - m) over a mask in [0, 1]: 0 where it is 0 or 1, 1 where it is 0.5 (translucent)."""
    mask = mask.float()
    return (4 * mask * (1 - mask)).mean()


def masked_l1_loss(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel L1 over the pixels ``weight`` (N, 1, H, W) selects, as their mean (0 when it selects none)."""
    weight = weight.float()
    total = weight.sum() * fake.shape[1]
    if total <= 0:
        return torch.zeros((), device=fake.device)
    return ((fake.float() - real.float()).abs() * weight).sum() / total


def default_vgg_weights_path() -> Path:
    """Where torchvision caches VGG19 weights: ``$TORCH_HOME/hub/checkpoints/vgg19-dcbbb0d1.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def find_vgg_weights(weights: str | Path | None = None) -> Path:
    """The VGG19 weight file: ``weights`` when given, else the torch hub cache.

    Raises :class:`VGGWeightsNotFound` naming the path looked at and how to get the file.
    """
    path = Path(weights) if weights else default_vgg_weights_path()
    if not path.is_file():
        raise VGGWeightsNotFound(
            f"VGG19 weights for the perceptual loss not found at {path}. On a machine with internet run "
            "`python -c \"import torchvision; torchvision.models.vgg19(weights='IMAGENET1K_V1')\"` and copy "
            f"{VGG19_FILE} from its torch hub cache (~/.cache/torch/hub/checkpoints) to this path, "
            "or pass --vgg-weights PATH, or train without it (--no-vgg-loss).")
    return path


def load_vgg19_features(weights: str | Path | None = None) -> nn.Sequential:
    """torchvision VGG19 ``features`` (first 30 layers) with ImageNet weights from a file, frozen.

    The file (see :func:`find_vgg_weights`) may hold the full torchvision state dict or only
    its ``features.*`` entries.
    """
    from torchvision.models.vgg import cfgs, make_layers

    path = find_vgg_weights(weights)
    state = load_tensor_file(path, "VGG19 weight")
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    vgg = make_layers(cfgs["E"])  # VGG19's feature layers only: the classifier is 120M unused weights
    try:
        vgg.load_state_dict(features)
    except RuntimeError as exc:
        raise ValueError(f"{path}: not a torchvision VGG19 state dict ({exc})") from exc
    vgg = vgg[:VGG_SLICES[-1][1]]
    vgg.requires_grad_(False)
    log.info("VGG19 perceptual-loss weights from %s", path)
    return vgg.eval()


class VGGLoss(nn.Module):
    """Perceptual loss: weighted L1 between VGG19 relu1_1..relu5_1 features of fake and real, times lambda.

    Inputs in [-1, 1] are mapped to ImageNet normalisation first, the statistics the weights
    were trained with.
    """

    def __init__(self, weights: str | Path | None = None, lambda_vgg: float = 10.0):
        super().__init__()
        features = load_vgg19_features(weights)
        self.slices = nn.ModuleList(features[a:b] for a, b in VGG_SLICES)
        self.lambda_vgg = lambda_vgg
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGLoss":
        return super().train(False)  # frozen feature extractor: never leaves eval mode

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real_feats = self._features(real)
        loss = torch.zeros((), device=fake.device)
        for w, f, r in zip(VGG_LAYER_WEIGHTS, self._features(fake), real_feats):
            loss = loss + w * F.l1_loss(f.float(), r.float())
        return loss * self.lambda_vgg
