"""`make bench-scale`: every stage on a long clip at two lengths, to show what grows with length.

The demo clip (or --clip) looped to --short and --long frames is the target and the source; each
stage runs through the `edn` CLI (whatever the stages are at the time), a tiny model for
train/transfer/evaluate. Per stage: frames/s, peak RSS of its process tree and peak disk of its
outputs plus its temp folder (both polled every 0.1 s). Bar, per stage: peak RSS at the long
length within 1.3x of the short one; peak disk (outputs + temp) within 1.1x of the outputs.
Writes results/bench/scale.md and scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository's pipeline package
TINY = ["--width", "64", "--height", "128", "--ngf", "4", "--n-downsample", "2", "--n-blocks", "1", "--ndf", "4",
        "--num-d", "1", "--n-layers-d", "2", "--no-vgg-loss", "--workers", "0", "--sample-every", "0",
        "--max-steps", "20", "--device", "cpu"]
RSS_BAR, DISK_BAR = 1.3, 1.1


def tree_size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            for root, _, files in os.walk(path):
                for f in files:
                    try:
                        total += os.path.getsize(os.path.join(root, f))
                    except OSError:
                        pass  # removed while we looked
    return total


def run_stage(cmd: list[str], outputs: list[Path], temp: Path, log: Path) -> dict[str, float]:
    """Run ``cmd``; its seconds, peak RSS (process tree, bytes), peak disk and final size of outputs."""
    import psutil

    temp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    peak = {"rss": 0, "disk": 0}
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def poll() -> None:
            parent = psutil.Process(proc.pid)
            while not done.is_set():
                try:
                    procs = [parent, *parent.children(recursive=True)]
                    peak["rss"] = max(peak["rss"], sum(p.memory_info().rss for p in procs))
                except psutil.Error:
                    pass
                peak["disk"] = max(peak["disk"], tree_size([*outputs, temp]))
                done.wait(0.1)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        rc = proc.wait()
        done.set()
        watcher.join()
    seconds = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({rc}); see {log}")
    final = tree_size(outputs)
    return {"seconds": seconds, "peak_rss": peak["rss"], "peak_disk": max(peak["disk"], final), "output_bytes": final}


def looped_clip(clip: Path, frames: int, out: Path) -> Path:
    from pipeline.footage.media import ffmpeg_exe, ffmpeg_file

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", ffmpeg_file(clip), "-frames:v",
                    str(frames), "-an", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", ffmpeg_file(out)],
                   check=True)
    return out


def detect_command(w: Path, edn: list[str], frames: int, chunk: int, overlap: int,
                   detect_args: list[str] = ()) -> list[str]:
    """One `edn detect` job, or (``chunk`` > 0) the chunk jobs the workflow's detect.chunk_frames makes,
    one after another, then their gathering: one shell command, so its whole process tree is measured."""
    if chunk <= 0:
        return [*edn, "detect", str(w / "frames"), str(w / "raw.parquet"), *detect_args]
    quoted = " ".join(shlex.quote(a) for a in edn)
    parts, chunks = [], []
    for i, start in enumerate(range(0, frames, chunk)):
        out = w / "chunks" / f"{i}.parquet"
        chunks.append(str(out))
        parts.append(f"{quoted} detect {shlex.quote(str(w / 'frames'))} {shlex.quote(str(out))} --start {start} "
                     f"--stop {min(start + chunk, frames)} --warmup {overlap} "
                     + " ".join(shlex.quote(a) for a in detect_args))
    parts.append(f"{quoted} gather-keypoints {shlex.quote(str(w / 'frames'))} {shlex.quote(str(w / 'raw.parquet'))} "
                 + " ".join(shlex.quote(c) for c in chunks))
    return ["bash", "-c", f"mkdir -p {shlex.quote(str(w / 'chunks'))} && " + " && ".join(parts)]


def stages(w: Path, video: Path, edn: list[str], frames: int, chunk: int = 0, overlap: int = 15,
           detect_args: list[str] = ()) -> list[tuple[str, list[str], list[Path]]]:
    """(stage, command, outputs) in order; target and source are the same looped clip."""
    clip = [str(w / "frames"), str(w / "render"), str(w / "smooth.parquet")]
    return [
        ("extract", [*edn, "extract", str(video), str(w / "frames"), "--height", "256"], [w / "frames"]),
        ("detect" if chunk <= 0 else f"detect ({chunk}-frame chunks)",
         detect_command(w, edn, frames, chunk, overlap, detect_args), [w / "raw.parquet", w / "chunks"]),
        ("smooth", [*edn, "smooth", str(w / "raw.parquet"), str(w / "smooth.parquet")], [w / "smooth.parquet"]),
        ("stats", [*edn, "stats", str(w / "smooth.parquet"), str(w / "stats.json")], [w / "stats.json"]),
        ("normalize", [*edn, "normalize", str(w / "smooth.parquet"), str(w / "stats.json"), str(w / "stats.json"),
                       str(w / "normalized.parquet")], [w / "normalized.parquet"]),
        ("render", [*edn, "render", str(w / "smooth.parquet"), str(w / "render")], [w / "render"]),
        ("train", [*edn, "train", str(w / "model"), "--clip", *clip, *TINY], [w / "model"]),
        ("transfer", [*edn, "transfer", str(w / "normalized.parquet"), str(w / "render"), str(w / "frames"),
                      str(w / "transfer.mp4"), "--generator", str(w / "model" / "generator.pt"), "--device", "cpu",
                      "--side-by-side", str(w / "side_by_side.mp4")],
         [w / "transfer.mp4", w / "side_by_side.mp4", w / "transfer.json"]),
        ("evaluate", [*edn, "evaluate", str(w / "evaluation"), "--clip", *clip, "--generator",
                      str(w / "model" / "generator.pt"), "--rows", "temporal", "--device", "cpu"], [w / "evaluation"]),
    ]


def measure(clip: Path, frames: int, work: Path, chunk: int = 0, overlap: int = 15,
            detect_args: list[str] = ()) -> dict[str, dict[str, float]]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    video = looped_clip(clip, frames, work / "long.mp4")
    edn = [sys.executable, "-m", "pipeline.cli"]
    rows = {}
    for name, cmd, outputs in stages(work, video, edn, frames, chunk, overlap, detect_args):
        row = run_stage(cmd, outputs, work / "tmp" / name, work / f"{name}.log")
        row["frames_per_s"] = frames / row["seconds"]
        rows[name] = row
        print(f"{frames:6d} frames  {name:10s} {row['seconds']:7.2f} s  {row['frames_per_s']:8.1f} frames/s  "
              f"RSS {row['peak_rss'] / 2**20:7.1f} MiB  disk {row['peak_disk'] / 2**20:8.1f} MiB", flush=True)
    return rows


def verdicts(short: dict[str, dict[str, float]], long: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per stage: the RSS ratio long/short and the long run's disk peak over its outputs, with pass/fail."""
    table = []
    for name in long:
        rss_ratio = long[name]["peak_rss"] / max(short[name]["peak_rss"], 1)
        disk_ratio = long[name]["peak_disk"] / max(long[name]["output_bytes"], 1)
        table.append({"stage": name, "rss_ratio": rss_ratio, "disk_ratio": disk_ratio,
                      "rss_pass": rss_ratio <= RSS_BAR, "disk_pass": disk_ratio <= DISK_BAR})
    return table


