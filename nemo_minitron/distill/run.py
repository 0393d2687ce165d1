"""Distill a student checkpoint from a teacher checkpoint, resumably, into an HF checkpoint.

Lightning checkpoints (optimizer, scheduler, step) and logs go to ``work_dir`` (default
``<save_path>.work``); a rerun with the same ``work_dir`` resumes from ``last.ckpt``. Only the
final student, with the tokenizer and a summary, is written to ``save_path``, atomically.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from ..data.tokens import corpus_tokens
from ..models import load_model, load_tokenizer, save_checkpoint
from ..training import TokensPerSecond
from .data import PackedTokensData
from .module import DistillationModule, VocabularyMismatchError

SUMMARY_FILE = "distill_summary.json"


def check_same_tokenizer(teacher_tok: Any, student_tok: Any, teacher_path: str, student_path: str) -> None:
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise VocabularyMismatchError(
            f"the tokenizer in student_path={student_path} differs from the teacher's in teacher_path={teacher_path}; "
            "distillation compares token distributions, so both must use the same tokenizer")


def _micro_batches(global_batch: int, micro_batch: int, world: int) -> int:
    if global_batch % (micro_batch * world):
        raise ValueError(f"global_batch_size={global_batch} must be a multiple of micro_batch_size x devices "
                         f"= {micro_batch} x {world}")
    return global_batch // (micro_batch * world)


def distill_checkpoint(teacher_path: str, student_path: str, save_path: str, data_path: Optional[str] = None,
                       val_data_path: Optional[str] = None,
                       seq_length: int = 256, micro_batch_size: int = 4, global_batch_size: int = 8,
                       max_steps: int = 100, lr: float = 1e-3, min_lr_ratio: float = 0.1, warmup_steps: int = 10,
                       weight_decay: float = 0.01, temperature: float = 1.0, direction: str = "forward",
                       ce_weight: float = 0.0, val_check_interval: int = 50, limit_val_batches: int = 8,
                       accelerator: str = "cpu", devices: int = 1, strategy: str = "auto",
                       precision: str = "32-true", seed: int = 0, work_dir: Optional[str] = None,
                       checkpoint_every: int = 50, progress: bool = True,
                       stop_after_steps: Optional[int] = None) -> dict[str, Any]:
    """Train ``student_path`` to match ``teacher_path``'s logits; save it to ``save_path``.

    ``stop_after_steps`` ends this call after that many optimizer steps (counted from step 0, so
    a resumed run counts its earlier steps) with a resumable ``last.ckpt`` in ``work_dir``; the
    LR schedule still spans ``max_steps``. Use it to split a run over time-limited jobs: the
    student is written to ``save_path`` only by the call that reaches ``max_steps``.
    """
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must be between 0 and max_steps={max_steps}")
    if stop_after_steps is not None and stop_after_steps < 1:
        raise ValueError(f"stop_after_steps={stop_after_steps} must be >= 1 (or None)")
    teacher_tok, student_tok = load_tokenizer(teacher_path), load_tokenizer(student_path)
    check_same_tokenizer(teacher_tok, student_tok, teacher_path, student_path)
    accumulate = _micro_batches(global_batch_size, micro_batch_size, devices)
    L.seed_everything(seed, workers=True, verbose=False)
    teacher, student = load_model(teacher_path), load_model(student_path)
    module = DistillationModule(student, teacher, lr=lr, min_lr_ratio=min_lr_ratio, warmup_steps=warmup_steps,
                                total_steps=max_steps, weight_decay=weight_decay, temperature=temperature,
                                direction=direction, ce_weight=ce_weight)  # type: ignore[arg-type]
    train = corpus_tokens(teacher_tok, seq_length, data_path, "train")
    # Validation: the user's val_data_path, else the default corpus's held-out split when training on it.
    has_val = bool(val_data_path) or not data_path
    val = corpus_tokens(teacher_tok, seq_length, val_data_path, "validation") if has_val else None
    data = PackedTokensData(train, val, micro_batch_size, max_steps, seed=seed)
    work = Path(work_dir or f"{save_path}.work")
    ckpt = ModelCheckpoint(dirpath=work / "checkpoints", save_last=True, every_n_train_steps=checkpoint_every,
                           save_top_k=0)
    last = work / "checkpoints" / "last.ckpt"
    callbacks: list[L.Callback] = [ckpt, TokensPerSecond()]
    if stop_after_steps is not None and stop_after_steps < max_steps:
        callbacks.append(_StopAfterSteps(stop_after_steps, last))
    trainer = L.Trainer(
        max_steps=max_steps, accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        accumulate_grad_batches=accumulate, use_distributed_sampler=False, logger=CSVLogger(work, name="logs"),
        callbacks=callbacks, val_check_interval=min(val_check_interval, max_steps) * accumulate,
        check_val_every_n_epoch=None, limit_val_batches=limit_val_batches if val is not None else 0,
        enable_progress_bar=progress, enable_model_summary=progress, num_sanity_val_steps=0, log_every_n_steps=max(1, min(10, max_steps // 10)),
        deterministic=False,
    )
    resume_from = str(last) if last.is_file() else None
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    summary = {
        "teacher_path": str(teacher_path), "student_path": str(student_path), "steps": trainer.global_step,
        "tokens": trainer.global_step * global_batch_size * seq_length, "seconds": round(time.perf_counter() - start, 1),
        "resumed_from": resume_from, "finished": trainer.global_step >= max_steps, "metrics": metrics,
        "config": {"lr": lr, "warmup_steps": warmup_steps, "temperature": temperature, "direction": direction,
                   "ce_weight": ce_weight, "seq_length": seq_length, "global_batch_size": global_batch_size},
    }
    if trainer.is_global_zero and summary["finished"]:
        save_checkpoint(module.student, save_path, tokenizer=student_tok,
                        extra=lambda d: (d / SUMMARY_FILE).write_text(json.dumps(summary, indent=1)))
    return summary


class _StopAfterSteps(L.Callback):
    """Ends ``fit`` once ``steps`` optimizer steps are done, after saving a resumable checkpoint."""

    def __init__(self, steps: int, path: Path):
        self.steps, self.path = steps, path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step >= self.steps and not trainer.should_stop:
            trainer.save_checkpoint(self.path)  # every rank calls it; the strategy writes once
            trainer.should_stop = True


def validation_loss(model: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` on packed rows."""
    from .losses import shifted_cross_entropy_chunked

    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for lo in range(0, tokens.shape[0], batch_size):
            batch = tokens[lo:lo + batch_size]
            total += shifted_cross_entropy_chunked(model(input_ids=batch, use_cache=False).logits, batch).item() * batch.shape[0]
            n += batch.shape[0]
    return total / max(n, 1) if n else math.nan
