"""`make bench-train`: speed of one training step of the pose GAN (both generator passes, the
generator update and the discriminator update), on synthetic batches, eager and compiled
(``torch.compile``, as ``train: compile`` does) side by side. Prints a Markdown table.

Each row's eager and compiled steps start from the same weights and take the same batch; their steps
are timed in turns (one of each per round, the median of each), so that other work on a shared
machine falls on both alike and the speed-up holds. The compiled row's first step (the compile
included) is shown, and how far its losses are from the eager step's.

- CPU: the configured demo model at the configured resolution (config/config.yaml, ``train:``) and
  the paper-width model at 512x256, each in fp32 and in bf16 autocast (the paper-width bf16 row only
  where the CPU computes bf16 natively), each row in its own process (its peak RSS is its own). The
  header says whether the CPU computes bf16 natively and what ``precision: auto`` chooses here, and why.
- CUDA, when present: the paper-size model (pix2pixHD global generator ngf 64, 4 downsamplings,
  9 blocks; 3-scale discriminator ndf 64) at 512x256 and 1024x512, fp32 (IEEE) and bf16, with peak
  memory and the fraction of the GPU's dense bf16 peak reached. FLOPs are counted with
  ``torch.utils.flop_counter.FlopCounterMode`` over one whole step (forward and backward of
  generator, discriminator and, when used, VGG).

The VGG loss is on when its weights are found (as ``vgg_loss: auto``); the table says which.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from gpu_check import bf16_peak, first_step_seconds, interleaved_seconds  # noqa: E402  (this folder)
from pipeline.gan.compiled import compile_in_place  # noqa: E402
from pipeline.gan.runtime import Runtime, choose_precision, cpu_bf16_feature  # noqa: E402
from pipeline.gan.options import TrainConfig  # noqa: E402
from pipeline.gan.stage import resolve_vgg  # noqa: E402
from pipeline.gan.train import PoseTask  # noqa: E402

PAPER_MODEL = dict(ngf=64, n_downsample=4, n_blocks=9, ndf=64, n_layers_d=3, num_d=3)


def gpu_peak(name: str, override: float | None) -> float | None:
    """Dense bf16 peak in TFLOP/s: ``override``, else gpu_check's table by device name."""
    if override:
        return override
    peak = bf16_peak(name)
    return peak / 1e12 if peak is not None else None


