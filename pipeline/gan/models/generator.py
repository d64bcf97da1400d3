"""pix2pixHD generators (Wang et al. 2018) conditioned on the previous output frame.

The Everybody Dance Now generator sees the stick figure x_t (3 channels) concatenated with
its own previous output I_{t-1} (3 channels, zeros for the first frame), so ``input_nc`` is
6 in this pipeline; the classes accept any channel count so pix2pixHD's published sizes can
be checked with ``input_nc=3``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pipeline.gan.checkpoint import load_model
from pipeline.gan.options import CHROMAS, UPSAMPLINGS

POSE_NC = 3
IMAGE_NC = 3


def get_norm_layer(norm: str = "instance") -> Callable[[int], nn.Module]:
    """pix2pixHD's norms: instance norm without affine parameters, or batch norm."""
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False)
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True)
    raise ValueError(f"unknown norm {norm!r} (expected 'instance' or 'batch')")


def _padding(padding_type: str, size: int) -> tuple[list[nn.Module], int]:
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(size)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(size)], 0
    if padding_type == "zero":
        return [], size
    raise ValueError(f"unknown padding {padding_type!r}")


# Nearest 2x enlargement then a 3x3 tap w[t] (t = 0, 1, 2 on offsets -1, 0, +1) reaches the input pixel
# i from the output pixels 2i - 1 .. 2i + 2 with the summed taps w2, w1 + w2, w0 + w1, w0 (one axis).
_RESIZE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


class ResizeConv2d(nn.Module):
    """Nearest 2x enlargement, reflection padding 1, then a 3x3 convolution (``conv``), computed as the
    one stride-2 4x4 transposed convolution it equals (taps summed per output phase, the input padded
    by replication, which is what reflecting the enlarged image does at the border): the same values
    at under half the multiply-adds of convolving the enlarged image (:meth:`reference`)."""

    def __init__(self, in_nc: int, out_nc: int):
        super().__init__()
        self.conv = nn.Conv2d(in_nc, out_nc, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = torch.tensor(_RESIZE_TAPS, dtype=self.conv.weight.dtype, device=self.conv.weight.device)
        kernel = torch.einsum("ht,oits,ws->iohw", taps, self.conv.weight, taps)
        return nn.functional.conv_transpose2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                              kernel, self.conv.bias, stride=2, padding=3)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The definition, for tests: enlarge, pad, convolve."""
        enlarged = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(nn.functional.pad(enlarged, (1, 1, 1, 1), mode="reflect"))


def upsample_layer(in_nc: int, out_nc: int, upsample: str = "transpose") -> list[nn.Module]:
    """Double the resolution: pix2pixHD's 3x3 stride-2 transposed convolution, or (``resize``) nearest
    2x enlargement then a 3x3 convolution. A transposed convolution with a kernel that its stride does
    not divide covers output pixels unevenly, which draws a checkerboard until training evens it out
    (Odena et al. 2016); resize-convolution covers every output pixel alike."""
    if upsample == "transpose":
        return [nn.ConvTranspose2d(in_nc, out_nc, 3, stride=2, padding=1, output_padding=1)]
    if upsample == "resize":
        return [ResizeConv2d(in_nc, out_nc)]
    raise ValueError(f"unknown upsampling {upsample!r} (expected one of {', '.join(UPSAMPLINGS)})")


# ITU-R BT.601 luma weights of R, G, B (the evaluation's SSIM and colour-noise measure use the same).
_LUMA = (0.299, 0.587, 0.114)


class ChromaLowPass(nn.Module):
    """Colour at half resolution, luma untouched, as camera footage carries it: the first three channels
    (RGB in [-1, 1]) get their chroma filtered by a [1, 2, 1] / 4 binomial in each direction (the
    frequency response of chroma stored at half resolution and enlarged bilinearly, as 4:2:0 video is
    decoded) while their luma stays the input's; further channels (a plate generator's mask) pass as they
    are. Adding the luma lost to the blur back to all three channels changes luma alone, since a grey
    offset has no chroma. No weights: files keep their keys."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0]) / 4
        self.register_buffer("kernel", torch.outer(taps, taps).expand(IMAGE_NC, 1, 3, 3).clone(), persistent=False)
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, IMAGE_NC, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x[:, :IMAGE_NC]
        blurred = nn.functional.conv2d(nn.functional.pad(rgb, (1, 1, 1, 1), mode="replicate"),
                                       self.kernel.to(rgb.dtype), groups=IMAGE_NC)
        kept = blurred + ((rgb - blurred) * self.luma.to(rgb.dtype)).sum(dim=1, keepdim=True)
        return torch.cat([kept.clamp(-1, 1), x[:, IMAGE_NC:]], dim=1)


