"""A slip of the command line never destroys a file; malformed inputs are named; children end.

The cases are tables: each runs ``edn`` in a workspace of real stage outputs and checks the exit
code, that the message names the path, and that no file in the workspace changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]


def _tiny_models(root: Path) -> None:
    """g.pt (pose generator), face.pt (face generator), checkpoint.pt, as the training stages write them."""
    from pipeline.gan.checkpoint import save_checkpoint, save_model
    from pipeline.gan.models.face import build_face_generator, default_face_config
    from pipeline.gan.models.generator import build_generator, default_generator_config
    from pipeline.provenance import provenance

    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=64, height=128)
    save_model(root / "g.pt", build_generator(config), config, step=0, provenance=provenance("train", {}))
    face = default_face_config(ngf=4, n_downsample=2, n_blocks=2, box_size=32, width=64, height=128)
    save_model(root / "face.pt", build_face_generator(face), face, step=0, provenance=provenance("train-face", {}))
    save_checkpoint(root / "checkpoint.pt", {"stage": "train", "step": 0, "models": {}, "optimizers": {}})


@pytest.fixture(scope="module")
def workspace_template(tmp_path_factory, synthetic_clip, clip_path) -> Path:
    """frames/, render/, kp.parquet and the real outputs of extract (xframes/), smooth, qc, stats;
    models; foreign files."""
    root = tmp_path_factory.mktemp("slips") / "ws"
    root.mkdir()
    frames, render, kp = synthetic_clip
    shutil.copytree(frames, root / "frames")
    shutil.copytree(render, root / "render")
    shutil.copy(kp, root / "kp.parquet")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["smooth", "kp.parquet", "smooth.parquet"]) == 0
        assert main(["qc", "kp.parquet", "qc.parquet"]) == 0
        assert main(["stats", "smooth.parquet", "stats.json"]) == 0
        assert main(["extract", str(clip_path), "xframes", "--height", "64", "--max-frames", "3"]) == 0
    finally:
        os.chdir(cwd)
    _tiny_models(root)
    (root / "notes.json").write_text('{"mine": true}\n')
    (root / "somedir").mkdir()
    (root / "somedir" / "keep.txt").write_text("mine")
    return root


@pytest.fixture
def ws(tmp_path, workspace_template, monkeypatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(workspace_template, root)
    monkeypatch.chdir(root)
    return root


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _setup(ws: Path, name: str) -> None:
    """Extra files some cases need beyond the workspace."""
    if name == "hardlink":
        os.link(ws / "kp.parquet", ws / "hl.parquet")
    elif name == "foreign_plate":
        (ws / "pdir").mkdir()
        (ws / "pdir" / "plate.png").write_bytes(b"my photo")
    elif name == "foreign_run":
        (ws / "run").mkdir()
        shutil.copy(ws / "g.pt", ws / "run" / "generator.pt")
        (ws / "run" / "losses.csv").write_text("step,G\n1,0.5\n")
    elif name == "render_dir_entry":
        assert main(["render", "kp.parquet", "rdir"]) == 0
        (ws / "rdir" / "000003.png").unlink()
        (ws / "rdir" / "000003.png").mkdir()
        (ws / "rdir" / "000003.png" / "keep.txt").write_text("mine")
    elif name == "foreign_demo":
        (ws / "videos" / "Demo_SinglePerson").mkdir(parents=True)
        (ws / "videos" / "Demo_SinglePerson" / "cam01.mp4").write_bytes(b"my video")
    elif name == "linked_output":
        (ws / "link.parquet").symlink_to(ws / "kp.parquet")


CLIP = ["--clip", "frames", "render", "kp.parquet"]
TRANSFER = ["transfer", "kp.parquet", "render", "frames"]  # render/ holds kp.parquet drawn: one chain

# (id, setup, argv, path the message must name, words it must hold)
REFUSED = [
    ("smooth_onto_input", None, ["smooth", "kp.parquet", "kp.parquet"], "kp.parquet", "is the input"),
    ("qc_onto_input", None, ["qc", "kp.parquet", "kp.parquet"], "kp.parquet", "is the input"),
    ("stats_onto_input", None, ["stats", "stats.json", "stats.json"], "stats.json", "is the input"),
    ("normalize_onto_stats", None, ["normalize", "smooth.parquet", "stats.json", "stats.json", "stats.json"],
     "stats.json", "is the input"),
    ("normalize_onto_source", None, ["normalize", "smooth.parquet", "stats.json", "stats.json", "smooth.parquet"],
     "smooth.parquet", "is the input"),
    ("gather_onto_chunk", None, ["gather-keypoints", "frames", "kp.parquet", "kp.parquet", "smooth.parquet"],
     "kp.parquet", "is the input"),
    ("hardlinked_input", "hardlink", ["smooth", "kp.parquet", "hl.parquet"], "hl.parquet", "is the input"),
    ("symlinked_input", "linked_output", ["smooth", "kp.parquet", "link.parquet"], "link.parquet", "is the input"),
    ("detect_onto_a_frame", None, ["detect", "frames", "frames/000000.jpg"], "frames/000000.jpg",
     "inside the input folder"),
    ("detect_onto_stats", None, ["detect", "frames", "stats.json"], "stats.json", "end in .parquet"),
    ("detect_into_frames", None, ["detect", "frames", "frames/kp.parquet"], "frames/kp.parquet",
     "inside the input folder"),
    ("transfer_onto_generator", None, [*TRANSFER, "g.pt", "--generator", "g.pt"], "g.pt", "is the input"),
    ("transfer_onto_a_model", None, [*TRANSFER, "face.pt", "--generator", "g.pt"], "face.pt", "end in .mp4"),
    ("transfer_record_onto_generator", None, [*TRANSFER, "o.mp4", "--generator", "g.pt", "--record", "g.pt"],
     "g.pt", "is the input"),
    ("transfer_side_by_side_onto_face", None,
     [*TRANSFER, "o.mp4", "--generator", "g.pt", "--face", "face.pt", "--side-by-side", "face.pt"],
     "face.pt", "is the input"),
    ("transfer_twice_the_same_output", None, [*TRANSFER, "o.mp4", "--generator", "g.pt", "--side-by-side", "o.mp4"],
     "o.mp4", "given twice"),
    ("train_model_onto_keypoints", None, ["train", "run", *CLIP, "--model-out", "kp.parquet"], "kp.parquet",
     "is the input"),
    ("train_model_out_not_a_model", None, ["train", "run", *CLIP, "--model-out", "notes.json"], "notes.json",
     "end in .pt"),
    ("train_into_foreign_run", "foreign_run", ["train", "run", *CLIP, "--max-steps", "1"], "run",
     "losses.csv"),
    ("train_into_frames", None, ["train", "frames", *CLIP], "frames", "is the input"),
    ("train_under_frames", None, ["train", "frames/run", *CLIP], "frames/run", "inside the input folder"),
    ("stats_forgot_out", None, ["stats", "kp.parquet", "smooth.parquet"], "smooth.parquet",
     "did you forget the output"),
    ("stats_onto_foreign_json", None, ["stats", "kp.parquet", "notes.json"], "notes.json", "--force"),
    ("smooth_onto_qc_file", None, ["smooth", "kp.parquet", "qc.parquet"], "qc.parquet", "written by `edn qc`"),
    ("smooth_onto_folder", None, ["smooth", "kp.parquet", "somedir"], "somedir", "is a folder"),
    ("smooth_under_a_file", None, ["smooth", "kp.parquet", "notes.json/s.parquet"], "notes.json", "is a file"),
    ("plate_onto_file", None, ["plate", "frames", "smooth.parquet", "stats.json"], "stats.json", "not a folder"),
    ("plate_into_frames", None, ["plate", "frames", "smooth.parquet", "frames"], "frames", "is the input"),
    ("plate_over_foreign_png", "foreign_plate", ["plate", "frames", "smooth.parquet", "pdir"], "pdir", "plate.png"),
    ("render_dir_where_frame_belongs", "render_dir_entry", ["render", "kp.parquet", "rdir"], "rdir", "000003.png"),
    ("plot_onto_stats", None, ["plot", "tracks", "kp.parquet", "smooth.parquet", "stats.json"], "stats.json",
     "end in .png"),
    ("plot_onto_input", None, ["plot", "tracks", "kp.parquet", "smooth.parquet", "smooth.parquet"],
     "smooth.parquet", "is the input"),
    ("evaluate_into_frames", None, ["evaluate", "frames/ev", *CLIP, "--generator", "g.pt"], "frames/ev",
     "inside the input folder"),
    ("plate_into_a_frames_folder", None, ["plate", "frames", "smooth.parquet", "xframes"], "xframes",
     "output folder of `edn extract`"),
    ("detect_into_a_render_folder", None, ["detect", "frames", "render/kp.parquet"], "render/kp.parquet",
     "output folder of `edn render`"),
    ("train_into_a_render_folder", None, ["train", "render", "--clip", "frames", "frames", "kp.parquet"], "render",
     "output folder of `edn render`"),
    ("fetch_demo_over_foreign_videos", "foreign_demo", ["fetch-demo", "videos"], "videos", "Demo_SinglePerson"),
    ("extract_a_folder", None, ["extract", "somedir", "out"], "somedir", "is a folder, not a video"),
    ("face_model_is_a_generator", None, [*TRANSFER, "o.mp4", "--generator", "g.pt", "--face", "g.pt"], "g.pt",
     "is a generator file"),
    ("generator_is_a_checkpoint", None, [*TRANSFER, "o.mp4", "--generator", "checkpoint.pt"], "checkpoint.pt",
     "is a training checkpoint file"),
]


@pytest.mark.parametrize("setup, argv, named, words", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_slips_are_refused_and_change_nothing(ws, capsys, setup, argv, named, words):
    _setup(ws, setup)
    before = _snapshot(ws)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and words in err, err
    assert "Traceback" not in err
    assert _snapshot(ws) == before


def test_negative_max_frames_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["extract", "clip.mp4", "out", "--max-frames", "-1"])
    assert info.value.code == 2 and "must be positive" in capsys.readouterr().err


def test_force_replaces_a_file_of_another_kind_but_never_an_input(ws, capsys):
    assert main(["smooth", "kp.parquet", "qc.parquet", "--force"]) == 0
    from pipeline.provenance import recorded_stage

    assert recorded_stage(ws / "qc.parquet") == "smooth"
    before = _snapshot(ws)
    assert main(["smooth", "kp.parquet", "kp.parquet", "--force"]) == 2
    assert "is the input" in capsys.readouterr().err and _snapshot(ws) == before


def test_a_stage_replaces_its_own_outputs(ws):
    """Reruns work: each output kind is recognised by its own provenance."""
    from pipeline.provenance import recorded_stage

    for argv in (["smooth", "kp.parquet", "smooth.parquet"], ["qc", "kp.parquet", "qc.parquet"],
                 ["stats", "smooth.parquet", "stats.json"], ["plate", "frames", "smooth.parquet", "p"],
                 ["plate", "frames", "smooth.parquet", "p"],
                 ["plot", "tracks", "kp.parquet", "smooth.parquet", "t.png"],
                 ["plot", "tracks", "kp.parquet", "smooth.parquet", "t.png"]):
        assert main(argv) == 0, argv
    assert [recorded_stage(ws / n) for n in ("smooth.parquet", "qc.parquet", "stats.json", "t.png", "g.pt",
                                             "face.pt", "checkpoint.pt", "notes.json", "p/plate.json")] == \
        ["smooth", "qc", "stats", "plot", "train", "train-face", "train", None, "plate"]


def test_videos_carry_the_stage_that_wrote_them(tmp_path):
    from pipeline.footage.video import VideoEncoder, write_video
    from pipeline.provenance import recorded_stage

    frames = [np.full((16, 16, 3), i * 20, np.uint8) for i in range(3)]
    write_video(frames, tmp_path / "plain.mp4", 10.0)  # an encoder not told its stage tags nothing
    with VideoEncoder(tmp_path / "tagged.mp4", 10.0, stage="transfer") as encoder:
        for frame in frames:
            encoder.write(frame)
    assert recorded_stage(tmp_path / "plain.mp4") is None
    assert recorded_stage(tmp_path / "tagged.mp4") == "transfer"


# ----------------------------------------------------------------------------- keypoint files

def _keypoint_file(path: Path, meta: dict | None, frames, joints=None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = np.asarray(frames, dtype=np.int64)
    n = len(frames)
    joints = np.zeros(n, np.int64) if joints is None else np.asarray(joints, np.int64)
    table = pa.table({"frame": pa.array(frames), "joint": pa.array(joints),
                      "x": pa.array(np.ones(n, np.float32)), "y": pa.array(np.ones(n, np.float32)),
                      "confidence": pa.array(np.full(n, 0.5, np.float32))})
    raw = json.dumps({"width": 64, "height": 128, "fps": 30, **(meta or {})}, allow_nan=True)
    pq.write_table(table.replace_schema_metadata({b"edn": raw.encode()}), path)
    return path


# (id, metadata overrides, frame indices, joint indices, words of the error)
BAD_KEYPOINTS = [
    ("empty", {}, [], None, "no frames"),
    ("frame_beyond_six_digits", {}, [0, 10_000_000], None, "index 10000000"),
    ("frame_beyond_frame_count", {"frame_count": 8}, [0, 8], None, "'frame_count'"),
    ("frame_2_to_31", {}, [0, 2 ** 31], None, "column 'frame'"),
    ("frame_2_to_32", {}, [1, 2 ** 32], None, "column 'frame'"),
    ("joint_outside_layout", {}, [0, 0], [0, 137], "column 'joint' holds 137"),
    ("negative_joint", {}, [0, 0], [0, -1], "column 'joint' holds -1"),
    ("width_half", {"width": 0.5}, [0], None, "'width' must be a whole number"),
    ("width_1e300", {"width": 1e300}, [0], None, "'width' must be a whole number"),
    ("huge_frame", {"width": 60000, "height": 60000}, [0], None, "'width' must be a whole number"),
    ("fps_infinite", {"fps": float("inf")}, [0], None, "'fps' must be finite"),
    ("fps_huge_integer", {"fps": 10 ** 400}, [0], None, "'fps' must be finite"),
    ("height_huge_integer", {"height": 10 ** 400}, [0], None, "'height' must be a whole number"),
    ("frame_count_not_whole", {"frame_count": 2.5}, [0], None, "'frame_count' must be a whole number"),
]


@pytest.mark.parametrize("meta, frames, joints, words", [c[1:] for c in BAD_KEYPOINTS],
                         ids=[c[0] for c in BAD_KEYPOINTS])
def test_malformed_keypoint_files_are_named(tmp_path, meta, frames, joints, words):
    from pipeline.pose.keypoints import KeypointFileError, read_keypoints

    path = _keypoint_file(tmp_path / "kp.parquet", meta, frames, joints)
    with pytest.raises(KeypointFileError) as info:
        read_keypoints(path)
    assert str(path) in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("stage", ["smooth", "qc", "render"])
def test_stages_refuse_a_malformed_keypoint_file(tmp_path, capsys, stage):
    path = _keypoint_file(tmp_path / "kp.parquet", {}, [0, 10_000_000])
    out = tmp_path / ("out" if stage == "render" else "out.parquet")
    assert main([stage, str(path), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: column 'frame' holds index 10000000" in err and not out.exists()


def test_detect_records_the_frame_count():
    """Files written from a frames folder carry its frame count, the bound their indices are read against."""
    from pipeline.pose.detect import _track_meta

    assert _track_meta({"width": 64, "height": 128, "fps": 30.0, "frame_count": 8}, "mediapipe", {})[
        "frame_count"] == 8


# ----------------------------------------------------------------------------- model files

def _model_file(path: Path, source: Path, edit) -> Path:
    """``source`` edited and sealed with the checksum of its new contents: a file made that way on purpose,
    which the checks after the checksum must catch."""
    import torch

    from pipeline.gan.checkpoint import sealed

    state = torch.load(source, weights_only=True)
    edit(state)
    torch.save(sealed(state), path)
    return path


def _set(**values):
    def edit(state):
        state["config"].update(values)
    return edit


def _drop(key):
    def edit(state):
        del state["config"][key]
    return edit


def _generator_weights_in_face(state):
    import torch

    state["state_dict"] = torch.load("g.pt", weights_only=True)["state_dict"]


# (id, file edited, its edit, loader, words of the error)
BAD_MODELS = [
    ("generator_as_face", "g.pt", lambda s: None, "face", "is a generator file (made by edn train)"),
    ("face_as_generator", "face.pt", lambda s: None, "generator", "is a face generator file"),
    ("checkpoint_as_generator", "checkpoint.pt", lambda s: None, "generator", "is a training checkpoint file"),
    ("no_input_nc", "g.pt", _drop("input_nc"), "generator", "lacks 'input_nc'"),
    ("ngf_a_string", "g.pt", _set(ngf="64"), "generator", "'ngf' must be int"),
    ("unknown_norm", "g.pt", _set(norm="group"), "generator", "'norm' is 'group'"),
    ("huge_architecture", "g.pt", _set(ngf=1024, n_downsample=6), "generator", "more than the"),
    ("face_config_generator_weights", "face.pt", _generator_weights_in_face, "face", "weights do not fit"),
    ("bool_as_int", "face.pt", _set(box_size=True), "face", "'box_size' must be int"),
]


@pytest.mark.parametrize("source, edit, loader, words", [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS])
def test_model_files_of_the_wrong_kind_or_shape_are_named(ws, source, edit, loader, words):
    from pipeline.gan.models.face import load_face_generator
    from pipeline.gan.models.generator import load_generator

    path = _model_file(ws / "bad.pt", ws / source, edit)
    load = load_face_generator if loader == "face" else load_generator
    with pytest.raises(ValueError) as info:
        load(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_a_generator_given_as_checkpoint_is_named(ws):
    from pipeline.gan.checkpoint import load_checkpoint

    with pytest.raises(ValueError, match="g.pt: is a generator file"):
        load_checkpoint(ws / "g.pt")


def test_good_model_files_still_load(ws):
    from pipeline.gan.models.face import load_face_generator
    from pipeline.gan.models.generator import load_generator

    assert load_generator(ws / "g.pt")[1]["ngf"] == 4 and load_face_generator(ws / "face.pt")[1]["box_size"] == 32


# ----------------------------------------------------------------------------- child processes

def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(entry.name), cmdline))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_while_child_runs(argv: list[str], child_marker: str, cwd: Path) -> None:
    """Start ``edn argv``; when a child whose command line holds ``child_marker`` runs, stop that
    child (so it cannot finish on its own), SIGKILL the stage, and check the child is gone."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, child = time.monotonic() + 120, None
        while child is None and time.monotonic() < deadline and proc.poll() is None:
            child = next((pid for pid, cmd in _children(proc.pid) if child_marker in cmd), None)
            time.sleep(0.002)
        assert child is not None, f"no {child_marker} child seen (stage exit code {proc.poll()})"
        os.kill(child, signal.SIGSTOP)  # a stopped child outlives its parent unless the kernel kills it
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = _alive(child)
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive, f"{child_marker} child {child} outlived the killed stage"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_extract_leaves_no_ffmpeg(tmp_path):
    from pipeline.footage.media import ffmpeg_exe

    video = tmp_path / "long.mp4"  # 10 s, so extraction runs long enough to be caught
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
                    "-t", "10", "-c:v", "mpeg4", str(video)], check=True)
    _kill_while_child_runs(["extract", str(video), str(tmp_path / "frames"), "--format", "png"], "%06d", tmp_path)
    assert not (tmp_path / "frames").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_transfer_leaves_no_encoder(ws):
    _kill_while_child_runs([*TRANSFER, "o.mp4", "--generator", "g.pt", "--device", "cpu"], "libx264", ws)
    assert not (ws / "o.mp4").exists()


