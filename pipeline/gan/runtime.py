"""The device, precision and process-group runtime of everything that runs a network: ``edn train``,
``edn train-face``, ``edn transfer`` and ``edn evaluate``.

Which device (CUDA only where it can run this torch's kernels), which precision (autocast dtypes,
IEEE or TF32 fp32 math), the process's place in a ``torchrun`` job, seeding and deterministic kernels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pipeline.gan.options import PRECISIONS

log = logging.getLogger(__name__)


def cuda_problem() -> str | None:
    """Why CUDA cannot run this torch's kernels here, or None when it can (a GPU visible, torch built for it)."""
    if not torch.cuda.is_available():
        built = torch.version.cuda
        if built is None:
            return "this torch is a CPU-only build (torch.version.cuda is None): install a CUDA build of torch"
        return (f"torch.cuda.is_available() is False: this torch is built for CUDA {built}; the NVIDIA driver "
                "is missing or too old for it, or no GPU is visible to this process (check nvidia-smi)")
    if torch.cuda.device_count() == 0:
        return "no CUDA device is visible to this process (CUDA_VISIBLE_DEVICES, the job's GPU binding)"
    major, minor = torch.cuda.get_device_capability(0)
    archs = torch.cuda.get_arch_list()
    if not _runs_on(major * 10 + minor, archs):
        return (f"no kernel image for this GPU: {torch.cuda.get_device_name(0)} has compute capability "
                f"{major}.{minor}, this torch {torch.__version__} is built for {' '.join(archs) or 'no GPU'}; "
                "install a torch build that includes it (see pytorch.org's install matrix)")
    return None


