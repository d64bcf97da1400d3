"""Shared fixtures: the committed real test clip and its extracted frames; the real-SLURM tests' opt-in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.gan.synthetic import make_synthetic_clip  # noqa: F401 (the tests import it from here)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


# The `slurm` tests install Debian's slurmctld, slurmd and munge through apt when they are missing and
# start them: a test command must not change a machine unasked, so they run only when asked for.
SLURM_OPT_IN = "EDN_SLURM_TESTS"
SLURM_SKIP = (f"a real SLURM (installs slurmctld, slurmd and munge through apt when missing): opt in with "
              f"make test-slurm or {SLURM_OPT_IN}=1")


def slurm_tests_wanted() -> bool:
    return os.environ.get(SLURM_OPT_IN) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if slurm_tests_wanted():
        return
    skip = pytest.mark.skip(reason=SLURM_SKIP)
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def clip_path() -> Path:
    """24 frames of the pose2sim SinglePerson dancer (288x512, 60 fps, H.264)."""
    return DATA / "clip.mp4"


@pytest.fixture(scope="session")
def clip_frames(tmp_path_factory: pytest.TempPathFactory, clip_path: Path) -> Path:
    """The test clip extracted at height 256 (144x256), shared read-only by tests."""
    from pipeline.footage.extract import extract_frames

    out = tmp_path_factory.mktemp("clip") / "frames"
    extract_frames(clip_path, out, height=256)
    return out


@pytest.fixture
def writable_frames(tmp_path: Path, clip_frames: Path) -> Path:
    """A private copy of the extracted clip for tests that modify frames."""
    out = tmp_path / "frames"
    shutil.copytree(clip_frames, out)
    return out


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """8 frames of 64x128 (see :func:`make_synthetic_clip`), shared read-only by training tests."""
    return make_synthetic_clip(tmp_path_factory.mktemp("synthetic_clip"))


@pytest.fixture
def synthetic_clip_factory():
    """:func:`make_synthetic_clip` itself, for tests that need other lengths or sizes."""
    return make_synthetic_clip


@pytest.fixture(scope="session")
def random_vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VGG19 ``features.*`` state dict with RANDOM weights. It exercises loading and the loss
    computation only; the pipeline itself never uses random VGG weights."""
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "random_vgg19_features.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}, path)
    return path


@pytest.fixture(autouse=True)
def cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """``precision: auto`` runs in fp32 in every test and every process a test starts (``edn``, Snakemake),
    on any machine: on a CPU whose bf16 it takes it would switch to bf16 and change what the tests compare.
    tests/test_precision.py checks that choice itself, with the CPU's answer replaced or its real one."""
    from pipeline.gan.runtime import CPU_BF16_VARIABLE

    monkeypatch.setenv(CPU_BF16_VARIABLE, "none")
