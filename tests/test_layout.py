"""The package's layout: subpackages by the method's halves, imports one way only (README "Where the code lives")."""

import ast
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
ORDER = ("footage", "pose", "gan", "evaluation")  # each may import those before it, never one after
BASE = {"pipeline", "pipeline.provenance", "pipeline.arguments"}  # what every subpackage may import
# The top level: the shared base, and the commands that assemble or probe everything (these import freely).
TOP = {"__init__", "provenance", "arguments", "cli", "doctor", "prefetch", "cluster"}
# The workflow's side: what the Snakefile computes when it plans jobs (it reads the whole package, as cli does).
WORKFLOW_SIDE = {"plan"}


def imported(path: Path) -> set[str]:
    """Every pipeline module a file imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "pipeline"}
    return names


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


@pytest.mark.parametrize("sub", ORDER)
def test_imports_run_one_way(sub):
    allowed = set(ORDER[:ORDER.index(sub) + 1])
    wrong = {}
    for path in sorted((PIPELINE / sub).rglob("*.py")):
        for module in imported(path):
            if module in BASE:
                continue
            if subpackage(module) not in allowed:
                wrong[str(path.relative_to(PIPELINE.parent))] = module
    assert not wrong, f"{sub} may import {sorted(allowed)} and {sorted(BASE)} only: {wrong}"


def test_the_base_imports_no_subpackage():
    for name in ("provenance", "arguments", "cluster"):
        path = PIPELINE / f"{name}.py"
        assert not {m for m in imported(path) if subpackage(m)}, f"{path} is imported by every subpackage"


def test_only_the_top_level_modules_sit_at_the_top():
    flat = {p.stem for p in PIPELINE.glob("*.py")}
    assert flat == TOP, f"modules outside a subpackage: {sorted(flat - TOP)}; expected at the top: {sorted(TOP - flat)}"
    assert {p.name for p in PIPELINE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == \
        set(ORDER) | WORKFLOW_SIDE


@pytest.mark.parametrize("sub", ORDER)
def test_each_subpackage_says_what_it_holds_and_may_import(sub):
    doc = ast.get_docstring(ast.parse((PIPELINE / sub / "__init__.py").read_text())) or ""
    assert "import" in doc.lower() and len(doc.splitlines()) == 2, f"pipeline/{sub}/__init__.py: holds, may import"
    for path in (PIPELINE / sub).rglob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path}: no module docstring"


def test_no_module_imports_itself_through_others():
    """No import circle, at module level or inside functions (an import inside a function hides a circle
    from Python, not from a reader)."""
    from pipeline.plan.code import _imports

    root = PIPELINE.parent
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
               for p in PIPELINE.rglob("*.py")}
    # a package's __init__ is passed through, not run for its contents: only modules' own imports count
    graph = {m: {i for i in _imports(m, root, False) if i in modules and not (root / i.replace(".", "/")).is_dir()}
             for m in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                circle = path[path.index(other):] + [other]
                raise AssertionError(f"import circle: {' -> '.join(circle)}")
            if other not in state:
                visit(other, path + [other])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])


def test_no_module_over_600_lines_and_no_function_over_80():
    """A reader takes in a module and a function whole: long ones are split by concern."""
    long_files, long_functions = [], []
    for path in sorted(PIPELINE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 600:
            long_files.append(f"{path.relative_to(PIPELINE.parent)} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long_functions.append(f"{path.relative_to(PIPELINE.parent)}::{node.name} "
                                      f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long_files and not long_functions, long_files + long_functions
