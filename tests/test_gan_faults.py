"""SIGKILL the GAN half's stages at seeded points chosen by progress, rerun, get the uninterrupted result.

Only the stage's own process is killed (not its process group), so its children (data workers,
ffmpeg) must end by themselves; none may be left, nor any temporary after the rerun. Kill points
are counted in steps done (rows of losses.csv), frames handed to the encoder and files written, never in
fractions of a wall-clock duration, so every kill lands.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RNG = random.Random(18)
STEPS = 10  # 2 epochs of the synthetic clip's 5 training pairs
TRAIN = ["--ndf", "4", "--n-layers-d", "2", "--num-d", "1", "--workers", "1", "--no-vgg-loss", "--sample-every", "0",
         "--epochs", "2", "--niter-decay", "2", "--checkpoint-every", "2", "--deterministic"]
GENERATOR = ["--width", "64", "--height", "128", "--ngf", "4", "--n-downsample", "2", "--n-blocks", "1"]
FACE = ["--face-ngf", "4", "--face-n-blocks", "1"]


def _edn(*args: str, cwd: Path, hook: Path | None = None, **extra_env: str) -> subprocess.Popen:
    paths = [str(hook)] if hook is not None else []
    env = {**os.environ, **extra_env,
           "PYTHONPATH": os.pathsep.join([*paths, str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _run(*args: str, cwd: Path) -> None:
    proc = _edn(*args, cwd=cwd)
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]


def _group(pgid: int) -> list[int]:
    """Live processes of a process group (zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _kill_when(proc: subprocess.Popen, reached, what: str) -> None:
    """SIGKILL the stage (its pid only) once ``reached()``; then no process of its group may remain."""
    deadline = time.monotonic() + 300
    while not reached():
        assert proc.poll() is None, f"the stage ended before {what}: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"{what} not reached in 300 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    deadline = time.monotonic() + 2  # the kernel kills them at once; torch's own watchdog would take 5 s
    while _group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = _group(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"children {left} outlived the killed stage"


def _rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def _stale(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if re.fullmatch(r"\..+\.[a-z0-9_]{8}\.tmp.*", p.name)]


def _losses(run: Path) -> list[dict[str, str]]:
    with (run / "losses.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _killed_and_resumed(stage: str, args: list[str], tmp_path: Path, model: str) -> Path:
    """The stage run whole (ref/) and killed at a seeded step then rerun (killed/); both compared."""
    ref, killed = tmp_path / f"{stage}_ref", tmp_path / f"{stage}_killed"
    _run(stage, str(ref), *args, cwd=tmp_path)
    step = RNG.randint(3, STEPS - 1)
    proc = _edn(stage, str(killed), *args, cwd=tmp_path)
    _kill_when(proc, lambda: _rows(killed / "losses.csv") >= step, f"step {step}")
    assert not (killed / model).exists()
    _run(stage, str(killed), *args, cwd=tmp_path)
    assert json.loads((killed / "run.json").read_text())["resumed_from_step"] is not None
    assert _losses(killed) == _losses(ref)  # every digit of every step's losses
    assert _same_weights(killed / model, ref / model)
    assert not _stale(killed)
    return ref / model


def test_killed_training_face_training_and_evaluation_rerun_to_the_same_results(tmp_path, synthetic_clip):
    clip = ["--clip", *map(str, synthetic_clip)]
    generator = _killed_and_resumed("train", [*clip, *GENERATOR, *TRAIN], tmp_path, "generator.pt")
    _killed_and_resumed("train-face", [*clip, "--generator", str(generator), *FACE, *TRAIN], tmp_path, "face.pt")

    # Evaluation writes its folder at the end, faster than any poll can catch: the stage kills itself
    # (an audit hook on Python's open, loaded as sitecustomize) when it opens the k-th file for
    # writing in its temporary folder. metrics.parquet and frames.parquet (written by pyarrow,
    # unseen by the hook) are there by then; tables.md, tables.html, evaluation.json are counted.
    args = [*clip, "--generator", str(generator), "--rows", "temporal", "--device", "cpu"]
    _run("evaluate", "eval_ref", *args, cwd=tmp_path)
    k = RNG.randint(1, 3)
    hook = tmp_path / "kill_hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_ON_OPEN)
    proc = _edn("evaluate", "eval_killed", *args, cwd=tmp_path, hook=hook, EDN_KILL_ON_OPEN=f".eval_killed.:{k}")
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")[-2000:]
    assert not _group(proc.pid), "children outlived the killed stage"
    assert any(t.is_dir() for t in tmp_path.glob(".eval_killed.*.tmp"))  # killed while writing, as intended
    assert not (tmp_path / "eval_killed").exists()
    _run("evaluate", "eval_killed", *args, cwd=tmp_path)
    for name in ("metrics.parquet", "frames.parquet", "samples.png"):
        assert (tmp_path / "eval_killed" / name).read_bytes() == (tmp_path / "eval_ref" / name).read_bytes(), name
    ref, got = (json.loads((tmp_path / d / "evaluation.json").read_text()) for d in ("eval_ref", "eval_killed"))
    for record in (ref, got):
        del record["provenance"], record["seconds"]
    assert got == ref
    assert not _stale(tmp_path)


KILL_ON_OPEN = """
import os, signal, sys
_where, _count = os.environ.get("EDN_KILL_ON_OPEN", ":0").rsplit(":", 1)
_opened = []
def _kill_on_open(event, args):
    if event == "open" and _where and _where in str(args[0]) and isinstance(args[1], str) and "w" in args[1]:
        _opened.append(args[0])
        if len(_opened) >= int(_count):
            os.kill(os.getpid(), signal.SIGKILL)
if _where:
    sys.addaudithook(_kill_on_open)
"""


def _frames_read(pid: int) -> int:
    """Bytes an encoder has read so far (its stdin carries the frames)."""
    try:
        io = (Path(f"/proc/{pid}/io")).read_text()
    except OSError:
        return 0
    return int(re.search(r"rchar: (\d+)", io).group(1))


def test_killed_transfer_reruns_to_the_same_video(tmp_path, synthetic_clip_factory):
    from pipeline.gan.checkpoint import save_model
    from pipeline.gan.models.generator import build_generator, default_generator_config
    from pipeline.provenance import provenance

    frames, render, keypoints = synthetic_clip_factory(tmp_path / "clip", n_frames=40)
    torch.manual_seed(0)
    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=64, height=128)
    save_model(tmp_path / "g.pt", build_generator(config), config, step=0, provenance=provenance("train", {}))
    args = [str(keypoints), str(render), str(frames)]
    flags = ["--generator", "g.pt", "--device", "cpu"]
    (tmp_path / "ref").mkdir()
    _run("transfer", *args, "ref/out.mp4", "--side-by-side", "ref/sbs.mp4", *flags, cwd=tmp_path)
    frame_bytes = 64 * 128 * 3
    k = RNG.randint(2, 30)

    def encoded_k_frames() -> bool:
        encoders = [pid for pid in _group(proc.pid) if b"libx264" in Path(f"/proc/{pid}/cmdline").read_bytes()
                    and b"out.mp4" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        return bool(encoders) and _frames_read(encoders[0]) >= k * frame_bytes

    proc = _edn("transfer", *args, "killed/out.mp4", "--side-by-side", "killed/sbs.mp4", *flags, cwd=tmp_path)
    _kill_when(proc, encoded_k_frames, f"{k} frames encoded")
    assert not (tmp_path / "killed" / "out.mp4").exists()
    _run("transfer", *args, "killed/out.mp4", "--side-by-side", "killed/sbs.mp4", *flags, cwd=tmp_path)
    for name in ("out.mp4", "sbs.mp4"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    ref, got = (json.loads((tmp_path / d / "out.json").read_text()) for d in ("ref", "killed"))
    for key in ("frames", "fps", "size", "consecutive_differences", "face_boxes"):
        assert got[key] == ref[key], key
    assert got["models"]["generator"]["weights_sha256"] == ref["models"]["generator"]["weights_sha256"]
    assert not _stale(tmp_path)
