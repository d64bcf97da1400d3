"""`make gpu-check`: the figures a CUDA machine owes the README, in one command.

Training steps of the paper-size generators (global: ngf 64, 9 blocks; local enhancer: ngf 32
around it) at 512x256 and 1024x512 in fp32 (IEEE: TF32 off) and bf16: s/step, peak memory and achieved FLOP/s as
a fraction of the GPU's dense bf16 peak (FLOPs counted by torch.utils.flop_counter); one data
worker's samples/s; transfer frames/s at 1024x512 (generation alone, and `edn transfer` end to end
where an ffmpeg is found), each bf16 row beside its torch.compile row on CUDA (``--compiled-rows``:
the same weights, timed in turns, the first call's seconds with the compile). Prints tables, writes
JSON. Needs torch, numpy, opencv, pandas and pyarrow (no snakemake, no mediapipe). The VGG loss is off (its weights
need not be on the machine), so a step here is the GAN's step without the perceptual loss.
``--device cpu --tiny`` runs all of it with a tiny model (the test does).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's pipeline package

# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets, without sparsity), by the words of the name
# torch.cuda.get_device_name gives. The NVL and PCIe cards have lower peaks than the SXM ones of the same
# chip; an H100 name that says none of SXM, HBM3, PCIe or NVL is not guessed (pass --peak-tflops).
BF16_PEAK_TFLOPS = {("H200", "NVL"): 835.0, ("H200",): 989.0, ("H100", "NVL"): 835.0, ("H100", "PCIe"): 756.0,
                    ("H100", "SXM"): 989.0, ("H100", "SXM5"): 989.0, ("H100", "HBM3"): 989.0, ("GH200",): 989.0, ("A100",): 312.0,
                    ("L40S",): 362.0, ("A10",): 125.0, ("L4",): 121.0}


def bf16_peak(device_name: str) -> float | None:
    """The GPU's dense bf16 peak in FLOP/s from its name, or None when the name is not in the table."""
    # whole words ("A10" is not "A100", "H200" not "GH200", "H200 NVL" not "H200"), most words first
    words = set(device_name.upper().replace("-", " ").split())
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if all(word.upper() in words for word in key):
            return BF16_PEAK_TFLOPS[key] * 1e12
    return None


def count_flops(fn: Any) -> int:
    """FLOPs of one call of ``fn`` (forward and backward, as torch's flop counter sees them)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def models(tiny: bool) -> list[dict[str, Any]]:
    """(name, model settings, sizes) of the measured generators."""
    if tiny:
        net = dict(n_downsample=2, n_blocks=1, ndf=4, n_layers_d=2, num_d=1)
        return [{"name": "global", "cfg": dict(net, ngf=8), "sizes": [(64, 32), (128, 64)]},
                {"name": "local", "cfg": dict(net, ngf=4, local_enhancer=True), "sizes": [(128, 64)]}]
    net = dict(n_downsample=4, n_blocks=9, ndf=64, n_layers_d=3, num_d=3)
    return [{"name": "global ngf64", "cfg": dict(net, ngf=64), "sizes": [(512, 256), (1024, 512)]},
            {"name": "local ngf32", "cfg": dict(net, ngf=32, local_enhancer=True), "sizes": [(1024, 512)]}]


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_seconds(calls: dict[str, Any], repeats: int, device: Any) -> dict[str, float]:
    """Median seconds of each of ``calls``, timed in turns (one call of each per round), so that other work on a
    shared machine falls on all of them alike and their ratio holds."""
    import statistics

    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def first_step_seconds(call: Any, device: Any) -> float:
    """Seconds of one call (for a compiled network's first call: the compile included)."""
    _sync(device)
    start = time.perf_counter()
    call()
    _sync(device)
    return time.perf_counter() - start


def train_task(net: dict[str, Any], width: int, height: int, precision: str, device: Any) -> Any:
    """The pose GAN of one row (VGG off), on ``device`` in ``precision``."""
    from pipeline.gan.options import TrainConfig
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.train import PoseTask

    cfg = TrainConfig(width=width, height=height, vgg_loss=False, workers=0, precision=precision, **net)
    return PoseTask(cfg, Runtime(0, 1, device, precision=precision))


def train_row(name: str, net: dict[str, Any], width: int, height: int, precision: str, device: Any,
              steps: int, peak: float | None, compiled: bool = False) -> list[dict[str, Any]]:
    """The eager row of one model, size and precision and, with ``compiled``, the torch.compile row beside it
    (the same weights and batch; steps timed in turns)."""
    import torch

    from pipeline.gan.compiled import compile_in_place

    tasks = {"eager": train_task(net, width, height, precision, device)}
    if compiled:
        tasks["compiled"] = train_task(net, width, height, precision, device)
        tasks["compiled"].G.load_state_dict(tasks["eager"].G.state_dict())
        tasks["compiled"].D.load_state_dict(tasks["eager"].D.state_dict())
        compile_in_place(tasks["compiled"].compiled_modules())
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8, generator=g)
             for k in ("pose_t", "pose_t1", "real_t", "real_t1")}
    # warm-up: cuDNN autotuning, allocations, the compile
    first = {mode: first_step_seconds(lambda: task.step(batch), device) for mode, task in tasks.items()}
    for task in tasks.values():
        task.step(batch)
    flops = count_flops(lambda: tasks["eager"].step(batch))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = interleaved_seconds({mode: (lambda t=task: t.step(batch)) for mode, task in tasks.items()}, steps,
                                  device)
    rows = []
    for mode, s_per_step in seconds.items():
        achieved = flops / s_per_step
        rows.append({"model": name, "width": width, "height": height, "precision": precision, "mode": mode,
                     "device": str(device), "batch_size": 1, "s_per_step": s_per_step,
                     "speedup": seconds["eager"] / s_per_step,
                     "first_step_s": first[mode], "flops_per_step": flops, "achieved_tflops": achieved / 1e12,
                     "fraction_of_bf16_peak": achieved / peak if peak else None,
                     "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
                     else None})
    return rows


