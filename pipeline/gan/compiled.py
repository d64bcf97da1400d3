"""``torch.compile`` for the networks of ``edn train``, ``edn train-face``, ``edn transfer`` and
``edn evaluate``: one setting (``train: compile``, ``--compile``), ``auto``, ``on`` or ``off``.

Networks are compiled in place (:meth:`torch.nn.Module.compile`), so their ``state_dict`` keys,
checkpoints and model files are those of the eager modules. Shapes are static (``dynamic=False``):
a run has one frame size, so each call pattern (batch size, grad mode, which parameters take
gradients) gets its own specialised graph, compiled once per process. Where compiling is impossible
(no C++ compiler for the CPU backend, no Triton for CUDA, an unsupported operation or a compiler
error at the first call) the run goes on eager with one log line.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, TypeVar

import torch
from torch import nn

from pipeline.gan.options import COMPILE_MODES

log = logging.getLogger(__name__)

# The backend handed to torch.compile; tests replace it to make a first call fail.
BACKEND: str | Callable[..., Any] = "inductor"

# ``auto`` compiles on CUDA a training run of at least this many steps (left to run in this process) and a
# transfer or evaluation of at least this many frames: below them the one-off compile costs more than it saves.
AUTO_MIN_TRAIN_STEPS = 300
AUTO_MIN_FRAMES = 600
# On the CPU (docs/benchmarks.md, a quiet 2-core AVX512-BF16 machine): a compiled training step was 0.94-0.95x
# eager, so ``auto`` trains eager there (``on`` compiles); generation compiled ran 1.25-1.33x eager (edn transfer,
# bf16 and fp32), about 0.01 s saved a frame at the demo size, against a compile of 7 s (warm cache) to ~40 s
# (cold): ``auto`` compiles a transfer or evaluation on the CPU from this many frames, where even a cold
# compile is paid back.
AUTO_MIN_FRAMES_CPU = 4000
AUTO_TRAIN_ON_CPU = False

T = TypeVar("T")


def compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` in this process, or None when it can."""
    try:
        import torch._dynamo  # noqa: F401  (missing on some builds and Python versions)
    except Exception as exc:  # noqa: BLE001  (any import failure means no compiler)
        return f"torch._dynamo cannot be imported ({exc})"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (inductor's CUDA backend needs it)"
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as exc:  # noqa: BLE001  (inductor raises its own types for a missing compiler)
            return f"no C++ compiler for inductor's CPU backend ({str(exc).splitlines()[0] if str(exc) else exc!r})"
        return None
    return f"torch.compile is not used on {device.type}"


def decide_compile(mode: str, device: torch.device, work: int | None, min_work: int, what: str,
                   world: int = 1) -> tuple[bool, str]:
    """Whether to compile, and why (recorded in run.json and the transfer and evaluation records).

    ``work``: steps or frames (``what``) this process will run (None: unknown); ``auto`` compiles when it
    is at least ``min_work`` and the run is a single process (compiling under DDP is taken with ``on``
    only); on the CPU it trains eager (``AUTO_TRAIN_ON_CPU``) and generates compiled from
    ``AUTO_MIN_FRAMES_CPU`` frames.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {mode!r}")
    if mode == "off":
        return False, "off: requested"
    problem = compile_problem(device)
    if problem is not None:
        return False, f"{mode}: eager, {problem}"
    if mode == "on":
        return True, "on: requested"
    if device.type == "cpu" and what == "steps" and not AUTO_TRAIN_ON_CPU:
        return False, ("auto: eager training on the CPU (a compiled step is no faster there, docs/benchmarks.md; "
                       "on compiles)")
    if device.type == "cpu" and what == "frames":
        min_work = max(min_work, AUTO_MIN_FRAMES_CPU)
    if world > 1:
        return False, f"auto: eager with {world} processes (compile: on compiles them)"
    if work is None or work < min_work:
        return False, (f"auto: eager, {'an unknown number of' if work is None else work} {what} "
                       f"(< {min_work}) would not pay back the compile")
    return True, f"auto: {work} {what} (>= {min_work}) pay back the compile"


def compile_in_place(modules: Iterable[nn.Module]) -> None:
    """Compile each module's ``__call__`` (its parameters, buffers and state_dict keys stay as they are)."""
    for module in modules:
        module.compile(backend=BACKEND, dynamic=False)


def is_compiled(module: nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def run_eager(modules: Iterable[nn.Module]) -> None:
    """Undo :func:`compile_in_place`: the modules run their eager ``__call__`` again."""
    for module in modules:
        module._compiled_call_impl = None


def first_call(modules: list[nn.Module], call: Callable[[], T], name: str,
               undo: Callable[[], None] | None = None) -> T:
    """``call()``, the first run of the compiled ``modules``: the compile happens here and its seconds are
    logged; if it fails, ``undo()`` restores what the failed call may have changed, the modules go back
    to eager with one log line and ``call()`` runs again."""
    start = time.perf_counter()
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001  (dynamo and inductor raise many types; eager re-raises real errors)
        cause = exc
        while getattr(cause, "inner_exception", None) is not None or cause.__cause__ is not None:
            cause = getattr(cause, "inner_exception", None) or cause.__cause__  # the compiler's own error
        first_line = (str(cause).strip().splitlines() or [""])[0]
        log.warning("compile: %s failed at its first call (%s: %s); running eager", name, type(cause).__name__,
                    first_line[:300])
        run_eager(modules)
        if undo is not None:
            undo()
        return call()
    log.info("compile: %s compiled in %.1f s (first call included)", name, time.perf_counter() - start)
    return result
