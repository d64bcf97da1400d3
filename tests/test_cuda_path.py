"""The CUDA path without a GPU: steps on the ``meta`` device that fail on any tensor made on the host,
the benchmark run lists with CUDA reported present, and the device, process and precision decisions a
GPU machine takes (torch.cuda monkeypatched). Tests that need a real GPU are marked ``gpu``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from pipeline.gan.runtime import Runtime
from pipeline.gan.options import TrainConfig
from pipeline.gan.train import PoseTask

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

META = torch.device("meta")
# Operations that move data between the host and the device (the only ones allowed to touch host tensors),
# lift_fresh (torch.tensor / as_tensor wrapping host data; any use of the result is checked) and detach
# (no work: .numpy() of a frame copied to the host calls it).
_TRANSFERS = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}
_WRAP = {torch.ops.aten.lift_fresh.default, torch.ops.aten.detach.default}


class HostTensorCheck(TorchDispatchMode):
    """Records every operation that computes with, or makes, a host (CPU) tensor of one or more dimensions.

    On the meta device every tensor of the step should be a meta tensor: a host tensor there is one the
    code made without ``device=`` (on a GPU: a crash when mixed, or host work and a copy each step).
    0-d host tensors are allowed (Python-number-like; Adam keeps its step count in one). A copy from the
    device to the host returns zeros (meta tensors hold no data), so the code after it still runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.host_ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func in _TRANSFERS:
            dst = kwargs.get("device") or (args[0].device if func is torch.ops.aten.copy_.default else None)
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            if src.device.type == "meta" and dst is not None and torch.device(dst).type == "cpu":
                return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype)  # device -> host
            if dst is None or torch.device(dst).type != "cpu":
                return func(*args, **kwargs)  # host -> device, or a conversion on the device
        out = func(*args, **kwargs)
        if func in _WRAP:
            return out
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if any(t.device.type == "cpu" and t.dim() > 0 for t in inputs + outputs):
            self.host_ops.append(str(func))
        return out


def meta_runtime(precision: str = "fp32") -> Runtime:
    return Runtime(0, 1, META, precision=precision)


def loader_batch(n: int, height: int, width: int, clips: list[int] | None = None) -> dict[str, torch.Tensor]:
    """What the DataLoader hands a step: uint8 images on the host (and clip indices, box corners)."""
    batch = {k: torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8)
             for k in ("pose_t", "pose_t1", "real_t", "real_t1")}
    if clips is not None:
        batch["clip"] = torch.tensor(clips)
    return batch


TINY = dict(width=32, height=64, ngf=4, n_downsample=2, n_blocks=1, ndf=4, n_layers_d=2, num_d=2, workers=0,
            vgg_loss=False)


@pytest.mark.parametrize("temporal", [True, False], ids=["temporal", "frame_by_frame"])
@pytest.mark.parametrize("plate", [False, True], ids=["no_plate", "plate"])
def test_pose_gan_step_stays_on_the_device(temporal, plate, random_vgg_file):
    cfg = TrainConfig(**{**TINY, "vgg_loss": True}, vgg_weights=str(random_vgg_file), temporal=temporal,
                      background="plate" if plate else "none", lambda_l1=1.0 if plate else 0.0, batch_size=2)
    plates = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8) if plate else None
    task = PoseTask(cfg, meta_runtime(), plates=plates)
    assert all(p.device == META for m in (task.G, task.D, task.vgg) for p in m.parameters())
    batch = loader_batch(2, 64, 32, [1, 0] if plate else None)
    check = HostTensorCheck()
    with check:
        for _ in range(2):  # the second step: Adam's state exists
            losses, visuals = task.step(batch, visuals=True)
    assert check.host_ops == []
    assert all(v.device == META for v in losses.values()) and {"G_VGG", "D_real"} <= set(losses)
    assert ("G_L1" in losses) == plate and all(v.device == META for v in visuals)


