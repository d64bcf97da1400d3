import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import doctor
from pipeline.cli import build_parser
from pipeline.evaluation import commands as evaluation_commands
from pipeline.footage import commands as footage_commands
from pipeline.gan import commands as gan_commands
from pipeline.pose import commands as pose_commands


def test_help_imports_no_heavy_library():
    # `edn --help` must answer at once: no torch, mediapipe, cv2, numpy or pandas at import.
    code = ("import sys, contextlib, io\n"
            "from pipeline.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n"
            "heavy = [m for m in ('torch', 'mediapipe', 'cv2', 'numpy', 'pandas') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_stage_has_a_subcommand():
    parser = build_parser()
    stages = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    for stage in ("fetch-demo", "extract", "detect", "smooth", "stats", "normalize", "render"):
        assert stage in stages


# The commands each module declares, and one command line of each (the output rule needs it parsed).
CLIP = ["--clip", "f", "r", "k.parquet"]
OWN_COMMANDS = {
    footage_commands: {"fetch-demo": ["d"], "extract": ["v.mp4", "f"]},
    doctor: {"doctor": []},
    pose_commands: {"detect": ["f", "k.parquet"], "gather-keypoints": ["f", "k.parquet", "c.parquet"],
                    "smooth": ["a.parquet", "b.parquet"], "qc": ["a.parquet", "b.parquet"],
                    "stats": ["a.parquet", "s.json"], "normalize": ["a.parquet", "s.json", "t.json", "n.parquet"],
                    "render": ["a.parquet", "r"]},
    gan_commands: {"train": ["run", *CLIP], "train-face": ["run", *CLIP, "--generator", "g.pt"],
                   "plate": ["f", "a.parquet", "p"],
                   "transfer": ["n.parquet", "r", "s", "o.mp4", "--generator", "g.pt"]},
    evaluation_commands: {"evaluate": ["e", *CLIP, "--generator", "g.pt"],
                          "measure-transfer": ["v.mp4", "g.json", "n.parquet", "r", "s", "--record", "o.json"],
                          "coverage": ["c.json", "--target", "t.parquet"],
                          "plot": ["tracks", "a.parquet", "b.parquet", "t.png"]},
}


def module_parser(module) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="edn")
    sub = parser.add_subparsers(dest="command", required=True)
    module.add_commands(sub)
    return parser, sub.choices


@pytest.mark.parametrize("module", OWN_COMMANDS, ids=lambda m: m.__name__)
def test_each_module_declares_exactly_its_own_commands(module):
    assert set(module_parser(module)[1]) == set(OWN_COMMANDS[module])


@pytest.mark.parametrize("module", OWN_COMMANDS, ids=lambda m: m.__name__)
def test_each_modules_stage_paths_answers_for_its_own_commands_only(module):
    full = build_parser()
    for owner, commands in OWN_COMMANDS.items():
        for name, argv in commands.items():
            checked = module.stage_paths(full.parse_args([name, *argv]))
            if owner is module:
                assert checked is not None and checked[0] == name, name
            else:
                assert checked is None, name


def test_parser_is_the_union_of_the_modules_commands():
    assert set(build_parser()._subparsers._group_actions[0].choices) == {
        name for commands in OWN_COMMANDS.values() for name in commands}


def test_every_handler_names_a_function_that_exists():
    # A handler imports its stage module only when the command runs: a module moved or renamed would
    # otherwise fail only then.
    sub = build_parser()._subparsers._group_actions[0].choices
    commands = {name: p for name, p in sub.items() if name != "plot"}
    commands.update({f"plot {name}": p for name, p in sub["plot"]._subparsers._group_actions[0].choices.items()})
    for name, parser in commands.items():
        module, function = parser._defaults["func"].target
        assert callable(getattr(importlib.import_module(module), function, None)), f"edn {name}: {module}.{function}"


def test_only_commands_that_write_take_force():
    # doctor reads the config and probes the machine: it writes nothing, so --force would promise nothing
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["doctor", "--force"])
    for commands in OWN_COMMANDS.values():
        for name, argv in commands.items():
            if name not in doctor.WRITES_NOTHING:
                assert parser.parse_args([name, *argv, "--force"]).force is True, name


REPO = Path(__file__).resolve().parents[1]
# How a run is carried out rather than what is trained: the workflow passes them from the config, and a
# hand run keeps the CLI's lighter settings.
RUN_SETTINGS = {"checkpoint_every", "checkpoint_minutes", "sample_every", "workers"}


def paper_train_config() -> dict:
    """config/config.yaml's train: section with config/paper.yaml's merged over it, as Snakemake merges them."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"]
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["train"]
    return {**base, **{k: v for k, v in paper.items() if k != "face"}, "face": {**base["face"], **paper["face"]}}


def cli_value(value):
    """An option's default as the config writes it: on/off are true/false, no file is "" (the rule passes none)."""
    return "" if value is None else {"on": True, "off": False}.get(value, value)


def test_train_defaults_are_the_papers_global_generator_and_face_gan():
    # One source of truth: edn train's defaults are config/paper.yaml's first phase (the global generator
    # at half the resolution with 2 x ngf, global_phase's schedule), edn train-face's its face GAN.
    paper = paper_train_config()
    phase1 = {**paper, "width": paper["width"] // 2, "height": paper["height"] // 2, "ngf": 2 * paper["ngf"],
              "local_enhancer": False, "niter_fix_global": 0, **paper["global_phase"]}
    parser = build_parser()
    train = vars(parser.parse_args(["train", "out", *CLIP]))
    compared = {k for k in phase1 if k in train} - RUN_SETTINGS
    assert {"width", "ngf", "n_blocks", "epochs", "niter_decay", "vgg_loss", "background", "lambda_l1"} <= compared
    assert {k: cli_value(train[k]) for k in compared} == {k: cli_value(phase1[k]) for k in compared}
    face = vars(parser.parse_args(["train-face", "out", *CLIP, "--generator", "g.pt"]))
    expected = {("face_" + k if k not in ("epochs", "niter_decay", "lambda_l1") else k): v for k, v in paper["face"].items()}
    assert {k: face[k] for k in expected} == expected