def test_a_run_folder_may_hold_other_runs_inputs(ws):
    """The workflow keeps the global phase's run inside the local phase's run folder: its
    generator.pt is an input of the local run, not one of the files that run writes."""
    from pipeline.cli import build_parser, stage_paths
    from pipeline.provenance import check_outputs

    (ws / "run" / "global").mkdir(parents=True)
    shutil.copy(ws / "g.pt", ws / "run" / "global" / "generator.pt")
    local = ["train", "run", *CLIP, "--local-enhancer", "--init-global"]
    check_outputs(*stage_paths(build_parser().parse_args([*local, "run/global/generator.pt"])))
    # but the run's own model file may not be the global generator it starts from
    with pytest.raises(ValueError, match="run/generator.pt: is the input"):
        check_outputs(*stage_paths(build_parser().parse_args([*local, "run/generator.pt"])))


# One command line of every command: each must be known to the output rule.
EVERY_COMMAND = {
    "fetch-demo": ["fetch-demo", "d"], "extract": ["extract", "v.mp4", "f"], "detect": ["detect", "f", "k.parquet"],
    "gather-keypoints": ["gather-keypoints", "f", "k.parquet", "c.parquet"],
    "smooth": ["smooth", "a.parquet", "b.parquet"],
    "qc": ["qc", "a.parquet", "b.parquet"], "stats": ["stats", "a.parquet", "s.json"],
    "normalize": ["normalize", "a.parquet", "s.json", "t.json", "n.parquet"], "render": ["render", "a.parquet", "r"],
    "train": ["train", "run", *CLIP], "train-face": ["train-face", "run", *CLIP, "--generator", "g.pt"],
    "plate": ["plate", "f", "a.parquet", "p"], "transfer": [*TRANSFER, "o.mp4", "--generator", "g.pt"],
    "evaluate": ["evaluate", "e", *CLIP, "--generator", "g.pt"],
    "measure-transfer": ["measure-transfer", "v.mp4", "g.json", "n.parquet", "r", "s", "--record", "o.json"],
    "coverage": ["coverage", "c.json", "--target", "t.parquet"],
    "plot": ["plot", "tracks", "a.parquet", "b.parquet", "t.png"],
}


