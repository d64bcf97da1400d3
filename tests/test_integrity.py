"""Pieces that are not one chain are refused; damaged models and checkpoints are refused.

Frames, stick figures and keypoints must come from one video (``pipeline.pose.chain``); a model
carries its own training record, whose held-out frames evaluation uses; every model and
checkpoint carries a checksum of its contents, checked on every load (``pipeline.gan.checkpoint``).
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.gan.train import TrainConfig, train

TINY = dict(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0, vgg_loss=False,
            sample_every=0, deterministic=True, max_steps=2, device="cpu", precision="fp32")
TRAIN_FLAGS = ["--width", "64", "--height", "128", "--ngf", "4", "--n-downsample", "2", "--n-blocks", "1", "--ndf", "4",
               "--num-d", "1", "--workers", "0", "--no-vgg-loss", "--sample-every", "0", "--device", "cpu",
               "--precision", "fp32"]


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """Clips a and b (same motion, other videos: equal keypoint values, other records), c (another
    motion: its face tilts), and a run trained on a for 2 steps (holdout 0.2: frames 8 and 9)."""
    from conftest import make_synthetic_clip

    root = tmp_path_factory.mktemp("integrity")
    clips = {"a": make_synthetic_clip(root / "a", n_frames=10), "b": make_synthetic_clip(root / "b", n_frames=10),
             "c": make_synthetic_clip(root / "c", n_frames=10, face_pattern=True)}
    train(root / "run", [clips["a"]], TrainConfig(**TINY))
    return {"root": root, **clips, "run": root / "run"}


def flip_tensor_byte(path: Path) -> None:
    """Change one byte inside the largest tensor's storage of a torch zip file: the zip still opens and
    torch loads it (it does not check the CRC); the weight now holds another value."""
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(member.header_offset)
        name_length, extra_length = struct.unpack("<HH", f.read(30)[26:30])
        where = member.header_offset + 30 + name_length + extra_length + member.file_size // 8 * 4 + 3
        f.seek(where)
        byte = f.read(1)[0]
        f.seek(where)
        f.write(bytes([byte ^ 0x40]))  # the high byte of a float32: its exponent


def _refused(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


# ------------------------------------------------------------------------------------------- chain

def test_render_records_the_keypoints_it_drew(pieces):
    from pipeline.pose.chain import keypoints_fingerprint
    from pipeline.pose.keypoints import read_keypoints

    frames, render, kp = pieces["a"]
    drawn = json.loads((render / "meta.json").read_text())["keypoints"]
    assert drawn == {"path": str(kp), "stage": "synthetic-keypoints",
                     "fingerprint": keypoints_fingerprint(read_keypoints(kp))}
    assert keypoints_fingerprint(read_keypoints(pieces["c"][2])) != drawn["fingerprint"]


def test_train_refuses_stick_figures_of_other_keypoints(pieces, capsys, tmp_path):
    frames, _, kp = pieces["a"]
    render_c = pieces["c"][1]
    _refused(capsys, ["train", str(tmp_path / "run"), "--clip", str(frames), str(render_c), str(kp), *TRAIN_FLAGS],
             f"{render_c}: stick figures drawn from other keypoints than {kp}", str(pieces["c"][2]))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_train_refuses_keypoints_of_other_frames(pieces, capsys, tmp_path):
    """b's keypoints have a's values, but were made from b's frames: refused all the same."""
    frames_a = pieces["a"][0]
    _, render_b, kp_b = pieces["b"]
    _refused(capsys, ["train", str(tmp_path / "run"), "--clip", str(frames_a), str(render_b), str(kp_b),
                      *TRAIN_FLAGS], f"{kp_b}: keypoints detected on other frames than {frames_a}")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_train_face_refuses_other_pieces(pieces, capsys, tmp_path):
    frames, _, kp = pieces["a"]
    _refused(capsys, ["train-face", str(tmp_path / "face"), "--generator", str(pieces["run"] / "generator.pt"),
                      "--clip", str(frames), str(pieces["c"][1]), str(kp), "--no-vgg-loss", "--workers", "0",
                      "--device", "cpu", "--precision", "fp32"], "stick figures drawn from other keypoints")