def _runs_on(capability: int, archs: Sequence[str]) -> bool:
    """Whether a build for ``archs`` (torch.cuda.get_arch_list(): "sm_80", "sm_90a", "compute_90") runs on a GPU
    of ``capability`` (86 for 8.6): its own cubin, or PTX of an older or equal one, which the driver compiles."""
    for arch in archs:
        kind, _, number = arch.partition("_")
        digits = "".join(ch for ch in number if ch.isdigit())
        if not digits:
            continue
        if (kind == "sm" and int(digits) == capability) or (kind == "compute" and int(digits) <= capability):
            return True
    return False


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when it can run here, else the CPU, except in a job that was given GPUs: there an
    unusable CUDA is an error (it never trains on the CPU by surprise); ``cuda`` without a usable GPU is an error."""
    from pipeline.gan.launch import allocated_gpus

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    problem = cuda_problem()
    if problem is None:
        return torch.device("cuda")
    if device == "cuda":
        raise RuntimeError(f"--device cuda requested but CUDA is unusable: {problem}")
    given = allocated_gpus(os.environ)
    if given:
        raise RuntimeError(f"device auto: this job was given GPUs ({given}) but CUDA is unusable: {problem}. "
                           "Fix that, or set device: cpu (edn --device cpu) to run on the CPU on purpose")
    return torch.device("cpu")


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# The native bf16 instruction sets with which ``precision: auto`` takes bf16 on the CPU: a demo training step
# took 0.62x the CPU time in bf16 on an AVX512-BF16 CPU without AMX (the README's precision table); AMX
# computes bf16 in tiles, faster still. Arm BF16 is unmeasured here and stays fp32.
CPU_BF16_TAKEN = ("amx", "avx512_bf16")
# Declares the CPU's native bf16 instead of asking it: "none" or one of cpu_bf16_feature's names. Tests
# pin it so that every process they start decides as they expect on any CPU.
CPU_BF16_VARIABLE = "EDN_CPU_BF16"


def cpu_bf16_feature() -> str | None:
    """The instruction set by which this CPU computes bf16 natively (``amx``, ``avx512_bf16``, Arm's ``bf16``),
    or None: ``EDN_CPU_BF16`` when set, else torch's own check (it also knows whether the OS enabled AMX),
    then the CPU's flags."""
    declared = os.environ.get(CPU_BF16_VARIABLE)
    if declared:
        if declared not in ("none", "amx", "avx512_bf16", "bf16"):
            raise ValueError(f"{CPU_BF16_VARIABLE}={declared!r}: expected none, amx, avx512_bf16 or bf16")
        return None if declared == "none" else declared
    cpu = getattr(torch._C, "_cpu", None)
    for name, check in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        probe = getattr(cpu, check, None)
        if probe is not None and probe():
            return name
    flags = _cpu_flags()
    flag = next((flag for flag in ("amx_bf16", "avx512_bf16", "bf16") if flag in flags), None)
    return "amx" if flag == "amx_bf16" else flag


def _cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The feature flags of ``cpuinfo`` (x86 ``flags``, Arm ``Features``); empty where there is none."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def choose_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """The precision a run on ``device`` computes in, and why (recorded in run.json and the transfer and
    evaluation records).

    ``auto``: bf16 autocast on a GPU that computes bf16 natively (compute capability >= 8.0) and on a
    CPU with AMX or AVX512-BF16 (:data:`CPU_BF16_TAKEN`); fp32 elsewhere (an older GPU or CPU would emulate
    bf16, slowly). The decision depends on the hardware only, never on a timing, so one machine always decides
    the same way.
    bf16 and fp16 run under autocast wherever asked (slow on a CPU without bf16; for tests of the GPU
    path). fp32 is IEEE fp32; tf32 is fp32 storage with TF32 tensor-core matmuls and convolutions
    (CUDA only: fp32 elsewhere).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "tf32":
        return ("tf32", "requested") if device.type == "cuda" else ("fp32", "tf32 requested; the CPU has no TF32")
    if precision != "auto":
        return precision, "requested"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if torch.cuda.is_bf16_supported() and capability >= (8, 0):
            return "bf16", f"auto: the GPU computes bf16 natively (compute capability {capability[0]}.{capability[1]})"
        return "fp32", (f"auto: the GPU would emulate bf16 (compute capability {capability[0]}.{capability[1]} "
                        "< 8.0)")
    if device.type != "cpu":
        return "fp32", f"auto: fp32 on {device.type}"
    feature = cpu_bf16_feature()
    if feature is None:
        return "fp32", (f"auto: the CPU has no native bf16 (no AMX, AVX512-BF16 or Arm BF16; torch sees "
                        f"{torch.backends.cpu.get_cpu_capability()}), bf16 would be emulated, several times slower")
    if feature in CPU_BF16_TAKEN:
        return "bf16", f"auto: the CPU computes bf16 natively with {feature}"
    return "fp32", (f"auto: the CPU computes bf16 natively with {feature}, but bf16 is measured faster only with "
                    f"{' or '.join(CPU_BF16_TAKEN)}")


def set_float32_math(precision: str) -> None:
    """How CUDA computes fp32 matmuls and convolutions in this process: TF32 for ``tf32``, IEEE otherwise.

    torch's default lets cuDNN run fp32 convolutions in TF32 (10-bit mantissa) on A100/H100, so a run
    recorded as fp32 would not be fp32. (No effect on the CPU.)
    """
    mode = "tf32" if precision == "tf32" else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode



@dataclass
class Runtime:
    """This process's place in the job: rank, world size, device and the resolved precision."""

    rank: int
    world: int
    device: torch.device
    precision: str = "fp32"  # bf16, fp16 (with loss scaling), tf32 or fp32 (IEEE)
    channels_last: bool = False
    precision_reason: str = "requested"  # why this precision (choose_precision)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS[1:]:
            raise ValueError(f"Runtime precision must be resolved (one of {PRECISIONS[1:]}), got {self.precision!r}")

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        # bf16 needs no loss scaling, fp16 does (GANTask's GradScaler); fp32 and tf32 run without autocast.
        if self.precision not in AUTOCAST_DTYPES:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def prepare(self, module: nn.Module) -> nn.Module:
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t


def start_runtime(device: str = "auto", precision: str = "auto", channels_last: bool = False) -> Runtime:
    """Pick the device; join the process group when launched by ``torchrun`` (RANK/WORLD_SIZE set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "cuda":  # torchrun gives each process its own GPU
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise RuntimeError(
                f"process {local_rank} on this node (LOCAL_RANK) has no GPU of its own: {visible} visible. Start "
                f"at most {visible} process(es) per node (python -m pipeline.gan.launch --gpus {visible}), or train "
                "on the CPU on purpose with --device cpu (the launcher's --cpu-procs mode passes it)")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    resolved, reason = choose_precision(precision, dev)
    if world > 1:  # every process computes as rank 0 chose (nodes of one job may differ in hardware)
        choice = [resolved, reason]
        dist.broadcast_object_list(choice, src=0)
        resolved, reason = choice
    return Runtime(rank, world, dev, resolved, channels_last, reason)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def determinism(enabled: bool, rt: Runtime) -> Iterator[None]:
    """Deterministic kernels (``--deterministic``) or cuDNN autotuning, restored afterwards.

    Deterministic runs are the CPU's: on CUDA the generator's ReflectionPad2d has no deterministic
    backward kernel (torch.use_deterministic_algorithms' documentation), so a "deterministic" GPU run
    would not be one; that is refused rather than merely warned about.
    """
    if enabled and rt.device.type != "cpu":
        raise ValueError(f"deterministic: true is exact on the CPU only, this run is on {rt.device}: on CUDA "
                         "ReflectionPad2d's backward (every generator layer's padding) has no deterministic kernel. "
                         "Use device: cpu (--device cpu) for a bit-reproducible run, or deterministic: false")
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled and rt.device.type == "cuda"
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=True)
        torch.backends.cudnn.benchmark = before[1]


def all_gather(obj: Any, rt: Runtime) -> list[Any]:
    if rt.world == 1:
        return [obj]
    out: list[Any] = [None] * rt.world
    dist.all_gather_object(out, obj)
    return out


def data_workers(asked: int, rt: Runtime) -> int:
    """Data-loading processes for this rank: ``asked`` (train: workers), at most the cores this process may
    run on shared by the training processes of its node (``LOCAL_WORLD_SIZE``, set by torchrun); more would
    only wait for a core and hold their copy of the clips. A capped count is said in one line (rank 0)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    most = max(1, cores // local)
    if asked <= most:
        return asked
    if rt.is_main:
        log.warning("train: workers %d is more than the %d cores each training process here may use (%d cores, "
                    "%d processes): %d data workers per process", asked, most, cores, local, most)
    return most