def synthetic_batch(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shape = (cfg.batch_size, 3, cfg.height, cfg.width)
    return {k: torch.rand(shape, generator=g) * 2 - 1 for k in ("pose_t", "pose_t1", "real_t", "real_t1")}


MODES = ("eager", "compiled")


def measure(cfg: TrainConfig, rt: Runtime, steps: int, warmup: int, count_flops: bool = True,
            modes: tuple[str, ...] = MODES) -> dict[str, dict[str, float]]:
    """Per mode (eager, compiled): seconds per step (median of steps timed in turns), the first step's seconds
    (compiled: the compile included), the first step's largest relative loss difference from eager's, FLOPs
    per step (``count_flops``; else NaN) and peak memory of PoseTask.step on ``rt``'s device."""
    cuda = rt.device.type == "cuda"
    tasks = {}
    for mode in modes:
        torch.manual_seed(0)  # the same weights in every mode
        tasks[mode] = PoseTask(cfg, rt)
        if mode == "compiled":
            compile_in_place(tasks[mode].compiled_modules())
    batch = synthetic_batch(cfg)
    first, first_losses = {}, {}
    for mode, task in tasks.items():
        first[mode] = first_step_seconds(lambda: first_losses.__setitem__(mode, task.step(batch)[0]), rt.device)
    for _ in range(warmup):  # cuDNN autotuning, allocator warm-up, recompiles are not timed
        for task in tasks.values():
            task.step(batch)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = interleaved_seconds({mode: (lambda t=task: t.step(batch)) for mode, task in tasks.items()}, steps,
                                  rt.device)
    memory = torch.cuda.max_memory_allocated() / 2**30 if cuda \
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    flops = float("nan")
    if count_flops:
        with FlopCounterMode(display=False) as counter:  # a separate, untimed step: counting slows it
            tasks[modes[0]].step(batch)
        flops = float(counter.get_total_flops())
    reference = {k: float(v.detach()) for k, v in first_losses[modes[0]].items()}
    return {mode: {"seconds": seconds[mode], "first_step": first[mode], "flops": flops, "memory_gib": memory,
                   "loss_difference": max(abs(float(v.detach()) - reference[k]) / max(abs(reference[k]), 1e-12)
                                          for k, v in first_losses[mode].items())}
            for mode in modes}


def adam_rows(cfg: TrainConfig, rt: Runtime, repeats: int) -> dict[str, float]:
    """Milliseconds of one Adam update of the configured model's generator and discriminator parameters (its
    gradients set once), per implementation: a loop over the tensors, foreach (batched ops) and fused (one
    kernel, what training uses), timed in turns."""
    torch.manual_seed(0)
    task = PoseTask(dataclasses.replace(cfg, vgg_loss=False), rt)  # G's and D's parameters: VGG takes no update
    params = [p for m in task.models.values() for p in m.parameters()]
    kinds = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
    optimizers = {}
    for kind, options in kinds.items():
        copies = [p.detach().clone().requires_grad_() for p in params]
        for p in copies:
            p.grad = torch.randn_like(p)
        optimizers[kind] = torch.optim.Adam(copies, lr=cfg.lr, betas=(cfg.beta1, 0.999), **options)
        optimizers[kind].step()  # the state is made at the first step: not timed
    seconds = interleaved_seconds({kind: o.step for kind, o in optimizers.items()}, repeats, rt.device)
    return {kind: 1000 * s for kind, s in seconds.items()}


def run_list(train: dict, batch_size: int, cuda: bool, cpu_paper: bool = True, cpu_paper_bf16: bool = True
             ) -> list[tuple[Runtime, str, TrainConfig]]:
    """The measured rows: on the CPU the configured model in fp32 and bf16 and (``cpu_paper``) the
    paper-width model at 512x256 in fp32 and (``cpu_paper_bf16``) bf16; with ``cuda`` the paper-size model
    at 512x256 and 1024x512 in fp32 (IEEE) and bf16 on GPU 0."""
    shared = dict(batch_size=batch_size, vgg_loss="auto", vgg_weights=train.get("vgg_weights") or None, workers=0)
    configured = dict(width=train["width"], height=train["height"], ngf=train["ngf"],
                      n_downsample=train["n_downsample"], n_blocks=train["n_blocks"], ndf=train["ndf"],
                      n_layers_d=train["n_layers_d"], num_d=train["num_d"], local_enhancer=train["local_enhancer"])
    cpu_models = [("configured", configured)] + ([("paper", dict(width=512, height=256, **PAPER_MODEL))]
                                                  if cpu_paper else [])
    runs = [(Runtime(0, 1, torch.device("cpu"), precision=precision), name,
             TrainConfig(precision=precision, **model, **shared))
            for name, model in cpu_models for precision in ("fp32", "bf16")
            if name == "configured" or precision == "fp32" or cpu_paper_bf16]
    if cuda:
        for width, height in ((512, 256), (1024, 512)):
            for precision in ("fp32", "bf16"):
                runs.append((Runtime(0, 1, torch.device("cuda", 0), precision=precision), "paper",
                             TrainConfig(width=width, height=height, precision=precision, **PAPER_MODEL, **shared)))
    return runs


def measure_apart(cfg: TrainConfig, rt: Runtime, steps: int, warmup: int, count_flops: bool,
                  modes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """:func:`measure` in a fresh process, so that a CPU row's peak RSS is its own, not the largest so far."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (cfg, rt, steps, warmup, count_flops, modes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (and mode, in turns)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--eager-only", action="store_true", help="no compiled rows")
    parser.add_argument("--adam-repeats", type=int, default=20, help="timed Adam updates per implementation")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak, when its name is not in the built-in table")
    parser.add_argument("--no-cuda", action="store_true", help="CPU rows only")
    parser.add_argument("--cpu-paper-steps", type=int, default=1,
                        help="timed steps of the paper-width model's CPU rows (a step is many seconds)")
    parser.add_argument("--no-cpu-paper", action="store_true", help="leave out the paper-width model's CPU rows")
    args = parser.parse_args()

    train = yaml.safe_load(args.config.read_text())["train"]
    cuda = torch.cuda.is_available() and not args.no_cuda
    if cuda:
        torch.backends.cudnn.benchmark = True
    # Emulated bf16 (a CPU without it) is many times slower than fp32: the paper-width model's would take
    # many minutes a step, and the demo model's row shows it.
    native = cpu_bf16_feature() is not None
    runs = run_list(train, args.batch_size, cuda, cpu_paper=not args.no_cpu_paper, cpu_paper_bf16=native)

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no CUDA device"))
    feature = cpu_bf16_feature()
    bf16 = f"native ({feature})" if feature else "not native (emulated; no paper-width bf16 row)"
    print(f"CPU bf16: {bf16}; precision auto on the CPU: {' - '.join(choose_precision('auto', torch.device('cpu')))}")
    modes = MODES[:1] if args.eager_only else MODES
    print(f"{args.steps} timed steps per row and mode ({args.cpu_paper_steps} for the paper-width model on the CPU), "
          f"eager and compiled in turns, after the first and {args.warmup} untimed; batch {args.batch_size}; "
          "frames/s counts both generated frames (t and t+1) of each sample; first step: the compiled one's "
          "includes its compile; loss diff: the first step's largest relative loss difference from eager.\n")
    print("| device | model | W x H | precision | VGG | mode | s/step | speed-up | it/s | frames/s | first step s "
          "| loss diff | GFLOP/step | TFLOP/s | % bf16 peak | peak memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    flops: dict[tuple, float] = {}  # the same model's step has the same FLOPs in fp32 and bf16: counted once
    for rt, model, cfg in runs:
        cfg, _ = resolve_vgg(cfg)
        key = (model, cfg.width, cfg.height, cfg.vgg_loss)
        steps = args.cpu_paper_steps if (rt.device.type, model) == ("cpu", "paper") else args.steps
        if rt.device.type == "cuda":
            pair = measure(cfg, rt, steps, args.warmup, modes=modes)
        else:
            pair = measure_apart(cfg, rt, steps, args.warmup, key not in flops, modes)
        for mode, m in pair.items():
            m["flops"] = flops.setdefault(key, m["flops"])
            achieved = m["flops"] / m["seconds"] / 1e12
            peak = gpu_peak(torch.cuda.get_device_name(rt.device), args.peak_tflops) if rt.device.type == "cuda" \
                else None
            memory = f"{m['memory_gib']:.2f} GiB" + (" (allocated)" if rt.device.type == "cuda" else " (max RSS)")
            print(f"| {rt.device.type} | {model} ngf {cfg.ngf}, {cfg.n_blocks} blocks | {cfg.width} x {cfg.height} "
                  f"| {rt.precision} | {'on' if cfg.vgg_loss else 'off'} | {mode} | {m['seconds']:.3f} "
                  f"| {pair['eager']['seconds'] / m['seconds']:.2f}x | {1 / m['seconds']:.2f} "
                  f"| {2 * cfg.batch_size / m['seconds']:.2f} | {m['first_step']:.1f} | {m['loss_difference']:.1e} "
                  f"| {m['flops'] / 1e9:.1f} | {achieved:.3f} | {f'{100 * achieved / peak:.1f}' if peak else 'n/a'} "
                  f"| {memory} (both modes) |", flush=True)
    cfg, rt = runs[0][2], runs[0][0]
    ms = adam_rows(cfg, rt, args.adam_repeats)
    print(f"\nAdam update of the {runs[0][1]} model's G and D parameters on {rt.device.type} "
          f"({args.adam_repeats} in turns, median):\n")
    print("| implementation | ms/update | speed-up |\n|---|---|---|")
    for kind, value in ms.items():
        print(f"| {kind} | {value:.1f} | {ms['for-loop'] / value:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
