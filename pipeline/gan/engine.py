"""The training loop shared by both GANs (pix2pixHD's ``train.py``): the data order, resuming from a
checkpoint, a step, its log line and sample grid, checkpoints and the final model. Exact resume: a
run stopped and resumed makes the same weights as one that was not."""

from __future__ import annotations

import copy
import csv
import functools
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from pipeline.gan.checkpoint import load_checkpoint, parameter_checksum, rng_state, save_checkpoint, set_rng_state
from pipeline.gan.compiled import AUTO_MIN_TRAIN_STEPS, compile_in_place, decide_compile, first_call
from pipeline.gan.data import PairDataset
from pipeline.gan.models.generator import tensor_to_image
from pipeline.gan.options import PRECISIONS, TrainConfig, free_on_resume
from pipeline.gan.runtime import Runtime, all_gather, data_workers, set_float32_math
from pipeline.gan.task import GANTask
from pipeline.gan.tensorboard_log import open_board
from pipeline.provenance import atomic_path, provenance, write_json

log = logging.getLogger(__name__)


def scaled_lr(cfg: TrainConfig, world: int) -> float:
    """The learning rate this run uses: ``lr``, or with ``lr_scaling: linear`` lr x global batch."""
    return cfg.lr * cfg.batch_size * world if cfg.lr_scaling == "linear" else cfg.lr


def _step_decay_factor(total_steps: int, decay_steps: int) -> Callable[[int], float]:
    """Per step (the scheduler steps after every update): constant, then linear over the last
    ``decay_steps`` so that the last update runs at lr / decay_steps and the rate after it is 0."""
    n_const = total_steps - decay_steps

    def factor(step: int) -> float:
        if decay_steps <= 0:
            return 1.0
        return max(0.0, min(1.0, (total_steps - step) / decay_steps)) if step >= n_const else 1.0

    return factor


def _decay_factor(epochs: int, niter_decay: int) -> Callable[[int], float]:
    """pix2pixHD's schedule: constant, then minus lr/niter_decay after each of the last epochs."""
    n_const = epochs - niter_decay

    def factor(epoch: int) -> float:
        if niter_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - max(0, epoch - n_const) / niter_decay)

    return factor


def _write_grid(path: Path, images: list[torch.Tensor]) -> None:
    import cv2

    from pipeline.footage.images import write_image

    grid = np.concatenate([tensor_to_image(t) for t in images], axis=1)
    with atomic_path(path) as tmp:
        if not write_image(tmp, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"{path}: cannot write sample image")


class _EpochOrder:
    """The sample order of the current epoch (set before each pass), as a sampler of a loader built once."""

    def __init__(self) -> None:
        self.indices: list[tuple[int, int]] = []  # (epoch, sample index)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self.indices))

    def __len__(self) -> int:
        return len(self.indices)


