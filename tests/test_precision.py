"""``precision: auto``: which precision a run computes in, and why (pipeline.gan.runtime.choose_precision)."""

from __future__ import annotations

import pytest
import torch

from pipeline.gan import runtime
from pipeline.gan.runtime import CPU_BF16_MIN_SPEEDUP, choose_precision

CPU = torch.device("cpu")


def fake_cpu(monkeypatch: pytest.MonkeyPatch, feature: str | None, seconds: tuple[float, float] | None) -> list:
    """This CPU's native bf16 feature and the probe's (fp32, bf16) seconds; returns the probe's calls."""
    calls: list[int] = []

    def probe() -> tuple[float, float]:
        calls.append(1)
        assert seconds is not None, "the probe ran on a CPU without native bf16"
        return seconds

    monkeypatch.setattr(runtime, "cpu_bf16_feature", lambda: feature)
    monkeypatch.setattr(runtime, "cpu_bf16_speedup", probe)
    return calls


def test_auto_is_fp32_without_native_bf16_and_does_not_probe(monkeypatch):
    calls = fake_cpu(monkeypatch, None, None)
    precision, reason = choose_precision("auto", CPU)
    assert precision == "fp32" and "no native bf16" in reason and not calls


@pytest.mark.parametrize("feature", ["amx", "avx512_bf16", "bf16"])
def test_auto_is_bf16_on_a_cpu_that_computes_it_natively_and_faster(monkeypatch, feature):
    calls = fake_cpu(monkeypatch, feature, (0.100, 0.050))
    precision, reason = choose_precision("auto", CPU)
    assert precision == "bf16" and feature in reason and "2.00x" in reason and calls == [1]


def test_auto_stays_fp32_where_native_bf16_is_not_faster(monkeypatch):
    fake_cpu(monkeypatch, "avx512_bf16", (0.100, 0.100 / (CPU_BF16_MIN_SPEEDUP - 0.05)))
    precision, reason = choose_precision("auto", CPU)
    assert precision == "fp32" and "not faster" in reason


def test_a_requested_precision_is_kept_and_never_probes(monkeypatch):
    calls = fake_cpu(monkeypatch, "avx512_bf16", (1.0, 0.1))
    assert choose_precision("fp32", CPU) == ("fp32", "requested")
    assert choose_precision("bf16", CPU) == ("bf16", "requested")
    assert choose_precision("tf32", CPU)[0] == "fp32"  # no TF32 on the CPU
    assert not calls
    with pytest.raises(ValueError, match="precision must be"):
        choose_precision("fp8", CPU)


def test_native_bf16_is_read_from_torch_then_from_the_cpu_flags(monkeypatch, tmp_path):
    monkeypatch.undo()  # the real cpu_bf16_feature (conftest replaces it in every test)
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


def test_cpu_flags_are_read_from_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU part\t: 0xd40\n")
    assert "avx512_bf16" in runtime._cpu_flags(str(x86)) and "avx2" in runtime._cpu_flags(str(x86))
    assert "bf16" in runtime._cpu_flags(str(arm))
    assert runtime._cpu_flags(str(tmp_path / "none")) == set()


def test_the_probe_times_a_real_step_in_both_dtypes(monkeypatch):
    generator_state = torch.random.get_rng_state()
    fp32 = runtime._block_step_seconds(None, (32, 16), repeats=1)
    bf16 = runtime._block_step_seconds(torch.bfloat16, (32, 16), repeats=1)
    assert fp32 > 0 and bf16 > 0
    assert torch.equal(torch.random.get_rng_state(), generator_state)  # the run's random stream is untouched