def test_transfer_refuses_pieces_of_other_clips_and_takes_the_workflows_chain(pieces, capsys, tmp_path):
    generator = str(pieces["run"] / "generator.pt")
    frames_a, render_a, kp_a = pieces["a"]
    out = tmp_path / "o.mp4"
    common = ["--generator", generator, "--device", "cpu", "--precision", "fp32", "--no-audio"]
    _refused(capsys, ["transfer", str(kp_a), str(pieces["c"][1]), str(frames_a), str(out), *common],
             f"{pieces['c'][1]}: stick figures drawn from other keypoints than {kp_a}")
    # keypoints and their figures of clip b, source frames (and so the soundtrack) of clip a
    _refused(capsys, ["transfer", str(pieces["b"][2]), str(pieces["b"][1]), str(frames_a), str(out), *common],
             f"{pieces['b'][2]}: keypoints detected on other frames than {frames_a}")
    assert not out.exists()
    # The workflow's chain: source keypoints -> smooth -> normalize -> render -> transfer with the source frames.
    s, stats, norm, figures = (tmp_path / n for n in ("s.parquet", "stats.json", "n.parquet", "figures"))
    assert main(["smooth", str(kp_a), str(s)]) == 0
    assert main(["stats", str(s), str(stats)]) == 0
    assert main(["normalize", str(s), str(stats), str(stats), str(norm)]) == 0
    assert main(["render", str(norm), str(figures)]) == 0
    assert main(["transfer", str(norm), str(figures), str(frames_a), str(out), *common]) == 0 and out.is_file()


def test_evaluate_takes_the_held_out_frames_from_the_model_itself(pieces, capsys, tmp_path):
    """A model copied beside another run's record (holdout 0.5 of the same clip: frames 5-9, three of
    which the model trained on) is evaluated on its own held-out frames, 8 and 9."""
    from pipeline.evaluation.evaluate import held_out_frames

    other = tmp_path / "other"
    train(other, [pieces["a"]], TrainConfig(**{**TINY, "max_steps": 0}, holdout=0.5))
    assert json.loads((other / "run.json").read_text())["clips"][0]["held_out_frames"] == [5, 6, 7, 8, 9]
    shutil.copy(pieces["run"] / "generator.pt", other / "generator.pt")
    assert held_out_frames(other / "generator.pt", [pieces["a"]])[0] == [[8, 9]]
    state = torch.load(other / "generator.pt", weights_only=True)
    assert state["training"]["clips"][0]["held_out_frames"] == [8, 9]
    assert state["training"]["precision"] == "fp32" and state["provenance"]["params"]["holdout"] == 0.2
    # a clip the model was not trained on (another motion, one chain of its own) is refused
    _refused(capsys, ["evaluate", str(tmp_path / "ev"), "--clip", *map(str, pieces["c"]), "--generator",
                      str(other / "generator.pt"), "--rows", "temporal", "--device", "cpu", "--precision", "fp32"],
             f"{other / 'generator.pt'}: clip 1", "is not the clip this model was trained on")
    # and pieces that are not one chain are refused before anything is scored
    frames, _, kp = pieces["a"]
    _refused(capsys, ["evaluate", str(tmp_path / "ev"), "--clip", str(frames), str(pieces["c"][1]), str(kp),
                      "--generator", str(other / "generator.pt"), "--rows", "temporal", "--device", "cpu"],
             "stick figures drawn from other keypoints")
    assert not (tmp_path / "ev").exists()


