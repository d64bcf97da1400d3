"""The face GAN: a residual generator refining the face crop of the main generator's output.

G_f sees the stick-figure crop x_F and the generated crop G(x)_F and predicts a residual r;
the refined face is G(x)_F + r. D_f is a 70x70 PatchGAN on (x_F, face) pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.gan.checkpoint import load_model
from pipeline.gan.models.generator import IMAGE_NC, POSE_NC, GlobalGenerator, chroma_layer
from pipeline.gan.options import CHROMAS, UPSAMPLINGS
from pipeline.pose.keypoints import FACE, J, present

Box = tuple[int, int, int, int]


def face_box_size(frame_h: int, multiple: int = 8) -> int:
    """Face crop side: 128 px for 512-px-high frames, proportional otherwise.

    Rounded to a multiple of ``multiple`` (the face generator's downsampling factor, 2**3).
    """
    return max(multiple, int(round(frame_h / 4 / multiple)) * multiple)


def face_box(keypoints: np.ndarray, frame_w: int, frame_h: int, box_size: int) -> Box | None:
    """Square face box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of side ``box_size`` inside the frame.

    Centred on the bounding-box centre of the detected face points (the 70 OpenPose face
    keypoints); without any, on the nose (BODY_25 joint 0); None when both are missing.
    ``keypoints`` is one frame's (137, 3) x, y, confidence in the frame's pixel coordinates.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    face = kp[FACE]
    ok = present(face)
    if ok.any():
        pts = face[ok, :2]
        cx, cy = (pts.min(0) + pts.max(0)) / 2
    else:
        nose = kp[J["Nose"]]
        if not present(nose):
            return None
        cx, cy = nose[0], nose[1]
    size = int(min(box_size, frame_w, frame_h))
    x0 = int(np.clip(round(cx - size / 2), 0, frame_w - size))
    y0 = int(np.clip(round(cy - size / 2), 0, frame_h - size))
    return x0, y0, x0 + size, y0 + size


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Stack the crops ``images[i, :, y0:y1, x0:x1]`` for boxes (N, 4) of one common size."""
    return torch.stack([img[:, int(b[1]):int(b[3]), int(b[0]):int(b[2])] for img, b in zip(images, boxes)])


def paste_boxes(images: torch.Tensor, crops: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Copy of ``images`` with each crop written back at its box."""
    out = images.clone()
    for i, b in enumerate(boxes):
        out[i, :, int(b[1]):int(b[3]), int(b[0]):int(b[2])] = crops[i]
    return out


class FaceResidualGenerator(nn.Module):
    """A global generator (encoder, residual blocks, decoder) on (pose crop, generated crop) whose
    output is added to the generated crop: G_f returns G(x)_F + r.

    Its last convolution starts at zero, so an untrained face GAN returns the generated crop
    unchanged and training starts from the main generator's face.
    """

    def __init__(self, input_nc: int = POSE_NC + IMAGE_NC, output_nc: int = IMAGE_NC, ngf: int = 32,
                 n_downsample: int = 3, n_blocks: int = 5, norm: str = "instance", upsample: str = "transpose",
                 chroma: str = "full"):
        super().__init__()
        self.model = GlobalGenerator(input_nc, output_nc, ngf, n_downsample, n_blocks, norm, upsample=upsample).model
        # The residual's colour as the main generator's (``half``: chroma low-passed, luma kept), so adding it
        # brings no finer colour grain than the generated crop has.
        self.chroma = chroma_layer(chroma)
        self.zero_residual()
        self.divisor = 2 ** n_downsample

    def zero_residual(self) -> None:
        """Zero the final 7x7 convolution (before tanh): the residual is 0, the crop passes unchanged."""
        last = self.model[-2]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, pose_crop: torch.Tensor, generated_crop: torch.Tensor) -> torch.Tensor:
        return generated_crop + self.chroma(self.model(torch.cat([pose_crop, generated_crop], dim=1)))


def default_face_config(**overrides: Any) -> dict[str, Any]:
    """Architecture record of the face generator; ``box_size`` is in model-resolution pixels."""
    config: dict[str, Any] = {"input_nc": POSE_NC + IMAGE_NC, "output_nc": IMAGE_NC, "ngf": 32,
                              "n_downsample": 3, "n_blocks": 5, "norm": "instance", "box_size": 128,
                              "upsample": "transpose", "chroma": "full"}
    unknown = set(overrides) - set(config) - {"width", "height"}
    if unknown:
        raise ValueError(f"unknown face generator settings {sorted(unknown)}")
    config.update(overrides)
    return config


def build_face_generator(config: dict[str, Any]) -> FaceResidualGenerator:
    """The face generator of ``config``; files from before ``upsample``/``chroma`` load as pix2pixHD's."""
    return FaceResidualGenerator(config["input_nc"], config["output_nc"], config["ngf"], config["n_downsample"],
                                 config["n_blocks"], config["norm"], config.get("upsample", "transpose"),
                                 config.get("chroma", "full"))


# The config keys a face generator file must hold, with their types and sane ranges.
FACE_SCHEMA: dict[str, tuple[Any, ...]] = {
    "input_nc": (True, int, 1, 64), "output_nc": (True, int, 1, 64), "ngf": (True, int, 1, 1024),
    "n_downsample": (True, int, 0, 8), "n_blocks": (True, int, 0, 64), "norm": (True, {"instance", "batch"}),
    "box_size": (True, int, 1, 16384), "width": (False, int, 1, 16384), "height": (False, int, 1, 16384),
    "upsample": (False, set(UPSAMPLINGS)), "chroma": (False, set(CHROMAS)),
}


def face_skipped(path: str | Path) -> str | None:
    """Why ``face.pt`` holds no face GAN (``edn train-face`` found too few faces), or None for a trained one."""
    from pipeline.gan.checkpoint import load_tensor_file, verify_contents

    state = load_tensor_file(path, "face generator")
    verify_contents(Path(path), state, "face generator")
    reason = state.get("skipped")
    return str(reason) if reason else None


def load_face_generator(path: str | Path, device: str | torch.device = "cpu", extras: dict[str, Any] | None = None
                        ) -> tuple[FaceResidualGenerator, dict[str, Any]]:
    """Rebuild the face generator from ``face.pt``; returns (model in eval mode, config with box_size)."""
    return load_model(path, build_face_generator, "face generator", "edn train-face", device, extras, FACE_SCHEMA)


@torch.no_grad()
def enhance_face(face_generator: FaceResidualGenerator, pose: torch.Tensor, generated: torch.Tensor,
                 box: Box | None) -> torch.Tensor:
    """Refine the face of one generated frame (1, 3, H, W) in [-1, 1]; unchanged when ``box`` is None."""
    if box is None:
        return generated
    device = next(face_generator.parameters()).device
    boxes = [box]  # corners as Python ints: no host tensor to index with
    pose_crop = crop_boxes(pose.to(device), boxes)
    gen_crop = crop_boxes(generated.to(device), boxes)
    refined = face_generator(pose_crop, gen_crop).clamp(-1, 1)
    return paste_boxes(generated.to(device), refined, boxes).to(generated.device)
