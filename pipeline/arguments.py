"""What the subpackages' ``commands`` share: argparse value types and the lazy handler of a stage.

Only the standard library is imported here, so ``edn --help`` stays fast and imports no stage.
"""

from __future__ import annotations

import argparse
import importlib
import math
from typing import Any, Callable

# (stage, inputs, outputs) of a parsed command, for the output rule (provenance.check_outputs)
StagePaths = tuple[str, tuple[Any, ...], tuple[Any, ...]]


def _shown(bound: float) -> str:
    """A bound as written: whole numbers in full (4294967295, not 4.29497e+09)."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


class Number:
    """An argparse type for a finite number in a range: NaN, infinity and values outside it are refused
    with the range in the message (``edn`` exits 2, argparse's usage line and no traceback).

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones (the JSON schema's
    minimum, maximum, exclusiveMinimum, exclusiveMaximum; tests/test_ranges.py compares the two).
    """

    def __init__(self, kind: type = float, minimum: float | None = None, maximum: float | None = None, *,
                 above: float | None = None, below: float | None = None, odd: bool = False, even: bool = False,
                 unit: str = ""):
        self.kind, self.minimum, self.maximum, self.above, self.below = kind, minimum, maximum, above, below
        self.odd, self.even, self.unit = odd, even, unit
        self.__name__ = kind.__name__  # argparse names the type by it

    def describe(self) -> str:
        """The range in words, e.g. ``a whole number from 0 to 51`` or ``a finite number > 0 and <= 1``."""
        what = "an odd whole number" if self.odd else "an even whole number" if self.even else \
            "a whole number" if self.kind is int else "a finite number"
        if self.minimum is not None and self.maximum is not None:
            bounds = f"from {_shown(self.minimum)} to {_shown(self.maximum)}"
        else:
            parts = [f">= {_shown(self.minimum)}" if self.minimum is not None else None,
                     f"> {_shown(self.above)}" if self.above is not None else None,
                     f"<= {_shown(self.maximum)}" if self.maximum is not None else None,
                     f"< {_shown(self.below)}" if self.below is not None else None]
            bounds = " and ".join(p for p in parts if p)
        described = f"{what} {bounds}{f' {self.unit}' if self.unit else ''}".replace("  ", " ").strip()
        if self.kind is int and self.minimum == 1 and self.maximum is None and not (self.odd or self.even):
            return f"positive ({described})"
        return described

    def check(self, value: float, name: str = "", shown: str | None = None) -> None:
        """Raise ValueError naming ``name`` and the range unless ``value`` lies in it (values from a
        config or a caller too)."""
        if not (math.isfinite(value) and (self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum) and (self.above is None or value > self.above)
                and (self.below is None or value < self.below) and (not self.odd or value % 2 == 1)
                and (not self.even or value % 2 == 0)):
            raise ValueError(f"{name + ' ' if name else ''}must be {self.describe()}, "
                             f"got {value if shown is None else shown}")

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text) if self.kind is int else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") from None
        try:
            self.check(value, shown=repr(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value


# The largest side of a picture the stages make or read (frames, stick figures): OpenCV reads and
# writes up to 2**20 per side, JPEG up to 65535; 32768 keeps a 4:1 panorama of 8192 rows, whose
# three 8-bit channels are 805 MB in memory, within what a frame worker can hold.
MAX_PICTURE_SIDE = 32768
MAX_PICTURE_PIXELS = MAX_PICTURE_SIDE * 8192  # that panorama; OpenCV's own limit is 2**30
# The largest working height of ``edn extract``: 8K UHD video has 4320 rows, so 8192 never drops
# detail a camera recorded, and a 16:9 frame of it is 358 MB of pixels.
MAX_FRAME_HEIGHT = 8192
CRF = Number(int, 0, 51)  # x264's quality scale for 8-bit video: 0 lossless, 51 worst
positive_int = Number(int, 1)
non_negative_int = Number(int, 0)
fraction = Number(float, 0, 1)


def size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (width, height), each a whole number from 1 to MAX_PICTURE_SIDE, together
    at most MAX_PICTURE_PIXELS."""
    side = Number(int, 1, MAX_PICTURE_SIDE)
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    try:
        side.check(w, f"size {text!r}: the width")
        side.check(h, f"size {text!r}: the height")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if w * h > MAX_PICTURE_PIXELS:
        raise argparse.ArgumentTypeError(f"size {text!r} has {w * h} pixels, more than {MAX_PICTURE_PIXELS} "
                                         f"({MAX_PICTURE_SIDE}x{MAX_PICTURE_PIXELS // MAX_PICTURE_SIDE})")
    return w, h


def box(text: str) -> tuple[int, int, int, int]:
    """``x,y,w,h`` -> (x, y, w, h) in whole pixels: x and y >= 0, width and height positive, all
    within MAX_PICTURE_SIDE."""
    try:
        values = [float(v) for v in text.split(",")]
        x, y, w, h = values
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"box must be finite numbers, got {text!r}")
    x, y, w, h = (int(v) for v in values)
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"box width and height must be positive, got {text!r}")
    if x < 0 or y < 0 or max(x + w, y + h) > MAX_PICTURE_SIDE:
        raise argparse.ArgumentTypeError(f"box must lie within 0..{MAX_PICTURE_SIDE} pixels (x, y >= 0), "
                                         f"got {text!r}")
    return x, y, w, h


def handler(module: str, function: str) -> Callable[[argparse.Namespace], int | None]:
    """A command's ``func``: imports ``module`` only when the command runs, then calls its ``function``."""
    def run(args: argparse.Namespace) -> int | None:
        return getattr(importlib.import_module(module), function)(args)

    run.target = (module, function)  # what it will call, for tests/test_cli.py (no import here)
    return run
