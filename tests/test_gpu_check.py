"""scripts/gpu_check.py (make gpu-check) and scripts/bench_data.py (make bench-data) on the CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_data  # noqa: E402
import gpu_check  # noqa: E402


def test_peak_table_and_flop_count():
    assert gpu_check.bf16_peak("NVIDIA H200") == 989e12
    assert gpu_check.bf16_peak("NVIDIA H100 PCIe") == 756e12  # the more specific name wins over "H100"
    assert gpu_check.bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.bf16_peak("Tesla T4") is None
    # the NVL cards have lower peaks than the SXM ones of the same chip; torch's names for the SXM H100
    assert gpu_check.bf16_peak("NVIDIA H200 NVL") == gpu_check.bf16_peak("NVIDIA H100 NVL") == 835e12
    assert gpu_check.bf16_peak("NVIDIA H100 80GB HBM3") == gpu_check.bf16_peak("NVIDIA H100 SXM5 80GB") == 989e12
    assert gpu_check.bf16_peak("NVIDIA H100") is None  # which H100 is not guessed
    assert gpu_check.bf16_peak("NVIDIA A10") == 125e12 and gpu_check.bf16_peak("NVIDIA L40S") == 362e12
    layer = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(3, 8)
    assert gpu_check.count_flops(lambda: layer(x)) == 2 * 3 * 8 * 4
    table = gpu_check.format_table([{"a": 1.23456, "b": None}], [("a", "A", ".2f"), ("b", "Bee", "s")])
    assert table.splitlines() == ["   A  Bee", "1.23    -"]


def test_no_cuda_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--device", "cuda"]) == 3
    assert "no CUDA device" in capsys.readouterr().err


def test_whole_check_runs_tiny_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--steps", "1", "--frames", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [(r["model"], r["width"], r["precision"]) for r in rows] == [
        ("global", 64, "fp32"), ("global", 64, "bf16"), ("global", 128, "fp32"), ("global", 128, "bf16"),
        ("local", 128, "fp32"), ("local", 128, "bf16")]
    assert all(r["s_per_step"] > 0 and r["flops_per_step"] > 0 for r in rows)
    # the local enhancer is a different network from the global generator at the same size
    assert rows[4]["flops_per_step"] != rows[2]["flops_per_step"]
    assert record["data_feed"]["samples_per_s_per_worker"] > 0
    transfer = record["transfer"]  # an ffmpeg is there (imageio-ffmpeg): the whole command is timed too
    assert [t["what"] for t in transfer] == ["generation", "edn transfer", "edn transfer + side-by-side"]
    assert all(t["frames_per_s"] > 0 and (t["width"], t["height"], t["frames"]) == (128, 64, 2) for t in transfer)
    assert "of bf16 peak" in capsys.readouterr().out
    # bench-data reads the GPU rows of that file (here none: CPU rows are not what a GPU needs)
    assert bench_data.gpu_step_rates(out) == {}
    rows[0]["device"] = "cuda:0"
    out.write_text(json.dumps(record))
    assert bench_data.gpu_step_rates(out) == {"64x32": pytest.approx(1 / rows[0]["s_per_step"])}


def test_one_workers_rate_is_measured():
    assert bench_data.samples_per_second(64, 32, n_images=4, seconds=0.05) > 0


# What a GPU machine's python typically lacks (the H200 image: torch, numpy, opencv, pandas, pyarrow; no
# MediaPipe, Snakemake, jsonschema, lpips or ffmpeg-python). Training and transfer must run without them.
GPU_MACHINE_LACKS = ("mediapipe", "snakemake", "jsonschema", "lpips", "ffmpeg")
_WITHOUT_PACKAGES = """
import importlib.abc, sys
class Lacking(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {lacking!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine)", name=name)
        return None
sys.meta_path.insert(0, Lacking())
from pipeline.cli import main
for argv in {commands!r}:
    code = main(argv)
    if code:
        sys.exit(f"edn {{argv[0]}} exited {{code}}")
print("imported:", sorted(m for m in {lacking!r} if m in sys.modules))
"""


def test_train_face_and_transfer_run_without_detection_or_workflow_packages(tmp_path, synthetic_clip):
    import subprocess

    frames, render, keypoints = (str(p) for p in synthetic_clip)
    clip = ["--clip", frames, render, keypoints]
    tiny = ["--workers", "0", "--no-vgg-loss", "--sample-every", "0", "--max-steps", "2", "--device", "cpu",
            "--ndf", "4", "--num-d", "1"]
    run = tmp_path / "run"
    commands = [
        ["train", str(run), *clip, *tiny, "--width", "64", "--height", "128", "--ngf", "4", "--n-downsample", "2",
         "--n-blocks", "1", "--precision", "bf16"],
        ["train-face", str(run / "face"), *clip, *tiny, "--generator", str(run / "generator.pt"),
         "--face-ngf", "4", "--face-n-blocks", "1"],
        ["transfer", keypoints, render, frames, str(tmp_path / "out.mp4"), "--generator", str(run / "generator.pt"),
         "--face", str(run / "face" / "face.pt"), "--device", "cpu", "--precision", "bf16"],
    ]
    script = _WITHOUT_PACKAGES.format(lacking=GPU_MACHINE_LACKS, commands=commands)
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "imported: []" in done.stdout
    assert (tmp_path / "out.mp4").stat().st_size > 0 and (run / "face" / "face.pt").exists()


def test_the_package_blocker_itself_blocks(tmp_path):
    import subprocess

    script = _WITHOUT_PACKAGES.format(lacking=("pipeline",), commands=[])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "not on the GPU machine" in done.stderr