def transfer_rows(net: dict[str, Any], width: int, height: int, device: Any, frames: int,
                  work: Path, compiled: bool = False) -> list[dict[str, Any]]:
    """Frames/s of transfer with an untrained generator of the measured size (precision auto: bf16 where
    native): its generation path alone (uint8 stick figures in, uint8 frames back on the host), then the
    whole ``edn transfer`` on a synthetic clip, without and with the side-by-side video, if an ffmpeg is found.
    An untrained generator's frames are noisier than a trained one's, so H.264 has more work with them."""
    import numpy as np

    from pipeline.footage.media import ffmpeg_exe
    from pipeline.gan.checkpoint import save_model
    from pipeline.gan.generate import generate_frames, load_models
    from pipeline.gan.models.generator import build_generator, default_generator_config
    from pipeline.gan.synthetic import make_synthetic_clip
    from pipeline.gan.transfer import transfer

    config = default_generator_config(kind="local" if net.get("local_enhancer") else "global", ngf=net["ngf"],
                                      n_downsample=net["n_downsample"], n_blocks=net["n_blocks"])
    generator_pt = work / "generator.pt"
    save_model(generator_pt, build_generator(config), config | {"width": width, "height": height})
    variants = {"generation": load_models(generator_pt, None, device.type, "auto")}
    if compiled:  # the same weights compiled; eager and compiled generate in turns
        variants["generation, compiled"] = load_models(generator_pt, None, device.type, "auto")
        variants["generation, compiled"].use_compile("on", frames)
    rng = np.random.default_rng(0)
    poses = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]

    def generate(models: Any, n: int) -> None:
        for _ in generate_frames(models, (poses[i % 4] for i in range(n))):
            pass  # each frame is on the host when it is yielded

    first = {what: first_step_seconds(lambda m=m: generate(m, 2), device) for what, m in variants.items()}  # warm-up
    seconds = interleaved_seconds({what: (lambda m=m: generate(m, frames)) for what, m in variants.items()},
                                  2 if compiled else 1, device)
    precision = variants["generation"].precision
    base = {"width": width, "height": height, "device": str(device), "precision": precision, "frames": frames}
    rows = [base | {"what": what, "frames_per_s": frames / seconds[what], "first_call_s": first[what]}
            for what in variants]
    try:
        ffmpeg_exe()
    except RuntimeError as exc:
        print(f"edn transfer not timed: {exc}", file=sys.stderr)
        return rows
    frames_dir, render_dir, keypoints = make_synthetic_clip(work / "clip", n_frames=frames, width=width,
                                                            height=height)
    for side_by_side in (False, True):
        record = transfer(keypoints, render_dir, frames_dir, generator_pt, work / "out.mp4", device=device.type,
                          side_by_side_out=work / "side_by_side.mp4" if side_by_side else None,
                          compile="on" if compiled else "off")
        rows.append(base | {"what": "edn transfer" + (" + side-by-side" if side_by_side else ""),
                            "frames_per_s": record["frames_per_second"]})
    return rows


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Rows as an aligned text table; columns are (key, title, format); None prints as '-'."""
    cells = [[title for _, title, _ in columns]]
    for row in rows:
        cells.append(["-" if row.get(k) is None else format(row[k], fmt) for k, _, fmt in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells)


TRANSFER_COLUMNS = [("what", "transfer", "s"), ("width", "W", "d"), ("height", "H", "d"),
                    ("precision", "precision", "s"), ("frames_per_s", "frames/s", ".1f"),
                    ("first_call_s", "first call s", ".1f")]
TRAIN_COLUMNS = [("model", "model", "s"), ("width", "W", "d"), ("height", "H", "d"), ("precision", "precision", "s"),
                 ("mode", "mode", "s"), ("s_per_step", "s/step", ".3f"), ("speedup", "speed-up", ".2f"),
                 ("first_step_s", "first step s", ".1f"), ("peak_memory_gib", "peak GiB", ".2f"),
                 ("achieved_tflops", "TFLOP/s", ".2f"), ("fraction_of_bf16_peak", "of bf16 peak", ".1%")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny models and sizes (a check of the script itself)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    p.add_argument("--frames", type=int, default=100, help="frames generated for the transfer rate")
    p.add_argument("--out", type=Path, default=Path("results/bench/gpu_check.json"))
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the GPU's dense bf16 peak, when its name is not in the built-in table")
    p.add_argument("--compiled-rows", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile rows beside the eager bf16 rows; auto: on CUDA (default: %(default)s)")
    args = p.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device (torch.cuda.is_available() is False): run it on a GPU machine, "
              "or `python scripts/gpu_check.py --device cpu --tiny` to check the script itself", file=sys.stderr)
        return 3
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = (args.peak_tflops * 1e12 if args.peak_tflops else bf16_peak(name)) if device.type == "cuda" else None
    torch.backends.cudnn.benchmark = device.type == "cuda"
    rows = []
    for spec in models(args.tiny):
        for width, height in spec["sizes"]:
            for precision in ("fp32", "bf16"):
                compiled = precision == "bf16" and (args.compiled_rows == "on" or (args.compiled_rows == "auto"
                                                                                   and device.type == "cuda"))
                new = train_row(spec["name"], spec["cfg"], width, height, precision, device, args.steps, peak, compiled)
                rows += new
                print("\n".join(format_table(new, TRAIN_COLUMNS).splitlines()[1:]), flush=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_data import samples_per_second

    big = models(args.tiny)[-1]
    width, height = big["sizes"][-1]
    feed = {"width": width, "height": height, "samples_per_s_per_worker": samples_per_second(width, height, 12, 1.0)}
    with tempfile.TemporaryDirectory() as work:
        transfer = transfer_rows(big["cfg"], width, height, device, args.frames, Path(work),
                                 compiled=args.compiled_rows == "on" or (args.compiled_rows == "auto"
                                                                         and device.type == "cuda"))
    print(f"\n{name}: dense bf16 peak {peak / 1e12 if peak else 'unknown'} TFLOP/s")
    print(format_table(rows, TRAIN_COLUMNS))
    print(f"data feed at {width}x{height}: {feed['samples_per_s_per_worker']:.1f} samples/s per worker (one cv2 thread)")
    print(format_table(transfer, TRANSFER_COLUMNS))
    from pipeline.provenance import provenance, write_json

    write_json(args.out, {"provenance": provenance("gpu-check", {k: str(v) for k, v in vars(args).items()}),
                          "device_name": name, "bf16_peak_flops": peak, "rows": rows, "data_feed": feed,
                          "transfer": transfer})
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