def chroma_layer(chroma: str = "full") -> nn.Module:
    """The generator's last step: nothing (``full``: the network's own colour) or :class:`ChromaLowPass`."""
    if chroma == "full":
        return nn.Identity()
    if chroma == "half":
        return ChromaLowPass()
    raise ValueError(f"unknown chroma {chroma!r} (expected one of {', '.join(CHROMAS)})")


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection (pix2pixHD's ResnetBlock)."""

    def __init__(self, dim: int, norm_layer: Callable[[int], nn.Module], padding_type: str = "reflect"):
        super().__init__()
        layers: list[nn.Module] = []
        for last in (False, True):
            pad, p = _padding(padding_type, 1)
            layers += [*pad, nn.Conv2d(dim, dim, 3, padding=p), norm_layer(dim)]
            if not last:
                layers.append(nn.ReLU(True))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class GlobalGenerator(nn.Module):
    """c7s1-ngf, n_downsample stride-2 convs, n_blocks residual blocks, mirrored upsampling, c7s1-3, tanh."""

    def __init__(self, input_nc: int = POSE_NC + IMAGE_NC, output_nc: int = IMAGE_NC, ngf: int = 64,
                 n_downsample: int = 4, n_blocks: int = 9, norm: str = "instance",
                 padding_type: str = "reflect", upsample: str = "transpose", chroma: str = "full"):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        activation = nn.ReLU(True)
        model: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm_layer(ngf), activation]
        for i in range(n_downsample):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                      norm_layer(ngf * mult * 2), activation]
        mult = 2 ** n_downsample
        model += [ResnetBlock(ngf * mult, norm_layer, padding_type) for _ in range(n_blocks)]
        for i in range(n_downsample):
            mult = 2 ** (n_downsample - i)
            model += [*upsample_layer(ngf * mult, ngf * mult // 2, upsample), norm_layer(ngf * mult // 2), activation]
        # The last three modules (pad, conv, tanh) are what LocalEnhancer strips.
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)
        self.chroma = chroma_layer(chroma)
        self.divisor = 2 ** n_downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chroma(self.model(x))


class LocalEnhancer(nn.Module):
    """pix2pixHD's local enhancer: a global generator at half resolution inside a full-resolution branch.

    ``global_generator`` (optional) is a trained GlobalGenerator with ``ngf = 2 * ngf`` whose
    layers are reused (all but its final pad/conv/tanh), as pix2pixHD does when fine-tuning.
    """

    def __init__(self, input_nc: int = POSE_NC + IMAGE_NC, output_nc: int = IMAGE_NC, ngf: int = 32,
                 n_downsample_global: int = 4, n_blocks_global: int = 9, n_blocks_local: int = 3,
                 norm: str = "instance", padding_type: str = "reflect",
                 global_generator: GlobalGenerator | None = None, upsample: str = "transpose",
                 chroma: str = "full"):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        if global_generator is None:
            global_generator = GlobalGenerator(input_nc, output_nc, ngf * 2, n_downsample_global,
                                               n_blocks_global, norm, padding_type, upsample)
        # Iterating the Sequential, not .children(): children() skips repeats of one module, and the
        # global generator reuses one ReLU, so children() would drop every activation after the first.
        self.model = nn.Sequential(*list(global_generator.model)[:-3])
        self.model_downsample = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm_layer(ngf), nn.ReLU(True),
            nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1), norm_layer(ngf * 2), nn.ReLU(True))
        self.model_upsample = nn.Sequential(
            *[ResnetBlock(ngf * 2, norm_layer, padding_type) for _ in range(n_blocks_local)],
            *upsample_layer(ngf * 2, ngf, upsample), norm_layer(ngf),
            nn.ReLU(True), nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh())
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.chroma = chroma_layer(chroma)
        self.divisor = 2 ** (n_downsample_global + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chroma(self.model_upsample(self.model_downsample(x) + self.model(self.downsample(x))))


class PlateComposite(nn.Module):
    """vid2vid-style foreground/background: the inner generator also sees the background plate and
    outputs a foreground image and a mask logit; output = mask * foreground + (1 - mask) * plate.

    ``inner`` takes ``input_nc + 3`` channels and gives 4 (foreground RGB through tanh, the mask
    through the same tanh, mapped to (0, 1)). The plates, (n_plates, 3, H, W) in [-1, 1], one per
    training clip (camera view), are a buffer, so they are saved in the model file. Training
    passes each sample's plate; generation uses plate ``plate_index`` (0: the first target clip).
    """

    def __init__(self, inner: nn.Module, width: int, height: int, n_plates: int = 1):
        super().__init__()
        self.inner = inner
        self.divisor = getattr(inner, "divisor", 1)
        self.plate_index = 0
        self.register_buffer("plate", torch.zeros(n_plates, IMAGE_NC, height, width))
        # Training sets this to a list: each forward then appends its (foreground, mask) for the mask's losses.
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor, plate: torch.Tensor | None = None) -> torch.Tensor:
        if plate is None:
            plate = self.plate[self.plate_index:self.plate_index + 1].expand(x.shape[0], -1, -1, -1)
        plate = plate.to(x.dtype)
        out = self.inner(torch.cat([x, plate], dim=1))
        foreground, mask = out[:, :IMAGE_NC], out[:, IMAGE_NC:IMAGE_NC + 1].add(1).mul(0.5)
        if self.parts is not None:
            self.parts.append((foreground, mask))
        return mask * foreground + (1 - mask) * plate

    def set_mask_bias(self, mask: float) -> None:
        """Start the mask at ``mask`` (0 < mask < 1) everywhere: the bias of the mask's output channel.

        The mask channel is a head of its own (one output channel of the last convolution: its own
        weights and bias); below 0.5 the generator starts from the plate and must paint the person in.
        """
        if not 0 < mask < 1:
            raise ValueError(f"initial mask {mask} must lie strictly between 0 and 1")
        last = [m for m in self.inner.modules() if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            last.bias[IMAGE_NC] = float(torch.atanh(torch.tensor(2 * mask - 1.0)))  # mask = (tanh(z) + 1) / 2


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pixHD's initialisation: convolution weights drawn from N(0, std), affine norm weights from
    N(1, std) with zero bias; convolution biases keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def sample_plates(generator: nn.Module, clips: Any) -> torch.Tensor | None:
    """A plate generator's plates of each sample's clip (``clips``: training-clip indices), for a batch
    mixing clips; None for a generator without plates."""
    if not isinstance(generator, PlateComposite):
        return None
    return generator.plate[torch.as_tensor(clips, device=generator.plate.device)]


def select_plate(generator: nn.Module, clip_index: int) -> None:
    """Generate over training clip ``clip_index``'s plate (a plate generator; others are left as they are)."""
    if isinstance(generator, PlateComposite):
        if not 0 <= clip_index < len(generator.plate):
            raise ValueError(f"plate {clip_index} asked of a generator trained with {len(generator.plate)} plates")
        generator.plate_index = clip_index


def default_generator_config(**overrides: Any) -> dict[str, Any]:
    """The architecture record stored beside the weights so a checkpoint rebuilds its network."""
    config: dict[str, Any] = {"kind": "global", "input_nc": POSE_NC + IMAGE_NC, "output_nc": IMAGE_NC,
                              "ngf": 64, "n_downsample": 4, "n_blocks": 9, "n_blocks_local": 3,
                              "norm": "instance", "padding_type": "reflect", "temporal": True,
                              "background": "none", "n_plates": 1, "upsample": "transpose", "chroma": "full"}
    unknown = set(overrides) - set(config) - {"width", "height"}
    if unknown:
        raise ValueError(f"unknown generator settings {sorted(unknown)}")
    config.update(overrides)
    if not config["temporal"]:
        config["input_nc"] = POSE_NC  # the frame-by-frame ablation sees the stick figure alone
    return config


def is_temporal(config: dict[str, Any]) -> bool:
    """Whether a generator takes its previous output as input (files from before the flag are temporal)."""
    return bool(config.get("temporal", True))


def build_generator(config: dict[str, Any]) -> nn.Module:
    """A GlobalGenerator or LocalEnhancer from :func:`default_generator_config`'s record; with
    ``background: plate`` wrapped in :class:`PlateComposite` (files from before the key: none)."""
    background = config.get("background", "none")
    if background == "plate":
        inner = build_generator({**config, "background": "none", "input_nc": config["input_nc"] + IMAGE_NC,
                                 "output_nc": IMAGE_NC + 1})
        return PlateComposite(inner, int(config["width"]), int(config["height"]), int(config.get("n_plates", 1)))
    if background != "none":
        raise ValueError(f"unknown generator background {background!r} (expected 'plate' or 'none')")
    common = dict(input_nc=config["input_nc"], output_nc=config["output_nc"], norm=config["norm"],
                  padding_type=config["padding_type"], upsample=config.get("upsample", "transpose"),
                  chroma=config.get("chroma", "full"))
    if config["kind"] == "global":
        return GlobalGenerator(ngf=config["ngf"], n_downsample=config["n_downsample"],
                               n_blocks=config["n_blocks"], **common)
    if config["kind"] == "local":
        return LocalEnhancer(ngf=config["ngf"], n_downsample_global=config["n_downsample"],
                             n_blocks_global=config["n_blocks"], n_blocks_local=config["n_blocks_local"],
                             **common)
    raise ValueError(f"unknown generator kind {config['kind']!r}")


def load_global_into_local(local: nn.Module, local_config: dict[str, Any], global_model: nn.Module,
                           global_config: dict[str, Any], source: str | Path = "global generator") -> None:
    """Copy a trained GlobalGenerator's layers (all but its final pad/conv/tanh) into the global part
    of a LocalEnhancer, as pix2pixHD starts its local phase; ``source`` names the file in errors."""
    if not isinstance(local, LocalEnhancer) or not isinstance(global_model, GlobalGenerator):
        raise ValueError(f"{source}: a global generator initialises a local enhancer only "
                         f"(got {type(global_model).__name__} -> {type(local).__name__})")
    wanted = {"ngf": 2 * local_config["ngf"], "n_downsample": local_config["n_downsample"],
              "n_blocks": local_config["n_blocks"], "input_nc": local_config["input_nc"],
              "output_nc": local_config["output_nc"], "norm": local_config["norm"],
              "padding_type": local_config["padding_type"], "temporal": is_temporal(local_config),
              "upsample": local_config.get("upsample", "transpose")}
    found = {**global_config, "temporal": is_temporal(global_config),
             "upsample": global_config.get("upsample", "transpose")}
    wrong = [f"{k} {found.get(k)} (needs {v})" for k, v in wanted.items() if found.get(k) != v]
    if wrong:
        raise ValueError(f"{source}: global generator does not fit this local enhancer: {', '.join(wrong)}")
    kept = len(local.model)  # the global generator's layers minus the last three
    state = {k.split(".", 1)[1]: v for k, v in global_model.state_dict().items()
             if k.startswith("model.") and int(k.split(".")[1]) < kept}
    local.model.load_state_dict(state, strict=True)


# The config keys a generator file must hold (True) or may hold, with their types and sane ranges.
_LAYERS = (int, 1, 1024)
GENERATOR_SCHEMA: dict[str, tuple[Any, ...]] = {
    "kind": (True, {"global", "local"}), "input_nc": (True, int, 1, 64), "output_nc": (True, int, 1, 64),
    "ngf": (True, *_LAYERS), "n_downsample": (True, int, 0, 8), "n_blocks": (True, int, 0, 64),
    "n_blocks_local": (False, int, 0, 64), "norm": (True, {"instance", "batch"}),
    "padding_type": (True, {"reflect", "replicate", "zero"}), "temporal": (False, bool, 0, 1),
    "background": (False, {"none", "plate"}), "n_plates": (False, int, 1, 1024),
    "upsample": (False, set(UPSAMPLINGS)), "chroma": (False, set(CHROMAS)),
    "width": (False, int, 1, 16384), "height": (False, int, 1, 16384),
}


def load_generator(path: str | Path, device: str | torch.device = "cpu", extras: dict[str, Any] | None = None
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained generator from ``generator.pt``; returns (model in eval mode, its config).

    The config also holds ``width`` and ``height``, the resolution it was trained at; ``extras``
    receives the file's other entries (see :func:`pipeline.gan.checkpoint.load_model`).
    """
    return load_model(path, build_generator, "generator", "edn train", device, extras, GENERATOR_SCHEMA)


def image_to_tensor(image: Any, device: str | torch.device | None = None) -> torch.Tensor:
    """uint8 HxWx3 RGB array -> float (1, 3, H, W) tensor in [-1, 1] on ``device`` (default: the CPU).

    The image travels as uint8 and is converted there: a quarter of the bytes of float32 over the bus,
    and the arithmetic on the GPU rather than on the host.
    """
    t = torch.as_tensor(image)
    if device is not None:
        t = t.to(device)
    return t.permute(2, 0, 1).float().div(127.5).sub(1.0).unsqueeze(0).contiguous()


def tensor_to_image(tensor: torch.Tensor) -> Any:
    """(3, H, W) or (1, 3, H, W) tensor in [-1, 1] -> uint8 HxWx3 RGB numpy array (C-contiguous).

    Converted on the tensor's device, then copied to the host as uint8 (a quarter of float32's bytes).
    """
    t = tensor.detach()
    if t.dim() == 4:
        t = t[0]
    t = t.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return t.permute(1, 2, 0).contiguous().cpu().numpy()
