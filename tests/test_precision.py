"""``precision: auto``: which precision a run computes in, and why (pipeline.gan.runtime.choose_precision)."""

from __future__ import annotations

import pytest
import torch

from pipeline.gan import runtime
from pipeline.gan.runtime import CPU_BF16_VARIABLE, choose_precision

CPU = torch.device("cpu")


def test_auto_is_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16_feature", lambda: None)
    precision, reason = choose_precision("auto", CPU)
    assert precision == "fp32" and "no native bf16" in reason


@pytest.mark.parametrize("feature", ["amx", "avx512_bf16"])
def test_auto_is_bf16_on_a_cpu_with_amx_or_avx512_bf16(monkeypatch, feature):
    monkeypatch.setattr(runtime, "cpu_bf16_feature", lambda: feature)
    assert choose_precision("auto", CPU) == ("bf16", f"auto: the CPU computes bf16 natively with {feature}")


def test_auto_stays_fp32_with_a_native_bf16_not_measured_faster(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16_feature", lambda: "bf16")  # Arm BF16
    precision, reason = choose_precision("auto", CPU)
    assert precision == "fp32" and "natively with bf16, but bf16 is measured faster only with amx or" in reason


def test_auto_decides_from_the_hardware_alone(monkeypatch):
    """One machine always decides the same way: nothing is timed, so the machine's load cannot change it."""
    import time

    monkeypatch.delenv(CPU_BF16_VARIABLE)  # the CPU's own features
    timings: list[str] = []
    for name in ("perf_counter", "monotonic", "time", "process_time"):
        clock = getattr(time, name)
        monkeypatch.setattr(time, name, lambda clock=clock, name=name: timings.append(name) or clock())
    decisions = {choose_precision("auto", CPU) for _ in range(3)}
    assert len(decisions) == 1 and timings == []


def test_a_requested_precision_is_kept(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16_feature", lambda: "amx")
    assert choose_precision("fp32", CPU) == ("fp32", "requested")
    assert choose_precision("bf16", CPU) == ("bf16", "requested")
    assert choose_precision("tf32", CPU)[0] == "fp32"  # no TF32 on the CPU
    with pytest.raises(ValueError, match="precision must be"):
        choose_precision("fp8", CPU)


def test_the_variable_declares_the_cpu_to_every_process(monkeypatch):
    for declared, expected in (("none", None), ("amx", "amx"), ("avx512_bf16", "avx512_bf16")):
        monkeypatch.setenv(CPU_BF16_VARIABLE, declared)
        assert runtime.cpu_bf16_feature() == expected
    monkeypatch.setenv(CPU_BF16_VARIABLE, "sse")
    with pytest.raises(ValueError, match="EDN_CPU_BF16='sse': expected none, amx, avx512_bf16 or bf16"):
        runtime.cpu_bf16_feature()


def test_native_bf16_is_read_from_torch_then_from_the_cpu_flags(monkeypatch, tmp_path):
    monkeypatch.delenv(CPU_BF16_VARIABLE)  # the CPU's own answer (conftest declares none in every test)
    cpu = torch._C._cpu
    monkeypatch.setattr(cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert runtime.cpu_bf16_feature() == "avx512_bf16"
    monkeypatch.setattr(cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert runtime.cpu_bf16_feature() == "amx"
    monkeypatch.setattr(cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"sse4_2", "avx2"})
    assert runtime.cpu_bf16_feature() is None
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"fp", "asimd", "bf16"})  # an Arm Neoverse V1
    assert runtime.cpu_bf16_feature() == "bf16"
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512_bf16", "amx_tile", "amx_bf16"})  # a Xeon 4th gen
    assert runtime.cpu_bf16_feature() == "amx"


def test_cpu_flags_are_read_from_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU part\t: 0xd40\n")
    assert "avx512_bf16" in runtime._cpu_flags(str(x86)) and "avx2" in runtime._cpu_flags(str(x86))
    assert "bf16" in runtime._cpu_flags(str(arm))
    assert runtime._cpu_flags(str(tmp_path / "none")) == set()


@pytest.mark.slow
def test_two_runs_under_different_loads_agree(tmp_path, synthetic_clip, monkeypatch):
    """The same training with ``precision: auto`` and this CPU's own features, once on an idle machine and once
    while busy processes hog every core: every loss of every step is the same."""
    import csv
    import json
    import os
    import subprocess
    import sys

    monkeypatch.delenv(CPU_BF16_VARIABLE)
    from test_train import TINY_FLAGS

    flags = ["--clip", *map(str, synthetic_clip), *TINY_FLAGS, "--no-vgg-loss", "--max-steps", "3",
             "--precision", "auto"]

    def train(run: str) -> tuple[list[dict[str, str]], tuple[str, str]]:
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", str(tmp_path / run), *flags],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        record = json.loads((tmp_path / run / "run.json").read_text())
        with (tmp_path / run / "losses.csv").open(newline="") as f:
            return list(csv.DictReader(f)), (record["precision"], record["precision_reason"])

    idle, idle_precision = train("idle")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        busy, busy_precision = train("busy")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert busy_precision == idle_precision and idle_precision[1].startswith("auto: ")
    assert len(idle) == 3 and busy == idle  # every digit (losses.csv keeps repr)


@pytest.mark.slow
def test_a_resumed_auto_run_keeps_the_precision_of_its_checkpoint(tmp_path, synthetic_clip, monkeypatch):
    """Made on a CPU whose bf16 auto takes, continued on one whose it does not: the run stays in bf16 and
    ends as the uninterrupted bf16 run."""
    import json

    from pipeline.gan.checkpoint import load_checkpoint
    from pipeline.gan.train import TrainConfig, train
    from test_train import TINY, losses

    cfg = dict(TINY, epochs=1, niter_decay=0, checkpoint_every=1, precision="auto")
    monkeypatch.setenv(CPU_BF16_VARIABLE, "avx512_bf16")
    train(tmp_path / "whole", [synthetic_clip], TrainConfig(**cfg, max_steps=3))
    train(tmp_path / "moved", [synthetic_clip], TrainConfig(**cfg, max_steps=2))
    assert load_checkpoint(tmp_path / "moved" / "checkpoint.pt")["precision"] == "bf16"
    monkeypatch.setenv(CPU_BF16_VARIABLE, "none")
    record = train(tmp_path / "moved", [synthetic_clip], TrainConfig(**cfg, max_steps=3))
    assert record["resumed_from_step"] == 2 and record["precision"] == "bf16"
    assert record["precision_reason"].startswith(f"auto: resumed from {tmp_path / 'moved' / 'checkpoint.pt'}, "
                                                 "made in bf16 (here: auto: the CPU has no native bf16")
    assert json.loads((tmp_path / "moved" / "run.json").read_text())["precision"] == "bf16"
    assert losses(tmp_path / "moved") == losses(tmp_path / "whole")
