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
    assert not {"pipeline.pose.smooth", "pipeline.pose.detect", "pipeline.evaluation.plots",
                "pipeline.evaluation.evaluate"} & set(TRAIN), TRAIN
    assert "pipeline.pose.render" in TRAIN  # augmentation re-draws the stick figures as `edn render` does


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


# ------------------------------------------------------------------------------- the video sheet

SCHEMA = REPO / "workflow" / "schemas" / "videos.schema.yaml"
HEADER = b"name\tpath\trole\tsubject\tcrop\trotation\tfps\topenpose_json\n"


def test_the_sheet_keeps_hashes_in_paths_odd_bytes_and_rows_ending_in_a_tab(tmp_path):
    from pipeline.plan.sheet import read_sheet

    sheet = tmp_path / "videos.tsv"
    sheet.write_bytes(HEADER + b"# a comment: a whole line starting with #\n"
                      b"a\tclips #2/take 100%d.mp4\ttarget\ts\t\t\t\t\t\n"
                      b"b\t/x/caf\xe9.mp4\tsource\t\t 0,64,288,448 \t\t30\t-json #1\t\n\n")
    table = read_sheet(sheet)
    assert list(table.index) == [3, 4] and list(table.columns) == HEADER.decode().split()  # by line
    assert table.loc[3, "path"] == "clips #2/take 100%d.mp4" and table.loc[4, "openpose_json"] == "-json #1"
    assert table.loc[4, "path"] == "/x/caf\udce9.mp4" and table.loc[4, "crop"] == "0,64,288,448"
    assert all(isinstance(v, str) for v in table.to_numpy().ravel())


@pytest.mark.parametrize("text, words", [
    (b"", "video sheet is empty"),
    (HEADER + b"a\tv.mp4\ttarget\ts\t\t\t\t\t\tstray\n", "row 2 has 10 fields, the header names 8 columns"),
])
def test_a_sheet_the_workflow_cannot_read_is_named_with_its_row(tmp_path, text, words):
    from pipeline.plan.sheet import read_sheet

    (tmp_path / "videos.tsv").write_bytes(text)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'videos.tsv'}: {words}")):
        read_sheet(tmp_path / "videos.tsv")


@pytest.mark.parametrize("rows, words", [
    (b"a\tv.mp4\tactor\ts\n", "row 2 (a): Error validating"),
    (b"a\tv.mp4\ttarget\ts\nb\tw.mp4\tsource\t\na\tx.mp4\ttarget\ts\n", "video names must be unique, repeated: ['a']"),
    (b"b\tw.mp4\tsource\t\n", "no video has role 'target'"),
    (b"a\tcaf\xe9.mp4\ttarget\ts\n", "row 2 (a): path 'caf\ufffd.mp4' is not UTF-8"),
])
def test_sheet_rows_are_validated_by_the_schema_and_named(tmp_path, rows, words):
    from pipeline.plan.sheet import load_videos

    sheet = tmp_path / "videos.tsv"
    sheet.write_bytes(b"name\tpath\trole\tsubject\n" + rows)
    with pytest.raises(ValueError, match=re.escape(words)):
        load_videos(sheet, SCHEMA)


def test_a_valid_sheet_gets_every_optional_column_and_is_indexed_by_name(tmp_path):
    from pipeline.plan.sheet import OPTIONAL_COLUMNS, load_videos, transfer_pairs

    sheet = tmp_path / "videos.tsv"
    sheet.write_bytes(b"name\tpath\trole\tsubject\na\tv.mp4\ttarget\ts\nb\tw.mp4\tsource\t\n")
    videos = load_videos(sheet, SCHEMA)
    assert list(videos.index) == ["a", "b"] and set(OPTIONAL_COLUMNS) <= set(videos.columns)
    assert videos.loc["b", "fps"] == ""
    config = {"videos": str(sheet), "pairs": []}
    assert transfer_pairs(config, ["b"], ["s"]) == [("b", "s")]
    with pytest.raises(ValueError, match="config pairs: 'a' is not a source video"):
        transfer_pairs({**config, "pairs": [{"source": "a", "target": "s"}]}, ["b"], ["s"])


def test_every_config_number_must_be_finite():
    from pipeline.plan.sheet import check_finite

    check_finite({"train": {"lr": 0.1, "face": {"size": None}}, "evaluate": {"rows": ["temporal"]}})
    with pytest.raises(ValueError, match=r"config train\.face\.lambda_l1 = inf must be a finite number"):
        check_finite({"train": {"face": {"lambda_l1": float("inf")}}})
    with pytest.raises(ValueError, match=r"config pairs\.0\.x = nan"):
        check_finite({"pairs": [{"x": float("nan")}]})
