"""The documentation names only what exists: make targets, `edn` commands and flags, config keys,
repository paths, tests, links and their anchors; and config/README.md documents every config key.

Names are read from code spans and code blocks (and links), where the documents put them."""

from __future__ import annotations

import argparse
import glob
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

# Top-level names of the repository a path may start with; outputs (results/, resources/) are not in it.
REPO_ROOTS = ("pipeline/", "workflow/", "config/", "tests/", "scripts/", "docs/", "envs/", "profiles/")
REPO_FILES = ("Makefile", "Snakefile", "pyproject.toml", "requirements.txt", "requirements-slurm.txt",
              "README.md", "CHANGELOG.md", "LICENSE", "CITATION.cff")
# Files the documents tell users to write themselves.
USER_FILES = ("config/my.yaml", "config/my.tsv")
FILE_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".md", ".png", ".jpg", ".mp4", ".parquet", ".pt", ".smk", ".tsv",
                 ".csv", ".log", ".html", ".txt", ".pth")


def code_texts(text: str) -> list[str]:
    """The contents of every fenced code block (line by line) and every inline code span."""
    fence = r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```"  # fenced blocks, also indented in a list item
    blocks = re.findall(fence, text, re.M | re.S)
    rest = re.sub(fence, "", text, flags=re.M | re.S)
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", rest)]  # a span may wrap a line
    return [line for block in blocks for line in block.splitlines()] + spans


@lru_cache(maxsize=1)
def make_targets() -> frozenset[str]:
    text = (REPO / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


@lru_cache(maxsize=1)
def edn_commands() -> dict[str, frozenset[str]]:
    """`edn` subcommand (and `plot FIGURE`) -> its option strings, with edn's own."""
    parser = build_parser()
    own = {s for a in parser._actions for s in a.option_strings}
    commands: dict[str, frozenset[str]] = {}

    def options(p: argparse.ArgumentParser) -> frozenset[str]:
        return frozenset(own | {s for a in p._actions for s in a.option_strings})

    for name, sub in parser._subparsers._group_actions[0].choices.items():
        commands[name] = options(sub)
        figures = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for figure, p in (figures[0].choices.items() if figures else ()):
            commands[f"{name} {figure}"] = options(p)
    return commands


@lru_cache(maxsize=1)
def config_keys() -> frozenset[str]:
    """Every key of the schema as a dotted path (train.face.size), mappings included (train.face)."""
    keys: set[str] = set()

    def walk(properties: dict, prefix: str) -> None:
        for name, spec in properties.items():
            keys.add(prefix + name)
            if isinstance(spec, dict) and "properties" in spec and name != "global_phase":
                walk(spec["properties"], f"{prefix}{name}.")

    walk(yaml.safe_load(SCHEMA.read_text())["properties"], "")
    return frozenset(keys)


def expand_braces(word: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", word)
    if not match:
        return [word]
    return [w for alt in match.group(1).split(",") for w in expand_braces(word[:match.start()] + alt + word[match.end():])]


def check_make(code: str) -> list[str]:
    problems = []
    for match in re.finditer(r"(?:^|[\s;&(])make\s+([^;&|#\n]*)", code):
        for word in match.group(1).split():
            target = word.rstrip("),.:")
            if not re.fullmatch(r"[a-z][\w-]*", target):
                break  # VAR=value, an option, or the sentence goes on
            if target not in make_targets():
                problems.append(f"make target `{target}` is not in the Makefile")
            if target != word:
                break
    return problems


def check_edn(code: str) -> list[str]:
    problems = []
    commands = edn_commands()
    for match in re.finditer(r"(?:^|[\s/(])edn\s+([^;&#>\n]*)", code):
        words = match.group(1).split()
        if not words or not re.fullmatch(r"[a-z][\w-]*", words[0]):
            continue  # edn STAGE, edn --help: no command named
        command, rest = words[0], words[1:]
        if command not in commands:
            problems.append(f"`edn {command}` is not an edn subcommand")
            continue
        if rest and f"{command} {rest[0]}" in commands:
            command, rest = f"{command} {rest[0]}", rest[1:]
        elif rest and any(f"{command} {w}" in commands for w in expand_braces(rest[0])):
            bad = [w for w in expand_braces(rest[0]) if f"{command} {w}" not in commands]
            problems += [f"`edn {command} {w}` is not an edn subcommand" for w in bad]
            rest = rest[1:]
        for word in rest:
            if word == "--":
                break
            flag = re.match(r"(--?[a-z][\w-]*)", word.lstrip("[("))
            if flag and word.lstrip("[(").startswith("-") and flag.group(1) not in commands[command]:
                problems.append(f"`edn {command}` has no option {flag.group(1)}")
    return problems


def check_config_keys(code: str) -> list[str]:
    roots = {k for k in config_keys() if "." not in k}
    problems = []
    for word in re.findall(r"[A-Za-z_][\w.]*", code):
        parts = word.rstrip(".").split(".")
        if len(parts) < 2 or parts[0] not in roots or word.endswith(FILE_SUFFIXES):
            continue
        if ".".join(parts) not in config_keys():
            problems.append(f"config key `{'.'.join(parts)}` is not in the schema")
    return problems


def check_yaml_keys(code: str) -> list[str]:
    """A config snippet written as YAML (`evaluate: {rows: [temporal], ablations: null}`): its keys."""
    roots = {k for k in config_keys() if "." not in k}
    if not re.match(r"\s*([a-z_]+):\s", code + " ") or code.split(":")[0].strip() not in roots:
        return []
    try:
        snippet = yaml.safe_load(code)
    except yaml.YAMLError:
        return []
    problems = []

    def walk(mapping: dict, prefix: str) -> None:
        for key, value in mapping.items():
            path = f"{prefix}{key}"
            if path not in config_keys():
                problems.append(f"config key `{path}` is not in the schema")
            elif isinstance(value, dict) and path not in ("evaluate.ablations", "train.global_phase"):
                walk(value, path + ".")

    if isinstance(snippet, dict):
        walk(snippet, "")
    return problems


def defined_tests(path: Path) -> set[str]:
    return set(re.findall(r"^def (test_\w+)", path.read_text(), re.M))


def check_paths(code: str) -> list[str]:
    problems = []
    for word in code.split():
        word = word.strip("`'\"(),;:[]").rstrip(".")
        test = None
        if "::" in word:
            word, test = word.split("::", 1)
        if not (word.startswith(REPO_ROOTS) or word in REPO_FILES) or word in USER_FILES:
            continue
        pattern = re.sub(r"\{[^}]*\}|<[^>]*>|…|[A-Z_]{3,}(?=[/.]|$)", "*", word)
        found = [Path(p) for p in glob.glob(str(REPO / pattern))] if any(c in pattern for c in "*?[") \
            else [REPO / pattern] if (REPO / pattern).exists() else []
        if not found:
            problems.append(f"path `{word}` does not exist in the repository")
        elif test is not None:
            name = test.split("::")[-1].split("[")[0]
            if not any(name in defined_tests(p) for p in found if p.is_file()):
                problems.append(f"`{word}::{test}`: no such test")
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", path.read_text(), flags=re.M | re.S)  # a comment is no heading
    return {slug(h) for h in re.findall(r"^#+\s+(.*)$", text, re.M)}


