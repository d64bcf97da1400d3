"""scripts/bench_scale.py (make bench-scale): the measurement and the bars, on tiny inputs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_scale  # noqa: E402


def test_bars_pass_and_fail_per_stage():
    short = {"a": {"peak_rss": 100, "peak_disk": 10, "output_bytes": 10, "frames_per_s": 5.0},
             "b": {"peak_rss": 100, "peak_disk": 10, "output_bytes": 10, "frames_per_s": 5.0}}
    long = {"a": {"peak_rss": 129, "peak_disk": 109, "output_bytes": 100, "frames_per_s": 6.0},
            "b": {"peak_rss": 140, "peak_disk": 300, "output_bytes": 100, "frames_per_s": 6.0}}
    table = bench_scale.verdicts(short, long)
    assert [(v["stage"], v["rss_pass"], v["disk_pass"]) for v in table] == [("a", True, True), ("b", False, False)]
    text = bench_scale.markdown(300, 3000, short, long, table)
    assert "| a | 5.0 | 6.0 | 0 | 0 | 1.29 pass | 1.09 pass |" in text and "1.40 FAIL | 3.00 FAIL" in text


def test_a_stage_is_measured_with_its_temp_folder(tmp_path):
    out = tmp_path / "out.bin"
    # writes 2 MB to its temp folder, holds it, deletes it, then writes a 1 MB output
    code = ("import os, tempfile, time; p = os.path.join(tempfile.gettempdir(), 'x'); open(p, 'wb').write(b'0' * 2_000_000);"
            f" time.sleep(0.5); os.remove(p); open({str(out)!r}, 'wb').write(b'1' * 1_000_000)")
    row = bench_scale.run_stage([sys.executable, "-c", code], [out], tmp_path / "tmp", tmp_path / "log.txt")
    assert row["output_bytes"] == 1_000_000 and row["peak_disk"] >= 2_000_000
    assert row["peak_rss"] > 1_000_000 and row["seconds"] >= 0.5


def test_chunked_detection_covers_every_frame_once_then_gathers(tmp_path):
    edn = ["python", "-m", "pipeline.cli"]
    one = bench_scale.detect_command(tmp_path, edn, 600, 0, 15)
    assert one == [*edn, "detect", str(tmp_path / "frames"), str(tmp_path / "raw.parquet")]
    cmd = bench_scale.detect_command(tmp_path, edn, 600, 250, 15)
    assert cmd[:2] == ["bash", "-c"]
    jobs = cmd[2].split(" && ")[1:]
    assert [j.split(" --start ")[1].split(" --warmup")[0] for j in jobs[:-1]] == \
        ["0 --stop 250", "250 --stop 500", "500 --stop 600"]
    assert all("--warmup 15" in j for j in jobs[:-1])
    assert jobs[-1].endswith(" ".join(str(tmp_path / "chunks" / f"{i}.parquet") for i in range(3)))
    assert " gather-keypoints " in jobs[-1]