def test_the_host_tensor_check_catches_a_tensor_made_on_the_host():
    """The check itself: a module that makes a host tensor in its forward is caught."""

    class Careless(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(x.shape[1:])  # no device=: the host
            return x + noise.to(x.device)

    check = HostTensorCheck()
    with check:
        Careless()(torch.zeros(1, 3, 4, 4, device=META))
    assert check.host_ops == ["aten.randn.default"]
    with check, pytest.raises(RuntimeError, match="cpu"):  # and mixing host and device tensors fails as on CUDA
        torch.zeros(2, device=META) + torch.zeros(2)


def test_face_gan_step_stays_on_the_device():
    from pipeline.gan.models.generator import build_generator, default_generator_config
    from pipeline.gan.train_face import FaceConfig, FaceTask

    generator = build_generator(default_generator_config(ngf=4, n_downsample=2, n_blocks=1))
    cfg = FaceConfig(width=32, height=64, face_ngf=4, face_n_blocks=1, ndf=4, batch_size=2, vgg_loss=False)
    task = FaceTask(cfg, meta_runtime(), generator, box_size=16)
    batch = loader_batch(2, 64, 32) | {"box_t1": torch.tensor([[0, 8, 16, 24], [16, 40, 32, 56]])}
    check = HostTensorCheck()
    with check:
        for _ in range(2):
            losses, visuals = task.step(batch, visuals=True)
    assert check.host_ops == []
    assert all(v.device == META for v in losses.values()) and visuals[2].shape == (3, 16, 16)


@pytest.mark.parametrize("plate", [False, True], ids=["no_plate", "plate"])
def test_sequence_generation_stays_on_the_device(plate):
    from pipeline.gan.generate import Models, SequenceBatch
    from pipeline.gan.models.face import build_face_generator, default_face_config
    from pipeline.gan.models.generator import build_generator, default_generator_config

    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=32, height=64,
                                      background="plate" if plate else "none", n_plates=2)
    face_config = default_face_config(ngf=4, n_downsample=3, n_blocks=1, box_size=16, width=32, height=64)
    models = Models(build_generator(config).to(META).eval(), config, META,
                    build_face_generator(face_config).to(META).eval(), face_config)
    sequence = SequenceBatch(models, plates=[1, 0])
    rng = np.random.default_rng(0)
    check = HostTensorCheck()
    with check:
        for t in range(2):  # the second step feeds the first's frames back
            poses = {k: rng.integers(0, 256, (64, 32, 3), dtype=np.uint8) for k in (0, 1)}
            out = sequence.step(poses, {0: (8, 8, 24, 24), 1: None})
    assert check.host_ops == []
    assert set(out) == {0, 1} and all(frame.shape == (64, 32, 3) for pair in out.values() for frame in pair)
    assert sequence.previous[0].device == META


# ----------------------------------------------------------------- benchmark run lists with "CUDA"

