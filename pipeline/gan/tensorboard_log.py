"""TensorBoard logging of a training run: every loss term, the learning rate, the step time and sample grids.

Events go to ``RUN_DIR/tensorboard`` (rank 0 only), beside ``losses.csv``, which stays the
record the loss figure is drawn from. ``tensorboard`` is optional (mediapipe pins protobuf<5;
tensorboard 2.20 is the last release that installs beside it): ``auto`` logs when it is installed.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)
SETTINGS = (True, False, "auto")


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TrainingBoard:
    """A SummaryWriter for one run folder; a resumed run drops the events past its checkpoint's step."""

    def __init__(self, run_dir: Path, resume_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / "tensorboard"
        # purge_step (the first step logged again): events a killed run wrote after its last checkpoint
        # are superseded by the rerun's
        self.writer = SummaryWriter(str(self.log_dir), purge_step=resume_step + 1 if resume_step else None)

    def step(self, step: int, lr: float, losses: dict[str, float], seconds: float) -> None:
        for name, value in losses.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("lr", lr, step)
        self.writer.add_scalar("step_time_s", seconds, step)

    def sample(self, step: int, images: Sequence[Any]) -> None:
        """A grid, left to right: stick figure | generated | real (the face GAN: | refined before real)."""
        import numpy as np

        from pipeline.gan.models.generator import tensor_to_image

        grid = np.concatenate([tensor_to_image(t) for t in images], axis=1)  # as samples/step_*.png
        self.writer.add_image("samples", grid, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def open_board(run_dir: Path, setting: bool | str, resume_step: int = 0) -> TrainingBoard | None:
    """The run's board, or None when ``setting`` is False, or ``auto`` without the package.

    ``True`` without the package is an error naming the fix.
    """
    if setting not in SETTINGS:
        raise ValueError(f"tensorboard must be true, false or auto, got {setting!r}")
    if setting is False:
        return None
    if not tensorboard_installed():
        if setting is True:
            raise RuntimeError("train.tensorboard is true but the tensorboard package is not installed: "
                               "pip install tensorboard==2.20.0 (2.21 needs protobuf 7, which mediapipe refuses), "
                               "or set it to auto or false")
        log.info("tensorboard not installed: no TensorBoard events (losses.csv as always)")
        return None
    try:
        str(run_dir).encode("utf-8")
    except UnicodeEncodeError:  # TensorBoard's writer encodes its folder's name as UTF-8
        why = f"{run_dir}: TensorBoard writes only into folders whose names are UTF-8"
        if setting is True:
            raise ValueError(f"{why}; give the run another name, or set tensorboard to auto or false") from None
        log.warning("%s: no TensorBoard events for this run (losses.csv as always)", why)
        return None
    return TrainingBoard(run_dir, resume_step)
