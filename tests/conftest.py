"""Shared fixtures: the committed real test clip and its extracted frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def clip_path() -> Path:
    """24 frames of the pose2sim SinglePerson dancer (288x512, 60 fps, H.264)."""
    return DATA / "clip.mp4"


@pytest.fixture(scope="session")
def clip_frames(tmp_path_factory: pytest.TempPathFactory, clip_path: Path) -> Path:
    """The test clip extracted at height 256 (144x256), shared read-only by tests."""
    from pipeline.extract import extract_frames

    out = tmp_path_factory.mktemp("clip") / "frames"
    extract_frames(clip_path, out, height=256)
    return out


@pytest.fixture
def writable_frames(tmp_path: Path, clip_frames: Path) -> Path:
    """A private copy of the extracted clip for tests that modify frames."""
    out = tmp_path / "frames"
    shutil.copytree(clip_frames, out)
    return out