def training_state(task: GANTask, schedulers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What a checkpoint holds besides the step and the random generators, by kind and name: the one list
    that saving, resuming and undoing a failed compiled step go through."""
    return {"models": task.models, "optimizers": task.optimizers, "schedulers": schedulers, "scalers": task.scalers}


def state_dicts(objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The state of each object of :func:`training_state`."""
    return {kind: {name: o.state_dict() for name, o in group.items()} for kind, group in objects.items()}


def load_state_dicts(objects: dict[str, dict[str, Any]], saved: dict[str, Any]) -> None:
    """Put each object of :func:`training_state` back as ``saved`` (a checkpoint, or :func:`state_dicts`) has it."""
    for kind, group in objects.items():
        for name, o in group.items():
            o.load_state_dict(saved[kind][name])


def _restorer(objects: dict[str, dict[str, Any]]) -> Callable[[], None]:
    """A function that puts the training state and the random generators back as they are now (undoing a
    first compiled step that failed part way)."""
    saved = copy.deepcopy(state_dicts(objects))
    rng = rng_state()

    def restore() -> None:
        load_state_dicts(objects, copy.deepcopy(saved))
        set_rng_state(rng)

    return restore


def _worker_init(worker_id: int) -> None:
    import cv2

    from pipeline.footage.media import die_with_parent

    die_with_parent()  # a SIGKILLed trainer leaves no data worker behind
    cv2.setNumThreads(1)  # one decode thread per worker: the workers are the parallelism
    sys.excepthook = _trainer_hung_up


def _trainer_hung_up(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """A data worker's ``sys.excepthook``. Multiprocessing's descriptor-sharing server (the thread that hands
    a batch's shared memory to the trainer) reports through it when the trainer hangs up mid-handover, which
    the trainer does only when it stops (Ctrl-C, or an error it reports itself): that goes to the debug log,
    not the terminal. Any other error is printed as ever."""
    if issubclass(exc_type, ConnectionError):
        log.debug("data worker: the trainer hung up", exc_info=(exc_type, exc, tb))
        return
    sys.__excepthook__(exc_type, exc, tb)


class _LossLog:
    """``losses.csv`` (rank 0): one row per step; on resume, rows past the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.columns: list[str] | None = None
        rows = []
        if path.exists() and resume_step > 0:
            with path.open(newline="") as f:
                rows = list(csv.reader(f))
        if rows:
            self.columns = rows[0]
            kept = [r for r in rows[1:] if r and int(r[0]) <= resume_step]
            with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
                csv.writer(f).writerows([self.columns, *kept])
        elif path.exists():
            path.unlink()  # a fresh run: the old rows belong to a run that no longer exists

    def append(self, step: int, epoch: int, lr: float, losses: dict[str, float]) -> None:
        row = {"step": step, "epoch": epoch, "lr": lr, **losses}
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with self.path.open("a", newline="") as f:
            # repr keeps every digit: resumed runs are compared to uninterrupted ones.
            csv.writer(f).writerow([repr(row[c]) if isinstance(row.get(c), float) else row.get(c, "")
                                    for c in self.columns])


def checkpoint_mismatch(state: dict[str, Any], stage: str, cfg: TrainConfig, rt: Runtime,
                        inputs: dict[str, Any]) -> str | None:
    """Why a checkpoint cannot continue this run (other settings, inputs, process count or a precision
    it does not record), or None when this run is its continuation."""
    old, new = state["config"], cfg.as_dict()
    changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
               if k not in free_on_resume(type(cfg)) and old.get(k) != new.get(k)]
    if state.get("stage") != stage:
        changed.append(f"stage {state.get('stage')} -> {stage}")
    if state.get("world", 1) != rt.world:
        # The data order and the optimiser state belong to that many processes: no exact resume otherwise.
        changed.append(f"processes {state.get('world', 1)} -> {rt.world}")
    if state.get("inputs") != inputs:
        changed.append("input clips or model")
    if state.get("precision") not in PRECISIONS[1:]:
        changed.append("no record of the precision it computed in")
    if rt.precision == "fp16" and "scalers" not in state:
        changed.append("fp16 without its loss scales")
    return "; ".join(changed) or None


def loss_log_gap(path: Path, step: int) -> str | None:
    """Why a checkpoint at ``step`` cannot be continued for want of its loss log (``losses.csv`` missing, or
    ending before that step: deleted or lost), or None. The log is only ever appended to, so continuing would
    leave it with a hole (or, for a finished run, no log at all); the training starts over instead, which
    gives the same losses again."""
    if step == 0:
        return None
    if not path.is_file():
        return f"its loss log {path} is missing"
    with path.open(newline="") as f:
        last = max((int(r[0]) for r in list(csv.reader(f))[1:] if r and r[0].isdigit()), default=0)
    return None if last >= step else f"its loss log {path} ends at step {last}, the checkpoint at step {step}"


def start_over(out_dir: Path, ckpt_path: Path, why: str) -> None:
    """Remove what a run that cannot be continued left in ``out_dir``: its checkpoint, sample grids and
    TensorBoard events (losses.csv is rewritten by the new run), so the folder ends as a fresh run's."""
    log.warning("%s: %s: starting over", ckpt_path, why)
    ckpt_path.unlink()
    for sample in (out_dir / "samples").glob("step_*.png"):
        sample.unlink()
    board = out_dir / "tensorboard"
    if board.is_dir() and not board.is_symlink():
        shutil.rmtree(board)


def follow_checkpoint_precision(ckpt_path: Path, state: dict[str, Any], cfg: TrainConfig, rt: Runtime) -> None:
    """A resumed ``precision: auto`` run computes in the precision its checkpoint was made in (a run moved to
    another machine does not change precision midway); an explicit precision is a setting that must match."""
    made_in = state["precision"]
    if cfg.precision == "auto" and made_in != rt.precision and made_in in ("bf16", "fp32"):  # auto's choices
        rt.precision = made_in
        rt.precision_reason = f"auto: resumed from {ckpt_path}, made in {made_in} (here: {rt.precision_reason})"
        set_float32_math(made_in)


def training_record(record: dict[str, Any]) -> dict[str, Any]:
    """What a model file keeps of its run record, so it needs no run.json beside it: each clip's files and
    held-out frames (``clips``), precision, seed, processes and steps (options: its ``provenance``, clip
    fingerprints: its ``inputs``). ``edn evaluate`` takes the held-out frames from here."""
    keys = ("clips", "precision", "precision_reason", "seed", "world_size", "global_batch", "lr_used", "total_steps",
            "samples", "model_config")
    return {k: record[k] for k in keys if k in record}


@dataclass
class StepPlan:
    """The run's length and data order: every process's samples of an epoch are a pure function of (seed,
    epoch), so a position in the run is just the step."""

    sampler: Any  # DistributedSampler: with one replica a seeded shuffle too, one order for 1 and N processes
    order: _EpochOrder  # the current epoch's samples, as the loader (built once) draws them
    steps_per_epoch: int
    total: int  # steps of the whole schedule (what the learning rate decays over)
    stop: int  # steps this run makes in all: total, or fewer with max_steps


def plan_steps(dataset: PairDataset, cfg: TrainConfig, rt: Runtime) -> StepPlan:
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(dataset, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    stop = min(total, cfg.max_steps) if cfg.max_steps is not None else total
    return StepPlan(sampler, _EpochOrder(), steps_per_epoch, total, stop)


def lr_schedulers(task: GANTask, cfg: TrainConfig, rt: Runtime, plan: StepPlan) -> dict[str, Any]:
    """Each optimiser at the run's learning rate, and its scheduler (cfg.lr_schedule)."""
    for o in task.optimizers.values():
        for group in o.param_groups:
            group["lr"] = scaled_lr(cfg, rt.world)
    factor = _step_decay_factor(plan.total, cfg.niter_decay * plan.steps_per_epoch) if cfg.lr_schedule == "step" \
        else _decay_factor(cfg.epochs, cfg.niter_decay)
    return {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in task.optimizers.items()}


def data_loader(dataset: PairDataset, cfg: TrainConfig, rt: Runtime, plan: StepPlan) -> Any:
    """Built once: persistent workers keep their processes (and open state) from epoch to epoch; each epoch
    only sets the order, so resume stays exact. Its own generator: the loader's seed draw must not advance
    the global RNG a resumed run restores."""
    from torch.utils.data import DataLoader

    workers = data_workers(cfg.workers, rt)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=plan.order, num_workers=workers,
                      pin_memory=rt.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
                      persistent_workers=workers > 0, worker_init_fn=_worker_init if workers else None)


def resume(ckpt_path: Path, stage: str, objects: dict[str, dict[str, Any]], cfg: TrainConfig, rt: Runtime,
           inputs: dict[str, Any]) -> int:
    """Continue from ``ckpt_path`` when it is this run's (the step it was made at), else start over (0)."""
    state = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if state is not None:
        why = checkpoint_mismatch(state, stage, cfg, rt, inputs)
        why = f"checkpoint was made with other settings ({why})" if why else \
            loss_log_gap(ckpt_path.parent / "losses.csv", int(state["step"]))
        if why is not None:
            if rt.world > 1:
                dist.barrier()  # every rank has read it before rank 0 removes it
            if rt.is_main:
                start_over(ckpt_path.parent, ckpt_path, why)
            return 0
        follow_checkpoint_precision(ckpt_path, state, cfg, rt)
        load_state_dicts(objects, state)
        set_rng_state(state["rng"][rt.rank])
        return int(state["step"])
    return 0


def save(ckpt_path: Path, stage: str, step: int, objects: dict[str, dict[str, Any]], cfg: TrainConfig, rt: Runtime,
         inputs: dict[str, Any]) -> None:
    """A checkpoint of the run at ``step`` (collective: every rank's random generators; rank 0 writes)."""
    rngs = all_gather(rng_state(), rt)
    if rt.is_main:
        save_checkpoint(ckpt_path, {"stage": stage, "step": step, "world": rt.world, "precision": rt.precision,
                                    "config": cfg.as_dict(), "vgg_loss": cfg.vgg_loss, "inputs": inputs,
                                    **state_dicts(objects), "rng": rngs})


class StepLog:
    """What rank 0 keeps of each step: losses.csv, TensorBoard events, the progress bar and sample grids."""

    def __init__(self, out_dir: Path, stage: str, cfg: TrainConfig, rt: Runtime, step: int, stop: int):
        from tqdm import tqdm

        self.out_dir, self.is_main = out_dir, rt.is_main
        self.losses = _LossLog(out_dir / "losses.csv", step) if rt.is_main else None
        self.board = open_board(out_dir, cfg.tensorboard, step) if rt.is_main else None
        self.bar = tqdm(total=stop, initial=step, desc=stage, unit="step", disable=not rt.is_main, dynamic_ncols=True,
                        mininterval=1.0 if sys.stderr.isatty() else 30.0)  # log files get a line every 30 s
        self.tick = time.perf_counter()

    def epoch_started(self) -> None:
        self.tick = time.perf_counter()

    def write(self, step: int, epoch: int, lr: float, row: dict[str, float], visuals: list[torch.Tensor] | None
              ) -> None:
        if not self.is_main:
            return
        self.losses.append(step, epoch, lr, row)
        if self.board is not None:
            now = time.perf_counter()  # the step's time, data wait included
            self.board.step(step, lr, row, now - self.tick)
            self.tick = now
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in row.items()}, refresh=False)
        self.bar.update(1)
        if visuals is not None:
            _write_grid(self.out_dir / "samples" / f"step_{step:07d}.png", visuals)
            if self.board is not None:
                self.board.sample(step, visuals)

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()


