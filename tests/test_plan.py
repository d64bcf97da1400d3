"""Each rule's code input is what its command imports (pipeline/plan/code.py), read from the source:
an edit to any module a stage runs reruns it, an edit to any other module does not."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pipeline.plan.code import command_modules, import_closure, stage_code

REPO = Path(__file__).resolve().parents[1]
TRAIN = command_modules("train", runner="pipeline.gan.launch")


def test_training_runs_its_losses_models_data_and_launcher():
    assert {"pipeline.gan.models.losses", "pipeline.gan.models.generator", "pipeline.gan.models.discriminator",
            "pipeline.gan.data", "pipeline.gan.runtime", "pipeline.gan.launch", "pipeline.cli",
            "pipeline.provenance"} <= set(TRAIN)


def test_training_does_not_run_the_pose_stages_or_the_figures():
    assert not {"pipeline.pose.smooth", "pipeline.pose.detect", "pipeline.pose.render",
                "pipeline.evaluation.plots", "pipeline.evaluation.evaluate"} & set(TRAIN), TRAIN


def test_the_stages_differ_by_what_they_run():
    smooth = set(command_modules("smooth"))
    assert "pipeline.pose.smooth" in smooth and not {m for m in smooth if m.startswith("pipeline.gan.models")}
    assert "pipeline.evaluation.metrics" in command_modules("evaluate")
    assert "pipeline.evaluation.plots" in command_modules("plot", "losses")


def test_code_inputs_are_the_modules_files():
    files = stage_code("smooth", root=REPO)
    assert str(REPO / "pipeline/pose/smooth.py") in files and str(REPO / "pipeline/__init__.py") in files
    assert all(Path(f).is_file() for f in files)


def test_unknown_command_or_group_is_refused():
    with pytest.raises(ValueError, match="no such command"):
        command_modules("trian")
    with pytest.raises(ValueError, match="command group"):
        command_modules("plot")


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_imports_inside_functions_and_from_imports_are_followed_transitively(tmp_path):
    root = _package(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/a.py": "from pipeline import b\n",
        "pipeline/b.py": "def f():\n    from pipeline.sub.c import thing\n",
        "pipeline/sub/__init__.py": "",
        "pipeline/sub/c.py": "import os\nimport pipeline.d\n",
        "pipeline/d.py": "",
        "pipeline/unrelated.py": "import pipeline.a\n",
    })
    assert import_closure(("pipeline.a",), root) == {"pipeline", "pipeline.a", "pipeline.b", "pipeline.sub",
                                                     "pipeline.sub.c", "pipeline.d"}
    assert import_closure(("pipeline.b",), root, top_level_only=True) == {"pipeline", "pipeline.b"}


def test_an_unparsable_module_is_named(tmp_path):
    root = _package(tmp_path, {"pipeline/__init__.py": "", "pipeline/a.py": "import pipeline.b\n",
                               "pipeline/b.py": "def (:\n"})
    with pytest.raises(ValueError, match=r"b\.py: cannot read the imports of pipeline\.b"):
        import_closure(("pipeline.a",), root)


def _rule_blocks() -> list[str]:
    """Each rule of workflow/rules/*.smk as its text, from its `rule`, `use rule` or `checkpoint` line."""
    return [block for smk in sorted((REPO / "workflow" / "rules").glob("*.smk"))
            for block in re.split(r"\n(?=\s*(?:rule|use rule|checkpoint) )", smk.read_text())]


def test_every_rule_names_the_command_it_runs_as_its_code():
    """The code input of each rule that runs `edn` is computed for the very command its shell runs."""
    checked = 0
    for block in _rule_blocks():
        run = re.search(r"python -m pipeline\.cli ((?:[a-z-]+ ?)+)", block)
        if not run or "fetch-demo" in run.group(1):
            continue  # fetch-demo downloads footage: a code edit does not refetch it
        words = run.group(1).split()
        words = words[:2] if words[0] == "plot" else words[:1]
        runner = ', runner="pipeline.gan.launch"' if "python -m pipeline.gan.launch" in block else ""
        expected = "code=stage_code(" + ", ".join(f'"{w}"' for w in words) + runner + ")"
        assert expected in block, f"{block.strip().splitlines()[0]} runs edn {' '.join(words)}: expected {expected}"
        checked += 1
    assert checked >= 20


def test_a_rule_made_from_another_keeps_its_code():
    blocks = _rule_blocks()
    code = {m.group(1): re.search(r"code=(.*),", block).group(1) for block in blocks
            if (m := re.match(r"\s*(?:rule|checkpoint) (\w+):", block)) and "code=" in block}
    used = [(m, block) for block in blocks if (m := re.match(r"\s*use rule (\w+) as (\w+)", block))]
    assert len(used) >= 3
    for m, block in used:
        assert "code=" in block and re.search(r"code=(.*),", block).group(1) == code[m.group(1)], m.group(2)
