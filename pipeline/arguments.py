"""What the subpackages' ``commands`` share: argparse value types and the lazy handler of a stage.

Only the standard library is imported here, so ``edn --help`` stays fast and imports no stage.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable

# (stage, inputs, outputs) of a parsed command, for the output rule (provenance.check_outputs)
StagePaths = tuple[str, tuple[Any, ...], tuple[Any, ...]]


def size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (width, height), both positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def box(text: str) -> tuple[int, int, int, int]:
    """``x,y,w,h`` -> (x, y, w, h) in whole pixels, with a positive width and height."""
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"box width and height must be positive, got {text!r}")
    return x, y, w, h


def positive_int(text: str) -> int:
    """A whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def handler(module: str, function: str) -> Callable[[argparse.Namespace], int | None]:
    """A command's ``func``: imports ``module`` only when the command runs, then calls its ``function``."""
    def run(args: argparse.Namespace) -> int | None:
        return getattr(importlib.import_module(module), function)(args)

    run.target = (module, function)  # what it will call, for tests/test_cli.py (no import here)
    return run
