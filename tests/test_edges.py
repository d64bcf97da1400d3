"""Edges a new user meets: any legal file name, outputs that are not plain files, outputs nested in a folder a
stage owns, ffmpeg's own error line, a full disk and Ctrl-C.

Every refusal exits non-zero within a minute with no traceback and the cause named; legitimate names work.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser, main
from test_slips import _alive, _children

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = ["--width", "64", "--height", "128", "--ngf", "4", "--n-downsample", "2", "--n-blocks", "1", "--ndf", "4",
        "--n-layers-d", "2", "--num-d", "1", "--sample-every", "0", "--no-vgg-loss", "--device", "cpu",
        "--precision", "fp32"]
# A name holding each thing ffmpeg or a shell could read as syntax, and one that is not UTF-8.
ODD_NAMES = ["take:1", "100%d", "-lead", "two words #1", os.fsdecode(b"caf\xe9")]


def _edn(argv: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _run_edn(argv: list[str], cwd: Path) -> tuple[int, str]:
    proc = _edn(argv, cwd)
    _, err = proc.communicate(timeout=60)  # every refusal within a minute
    return proc.returncode, err.decode(errors="replace")


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize("name", ODD_NAMES, ids=["colon", "percent", "leading_dash", "space_hash", "latin1_byte"])
def test_extract_takes_any_file_name(tmp_path, monkeypatch, clip_path, name):
    """Relative names, the video's and the folder's alike: ffmpeg reads neither as a protocol, a pattern
    nor an option, and what is recorded is the name as given."""
    import json

    monkeypatch.chdir(tmp_path)
    shutil.copy(clip_path, f"{name}.mp4")
    assert main(["extract", "--height", "64", "--max-frames", "3", "--", f"{name}.mp4", f"{name} frames"]) == 0
    out = tmp_path / f"{name} frames"
    assert sorted(p.name for p in out.iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg", "meta.json"]
    assert json.loads((out / "meta.json").read_text())["source"] == f"{name}.mp4"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_name_that_is_not_utf8_is_shown_with_a_replacement_character(tmp_path, clip_path):
    shutil.copy(clip_path, tmp_path / os.fsdecode(b"caf\xe9.mp4"))
    code, err = _run_edn(["extract", "--max-frames", "2", "--", os.fsdecode(b"caf\xe9.mp4"), "out"], tmp_path)
    assert code == 0 and "caf\ufffd.mp4: 2 frames" in err, err  # the log line
    code, err = _run_edn(["extract", os.fsdecode(b"caf\xe9 missing.mp4"), "out"], tmp_path)
    assert code == 2 and "caf\ufffd missing.mp4: video file not found" in err and "codec" not in err, err


def test_videos_and_soundtracks_are_written_under_any_name(tmp_path):
    """The encoder's output and the soundtrack's source and output go to ffmpeg as literal files."""
    import numpy as np

    from pipeline.footage.audio import add_soundtrack
    from pipeline.footage.extract import extract_frames
    from pipeline.footage.media import ffmpeg_exe, ffmpeg_file
    from pipeline.footage.video import write_video

    folder = tmp_path / "-clips 50%d #2:"
    folder.mkdir()
    source = folder / os.fsdecode(b"d\xe9mo:1 %03d.mp4")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-f",
                    "lavfi", "-i", "sine=duration=1", "-t", "1", "-c:v", "mpeg4", "-c:a", "aac", ffmpeg_file(source)],
                   check=True)
    meta = extract_frames(source, folder / "frames", height=64, max_frames=6)
    assert meta["audio"] is not None
    video = folder / "out 100%d.mp4"
    assert write_video([np.full((64, 36, 3), 40 * i, np.uint8) for i in range(6)], video, meta["fps"]) == 6
    assert add_soundtrack(video, meta, 0, 6)
    from pipeline.footage.media import probe_video

    assert probe_video(video).frame_count == 6


@pytest.mark.parametrize("name", ODD_NAMES, ids=["colon", "percent", "leading_dash", "space_hash", "latin1_byte"])
def test_pose_stages_take_any_file_name(ws, name):
    """Parquet goes to pyarrow as an open file (it reads a name as a URI: "take:1.parquet"), and each stage
    knows its own output again under the odd name."""
    from pipeline.provenance import recorded_stage

    shutil.copy(ws / "kp.parquet", ws / f"{name}.parquet")
    steps = [["smooth", "--", f"{name}.parquet", f"{name} s.parquet"],
             ["qc", "--", f"{name}.parquet", f"{name} q.parquet"],
             ["stats", "--", f"{name} s.parquet", f"{name} st.json"],
             ["render", "--", f"{name} s.parquet", f"{name} r"],
             ["plot", "tracks", "--", f"{name}.parquet", f"{name} s.parquet", f"{name} t.png"],
             ["smooth", "--", f"{name}.parquet", f"{name} s.parquet"]]  # a rerun replaces its own file
    for argv in steps:
        assert main(argv) == 0, argv
    assert [recorded_stage(ws / f"{name} {n}") for n in ("s.parquet", "q.parquet", "st.json", "t.png")] == \
        ["smooth", "qc", "stats", "plot"]
    assert len(list((ws / f"{name} r").glob("*.png"))) == len(list((ws / "render").glob("*.png")))


@pytest.mark.slow
def test_the_stages_after_extract_take_a_name_that_is_not_utf8(ws):
    """Frames, stick figures, runs, plates and videos in folders whose names are not UTF-8 (OpenCV's own file
    functions crash on them): training with its sample grids, the plate, transfer with its side-by-side video."""
    odd = os.fsdecode(b"\xe9t\xe9 %d #1:")
    shutil.copytree(ws / "frames", ws / f"{odd} frames")
    shutil.copytree(ws / "render", ws / f"{odd} render")
    clip = ["--clip", f"{odd} frames", f"{odd} render", "kp.parquet"]
    steps = [["train", f"{odd} run", *clip, *TINY, "--max-steps", "2", "--sample-every", "1", "--workers", "0"],
             ["plate", f"{odd} frames", "kp.parquet", f"{odd} plate"],
             ["transfer", "kp.parquet", f"{odd} render", f"{odd} frames", f"{odd}.mp4", "--generator",
              f"{odd} run/generator.pt", "--side-by-side", f"{odd} side.mp4", "--device", "cpu", "--no-audio"]]
    for argv in steps:
        code, err = _run_edn(argv, ws)
        assert code == 0, err[-2000:]
    assert list((ws / f"{odd} run" / "samples").glob("*.png")) and (ws / f"{odd} plate" / "plate.png").is_file()
    assert (ws / f"{odd}.mp4").is_file() and (ws / f"{odd} side.mp4").is_file()


def _sheet_workdir(root: Path, clip: Path, **config_overrides) -> tuple[Path, list[str]]:
    """A workflow folder whose sheet names videos in folders and files of odd names: a comment line, `#`,
    `%`, `:`, spaces, a leading `-`, an absolute path, rows ending in a tab. Returns the sheet's paths."""
    folder = root / "-my clips #2"
    folder.mkdir(parents=True)
    paths = ["-my clips #2/take:1 100%d #3.mp4", f"{folder}/café %s.mp4"]
    for path in paths:
        shutil.copy(clip, root / path)
    # the source's poses come from an OpenPose JSON folder whose name starts with "-"
    (root / "videos.tsv").write_text(
        "name\tpath\trole\tsubject\tcrop\trotation\tfps\topenpose_json\n"
        "# a comment: a whole line starting with #\n"
        f"clip_target\t{paths[0]}\ttarget\tsubj\t\t\t\t\t\n"
        f"clip_source\t{paths[1]}\tsource\t\t0,64,288,448\t\t30\t-json #1\t\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "videos.tsv"
    config["extract"]["height"] = 128
    for key, value in config_overrides.items():
        config[key].update(value)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root, paths


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--cores", "2", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=600)


def _commands(dry_run_output: bytes) -> list[list[str]]:
    """The `edn` argument lists of a dry run's printed shell commands (snakemake -n -p), each parsed by `edn`'s
    parser (which exits on one it cannot read), all with their positionals after `--`."""
    found = []
    parser = build_parser()
    for line in dry_run_output.decode("utf-8", "surrogateescape").splitlines():
        if "python -m pipeline.cli " in line:
            words = shlex.split(line[line.index("python -m pipeline.cli "):])[3:]
            words = words[:words.index(">")]
            assert "--" in words, words
            found.append((words[0], parser.parse_args(words)))
    return found


@pytest.mark.slow
def test_every_rule_hands_paths_to_edn_as_data(tmp_path, clip_path):
    """Every rule's command parses with its positionals after `--`, and the sheet's paths arrive as written."""
    workdir, paths = _sheet_workdir(tmp_path, clip_path)
    done = _snakemake(workdir, "-n", "-p")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    commands = _commands(done.stdout + done.stderr)
    assert {"extract", "detect", "qc", "smooth", "stats", "normalize", "render", "train", "train-face", "transfer",
            "evaluate", "plot", "plate"} <= {name for name, _ in commands}
    assert sorted(str(args.video) for name, args in commands if name == "extract") == sorted(paths)
    assert sorted(str(args.json_dir) for name, args in commands if name == "detect") == ["-json #1", "None"]


@pytest.mark.parametrize("procs", [["--cpu-procs", "1"], ["--cpu-procs", "2"]], ids=["one_process", "torchrun"])
def test_the_launcher_keeps_the_training_paths_after_dash_dash(procs):
    """The training rule's launcher adds --device cpu (CPU processes under torchrun) among the options, not
    among the paths after `--`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run([sys.executable, "-m", "pipeline.gan.launch", *procs, "--dry-run", "--", "edn", "train",
                           "--clip", "f", "r", "k.parquet", "--", "-run #1"], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 0, done.stderr
    words = shlex.split(done.stdout.strip().splitlines()[-1])
    args = build_parser().parse_args(words[words.index("train"):])
    assert args.out_dir == Path("-run #1") and args.device == ("cpu" if procs[-1] == "2" else "auto")


@pytest.mark.slow
def test_a_sheet_of_odd_names_runs(tmp_path, clip_path):
    """Extraction runs on them; then the chunked detection's commands (known once the frames are) parse too."""
    workdir, _ = _sheet_workdir(tmp_path, clip_path, detect={"chunk_frames": 10})
    done = _snakemake(workdir, "results/frames/clip_target", "results/frames/clip_source")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    for name in ("clip_target", "clip_source"):
        # 24 frames at 60 fps; the source's row asks for 30
        assert len(list((workdir / "results" / "frames" / name).glob("*.jpg"))) >= 10
    done = _snakemake(workdir, "-n", "-p", "results/keypoints/clip_target/raw.parquet")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert {"detect", "gather-keypoints"} <= {name for name, _ in _commands(done.stdout + done.stderr)}


@pytest.mark.slow
@pytest.mark.parametrize("edit, words", [
    ((b"#1\t\n", b"#1\t\tstray\n"), b"videos.tsv: row 4 has 10 fields, the header names 8 columns"),
    ((b"caf\xc3\xa9", b"caf\xe9"), b"videos.tsv: row 4 (clip_source): path '"),
], ids=["field_past_the_header", "path_not_utf8"])
def test_sheet_rows_the_workflow_cannot_take_are_named(tmp_path, clip_path, edit, words):
    workdir, paths = _sheet_workdir(tmp_path, clip_path)
    sheet = workdir / "videos.tsv"
    sheet.write_bytes(sheet.read_bytes().replace(*edit))
    done = _snakemake(workdir, "-n")
    assert done.returncode != 0 and words in done.stdout + done.stderr, done.stderr[-2000:]
    assert b"Traceback" not in done.stdout + done.stderr


# ----------------------------------------------------------------------------- outputs

@pytest.fixture
def ws(tmp_path, monkeypatch, synthetic_clip, clip_path) -> Path:
    """frames/, render/ and kp.parquet (a clip), xframes/ (an extract folder), in the working directory."""
    frames, render, kp = synthetic_clip
    shutil.copytree(frames, tmp_path / "frames")
    shutil.copytree(render, tmp_path / "render")
    shutil.copy(kp, tmp_path / "kp.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["extract", str(clip_path), "xframes", "--height", "64", "--max-frames", "3"]) == 0
    return tmp_path


def _special(ws: Path, kind: str, name: str) -> Path:
    path = ws / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    else:  # a link to a device
        path.symlink_to("/dev/null")
    return path


CLIP = ["--clip", "frames", "render", "kp.parquet"]
# (id, kind, name made special, argv, words of the error)
SPECIAL_OUTPUTS = [
    ("smooth_onto_fifo", "fifo", "s.parquet", ["smooth", "kp.parquet", "s.parquet"], "is a FIFO"),
    ("stats_onto_fifo", "fifo", "s.json", ["stats", "kp.parquet", "s.json"], "is a FIFO"),
    ("render_onto_fifo", "fifo", "r", ["render", "kp.parquet", "r"], "is a FIFO"),
    ("extract_onto_socket", "socket", "x", ["extract", "clip.mp4", "x"], "is a socket"),
    ("qc_onto_device", "device", "q.parquet", ["qc", "kp.parquet", "q.parquet"], "is a character device"),
    ("plot_onto_fifo", "fifo", "t.png", ["plot", "tracks", "kp.parquet", "kp.parquet", "t.png"], "is a FIFO"),
]


@pytest.mark.parametrize("kind, name, argv, words", [c[1:] for c in SPECIAL_OUTPUTS],
                         ids=[c[0] for c in SPECIAL_OUTPUTS])
def test_outputs_that_are_not_plain_files_are_refused_at_once(ws, clip_path, kind, name, argv, words):
    shutil.copy(clip_path, ws / "clip.mp4")
    path = _special(ws, kind, name)
    code, err = _run_edn(argv, ws)
    assert code == 2 and f"{name}: {words}" in err and "Traceback" not in err, err
    assert path.is_symlink() or not path.is_file()  # left as it was


def test_a_fifo_inside_a_run_folder_is_refused(ws):
    (ws / "run").mkdir()
    os.mkfifo(ws / "run" / "checkpoint.pt")
    code, err = _run_edn(["train", "run", *CLIP, *TINY, "--max-steps", "1"], ws)
    assert code == 2 and "run/checkpoint.pt: is a FIFO" in err and "Traceback" not in err, err


# (id, argv, path named) of outputs nested anywhere inside a folder that extract or render owns
NESTED = [
    ("render_inside_extract", ["render", "kp.parquet", "xframes/r"], "xframes/r"),
    ("render_deep_inside_extract", ["render", "kp.parquet", "xframes/a/b/r"], "xframes/a/b/r"),
    ("train_inside_extract", ["train", "xframes/run", *CLIP, *TINY, "--max-steps", "1"], "xframes/run"),
    ("smooth_deep_inside_extract", ["smooth", "kp.parquet", "xframes/sub/s.parquet"], "xframes/sub/s.parquet"),
    ("extract_inside_render", ["extract", "clip.mp4", "render/x"], "render/x"),
    ("plate_inside_render", ["plate", "frames", "kp.parquet", "render/p"], "render/p"),
    ("through_a_link", ["smooth", "kp.parquet", "link/sub/s.parquet"], "link/sub/s.parquet"),
]


@pytest.mark.parametrize("argv, named", [c[1:] for c in NESTED], ids=[c[0] for c in NESTED])
def test_outputs_nested_inside_an_owned_folder_are_refused(ws, capsys, clip_path, argv, named):
    import hashlib

    shutil.copy(clip_path, ws / "clip.mp4")
    (ws / "link").symlink_to(ws / "xframes")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in ws.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{named}: lies inside" in err and "the output folder of `edn" in err, err
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in ws.rglob("*") if p.is_file()} == before
    # the owner still owns its folder
    assert main(["extract", "clip.mp4", "xframes", "--height", "64", "--max-frames", "2"]) == 0


# ----------------------------------------------------------------------------- ffmpeg's error line

def test_ffmpeg_s_first_error_line_is_the_cause(tmp_path):
    """On a real ffmpeg log: the first error-level line, not the closing summary."""
    from pipeline.footage.media import FFMPEG_LOG, ffmpeg_cause, ffmpeg_exe, ffmpeg_file

    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", FFMPEG_LOG, "-f", "lavfi", "-i",
                           "testsrc=size=64x64:rate=5", "-t", "1", "-c:v", "no_such_codec",
                           ffmpeg_file(tmp_path / "o.mp4")], capture_output=True, text=True)
    assert done.returncode != 0
    cause = ffmpeg_cause(done.stderr)
    assert "no_such_codec" in cause and "[error]" not in cause, done.stderr
    log = ("[info] Stream mapping:\n[vost#0:0 @ 0x1] [error] Error submitting a packet to the muxer: No space left "
           "on device\n[out#0 @ 0x2] [error] Error muxing a packet\n[info] Conversion failed!\n")
    assert ffmpeg_cause(log) == "No space left on device"
    assert ffmpeg_cause("[in#0 @ 0x3] [error] Error opening input: Invalid data found when processing input\n"
                        "[fatal] Error opening input files: Invalid data found\n") == \
        "Error opening input: Invalid data found when processing input"


def test_extract_shows_ffmpeg_s_error(tmp_path, clip_path, capsys, monkeypatch):
    """A cause only ffmpeg knows (here an output it cannot open) reaches the message, in one line."""
    from pipeline.footage import extract

    real = extract.ffmpeg_sequence
    # ffmpeg cannot open an output in a folder that does not exist: its own line says so
    monkeypatch.setattr(extract, "ffmpeg_sequence", lambda folder, name: real(folder / "gone", name))
    assert main(["extract", str(clip_path), str(tmp_path / "out"), "--height", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ffmpeg failed to extract frames: Could not open file" in err and "gone/000000.jpg" in err, err
    assert len(err.splitlines()) == 1 and "Conversion failed" not in err


# ----------------------------------------------------------------------------- full disks

@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root only; skipped where it cannot be mounted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` but for about ``leave`` bytes."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_extract_on_a_full_disk_names_it(small_disk, clip_path, capsys):
    _fill(small_disk, 64 << 10)
    assert main(["extract", str(clip_path), str(small_disk / "frames"), "--format", "png"]) == 2
    err = capsys.readouterr().err
    assert f"{small_disk / 'frames'}: no space left on device" in err and "Conversion failed" not in err, err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # nothing half-written left


def test_keypoints_on_a_full_disk_names_the_file(small_disk, ws, capsys):
    _fill(small_disk, 4 << 10)
    assert main(["smooth", "kp.parquet", str(small_disk / "s.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"{small_disk / 's.parquet'}: no space left on device" in err, err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_checkpoint_on_a_full_disk_keeps_the_last_good_one(small_disk):
    import torch

    from pipeline.gan.checkpoint import load_checkpoint, save_checkpoint

    path = small_disk / "checkpoint.pt"
    save_checkpoint(path, {"stage": "train", "step": 1, "weights": torch.ones(1000)})
    _fill(small_disk, 256 << 10)
    with pytest.raises(OSError, match=f"{path}: no space left on device") as info:  # torch says "unexpected pos"
        save_checkpoint(path, {"stage": "train", "step": 2, "weights": torch.ones(500_000)})
    assert info.value.errno == errno.ENOSPC
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(1000))


def test_a_video_on_a_full_disk_names_it(small_disk):
    import numpy as np

    from pipeline.footage.video import write_video

    _fill(small_disk, 32 << 10)
    noise = np.random.default_rng(0).integers(0, 255, (30, 256, 256, 3), dtype=np.uint8)
    with pytest.raises(OSError, match=f"{small_disk / 'o.mp4'}: no space left on device"):
        write_video(iter(noise), small_disk / "o.mp4", 30.0, crf=0)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_full_disk_reported_by_the_writer_is_named(ws, capsys, monkeypatch):
    """Injected (runs anywhere): Parquet's ENOSPC, torch's wordless failure on a disk with no room left."""
    import pyarrow.parquet as pq
    import torch

    from pipeline import provenance
    from pipeline.gan.checkpoint import load_checkpoint, save_checkpoint

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pq, "write_table", no_room)
    assert main(["smooth", "kp.parquet", "s.parquet"]) == 2
    err = capsys.readouterr().err
    assert "s.parquet: no space left on device" in err and not (ws / "s.parquet").exists()

    save_checkpoint(ws / "checkpoint.pt", {"stage": "train", "step": 1})
    full = shutil.disk_usage(ws)._replace(free=0)
    monkeypatch.setattr(provenance.shutil, "disk_usage", lambda path: full)

    def torch_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", torch_full)
    with pytest.raises(OSError, match="checkpoint.pt: no space left on device"):
        save_checkpoint(ws / "checkpoint.pt", {"stage": "train", "step": 2})
    assert load_checkpoint(ws / "checkpoint.pt")["step"] == 1


def test_other_failures_are_not_taken_for_a_full_disk(tmp_path):
    from pipeline.provenance import atomic_path

    with pytest.raises(ValueError, match="bad value"):
        with atomic_path(tmp_path / "x.json"):
            raise ValueError("bad value")
    with pytest.raises(RuntimeError, match="unrelated"):
        with atomic_path(tmp_path / "x.json"):
            raise RuntimeError("unrelated")


# ----------------------------------------------------------------------------- Ctrl-C

def _interrupt(argv: list[str], cwd: Path, ready, stop_child: str | None = None) -> tuple[str, list[int]]:
    """Start ``edn argv``; once ``ready(children)`` holds, send it SIGINT (Ctrl-C), after stopping (SIGSTOP)
    the child whose command line holds ``stop_child``; return its stderr and the children it had, after
    checking the exit status 130."""
    # A shell without job control starts background commands with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: the command gets Ctrl-C's default, as in a terminal.
    proc = _edn(argv, cwd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline, children = time.monotonic() + 120, []
        while time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            if ready(children):
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"exited before it could be interrupted: {proc.communicate()[1][-2000:]}"
        for pid, cmd in children:
            if stop_child and stop_child in cmd:
                os.kill(pid, signal.SIGSTOP)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode(errors="replace")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    return err, [pid for pid, _ in children]


def _children_left(pids: list[int]) -> list[str]:
    """The command lines of those of ``pids`` still alive (for failure messages)."""
    left = []
    for pid in pids:
        if _alive(pid):
            try:
                left.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return left


def _gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 5
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not any(map(_alive, pids))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_ctrl_c_ends_extract_in_one_line(tmp_path):
    from pipeline.footage.media import ffmpeg_exe

    video = tmp_path / "long.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
                    "-t", "20", "-c:v", "mpeg4", str(video)], check=True)
    err, children = _interrupt(["extract", str(video), "frames", "--format", "png"], tmp_path,
                               lambda kids: any("%06d" in cmd for _, cmd in kids))
    assert err.strip().splitlines()[-1] == "edn extract: interrupted; no partial output was left, rerun to redo it"
    assert children and _gone(children), "ffmpeg outlived the interrupted extract"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def test_a_data_worker_keeps_the_trainer_hanging_up_out_of_the_terminal(capsys):
    # Multiprocessing's descriptor-sharing server in a data worker prints through sys.excepthook when the
    # trainer, stopped by Ctrl-C, hangs up mid-handover ("Connection reset by peer"): that goes to the
    # debug log. Other errors are printed as ever.
    from pipeline.gan.engine import _trainer_hung_up

    for error in (ConnectionResetError(104, "Connection reset by peer"), ValueError("bad batch")):
        try:
            raise error
        except Exception:
            _trainer_hung_up(*sys.exc_info())
        printed = capsys.readouterr().err
        assert ("bad batch" in printed) == isinstance(error, ValueError) and "Connection reset" not in printed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_ctrl_c_ends_training_in_one_line_and_it_resumes(ws):
    def running(_kids) -> bool:
        return (ws / "run" / "losses.csv").is_file() and len((ws / "run" / "losses.csv").read_text().splitlines()) > 3

    argv = ["train", "run", *CLIP, *TINY, "--max-steps", "100000", "--checkpoint-every", "2", "--workers", "1"]
    err, children = _interrupt(argv, ws, running)
    # Each message carries the command's stderr: a failure here says what the command printed last.
    assert err.strip().splitlines()[-1] == "edn train: interrupted; rerun to resume", err[-4000:]
    assert _gone(children), f"a data worker outlived the interrupted training: {_children_left(children)}\n{err[-4000:]}"
    from pipeline.gan.checkpoint import load_checkpoint

    logged = len((ws / "run" / "losses.csv").read_text().splitlines()) - 1
    assert (ws / "run" / "checkpoint.pt").is_file(), f"no checkpoint after {logged} steps logged\n{err[-4000:]}"
    assert load_checkpoint(ws / "run" / "checkpoint.pt")["step"] >= 2  # the last good checkpoint loads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_ctrl_c_ends_transfer_in_one_line(ws):
    from pipeline.gan.checkpoint import save_model
    from pipeline.gan.models.generator import build_generator, default_generator_config
    from pipeline.provenance import provenance

    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=64, height=128)
    save_model(ws / "g.pt", build_generator(config), config, step=0, provenance=provenance("train", {}))
    argv = ["transfer", "kp.parquet", "render", "frames", "o.mp4", "--generator", "g.pt", "--device", "cpu",
            "--precision", "fp32", "--no-audio"]
    # the encoder stopped first, so that the short clip cannot be finished before the interrupt lands
    err, children = _interrupt(argv, ws, lambda kids: any("libx264" in cmd for _, cmd in kids), stop_child="libx264")
    assert err.strip().splitlines()[-1] == "edn transfer: interrupted; no partial output was left, rerun to redo it"
    assert children and _gone(children), "the encoder outlived the interrupted transfer"
    assert not (ws / "o.mp4").exists()
