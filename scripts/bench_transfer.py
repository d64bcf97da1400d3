"""`make bench-transfer`: how much of each frame `edn transfer` spends besides the generator.

The generator is replaced by a stand-in that holds its thread for a fixed time per frame, as a
thread waiting on a GPU does (``time.sleep`` releases the GIL and leaves the CPU free), and returns
its stick figure as the frame. Everything else is ``edn transfer`` as users run it, at 1024x512:
stick figures read and fitted, conversion to and from the model's tensors, the result and the
side-by-side video encoded (H.264, in ffmpeg processes), consecutive differences. With a stand-in
of latency L the best rate is 1/L; the rest of each frame's time is host work the transfer loop
did not overlap with generation. The clip is pipeline.gan.synthetic's.

Then the generator itself: the configured model (config/config.yaml, ``train:``; untrained weights,
which cost what trained ones do) at its size, eager and compiled (``train: compile``) side by side
in each pinned precision, generating frames in turns (one block of each per round, the median of
each), and the whole ``edn transfer`` of a synthetic clip at that size, eager and compiled.
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
sys.path.insert(0, str(ROOT / "scripts"))  # gpu_check's timing helpers


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


def generator_rows(train: dict[str, Any], precisions: list[str], frames: int, repeats: int, work: Path,
                   clip_frames: int) -> list[dict[str, Any]]:
    """Frames/s of the configured generator's per-frame call (``generate_frames``: stick figure in, frame on the
    host out), eager and compiled in turns, per precision; then ``edn transfer`` end to end, compiled."""
    import numpy as np
    import torch

    from gpu_check import first_step_seconds, interleaved_seconds
    from pipeline.gan.checkpoint import save_model
    from pipeline.gan.generate import generate_frames, load_models
    from pipeline.gan.models.generator import build_generator, default_generator_config
    from pipeline.gan.synthetic import make_synthetic_clip
    from pipeline.gan.transfer import transfer

    width, height = train["width"], train["height"]
    config = default_generator_config(kind="local" if train["local_enhancer"] else "global", ngf=train["ngf"],
                                      n_downsample=train["n_downsample"], n_blocks=train["n_blocks"],
                                      n_blocks_local=train["n_blocks_local"])
    torch.manual_seed(0)
    generator_pt = work / "generator.pt"
    save_model(generator_pt, build_generator(config), config | {"width": width, "height": height})
    rng = np.random.default_rng(0)
    poses = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]

    def run(models: Any, n: int) -> None:
        for _ in generate_frames(models, (poses[i % 4] for i in range(n))):
            pass  # each frame is on the host when it is yielded

    rows = []
    for precision in precisions:
        variants = {mode: load_models(generator_pt, None, "cpu", precision) for mode in ("eager", "compiled")}
        variants["compiled"].use_compile("on", frames)
        first = {mode: first_step_seconds(lambda m=m: run(m, 1), torch.device("cpu")) for mode, m in variants.items()}
        seconds = interleaved_seconds({mode: (lambda m=m: run(m, frames)) for mode, m in variants.items()}, repeats,
                                      torch.device("cpu"))
        for mode, m in variants.items():
            rows.append({"what": "generator call", "mode": mode, "precision": m.precision, "width": width,
                         "height": height, "frames_per_s": frames / seconds[mode],
                         "speedup": seconds["eager"] / seconds[mode], "first_call_s": first[mode]})
            print(f"{'generator call':>24} {mode:>9} {m.precision:>9} {width}x{height} "
                  f"{rows[-1]['frames_per_s']:9.1f} {rows[-1]['speedup']:8.2f}x {first[mode]:13.1f}", flush=True)
    clip = make_synthetic_clip(work / "clip", n_frames=clip_frames, width=width, height=height)
    frames_dir, render, keypoints = clip
    for precision in precisions:
        rates = {}
        for mode in ("eager", "compiled"):  # the compiled generator's graphs are made above: no compile in here
            record = transfer(keypoints, render, frames_dir, generator_pt, work / "out.mp4", device="cpu",
                              precision=precision, compile="on" if mode == "compiled" else "off", audio=False)
            rates[mode] = record["frames_per_second"]
            rows.append({"what": "edn transfer", "mode": mode, "precision": record["precision"], "width": width,
                         "height": height, "frames_per_s": rates[mode], "speedup": rates[mode] / rates["eager"],
                         "first_call_s": None, "frames": record["frames"]})
            print(f"{'edn transfer':>24} {mode:>9} {record['precision']:>9} {width}x{height} {rates[mode]:9.1f} "
                  f"{rates[mode] / rates['eager']:8.2f}x  ({record['frames']} frames)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch
    import yaml

    from pipeline.gan.synthetic import make_synthetic_clip
    from pipeline.provenance import provenance, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", default="1024x512", help="model and frame size WxH")
    p.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 10.0],
                   help="the stand-in generator's time per frame")
    p.add_argument("--out", type=Path, default=Path("results/bench/transfer.json"))
    p.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], help="pinned precisions of the generator rows")
    p.add_argument("--generator-frames", type=int, default=20, help="frames per timed block of the generator rows")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per mode (in turns)")
    p.add_argument("--transfer-frames", type=int, default=300, help="frames of the end-to-end transfer rows")
    p.add_argument("--no-stand-in", action="store_true", help="only the generator rows")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_synthetic_clip(Path(tmp) / "clip", n_frames=args.frames, width=width, height=height) \
            if not args.no_stand_in else None
        torch.set_num_threads(1)  # the stand-in does no work; leave the cores to the rest
        if not args.no_stand_in:
            print(f"{'latency ms':>10} {'side-by-side':>12} {'frames/s':>9} {'best':>7} "
                  f"{'host ms/frame not overlapped':>29}")
        for latency in args.latency_ms if not args.no_stand_in else []:
            for sbs in (False, True):
                fps = frames_per_second(clip, stand_in_models(width, height, latency / 1000), sbs, Path(tmp))
                rows.append({"latency_ms": latency, "side_by_side": sbs, "frames_per_s": fps,
                             "best_frames_per_s": 1000 / latency if latency else None,
                             "host_ms_not_overlapped": 1000 / fps - latency})
                print(f"{latency:10.1f} {str(sbs):>12} {fps:9.1f} {1000 / latency if latency else float('inf'):7.1f} "
                      f"{1000 / fps - latency:29.2f}", flush=True)
        torch.set_num_threads(threads)
        train = yaml.safe_load(args.config.read_text())["train"]
        print(f"\n{'':>24} {'mode':>9} {'precision':>9} {'W x H':>7} {'frames/s':>9} {'speed-up':>9} "
              f"{'first call s':>13}  ({threads} threads)")
        generator = generator_rows(train, args.precision, args.generator_frames, args.repeats, Path(tmp),
                                   args.transfer_frames)
    write_json(args.out, {"provenance": provenance("bench-transfer", {k: str(v) for k, v in vars(args).items()}),
                          "width": width, "height": height, "rows": rows, "generator_rows": generator})
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
