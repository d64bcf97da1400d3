"""`make bench`: frames per second of each pose stage on the demo footage, and the time of a
no-op rerun of the whole workflow. Prints a Markdown table (paste it into the README).

Stages run as the workflow runs them (same functions, default parameters) on the four
Demo_SinglePerson clips (400 frames, 1080x1920 at 60 fps).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.footage import demo_data  # noqa: E402
from pipeline.footage.extract import extract_frames  # noqa: E402
from pipeline.footage.media import ffmpeg_exe, ffmpeg_file  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo-dir", type=Path, default=REPO / "resources" / "demo")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--clips", type=int, default=4, help="how many SinglePerson clips")
    args = parser.parse_args()

    from pipeline.pose.detect import detect_mediapipe
    from pipeline.pose.normalize import normalize_track
    from pipeline.pose.render import render_track
    from pipeline.pose.smooth import smooth_track
    from pipeline.pose.stats import compute_stats

    videos = [args.demo_dir / "Demo_SinglePerson" / f"cam0{i}.mp4" for i in range(1, args.clips + 1)]
    if not all(v.is_file() for v in videos):
        demo_data.fetch_demo(args.demo_dir, REPO / "resources" / "wheels")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        total = {k: 0.0 for k in ("extract", "detect", "smooth", "stats", "normalize", "render")}
        frames = 0
        tracks = []
        for i, video in enumerate(videos):
            meta, t = timed(extract_frames, video, scratch / f"f{i}", height=args.height)
            total["extract"] += t
            frames += meta["frame_count"]
            track, t = timed(detect_mediapipe, scratch / f"f{i}")
            total["detect"] += t
            track.meta.update({"width": meta["width"], "height": meta["height"], "fps": meta["fps"]})
            smoothed, t = timed(smooth_track, track)
            total["smooth"] += t
            tracks.append(smoothed)
        # Each clip's statistics, then every clip normalized into the first clip's frame (the
        # cameras' frames differ by a few pixels in width, so they are not pooled as one subject).
        all_stats = []
        for track in tracks:
            own, t = timed(compute_stats, [track])
            total["stats"] += t
            all_stats.append(own)
        for i, track in enumerate(tracks):
            _, t = timed(normalize_track, track, all_stats[i], all_stats[0])
            total["normalize"] += t
            _, t = timed(render_track, track, scratch / f"r{i}")
            total["render"] += t
        targets = {"extract": 200, "detect": 20, "render": 500}
        for stage, seconds in total.items():
            target = f">= {targets[stage]}" if stage in targets else ""
            rows.append((stage, frames, seconds, frames / seconds, target))
        # The machine's own bound for extraction, to compare its row across machines: ffmpeg decoding
        # the same clips to nothing (H.264 decoding is most of what extraction does).
        decode = sum(timed(subprocess.run, [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_file(v),
                                            "-f", "null", "-"], capture_output=True, check=True)[1] for v in videos)
        rows.insert(1, ("(ffmpeg decoding alone, no scaling or writing)", frames, decode, frames / decode, ""))

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(videos)} clips, {frames} frames at height {args.height}\n")
    print("| stage | frames | seconds | frames/s | target |")
    print("|---|---|---|---|---|")
    for stage, n, seconds, fps, target in rows:
        print(f"| {stage} | {n} | {seconds:.2f} | {fps:.0f} | {target} |")

    snakemake = Path(sys.executable).parent / "snakemake"
    dry = subprocess.run([str(snakemake), "-n", "--cores", "2"], cwd=REPO, capture_output=True, text=True)
    if dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr:
        _, t = timed(subprocess.run, [str(snakemake), "--cores", "2"], cwd=REPO, capture_output=True)
        print(f"\nNo-op rerun of the whole workflow (`snakemake --cores 2`, all up to date): {t:.2f} s "
              "(target < 3 s)")
    else:
        print("\nNo-op rerun not timed: the workflow is not complete here (run `make demo` first).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
