import argparse
import importlib
import subprocess
import sys

import pytest

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
    # otherwise fail only then (edn train did, once, after the package was split).
    sub = build_parser()._subparsers._group_actions[0].choices
    commands = {name: p for name, p in sub.items() if name != "plot"}
    commands.update({f"plot {name}": p for name, p in sub["plot"]._subparsers._group_actions[0].choices.items()})
    for name, parser in commands.items():
        module, function = parser._defaults["func"].target
        assert callable(getattr(importlib.import_module(module), function, None)), f"edn {name}: {module}.{function}"