def average_losses(losses: dict[str, torch.Tensor], timed: bool, rt: Runtime) -> tuple[dict[str, float], bool]:
    """The step's losses averaged over the processes, and whether rank 0's clock asks for a checkpoint: the
    flag rides on the loss all-reduce, so every rank saves at the same step without a collective of its own."""
    names = sorted(losses)
    values = torch.stack([losses[k].detach().float() for k in names]
                         + [torch.tensor(float(timed), device=losses[names[0]].device)])
    if rt.world > 1:
        dist.all_reduce(values)
        values /= rt.world
    return dict(zip(names, values[:-1].tolist())), bool(values[-1] > 0)


def run_steps(task: GANTask, plan: StepPlan, schedulers: dict[str, Any], loader: Any, step: int, compiled: bool,
              checkpoint: Callable[[int], None], steps_log: StepLog, cfg: TrainConfig, rt: Runtime) -> int:
    """Train from ``step`` to ``plan.stop``: each step, its learning-rate update, log line and checkpoints."""
    last_save = time.monotonic()
    while step < plan.stop:
        epoch, skip = divmod(step, plan.steps_per_epoch)
        plan.sampler.set_epoch(epoch)
        # (epoch, index): augmentation draws each sample's transform from (seed, epoch, index)
        plan.order.indices = [(epoch, i) for i in list(plan.sampler)[skip * cfg.batch_size:]]
        task.frozen = task.frozen_parameters(epoch)
        steps_log.epoch_started()
        for batch in loader:
            step += 1
            want_visuals = rt.is_main and cfg.sample_every > 0 and step % cfg.sample_every == 0
            if compiled:  # this process's first step compiles; on failure it is undone and run eager
                compiled = False
                losses, visuals = first_call(task.compiled_modules(), functools.partial(task.step, batch, want_visuals),
                                             "the training step", undo=_restorer(training_state(task, schedulers)))
            else:
                losses, visuals = task.step(batch, want_visuals)
            # rank 0's clock decides a timed checkpoint
            due = rt.is_main and 0 < cfg.checkpoint_minutes * 60 <= time.monotonic() - last_save
            row, timed = average_losses(losses, due, rt)
            lr = task.optimizers["G"].param_groups[0]["lr"]
            if cfg.lr_schedule == "step" or step % plan.steps_per_epoch == 0:
                for s in schedulers.values():
                    s.step()
            steps_log.write(step, epoch, lr, row, visuals)
            if step % cfg.checkpoint_every == 0 or step == plan.stop or timed:
                checkpoint(step)
                last_save = time.monotonic()
            if step >= plan.stop:
                break
    return step


