"""``edn``: one subcommand per pipeline stage, assembled from the commands each part declares.

Each subpackage's ``commands`` (and ``doctor``) adds its subcommands and names their inputs and
outputs; only argparse and those modules are imported here, and each handler imports its stage
module, so ``edn --help`` stays fast and the GPU machine (no mediapipe there) runs ``edn train``/``edn transfer``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from typing import Sequence

from pipeline import doctor
from pipeline.arguments import StagePaths
from pipeline.evaluation import commands as evaluation_commands
from pipeline.footage import commands as footage_commands
from pipeline.gan import commands as gan_commands
from pipeline.pose import commands as pose_commands

# The command modules in the data's order: footage in, the machine's check before the stages that
# need it, the poses, the GANs, then what evaluates them (evaluate and the report's figures).
COMMANDS = (footage_commands, doctor, pose_commands, gan_commands, evaluation_commands)


def build_parser() -> argparse.ArgumentParser:
    """``edn``'s parser: every module's commands, each command that writes (each figure of ``plot``) with
    --force; a module's ``WRITES_NOTHING`` commands have none, there being nothing to replace."""
    parser = argparse.ArgumentParser(prog="edn", description="Everybody Dance Now pipeline stages.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for module in COMMANDS:
        module.add_commands(sub)

    force = "replace an existing output file that another command wrote (never an input)"
    read_only = {name for module in COMMANDS for name in getattr(module, "WRITES_NOTHING", ())}
    for name, stage in sub.choices.items():
        if name in read_only:
            continue
        figures = _subcommands(stage)
        for command in figures.values() if figures else (stage,):
            command.add_argument("--force", action="store_true", help=force)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices if actions else {}


def stage_paths(args: argparse.Namespace) -> StagePaths | None:
    """(stage, inputs, outputs) of a parsed command, for the output rule (provenance.check_outputs).

    Every command's module answers for its own commands, so one rule covers all their outputs
    (tests/test_slips.py checks that none is missing); None only for a command none answers for.
    """
    for module in COMMANDS:
        checked = module.stage_paths(args)
        if checked is not None:
            return checked
    return None


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of file names (held as surrogates) shown as U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


class _PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


# Commands that pick up from their last checkpoint when run again.
RESUMABLE = ("train", "train-face")
INTERRUPTED = 130  # 128 + SIGINT, as shells report a command ended by Ctrl-C
_interrupt = threading.Event()


def _on_ctrl_c(signum: int, frame: object) -> None:
    """Python's own Ctrl-C (KeyboardInterrupt in the main thread), remembering that it came."""
    _interrupt.set()
    raise KeyboardInterrupt


def _thread_died(args: threading.ExceptHookArgs) -> None:
    """Once Ctrl-C has come, helper threads (the data loader's descriptor sharing, read-ahead) die of the
    connections their peers dropped: their tracebacks are logged at debug level, not printed."""
    if _interrupt.is_set():
        logging.getLogger("edn").debug("thread %s ended by the interrupt", args.thread,
                                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        return
    threading.__excepthook__(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    # Not where Ctrl-C is ignored on purpose, nor off the main thread (where signals cannot be set).
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _on_ctrl_c):
        signal.signal(signal.SIGINT, _on_ctrl_c)
        threading.excepthook = _thread_died
    try:
        checked = stage_paths(args)
        if checked is None:
            return int(args.func(args) or 0)
        from pipeline.provenance import check_outputs, output_locks

        stage, _, outputs = checked
        # One writer per output: the ranks of one torchrun job write through rank 0 and share its lock.
        locks = output_locks(stage, outputs) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
        check_outputs(*checked, force=getattr(args, "force", False))
        with locks:
            return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:
        # Our stages raise these with messages naming the file and the problem.
        logging.getLogger("edn").debug("traceback", exc_info=True)
        print(printable(f"edn {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("edn").debug("traceback", exc_info=True)
    # Interrupted (Ctrl-C). Outputs are written whole or not at all (provenance.atomic_path) and child
    # processes end with their stage. Out of the handler the stage's frames are let go: progress bars
    # print their last state and data workers stop before the one line that says what happened.
    gc.collect()
    then = "rerun to resume" if args.command in RESUMABLE else "no partial output was left, rerun to redo it"
    print(f"edn {args.command}: interrupted; {then}", file=sys.stderr)
    return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