@pytest.fixture
def cuda_reported(monkeypatch):
    """torch.cuda says an H100 NVL is there; modules meant for it go to the meta device instead, so rows are
    built by their own code (a paper-size model costs no memory there) but not run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 NVL")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # the scripts turn it on; restored after
    real_prepare = Runtime.prepare
    monkeypatch.setattr(Runtime, "prepare", lambda rt, module: real_prepare(
        dataclasses.replace(rt, device=META) if rt.device.type == "cuda" else rt, module))
    with torch.device(META):  # built there too: nothing of the size is allocated on the host
        yield


def test_bench_train_run_list_with_cuda(cuda_reported):
    import yaml

    import bench_train

    train = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"]
    runs = bench_train.run_list(train, 1, cuda=torch.cuda.is_available())
    assert [(rt.device.type, rt.precision, cfg.precision, cfg.width) for rt, _, cfg in runs] == [
        ("cpu", "fp32", "fp32", train["width"]), ("cpu", "bf16", "bf16", train["width"]),
        ("cpu", "fp32", "fp32", 512), ("cpu", "bf16", "bf16", 512),
        ("cuda", "fp32", "fp32", 512), ("cuda", "bf16", "bf16", 512), ("cuda", "fp32", "fp32", 1024),
        ("cuda", "bf16", "bf16", 1024)]
    assert [rt.device.type for rt, *_ in bench_train.run_list(train, 1, cuda=False, cpu_paper=False)] == ["cpu"] * 2
    assert [(model, rt.precision) for rt, model, _ in bench_train.run_list(train, 1, False, cpu_paper_bf16=False)] \
        == [("configured", "fp32"), ("configured", "bf16"), ("paper", "fp32")]  # no emulated paper-width bf16
    for rt, model, cfg in runs:
        if rt.device.type != "cuda":
            assert model == "paper" or cfg.ngf == train["ngf"]
            continue
        task = PoseTask(dataclasses.replace(cfg, vgg_loss=False), rt)
        assert sum(p.numel() for p in task.G.parameters()) > 40e6  # the paper's global generator
    assert bench_train.gpu_peak(torch.cuda.get_device_name(0), None) == 835.0  # the NVL's, not the SXM's
    assert bench_train.gpu_peak("anything", 123.0) == 123.0


def test_gpu_check_rows_with_cuda(cuda_reported, monkeypatch, tmp_path):
    import bench_data
    import gpu_check

    built = []

    def build_only(name, net, width, height, precision, device, steps, peak, compiled=False):
        task = gpu_check.train_task(net, width, height, precision, device)  # the real row's construction
        built.append((name, width, precision, device.type, peak, type(task.G).__name__))
        compiled_rows.append((precision, compiled))
        return [{"model": name, "width": width, "height": height, "precision": precision}]

    compiled_rows = []

    transfers = []
    monkeypatch.setattr(gpu_check, "train_row", build_only)
    monkeypatch.setattr(gpu_check, "transfer_rows", lambda net, w, h, device, *a, compiled=False:
                        transfers.append((w, h, device, compiled)) or [])
    monkeypatch.setattr(bench_data, "samples_per_second", lambda *a: 1.0)
    assert gpu_check.main(["--device", "cuda", "--steps", "1", "--out", str(tmp_path / "g.json")]) == 0
    assert built == [(name, w, p, "cuda", 835e12, kind) for name, kind, sizes in (
        ("global ngf64", "GlobalGenerator", (512, 1024)), ("local ngf32", "LocalEnhancer", (1024,)))
        for w in sizes for p in ("fp32", "bf16")]
    assert transfers == [(1024, 512, torch.device("cuda"), True)]
    assert set(compiled_rows) == {("fp32", False), ("bf16", True)}  # eager and compiled rows beside bf16 ones
    built.clear()
    assert gpu_check.main(["--device", "cuda", "--peak-tflops", "500", "--out", str(tmp_path / "g.json")]) == 0
    assert {peak for *_, peak, _ in built} == {500e12}  # a GPU the table does not know


# --------------------------------------------------------------- device, processes, precision

@pytest.fixture
def no_gpu_env(monkeypatch):
    from pipeline.gan.launch import GPU_VARIABLES

    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def fake_cuda(monkeypatch, available=True, count=1, capability=(9, 0), archs=("sm_80", "sm_90"), built="13.0"):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA B200")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(archs))
    monkeypatch.setattr(torch.version, "cuda", built)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: capability >= (8, 0))


def test_auto_never_falls_back_to_the_cpu_in_a_job_given_gpus(no_gpu_env):
    from pipeline.gan.runtime import cuda_problem, pick_device

    mp = no_gpu_env
    fake_cuda(mp, capability=(10, 0), archs=("sm_80", "sm_90"))  # a GPU newer than this torch build
    assert "no kernel image for this GPU: NVIDIA B200 has compute capability 10.0" in cuda_problem()
    assert pick_device("auto") == torch.device("cpu")  # no GPU given to the job: the CPU, as before
    for name, value in (("CUDA_VISIBLE_DEVICES", "0"), ("SLURM_JOB_GPUS", "3"), ("SLURM_STEP_GPUS", "0,1"),
                        ("SLURM_GPUS_ON_NODE", "2")):
        with mp.context() as env:
            env.setenv(name, value)
            with pytest.raises(RuntimeError, match=rf"device auto: this job was given GPUs \({name}={value}\) but "
                                                   r"CUDA is unusable: no kernel image .* set device: cpu"):
                pick_device("auto")
            assert pick_device("cpu") == torch.device("cpu")  # asked for: the CPU
    mp.setenv("SLURM_GPUS_ON_NODE", "2")
    with pytest.raises(RuntimeError, match="--device cuda requested but CUDA is unusable: no kernel image"):
        pick_device("cuda")
    fake_cuda(mp, available=False)
    with pytest.raises(RuntimeError, match=r"built for CUDA 13.0; the NVIDIA driver is missing or too old"):
        pick_device("auto")
    fake_cuda(mp, available=False, built=None)
    with pytest.raises(RuntimeError, match="CPU-only build"):
        pick_device("auto")
    fake_cuda(mp, count=0)
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        pick_device("auto")
    fake_cuda(mp, capability=(8, 6), archs=("sm_80", "sm_86"))
    assert cuda_problem() is None and pick_device("auto") == torch.device("cuda")
    fake_cuda(mp, capability=(12, 0), archs=("sm_90", "compute_90"))  # PTX the driver compiles for a newer GPU
    assert cuda_problem() is None
    fake_cuda(mp, capability=(9, 0), archs=("sm_80", "sm_90a"))
    assert cuda_problem() is None


def test_a_local_rank_without_a_gpu_is_refused(no_gpu_env):
    from pipeline.gan.runtime import start_runtime

    mp = no_gpu_env
    fake_cuda(mp, count=1)
    mp.setattr(torch.cuda, "set_device", lambda index: pytest.fail("set_device reached"))
    mp.setenv("LOCAL_RANK", "1")
    mp.setenv("RANK", "1")
    with pytest.raises(RuntimeError, match=r"process 1 on this node \(LOCAL_RANK\) has no GPU of its own: 1 visible. "
                                           r"Start at most 1 process\(es\) per node .*--gpus 1.* --device cpu"):
        start_runtime("auto")
    assert start_runtime("cpu").device == torch.device("cpu")  # the launcher's CPU processes
    picked = []
    mp.setattr(torch.cuda, "set_device", picked.append)
    mp.setenv("LOCAL_RANK", "0")
    rt = start_runtime("auto", "auto")
    assert picked == [0] and rt.device == torch.device("cuda", 0) and rt.precision == "bf16"


def test_deterministic_is_refused_on_cuda():
    from pipeline.gan.runtime import determinism

    with pytest.raises(ValueError, match="deterministic: true is exact on the CPU only.*ReflectionPad2d"):
        with determinism(True, Runtime(0, 1, torch.device("cuda", 0))):
            pass
    with determinism(True, Runtime(0, 1, torch.device("cpu"))):
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()


def test_fp32_is_ieee_and_tf32_is_asked_for(monkeypatch, tmp_path):
    import pipeline.gan.generate as generate
    from pipeline.gan.runtime import choose_precision

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # load_models turns it on for "CUDA"
    monkeypatch.setattr(generate, "load_generator", lambda path, dev, extras=None:
                        (torch.nn.Conv2d(1, 1, 1), {"width": 8, "height": 8}))
    monkeypatch.setattr(generate, "pick_device", lambda device: torch.device("cuda"))
    try:
        PoseTask(TrainConfig(**TINY), meta_runtime("tf32"))  # training
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        for precision in ("fp32", "bf16"):
            PoseTask(TrainConfig(**TINY), meta_runtime(precision))  # fp16 needs a GradScaler of a real device
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")  # torch's default conv: tf32
        assert generate.load_models(tmp_path / "g.pt", precision="tf32").precision == "tf32"  # inference
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        assert generate.load_models(tmp_path / "g.pt", precision="fp32").precision == "fp32"
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    finally:
        conv.fp32_precision, matmul.fp32_precision = "tf32", "none"
    assert choose_precision("tf32", torch.device("cuda", 0))[0] == "tf32"
    assert choose_precision("tf32", torch.device("cpu"))[0] == "fp32"  # no TF32 on the CPU
    with pytest.raises(ValueError, match="must be resolved"):
        Runtime(0, 1, torch.device("cpu"), precision="auto")
    assert Runtime(0, 1, META, precision="tf32").autocast().__class__.__name__ == "nullcontext"


def test_the_vgg_decision_must_be_the_same_on_every_rank(monkeypatch):
    import pipeline.gan.stage as train

    rt = Runtime(0, 3, torch.device("cpu"))
    monkeypatch.setattr(train, "all_gather", lambda obj, rt: [(True, None), obj, (True, None)])
    with pytest.raises(RuntimeError, match=r"VGG loss would be on for ranks \[0, 2\] only \(rank 1: vgg_loss auto: "
                                           r"not here\): every process must see the same VGG19 weight file"):
        train.agree_on_vgg(False, "vgg_loss auto: not here", rt)
    train.agree_on_vgg(True, None, rt)  # all on: fine


# ----------------------------------------------------------------------------- on a real GPU

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pytest -m gpu on one)")


@pytest.mark.gpu
@needs_cuda
def test_bf16_training_step_on_the_gpu():
    rt = Runtime(0, 1, torch.device("cuda", 0), precision="bf16")
    task = PoseTask(TrainConfig(**TINY, batch_size=2), rt)
    losses, _ = task.step(loader_batch(2, 64, 32))
    assert all(torch.isfinite(v).item() and v.device.type == "cuda" for v in losses.values())
    assert all(p.dtype == torch.float32 for p in task.G.parameters())  # autocast: fp32 master weights


@pytest.mark.gpu
@needs_cuda
def test_transfer_generation_at_1024x512_on_the_gpu(tmp_path):
    from pipeline.gan.checkpoint import save_model
    from pipeline.gan.generate import generate_frames, load_models
    from pipeline.gan.models.generator import build_generator, default_generator_config

    config = default_generator_config(ngf=64, n_downsample=4, n_blocks=9)
    save_model(tmp_path / "g.pt", build_generator(config), config | {"width": 1024, "height": 512})
    models = load_models(tmp_path / "g.pt", None, "cuda", "auto")
    poses = [np.random.default_rng(i).integers(0, 256, (512, 1024, 3), dtype=np.uint8) for i in range(3)]
    frames = list(generate_frames(models, poses))
    assert len(frames) == 3 and all(f.shape == (512, 1024, 3) and f.dtype == np.uint8 for f in frames)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_keep_weights_in_sync_over_nccl(tmp_path, synthetic_clip):
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-m", "pipeline.gan.launch", "--gpus", "2", "--", sys.executable, "-m",
                           "pipeline.cli", "train", str(tmp_path / "run"), "--clip", *map(str, synthetic_clip),
                           "--width", "64", "--height", "128", "--ngf", "8", "--n-downsample", "2", "--n-blocks", "1",
                           "--ndf", "8", "--n-layers-d", "2", "--num-d", "2", "--workers", "0", "--sample-every", "0",
                           "--no-vgg-loss", "--max-steps", "4", "--device", "cuda"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["world_size"] == 2 and record["device"].startswith("cuda")
    for name, sums in record["param_checksums"].items():
        assert len(sums) == 2 and sums[0] == sums[1], (name, sums)
