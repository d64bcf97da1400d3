"""How the training step's memory estimate (pipeline/gan/memory.py) compares with the memory a real
step takes on the CPU: the peak resident memory of two steps over what the process held before the
networks were built, one process per row (the peak is a process's lifetime figure).

The VGG rows load a VGG19 of random weights written to a temporary file: only the memory of the
architecture is measured, never a loss value. Results: the estimate should stay below every
measured peak (a refusal then never stops a run that fits) and the ratio below
memory.MEASURED_PEAK_FACTOR (the warning's factor).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = ("144x256", "288x512", "576x1024")
# The demo's generator and discriminator (config/config.yaml train:)
MODEL = dict(ngf=16, n_downsample=4, n_blocks=6, ndf=32, num_d=2, workers=0, precision="fp32", lambda_l1=10.0)


def measure(width: int, height: int, vgg_weights: str | None) -> dict[str, object]:
    """One row, in this process: the estimate and the measured peak of two fp32 steps on one thread."""
    import torch

    from pipeline.gan.memory import pose_step_memory
    from pipeline.gan.options import TrainConfig
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.train import PoseTask

    torch.set_num_threads(1)
    cfg = TrainConfig(width=width, height=height, vgg_loss=vgg_weights is not None, vgg_weights=vgg_weights, **MODEL)
    estimate = pose_step_memory(cfg)
    batch = {k: torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8)
             for k in ("pose_t", "pose_t1", "real_t", "real_t1")}
    before = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()  # resident now
    task = PoseTask(cfg, Runtime(0, 1, torch.device("cpu"), precision="fp32"))
    for _ in range(2):  # the second step: Adam's state exists
        task.step(batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"size": f"{width}x{height}", "vgg": vgg_weights is not None,
            "estimate_gib": round(estimate.total / 2 ** 30, 3),
            "measured_gib": round(peak / 2 ** 30, 3), "measured_over_estimate": round(peak / estimate.total, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="WIDTHxHEIGHT rows")
    parser.add_argument("--row", nargs=2, metavar=("SIZE", "VGG_FILE"), help=argparse.SUPPRESS)  # one child row
    args = parser.parse_args()
    if args.row:
        width, height = (int(v) for v in args.row[0].split("x"))
        print(json.dumps(measure(width, height, None if args.row[1] == "-" else args.row[1])))
        return 0
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    with tempfile.TemporaryDirectory() as tmp:
        vgg = Path(tmp) / "random_vgg19_features.pth"
        torch.save({f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}, vgg)
        rows = []
        for size in args.sizes:
            for weights in ("-", str(vgg)):
                done = subprocess.run([sys.executable, __file__, "--row", size, weights], capture_output=True,
                                      text=True, check=True)
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    print("| model size | VGG | estimate (GiB) | measured peak (GiB) | measured / estimate |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {'on' if r['vgg'] else 'off'} | {r['estimate_gib']} | {r['measured_gib']} | "
              f"{r['measured_over_estimate']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
