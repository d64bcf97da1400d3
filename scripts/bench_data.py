"""`make bench-data`: how many training samples per second one data worker makes.

A sample is what PairDataset.__getitem__ does: decode two JPEG frames and two PNG stick figures,
fit them to the model size, hand over uint8 CHW tensors. Synthetic images at each model size
(the frames already at the model height, as extract: height gives them), one cv2 thread, as a
worker has. Beside it: the samples per second one GPU step needs, from make gpu-check's GPU rows
when there are any, and the workers (CPUs) per GPU that follow; and the rate at the demo's size with
each training-data augmentation off and on (pipeline/gan/augment.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = ((512, 256), (1024, 512))


def _write_images(folder: Path, width: int, height: int, n: int) -> tuple[list[Path], list[Path]]:
    import cv2

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    frames, poses = [], []
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        # smooth gradient plus noise: JPEG sizes like a real frame's, not a flat image's
        image = np.stack([(xx * 255 // width + i) % 256, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)
        image = cv2.add(image, rng.integers(0, 40, image.shape, dtype=np.uint8))
        frames.append(folder / f"{i:06d}.jpg")
        cv2.imwrite(str(frames[-1]), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        pose = np.zeros_like(image)
        cv2.line(pose, (width // 2, height // 5), (width // 2 + i, height * 4 // 5), (255, 0, 85), max(2, height // 64))
        poses.append(folder / f"{i:06d}.png")
        cv2.imwrite(str(poses[-1]), pose)
    return frames, poses


def samples_per_second(width: int, height: int, n_images: int = 24, seconds: float = 2.0) -> float:
    """One worker's rate (samples/s) at a model size: 4 decodes + fit + uint8 tensor per sample."""
    import cv2
    import torch

    from pipeline.gan.data import fit_to_size, read_rgb

    cv2.setNumThreads(1)  # as pipeline.gan.engine's worker_init_fn sets it
    with tempfile.TemporaryDirectory() as tmp:
        frames, poses = _write_images(Path(tmp), width, height, n_images)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or done < 4:
            t = done % (n_images - 1)
            for path in (poses[t], poses[t + 1], frames[t], frames[t + 1]):
                image = fit_to_size(read_rgb(path), width, height)
                torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            done += 1
        return done / (time.perf_counter() - start)


# The demo's sizes: frames extracted 512 high (extract: height), the model 144x256 (train: width, height).
DEMO_FRAMES, DEMO_MODEL = (288, 512), (144, 256)
# Each augmentation setting alone at the values docs/method.md gives as examples, then all together.
AUGMENTATIONS = {"off": {}, "mirror 0.5": {"mirror": 0.5},
                 "jitter": {"jitter_scale": 0.05, "jitter_shift": 0.05, "jitter_rotation": 3.0},
                 "pose faults": {"pose_drop": 0.1, "pose_noise": 0.005}, "new poses": {"lambda_new_pose": 1.0}}
AUGMENTATIONS["all"] = {k: v for settings in AUGMENTATIONS.values() for k, v in settings.items()}


def augmentation_rates(seconds: float = 2.0, n_frames: int = 24) -> dict[str, float]:
    """One worker's samples per CPU-second of PairDataset on a synthetic clip at the demo's sizes, by
    augmentation setting (with a plate, as the demo trains); the off row is the dataset exactly as without
    augmentation. CPU time over interleaved rounds: other work on a shared machine slows every setting alike."""
    import cv2
    import torch

    from pipeline.gan.augment import Augmentation
    from pipeline.gan.data import PairDataset, load_clip
    from pipeline.gan.synthetic import make_synthetic_clip

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        clip = load_clip(*make_synthetic_clip(Path(tmp), n_frames=n_frames, width=DEMO_FRAMES[0],
                                              height=DEMO_FRAMES[1]))
        plates = torch.zeros(1, 3, DEMO_MODEL[1], DEMO_MODEL[0], dtype=torch.uint8)
        datasets = {name: PairDataset([clip], *DEMO_MODEL, holdout=0.0, augment=Augmentation(**settings),
                                      plates=plates if settings else None)
                    for name, settings in AUGMENTATIONS.items()}
        cpu, done = dict.fromkeys(datasets, 0.0), dict.fromkeys(datasets, 0)
        rounds, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds * len(datasets) or rounds < 2:
            for name, data in datasets.items():
                tick = time.process_time()
                for k in range(len(data)):
                    data[(rounds, k)]
                cpu[name] += time.process_time() - tick
                done[name] += len(data)
            rounds += 1
    return {name: done[name] / cpu[name] for name in datasets}


def gpu_step_rates(bench_train_json: Path) -> dict[str, float]:
    """Samples/s one GPU step consumes, by model size, from make gpu-check's JSON (GPU rows only; of a size's
    rows, eager and compiled, fp32 and bf16, the fastest: the rate the feed must keep up with)."""
    if not bench_train_json.is_file():
        return {}
    rates: dict[str, float] = {}
    for r in json.loads(bench_train_json.read_text()).get("rows", []):
        if str(r.get("device", "")).startswith("cuda") and r.get("s_per_step"):
            size = f"{r['width']}x{r['height']}"
            rates[size] = max(rates.get(size, 0.0), r.get("batch_size", 1) / r["s_per_step"])
    return rates


def main(argv: list[str] | None = None) -> int:
    from pipeline.provenance import provenance, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="time per size")
    p.add_argument("--bench-train", type=Path, default=Path("results/bench/gpu_check.json"),
                   help="JSON with GPU rows (width, height, s_per_step, device): make gpu-check writes it")
    p.add_argument("--out", type=Path, default=Path("results/bench/data.json"))
    args = p.parse_args(argv)
    needed = gpu_step_rates(args.bench_train)
    rows = []
    print(f"{'size':>10} {'samples/s/worker':>17} {'GPU needs (samples/s)':>22} {'workers per GPU':>16}")
    for width, height in SIZES:
        rate = samples_per_second(width, height, seconds=args.seconds)
        need = needed.get(f"{width}x{height}")
        workers = math.ceil(need / rate) if need else None
        rows.append({"width": width, "height": height, "samples_per_s_per_worker": rate,
                     "gpu_samples_per_s": need, "workers_per_gpu": workers})
        print(f"{width}x{height:<5} {rate:17.1f} {need if need else 'unknown':>22} {workers or '-':>16}")
    augmented = augmentation_rates(args.seconds)
    print(f"augmentation at {DEMO_MODEL[0]}x{DEMO_MODEL[1]} from {DEMO_FRAMES[0]}x{DEMO_FRAMES[1]} frames "
          "(samples per CPU-second of one worker): " + ", ".join(f"{k} {v:.0f}" for k, v in augmented.items()))
    if not needed:
        print(f"no GPU rows in {args.bench_train} yet (make gpu-check on a CUDA machine writes them): "
              "the GPU's samples/s is unknown; workers per GPU = GPU samples/s / samples/s per worker")
    write_json(args.out, {"provenance": provenance("bench-data", vars(args) | {"bench_train": str(args.bench_train),
                                                                               "out": str(args.out)}),
                          "rows": rows, "augmentation_samples_per_s_per_worker": augmented})
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
