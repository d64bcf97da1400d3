"""One writer per output: a file or folder a live process is writing is refused to a second command, with the
holder named; a killed writer's lock is no obstacle (pipeline.provenance.writer_lock, taken by every ``edn``
command on all its outputs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.provenance import lock_path, writer_lock
from test_train import TINY_FLAGS as TINY_MODEL_FLAGS

TINY_FLAGS = [*TINY_MODEL_FLAGS, "--precision", "fp32", "--no-vgg-loss", "--tensorboard", "off"]


def test_a_held_output_is_refused_naming_the_holder_and_released_after(tmp_path):
    out = tmp_path / "new" / "deeper" / "run"
    with writer_lock(out, "train"):
        assert lock_path(out).read_text() == f"process {os.getpid()} (`edn train`)\n"
        with pytest.raises(RuntimeError, match=rf"{out}: being written by process {os.getpid()} \(`edn train`\) "
                                               r"\(lock .*\.run\.lock\)"):
            with writer_lock(out, "train-face"):
                pass
    # released: the lock file is gone, and so are the folders made for it alone
    assert not (tmp_path / "new").exists()
    with writer_lock(out, "train"):
        pass


def _edn(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def _wait_for(condition, what: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the first writer ended ({process.returncode}) before {what}: "
                                 f"{process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {seconds} s")
        time.sleep(0.1)


@pytest.mark.slow
def test_two_trainings_into_one_run_folder_one_refused_and_a_killed_writer_does_not_block(tmp_path, synthetic_clip):
    run = tmp_path / "run"
    clip = ["--clip", *map(str, synthetic_clip)]
    first = subprocess.Popen(_edn("train", str(run), *clip, *TINY_FLAGS, "--epochs", "100000",
                                  "--niter-decay", "0", "--checkpoint-every", "1"), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (run / "checkpoint.pt").is_file(), "checkpoint", first)
        second = subprocess.run(_edn("train", str(run), *clip, *TINY_FLAGS, "--max-steps", "1"),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"{run}: being written by process {first.pid} (`edn train`)" in second.stderr
        assert "Traceback" not in second.stderr
        # another command onto the same model file is refused as well
        third = subprocess.run(_edn("train", str(tmp_path / "other"), *clip, *TINY_FLAGS, "--max-steps", "1",
                                    "--model-out", str(run / "generator.pt")), capture_output=True, text=True,
                               timeout=120)
        assert third.returncode == 2 and f"being written by process {first.pid}" in third.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock_path(run).exists()  # a SIGKILLed writer cannot remove its lock file, but the kernel freed the lock
    rerun = subprocess.run(_edn("train", str(run), *clip, *TINY_FLAGS, "--max-steps", "1"),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not lock_path(run).exists() and not lock_path(run / "generator.pt").exists()
    assert Path(run / "generator.pt").is_file()
