"""Each stage's code input: the source files its command imports, found by reading them (no import).

A rule runs ``python -m pipeline.cli COMMAND`` (training through ``python -m pipeline.gan.launch``).
What that process imports is (1) the dispatcher: ``pipeline.cli`` and the modules it imports at module
level (every command module, for the parser), plus ``pipeline.provenance``, which checks and locks the
outputs; and (2) the command's handler module (``handler(MODULE, ...)`` in its command module) with
every ``pipeline`` module it imports, at module level or inside a function, and so on. Listing those
files as the rule's inputs makes an edit to any of them rerun the stage and what follows, and an edit to
any other module rerun nothing. Imports inside the dispatcher's functions (``edn doctor``'s checks) are
not followed: only that command runs them.
"""

from __future__ import annotations

import argparse
import ast
import functools
from pathlib import Path

PACKAGE = "pipeline"
ROOT = Path(__file__).resolve().parents[2]  # the folder holding the package: the workflow's folder
DISPATCHER = "pipeline.cli"
OUTPUT_CHECKS = "pipeline.provenance"  # imported by pipeline.cli's main for every command that writes


def module_file(module: str, root: Path = ROOT) -> Path:
    """The source file of a ``pipeline`` module (its ``__init__.py`` for a package)."""
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_module(module: str, root: Path) -> bool:
    path = root.joinpath(*module.split("."))
    return (path / "__init__.py").is_file() or path.with_suffix(".py").is_file()


@functools.lru_cache(maxsize=None)
def _imports(module: str, root: Path, top_level_only: bool) -> frozenset[str]:
    """The ``pipeline`` modules one module imports (``from pipeline.x import name`` names ``pipeline.x``,
    or ``pipeline.x.name`` when that is a module), with the packages each passes through."""
    path = module_file(module, root)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot read the imports of {module}: {exc}") from None
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE and _is_module(name, root):
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    found.discard(module)
    return frozenset(found)


def import_closure(modules: tuple[str, ...], root: Path = ROOT, top_level_only: bool = False) -> set[str]:
    """``modules``, their parent packages and every ``pipeline`` module they import, transitively."""
    seen: set[str] = set()
    todo = [".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 2)]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module, root, top_level_only) - seen)
    return seen


def handler_module(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> str:
    """The module whose function runs ``edn WORDS`` (``plot tracks``: two words), from the parser."""
    command = parser
    for word in words:
        choices = {}
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                choices = action.choices
        if word not in choices:
            raise ValueError(f"edn {' '.join(words)}: no such command (stage code inputs)")
        command = choices[word]
    func = command.get_default("func")
    target = getattr(func, "target", None)
    if target is None:
        raise ValueError(f"edn {' '.join(words)}: names a command group, not a command (stage code inputs)")
    return target[0]


def command_modules(*words: str, runner: str | None = None, root: Path = ROOT) -> list[str]:
    """The ``pipeline`` modules ``python -m pipeline.cli WORDS`` imports (started by ``python -m RUNNER``
    when given, e.g. ``pipeline.gan.launch``), sorted."""
    from pipeline.cli import build_parser

    stage = handler_module(build_parser(), words)
    modules = import_closure((DISPATCHER,), root, top_level_only=True)
    modules |= import_closure((OUTPUT_CHECKS, stage) + ((runner,) if runner else ()), root)
    return sorted(modules)


def stage_code(*words: str, runner: str | None = None, root: Path = ROOT) -> list[str]:
    """The source files of :func:`command_modules`: a rule's ``code`` input."""
    return [str(module_file(m, root)) for m in command_modules(*words, runner=runner, root=root)]
