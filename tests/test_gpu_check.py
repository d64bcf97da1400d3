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
    assert record["transfer"]["frames_per_s"] > 0 and record["data_feed"]["samples_per_s_per_worker"] > 0
    assert "of bf16 peak" in capsys.readouterr().out
    # bench-data reads the GPU rows of that file (here none: CPU rows are not what a GPU needs)
    assert bench_data.gpu_step_rates(out) == {}
    rows[0]["device"] = "cuda:0"
    out.write_text(json.dumps(record))
    assert bench_data.gpu_step_rates(out) == {"64x32": pytest.approx(1 / rows[0]["s_per_step"])}


def test_one_workers_rate_is_measured():
    assert bench_data.samples_per_second(64, 32, n_images=4, seconds=0.05) > 0