def check_links(text: str, doc: Path) -> list[str]:
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if REPO not in path.parents and path != REPO:
            problems.append(f"link `{target}` leaves the repository")
        elif not path.exists():
            problems.append(f"link `{target}` points at nothing")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            problems.append(f"link `{target}`: no heading with that anchor")
    return problems


def problems(text: str, doc: Path) -> list[str]:
    found = check_links(text, doc)
    for code in code_texts(text):
        found += (check_make(code) + check_edn(code) + check_config_keys(code) + check_yaml_keys(code)
                  + check_paths(code))
    return found


def undocumented_keys(config_readme: str) -> list[str]:
    documented = set(re.findall(r"`([a-z_][\w.]*)`", config_readme))
    return sorted(k for k in config_keys() if k not in documented and not
                  any(other.startswith(k + ".") for other in config_keys()))  # a mapping: its keys are there


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_name_in_the_docs_exists(doc):
    assert problems(doc.read_text(), doc) == []


def test_config_readme_documents_every_key_of_the_schema():
    assert undocumented_keys((REPO / "config" / "README.md").read_text()) == []


def test_readme_is_short_and_shows_both_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make demo" in readme and "make test" in readme
    image = re.search(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert image and (REPO / image.group(1)).stat().st_size < 300_000


PLANTED = """
Run `make no-such-target` then `edn no-such-stage x`, `edn train out --no-such-flag 3` and
`edn plot {tracks,no-such-figure} a b`; set `train.no_such_key`, `train.face.no_such` or
`evaluate: {rows: [temporal], no_such_yaml: 1}`; read
`pipeline/no_such_module.py` and `tests/test_cli.py::test_no_such_test`;
see [elsewhere](../shared/notes.md), [missing](docs/no-such.md) and [anchor](#no-such-heading).

```bash
.venv/bin/edn doctor --force
```
"""


def test_the_checks_catch_planted_bad_names():
    found = "\n".join(problems(PLANTED, REPO / "README.md"))
    for name in ("make target `no-such-target`", "`edn no-such-stage`", "no option --no-such-flag",
                 "`edn plot no-such-figure`", "`train.no_such_key`", "`train.face.no_such`", "`evaluate.no_such_yaml`",
                 "`pipeline/no_such_module.py`", "test_no_such_test", "`../shared/notes.md` leaves the repository",
                 "`docs/no-such.md` points at nothing", "`#no-such-heading`", "`edn doctor` has no option --force"):
        assert name in found, name
    good = ("`make demo`, `edn train out --clip f r k --vgg-loss auto`, `edn plot tracks a b c`, `train.face.size`, "
            "`pipeline/gan/train.py`, `tests/test_cli.py::test_help_imports_no_heavy_library`, [c](config/README.md), "
            "`evaluate: {rows: [temporal], ablations: {x: {lr: 0.1}}}`, `train: {face: {size: 64}}`")
    assert problems(good, REPO / "README.md") == []


def test_the_key_check_catches_an_undocumented_key():
    text = (REPO / "config" / "README.md").read_text()
    assert undocumented_keys(text.replace("`train.channels_last`", "channels_last")) == ["train.channels_last"]


def test_make_report_reports_the_run_of_the_users_config_files():
    """The README's step 7: `make report CONFIG=...` makes the report of the run those files made."""
    dry = subprocess.run(["make", "-n", "report", "CONFIG=config/paper.yaml config/my.yaml"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "--configfile config/paper.yaml config/my.yaml --report results/report.html" in dry
    plain = subprocess.run(["make", "-n", "report"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "--configfile" not in plain and "--report results/report.html" in plain
