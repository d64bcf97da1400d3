"""The memory a training step needs, estimated before the run starts, against the memory there is.

The networks are built on PyTorch's meta device (shapes only, no storage) and run forward there:
what autograd saves for the backward pass is counted as it is saved, so the estimate follows the
architecture (local enhancer, plate compositing, face crops) without a formula per layer. A size
that cannot fit is refused before any frame is loaded, with the estimate in the message.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

# Bytes per parameter of a trained network: weight, gradient and Adam's two moments, all fp32.
TRAINED_PARAMETER_BYTES = 4 * 4
# A step's measured peak over its estimate: 1.34-1.37 without VGG, 1.53-1.68 with it (CPU, fp32, 144x256
# to 576x1024, scripts/bench_memory.py). Above estimate x this, a warning says the step may not fit.
MEASURED_PEAK_FACTOR = 2.0
GIB = 2 ** 30
log = logging.getLogger(__name__)


@dataclasses.dataclass
class StepMemory:
    """Bytes one training step holds at its peak: weights with their gradients and optimiser state,
    and the activations autograd keeps for the backward pass."""

    weights: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.activations

    def describe(self) -> str:
        return (f"about {self.total / GIB:.1f} GiB (activations {self.activations / GIB:.1f} GiB, weights, "
                f"gradients and Adam state {self.weights / GIB:.2f} GiB)")


def saved_bytes(module: nn.Module, *inputs: torch.Tensor) -> tuple[int, Any]:
    """Bytes autograd saves for the backward pass of ``module(*inputs)`` (parameters not counted),
    and the output; run it on meta tensors to pay nothing."""
    parameters = {id(p) for p in module.parameters()}
    saved: dict[int, torch.Tensor] = {}  # by identity, kept alive so an identity is never reused

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in parameters:
            saved[id(tensor)] = tensor
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = module(*inputs)
    return sum(t.numel() * t.element_size() for t in saved.values()), out


def inference_peak_bytes(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Bytes a forward pass without gradients holds at once: the largest input plus output of a layer."""
    peak = 0

    def hook(layer: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        nonlocal peak
        tensors = [t for t in (*args, out) if isinstance(t, torch.Tensor)]
        peak = max(peak, sum(t.numel() * t.element_size() for t in tensors))

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return peak


def _parameter_bytes(*modules: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def _vgg_features() -> nn.Module:
    """VGG19's feature layers of the perceptual loss, without weights (shapes are all that counts)."""
    from torchvision.models.vgg import cfgs, make_layers

    from pipeline.gan.models.losses import VGG_SLICES

    return make_layers(cfgs["E"])[:VGG_SLICES[-1][1]].requires_grad_(False)


def gan_step_memory(generator_activations: int, trained: Sequence[nn.Module], discriminator: nn.Module,
                    d_input: tuple[int, ...], images: tuple[int, ...] | None, frozen: Sequence[nn.Module] = (),
                    half: bool = False, unmatched: bool = False) -> StepMemory:
    """The peak of :meth:`GANTask.optimise`: the generator's graph, the discriminator's graph on the
    fakes and its features of the reals (feature matching), and VGG's graph on ``images`` (None: no VGG),
    all alive for the generator's backward. The discriminator's own update (fakes and reals in one
    batch) holds about the same without the generator's graph, so it is never the peak.

    ``half``: bf16/fp16 autocast keeps most activations in 2 bytes instead of 4. ``unmatched``: the
    discriminator's graph on fakes without a real frame (new poses) too.
    """
    with torch.device("meta"):
        d_saved, _ = saved_bytes(discriminator, torch.zeros(d_input))
        activations = generator_activations + (3 if unmatched else 2) * d_saved
        vgg = []
        if images is not None:
            vgg = [_vgg_features()]
            activations += saved_bytes(vgg[0], torch.zeros(images, requires_grad=True))[0]
    if half:
        activations //= 2
    weights = (_parameter_bytes(*trained, discriminator) * TRAINED_PARAMETER_BYTES // 4
               + _parameter_bytes(*frozen, *vgg))
    return StepMemory(weights, activations)


def pose_step_memory(cfg: Any, half: bool = False, n_plates: int = 1) -> StepMemory:
    """The training step of `edn train` (a :class:`~pipeline.gan.options.TrainConfig`), per process."""
    from pipeline.gan.models.discriminator import MultiscaleDiscriminator
    from pipeline.gan.models.generator import build_generator
    from pipeline.gan.networks import pose_model_configs

    config, d_nc = pose_model_configs(cfg, n_plates)
    b, h, w = cfg.batch_size, cfg.height, cfg.width
    with torch.device("meta"):
        generator = build_generator(config)
        discriminator = MultiscaleDiscriminator(d_nc, cfg.ndf, cfg.n_layers_d, cfg.num_d)
        g_saved, _ = saved_bytes(generator, torch.zeros(b, config["input_nc"], h, w))
    passes = 2 if cfg.temporal else 1  # the temporal pair runs the generator on frame t, then on t+1
    new_poses = cfg.lambda_new_pose > 0  # the pair's new poses go through the generator in the same batch
    return gan_step_memory((2 if new_poses else 1) * passes * g_saved, [generator], discriminator, (b, d_nc, h, w),
                           (passes * b, 3, h, w) if cfg.vgg_loss else None, half=half, unmatched=new_poses)


def face_step_memory(cfg: Any, generator_config: dict[str, Any], box: int, half: bool = False) -> StepMemory:
    """The training step of `edn train-face` (a FaceConfig): the frozen generator's forward without
    gradients at the full size, then the face GAN on ``box``-pixel crops."""
    from pipeline.gan.models.discriminator import MultiscaleDiscriminator
    from pipeline.gan.models.face import build_face_generator, default_face_config
    from pipeline.gan.models.generator import IMAGE_NC, POSE_NC, build_generator
    from pipeline.gan.networks import FACE_D_NC

    b = cfg.batch_size
    face_config = default_face_config(ngf=cfg.face_ngf, n_downsample=cfg.face_n_downsample,
                                      n_blocks=cfg.face_n_blocks, box_size=box, upsample=cfg.upsample,
                                      chroma=cfg.chroma)
    with torch.device("meta"):
        main = build_generator(generator_config).requires_grad_(False)
        main_peak = inference_peak_bytes(main, torch.zeros(b, generator_config["input_nc"], cfg.height, cfg.width))
        face = build_face_generator(face_config)
        discriminator = MultiscaleDiscriminator(FACE_D_NC, cfg.ndf, cfg.n_layers_d, cfg.num_d)
        face_saved, _ = saved_bytes(face, torch.zeros(b, POSE_NC, box, box), torch.zeros(b, IMAGE_NC, box, box))
    memory = gan_step_memory(face_saved, [face], discriminator, (b, FACE_D_NC, box, box),
                             (b, 3, box, box) if cfg.vgg_loss else None, frozen=[main], half=half)
    # The frozen generator's frames (generated and real, in and out) stay while the face GAN trains.
    frames = 4 * b * 3 * cfg.height * cfg.width * 4
    return dataclasses.replace(memory, activations=max(memory.activations + frames, main_peak))


def available_bytes(device: torch.device) -> tuple[int, str]:
    """Memory this process may still take on ``device``, and where that figure comes from.

    CUDA: the device's free memory. CPU: the kernel's MemAvailable, lowered to the cgroup's limit
    (a SLURM job's or a container's) when one is set, shared by the processes of this node
    (torchrun's LOCAL_WORLD_SIZE).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free memory of {torch.cuda.get_device_name(device)}"
    available, source = _meminfo_available(), "available RAM"
    limit = _cgroup_room()
    if limit is not None and limit < available:
        available, source = limit, "room left under this job's memory limit (cgroup)"
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if processes > 1:
        return available // processes, f"{source} shared by {processes} processes"
    return available, source


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_room() -> int | None:
    """cgroup v2: memory.max - memory.current of this process's group; None without a limit."""
    try:
        group = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]
        folder = Path("/sys/fs/cgroup") / group.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((folder / "memory.current").read_text()))
    except (OSError, IndexError, ValueError):
        return None


def check_step_fits(estimate: Callable[[], StepMemory], device: torch.device, what: str) -> StepMemory:
    """Refuse (ValueError naming ``what``, the estimate and the memory there is) a training step whose
    estimate exceeds the memory available on ``device``; returns the estimate otherwise.

    The estimate counts what the step must hold (weights, optimiser state, saved activations) and
    not what it also needs for a moment (the backward's gradients of activations, workspaces, the
    data loader), so a refused run could not have fitted: the margin lies on the side of running.
    """
    memory = estimate()
    available, source = available_bytes(device)
    if memory.total > available:
        raise ValueError(f"{what}: a training step needs {memory.describe()}, more than the "
                         f"{available / GIB:.1f} GiB ({source}) on {device}: lower the size, batch size or "
                         "filters (ngf, ndf), or train where there is more memory")
    if memory.total * MEASURED_PEAK_FACTOR > available:
        log.warning("%s: a training step needs %s and peaks up to %.1fx that; %.1f GiB (%s) on %s may not be "
                    "enough", what, memory.describe(), MEASURED_PEAK_FACTOR, available / GIB, source, device)
    return memory