def finish(task: GANTask, out_dir: Path, model_path: Path, step: int, cfg: TrainConfig, rt: Runtime,
           record: dict[str, Any]) -> None:
    """run.json's last word and the model file, once every rank holds the same weights."""
    checksums = {k: all_gather(parameter_checksum(m), rt) for k, m in task.models.items()}
    out_of_sync = [k for k, v in checksums.items() if len(set(v)) > 1]
    if rt.is_main:
        record.update({"status": "out of sync" if out_of_sync else "finished", "final_step": step,
                       "param_checksums": checksums})
        write_json(out_dir / "run.json", record)
        if not out_of_sync:
            task.write_outputs(model_path, {"vgg_loss": cfg.vgg_loss, "step": step, "inputs": record["inputs"],
                                            "provenance": record["provenance"], "training": training_record(record)})
            log.info("%s: written after %d steps", model_path, step)
    if rt.world > 1:
        dist.barrier()
    if out_of_sync:  # on every rank, after the barrier, so no rank waits for another forever
        raise RuntimeError(f"{out_dir}: parameters of {out_of_sync} differ between ranks: {checksums}")


def run_training(stage: str, task: GANTask, dataset: PairDataset, out_dir: Path, cfg: TrainConfig, rt: Runtime,
                 record: dict[str, Any], model_path: Path | None = None) -> dict[str, Any]:
    """The loop shared by both GANs: resume, the steps (each logged, checkpoints between), the final model.

    ``record`` (written to run.json) must hold ``inputs``, the fingerprint a resumed
    checkpoint is checked against. Returns the record.
    """
    out_dir = Path(out_dir)
    model_path = Path(model_path) if model_path is not None else out_dir / task.model_file
    ckpt_path = out_dir / "checkpoint.pt"
    plan = plan_steps(dataset, cfg, rt)
    schedulers = lr_schedulers(task, cfg, rt, plan)
    loader = data_loader(dataset, cfg, rt, plan)
    objects = training_state(task, schedulers)
    step = resume(ckpt_path, stage, objects, cfg, rt, record["inputs"])
    if step and rt.is_main:
        log.info("%s: resuming at step %d of %d", ckpt_path, step, plan.stop)
    compiled, compile_reason = decide_compile(cfg.compile, rt.device, plan.stop - step, AUTO_MIN_TRAIN_STEPS, "steps",
                                              rt.world)
    if rt.is_main:
        log.info("compile %s", compile_reason)
    if compiled:
        compile_in_place(task.compiled_modules())
    record.update({"stage": stage, "provenance": provenance(stage, cfg.as_dict()), "seed": cfg.seed,
                   "world_size": rt.world, "global_batch": cfg.batch_size * rt.world,
                   "lr_used": scaled_lr(cfg, rt.world),
                   "vgg_loss": cfg.vgg_loss, "steps_per_epoch": plan.steps_per_epoch,
                   "total_steps": plan.stop, "device": str(rt.device), "precision": rt.precision,
                   "precision_reason": rt.precision_reason, "compile": compiled,
                   "compile_reason": compile_reason, "status": "running",
                   "resumed_from_step": step or None, "samples": len(dataset), "model": str(model_path)})
    if rt.is_main:
        write_json(out_dir / "run.json", record)
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    steps_log = StepLog(out_dir, stage, cfg, rt, step, plan.stop)
    checkpoint = functools.partial(save, ckpt_path, stage, objects=objects, cfg=cfg, rt=rt, inputs=record["inputs"])
    step = run_steps(task, plan, schedulers, loader, step, compiled, checkpoint, steps_log, cfg, rt)
    steps_log.close()
    if plan.stop == 0:
        checkpoint(0)
    finish(task, out_dir, model_path, step, cfg, rt, record)
    return record