def markdown(short_n: int, long_n: int, short: dict, long: dict, table: list[dict[str, Any]]) -> str:
    lines = [f"| stage | frames/s ({short_n}) | frames/s ({long_n}) | peak RSS MiB ({short_n}) | peak RSS MiB "
             f"({long_n}) | RSS ratio (<= {RSS_BAR}) | peak disk / outputs ({long_n}, <= {DISK_BAR}) |",
             "|---|---|---|---|---|---|---|"]
    for v in table:
        s, l = short[v["stage"]], long[v["stage"]]
        lines.append(f"| {v['stage']} | {s['frames_per_s']:.1f} | {l['frames_per_s']:.1f} | "
                     f"{s['peak_rss'] / 2**20:.0f} | {l['peak_rss'] / 2**20:.0f} | {v['rss_ratio']:.2f} "
                     f"{'pass' if v['rss_pass'] else 'FAIL'} | {v['disk_ratio']:.2f} "
                     f"{'pass' if v['disk_pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from pipeline.provenance import atomic_path, provenance, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_clip = REPO / "resources" / "demo" / "Demo_SinglePerson" / "cam01.mp4"
    p.add_argument("--clip", type=Path, default=default_clip if default_clip.is_file() else REPO / "tests/data/clip.mp4")
    p.add_argument("--short", type=int, default=300, help="frames of the short run")
    p.add_argument("--long", type=int, default=3000, help="frames of the long run")
    p.add_argument("--work", type=Path, default=Path("results/bench/scale_work"))
    p.add_argument("--out", type=Path, default=Path("results/bench/scale"), help="writes OUT.md and OUT.json")
    p.add_argument("--chunk-frames", type=int, default=250,
                   help="detection in chunks of this many frames, as detect.chunk_frames (0: one job)")
    p.add_argument("--chunk-overlap", type=int, default=15, help="warm-up frames before each chunk")
    p.add_argument("--detect-args", default="", help="extra `edn detect` flags")
    args = p.parse_args(argv)
    detect_args = args.detect_args.split()
    short = measure(args.clip, args.short, args.work / str(args.short), args.chunk_frames, args.chunk_overlap,
                    detect_args)
    long = measure(args.clip, args.long, args.work / str(args.long), args.chunk_frames, args.chunk_overlap,
                   detect_args)
    table = verdicts(short, long)
    text = markdown(args.short, args.long, short, long, table)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(text)
    write_json(args.out.with_suffix(".json"), {"provenance": provenance("bench-scale", {k: str(v) for k, v in
                                                                                         vars(args).items()}),
                                               "short": short, "long": long, "verdicts": table})
    return 0 if all(v["rss_pass"] and v["disk_pass"] for v in table) else 1


if __name__ == "__main__":
    sys.exit(main())
