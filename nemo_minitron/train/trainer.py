"""The one place that builds a Lightning ``Trainer``, and :func:`fit`, which every training stage
runs: work folder, resume from ``last.ckpt``, ``stop_after_steps``, loss history, tokens/s,
metrics, and the summary fields every stage reports.

Lightning checkpoints (optimizer, scheduler, step), logs and stage caches go to the work
folder (``train.work_dir``, default ``<save_path>.work``); a rerun with the same work folder
resumes from ``last.ckpt`` exactly (same batches, same weights as an uninterrupted run). Once
a stage has saved its finished checkpoint, :meth:`FitResult.finish` removes the work folder
unless ``train.keep_work``: at 4B parameters it holds tens of GB of optimizer state.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from .config import OptimConfig, TrainConfig
from .data import StepData
from .metrics import LossHistory, TokensPerSecond

LOGS_SUBDIR = "logs"
#: The checkpoint of the step a WSD decay starts at (``<work>/checkpoints/``, the trainer's step in the
#: name): see :class:`KeepCheckpointAt`.
PRE_DECAY_CKPT = "pre-decay-{step}.ckpt"


def work_dir_of(train: TrainConfig, save_path: str) -> Path:
    """Where a stage keeps its Lightning checkpoints, logs and caches."""
    return Path(train.work_dir or f"{save_path}.work").expanduser()


class StopAfterSteps(L.Callback):
    """Ends ``fit`` once ``steps`` optimizer steps are done, after saving a resumable checkpoint."""

    def __init__(self, steps: int, path: Path):
        self.steps, self.path = steps, path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step >= self.steps and not trainer.should_stop:
            trainer.save_checkpoint(self.path)  # every rank calls it; the strategy writes once
            trainer.should_stop = True


class KeepCheckpointAt(L.Callback):
    """Saves the resumable checkpoint of optimizer step ``step`` to ``path`` once and keeps it.

    ``fit`` keeps the one where a WSD schedule's decay begins: the end of the constant-LR phase, from
    which a longer run can branch (more constant steps, a later decay) without training them again
    (``train.longrun.rewind_to_pre_decay``). Whether it is still to be written is decided when the
    callback is built, in every DDP process alike, so all of them call ``save_checkpoint`` together.
    """

    def __init__(self, step: int, path: Path):
        self.step, self.path = step, Path(path)
        self.pending = not self.path.is_file()

    def _maybe_save(self, trainer: L.Trainer) -> None:
        if self.pending and trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)  # every rank calls it; the strategy writes once
            self.pending = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe_save(trainer)  # a run resumed exactly at that step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._maybe_save(trainer)


class ResumedStep(L.Callback):
    """Records (and prints) the optimizer step a run resumed from, as its checkpoint is loaded."""

    def __init__(self) -> None:
        self.step: Optional[int] = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self.step = int(checkpoint.get("global_step", 0))
        if trainer.is_global_zero:
            print(f"[train] resuming from step {self.step} of {trainer.max_steps}")


def build_trainer(train: TrainConfig, work: Path, callbacks: Sequence[L.Callback], validate: bool,
                  log_every_n_steps: Optional[int] = None) -> L.Trainer:
    """The Lightning Trainer of every stage (the package builds no other)."""
    accumulate = train.accumulate
    validate = validate and train.val_check_interval > 0 and train.limit_val_batches > 0
    return L.Trainer(
        max_steps=train.max_steps, accelerator=train.accelerator, devices=train.devices, strategy=train.strategy,
        precision=train.precision, accumulate_grad_batches=accumulate, use_distributed_sampler=False,
        logger=CSVLogger(work, name=LOGS_SUBDIR), callbacks=list(callbacks),
        val_check_interval=min(train.val_check_interval, train.max_steps) * accumulate if validate else None,
        check_val_every_n_epoch=None, limit_val_batches=train.limit_val_batches if validate else 0,
        enable_progress_bar=train.progress, enable_model_summary=train.progress, num_sanity_val_steps=0,
        log_every_n_steps=log_every_n_steps or max(1, min(10, train.max_steps // 10)),
        gradient_clip_val=train.gradient_clip_val, deterministic=False,
    )


@dataclass
class FitResult:
    """What :func:`fit` did; :attr:`summary` holds the fields every stage reports."""

    trainer: L.Trainer
    train: TrainConfig
    work: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return bool(self.summary["finished"])

    def finish(self, save: Callable[[], None]) -> None:
        """On a finished run: ``save()`` the stage's output (rank 0), then remove the work folder
        unless ``train.keep_work``. An unfinished run keeps everything for the next call."""
        if not (self.finished and self.trainer.is_global_zero):
            return
        save()
        if self.train.keep_work:
            print(f"[train] kept the work folder {self.work} (train.keep_work=true)")
        elif self.work.exists():
            shutil.rmtree(self.work, ignore_errors=True)
            print(f"[train] finished: removed the work folder {self.work} (train.keep_work=true keeps it)")


def fit(module: L.LightningModule, data: StepData, train: TrainConfig, optim: OptimConfig, save_path: str,
        tokens_key: str = "input_ids", tokens_per_row: Optional[int] = None,
        log_every_n_steps: Optional[int] = None, callbacks: Sequence[L.Callback] = ()) -> FitResult:
    """Train ``module`` on ``data`` for ``train.max_steps`` optimizer steps, resumably.

    ``tokens_per_row``: tokens in every training row (packed data) for the summary's ``tokens``;
    None for variable-length data. ``callbacks``: the stage's own, after the harness's.
    """
    optim.check(train)
    if len(data.train_set) < train.micro_batch_size * train.devices:
        raise ValueError(f"only {len(data.train_set)} training examples for train.micro_batch_size="
                         f"{train.micro_batch_size} x train.devices={train.devices}; use more data or a smaller batch")
    work = work_dir_of(train, save_path)
    last = work / "checkpoints" / "last.ckpt"
    history, speed, resumed = LossHistory(), TokensPerSecond(key=tokens_key), ResumedStep()
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=work / "checkpoints", save_last=True, every_n_train_steps=train.checkpoint_every,
                        save_top_k=0),
        history, speed, resumed, *callbacks]
    if optim.schedule == "wsd" and optim.decay_steps > 0:
        decay_start = train.max_steps - optim.decay_steps
        callbacks.append(KeepCheckpointAt(decay_start, work / "checkpoints" / PRE_DECAY_CKPT.format(step=decay_start)))
    if train.stop_after_steps is not None and train.stop_after_steps < train.max_steps:
        callbacks.append(StopAfterSteps(train.stop_after_steps, last))
    trainer = build_trainer(train, work, callbacks, validate=data.val_set is not None,
                            log_every_n_steps=log_every_n_steps)
    resume_from = str(last) if last.is_file() else None
    if trainer.is_global_zero:
        print(f"[train] work folder (checkpoints, logs): {work}" + (f"; resuming from {last}" if resume_from else ""))
    module.train()  # HF from_pretrained returns eval-mode models; frozen peers are not children
    start = time.perf_counter()
    with warnings.catch_warnings():
        # StepData's loader *is* resumable (it starts at the restored step); Lightning cannot tell.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    steps = int(trainer.global_step)
    loss_first, loss_last = history.first_and_last(train.accumulate)
    summary: dict[str, Any] = {
        "steps": steps, "finished": steps >= train.max_steps, "seconds": round(time.perf_counter() - start, 1),
        "resumed_from": resume_from, "resumed_from_step": resumed.step if resume_from else None,
        "loss_first": loss_first, "loss_last": loss_last, "tokens_per_sec": round(speed.mean_tokens_per_sec, 1),
        "work_dir": str(work),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1},
    }
    if not summary["finished"] and trainer.is_global_zero:
        print(f"[train] stopped at step {steps} of {train.max_steps}; rerun with the same work folder to resume "
              f"from {last}")
    if tokens_per_row is not None:
        summary["tokens"] = steps * train.global_batch_size * tokens_per_row
    return FitResult(trainer, train, work, summary)
