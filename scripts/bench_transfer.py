"""`make bench-transfer`: how much of each frame `edn transfer` spends besides the generator.

The generator is replaced by a stand-in that holds its thread for a fixed time per frame, as a
thread waiting on a GPU does (``time.sleep`` releases the GIL and leaves the CPU free), and returns
its stick figure as the frame. Everything else is ``edn transfer`` as users run it, at 1024x512:
stick figures read and fitted, conversion to and from the model's tensors, the result and the
side-by-side video encoded (H.264, in ffmpeg processes), consecutive differences. With a stand-in
of latency L the best rate is 1/L; the rest of each frame's time is host work the transfer loop
did not overlap with generation. The clip is pipeline.gan.synthetic's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository's pipeline package


def stand_in_models(width: int, height: int, latency: float) -> Any:
    """Models whose generator takes ``latency`` seconds per call and paints the stick figure."""
    import torch

    from pipeline.gan.generate import Models

    class StandIn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(latency)
            return x[:, :3] * self.scale  # the stick figure, already in [-1, 1]: next to no work

    return Models(StandIn().eval(), {"width": width, "height": height, "temporal": True}, torch.device("cpu"))


def frames_per_second(clip: tuple[Path, Path, Path], models: Any, side_by_side: bool, out_dir: Path) -> float:
    """``edn transfer``'s frames/s over the clip with ``models`` standing in for the loaded generator."""
    import pipeline.gan.generate
    from pipeline.gan.transfer import transfer

    frames, render, keypoints = clip
    real_load = pipeline.gan.generate.load_models
    pipeline.gan.generate.load_models = lambda *args, **kwargs: models
    try:
        start = time.perf_counter()
        record = transfer(keypoints, render, frames, "stand-in", out_dir / "out.mp4", device="cpu",
                          side_by_side_out=out_dir / "sbs.mp4" if side_by_side else None)
        return record["frames"] / (time.perf_counter() - start)
    finally:
        pipeline.gan.generate.load_models = real_load


def main(argv: list[str] | None = None) -> int:
    import torch

    from pipeline.gan.synthetic import make_synthetic_clip
    from pipeline.provenance import provenance, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", default="1024x512", help="model and frame size WxH")
    p.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 10.0],
                   help="the stand-in generator's time per frame")
    p.add_argument("--out", type=Path, default=Path("results/bench/transfer.json"))
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)  # the stand-in does no work; leave the cores to the rest
    rows = []
    print(f"{'latency ms':>10} {'side-by-side':>12} {'frames/s':>9} {'best':>7} {'host ms/frame not overlapped':>29}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_synthetic_clip(Path(tmp) / "clip", n_frames=args.frames, width=width, height=height)
        for latency in args.latency_ms:
            for sbs in (False, True):
                fps = frames_per_second(clip, stand_in_models(width, height, latency / 1000), sbs, Path(tmp))
                rows.append({"latency_ms": latency, "side_by_side": sbs, "frames_per_s": fps,
                             "best_frames_per_s": 1000 / latency if latency else None,
                             "host_ms_not_overlapped": 1000 / fps - latency})
                print(f"{latency:10.1f} {str(sbs):>12} {fps:9.1f} {1000 / latency if latency else float('inf'):7.1f} "
                      f"{1000 / fps - latency:29.2f}", flush=True)
    write_json(args.out, {"provenance": provenance("bench-transfer", {k: str(v) for k, v in vars(args).items()}),
                          "width": width, "height": height, "rows": rows})
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