def test_a_model_without_its_training_record_is_not_evaluated(pieces, tmp_path):
    from pipeline.evaluation.evaluate import held_out_frames
    from pipeline.gan.checkpoint import sealed

    state = torch.load(pieces["run"] / "generator.pt", weights_only=True)
    del state["training"]
    torch.save(sealed(state), tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt: the model file carries no training record"):
        held_out_frames(tmp_path / "old.pt", [pieces["a"]])


def test_pieces_without_records_are_used_with_a_warning(pieces, tmp_path, caplog):
    """Frames and stick figures made by hand (no records) cannot be checked: a warning, not a refusal."""
    from pipeline.gan.data import load_clip

    frames, render, kp = (tmp_path / "frames", tmp_path / "render", pieces["a"][2])
    shutil.copytree(pieces["a"][0], frames)
    shutil.copytree(pieces["a"][1], render)
    meta = json.loads((frames / "meta.json").read_text())
    del meta["provenance"]
    (frames / "meta.json").write_text(json.dumps(meta))
    (render / "meta.json").unlink()
    with caplog.at_level(logging.WARNING):
        assert len(load_clip(frames, render, kp).indices) == 10
    assert "does not record which keypoints it drew" in caplog.text
    assert "does not record what made the frames" in caplog.text


# --------------------------------------------------------------------------------------- integrity

def test_the_checksum_covers_every_tensor_byte_and_record_in_any_order():
    from pipeline.gan.checkpoint import content_sha256

    state = {"config": {"ngf": 4, "rate": 0.5}, "state_dict": {"w": torch.arange(6, dtype=torch.float32),
                                                               "b": torch.zeros(2, dtype=torch.bfloat16)},
             "step": 3, "rng": [1, (2, 3)], "flag": True}
    digest = content_sha256(state)
    assert content_sha256(dict(reversed(list(state.items())))) == digest
    changed = {**state, "state_dict": {**state["state_dict"], "w": torch.arange(6, dtype=torch.float32) * 1.0001}}
    assert content_sha256(changed) != digest
    assert content_sha256({**state, "step": 4}) != digest
    assert content_sha256({**state, "flag": 1}) != digest  # types count, not only values
    reshaped = {**state, "state_dict": {**state["state_dict"], "w": torch.arange(6, dtype=torch.float32).view(2, 3)}}
    assert content_sha256(reshaped) != digest


def test_a_damaged_generator_is_refused_by_transfer_and_evaluate(pieces, capsys, tmp_path):
    damaged = tmp_path / "generator.pt"
    shutil.copy(pieces["run"] / "generator.pt", damaged)
    flip_tensor_byte(damaged)
    torch.load(damaged, weights_only=True)  # torch itself loads it without a word
    frames, render, kp = pieces["a"]
    _refused(capsys, ["transfer", str(kp), str(render), str(frames), str(tmp_path / "o.mp4"), "--generator",
                      str(damaged), "--device", "cpu", "--no-audio"],
             f"{damaged}: damaged generator file", "sha256")
    _refused(capsys, ["evaluate", str(tmp_path / "ev"), "--clip", str(frames), str(render), str(kp),
                      "--generator", str(damaged), "--rows", "temporal", "--device", "cpu"],
             f"{damaged}: damaged generator file")
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "ev").exists()


def test_a_damaged_face_generator_is_refused(tmp_path):
    from pipeline.gan.checkpoint import save_model
    from pipeline.gan.models.face import build_face_generator, default_face_config, load_face_generator

    config = default_face_config(ngf=4, n_downsample=2, n_blocks=2, box_size=32, width=64, height=128)
    path = tmp_path / "face.pt"
    save_model(path, build_face_generator(config), config, step=0)
    assert load_face_generator(path)[1]["box_size"] == 32
    flip_tensor_byte(path)
    with pytest.raises(ValueError, match=f"{path}: damaged face generator file"):
        load_face_generator(path)


def test_a_damaged_checkpoint_never_starts_a_resumed_run(pieces, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pieces["run"], run)
    flip_tensor_byte(run / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    frames, render, kp = pieces["a"]
    _refused(capsys, ["train", str(run), "--clip", str(frames), str(render), str(kp), *TRAIN_FLAGS,
                      "--max-steps", "3", "--deterministic"],
             f"{run / 'checkpoint.pt'}: damaged training checkpoint file", f"delete {run / 'checkpoint.pt'}")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing changed


def test_an_undamaged_checkpoint_resumes_to_the_uninterrupted_runs_losses(pieces, tmp_path):
    import csv

    run = tmp_path / "run"
    shutil.copytree(pieces["run"], run)
    record = train(run, [pieces["a"]], TrainConfig(**{**TINY, "max_steps": 3}))
    assert record["resumed_from_step"] == 2
    whole = train(tmp_path / "whole", [pieces["a"]], TrainConfig(**{**TINY, "max_steps": 3}))
    assert whole["resumed_from_step"] is None

    def rows(folder):
        with (folder / "losses.csv").open() as f:
            return list(csv.reader(f))

    assert rows(run) == rows(tmp_path / "whole")


def test_a_file_without_a_checksum_loads_with_a_warning_unless_its_zip_crc_fails(pieces, tmp_path, caplog):
    from pipeline.gan.checkpoint import CHECKSUM_KEY
    from pipeline.gan.models.generator import load_generator

    state = torch.load(pieces["run"] / "generator.pt", weights_only=True)
    del state[CHECKSUM_KEY]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with caplog.at_level(logging.WARNING):
        assert load_generator(old)[1]["ngf"] == 4
    assert f"{old}: generator file written without a content checksum" in caplog.text
    flip_tensor_byte(old)
    with pytest.raises(ValueError, match=f"{old}: damaged generator file: the zip CRC"):
        load_generator(old)