def test_every_command_is_under_the_output_rule():
    from pipeline.cli import build_parser, stage_paths

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == set(EVERY_COMMAND) | {"doctor"}
    assert stage_paths(parser.parse_args(["doctor"])) == ("doctor", (), ())  # writes nothing
    for name, argv in EVERY_COMMAND.items():
        checked = stage_paths(parser.parse_args(argv))
        assert checked is not None and checked[0] == name and checked[2], name
    figures = next(a for a in commands["plot"]._actions if isinstance(a, argparse._SubParsersAction)).choices
    plots = {"tracks": ["a.parquet", "b.parquet", "o.png"], "qc": ["a.parquet", "b.parquet", "o.png"],
             "normalization": ["n.parquet", "s.json", "t.json", "o.png"], "bones": ["n.parquet", "t.json", "o.png"],
             "losses": ["o.png", "--run", "name", "run"], "stability": ["r.json", "o.png", "--real", "f"],
             "transfer": ["r.json", "o.png"]}
    assert set(figures) == set(plots)
    for figure, argv in plots.items():
        stage, inputs, outputs = stage_paths(parser.parse_args(["plot", figure, *argv]))
        assert [o.path for o in outputs] == [Path("o.png")] and len([i for i in inputs if i is not None]) >= 1


def test_empty_folders_snakemake_made_for_the_demo_videos_are_not_foreign(tmp_path):
    # Snakemake creates its outputs' folders before running fetch_demo: resources/demo/Demo_*/ are
    # empty then, and refusing them broke `make demo` from a fresh clone.
    from pipeline.cli import build_parser, stage_paths
    from pipeline.provenance import check_outputs

    for name in ("Demo_SinglePerson", "Demo_MultiPerson"):
        (tmp_path / "demo" / name).mkdir(parents=True)
    stage, inputs, outputs = stage_paths(build_parser().parse_args(["fetch-demo", str(tmp_path / "demo")]))
    check_outputs(stage, inputs, outputs)  # nothing to lose: allowed
    (tmp_path / "demo" / "Demo_SinglePerson" / "cam01.mp4").write_bytes(b"my video")
    with pytest.raises(ValueError, match="holds Demo_SinglePerson"):
        check_outputs(stage, inputs, outputs)
