"""LightningModule for logit distillation: a frozen teacher teaches a trainable student.

The teacher is held outside the module's registered children, so it is never in the
module's state dict (Lightning checkpoints stay student-only), never wrapped by DDP/FSDP
for gradients, and never touched by the optimizer. It follows the module to its device
and stays in eval mode.
"""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch
from torch import nn

from ..training import cosine_with_warmup, make_adamw
from .losses import Direction, kd_loss, shifted_cross_entropy, shifted_cross_entropy_chunked


class VocabularyMismatchError(ValueError):
    """Student and teacher do not predict over the same token ids."""


def check_same_vocabulary(student: nn.Module, teacher: nn.Module) -> None:
    s, t = student.config.vocab_size, teacher.config.vocab_size
    if s != t:
        raise VocabularyMismatchError(
            f"student vocab_size={s} but teacher vocab_size={t}: logit distillation needs the same "
            "vocabulary and tokenizer; prune the student from this teacher (embedding rows are never pruned)")


class DistillationModule(L.LightningModule):
    """Loss = kd_weight * KL(teacher || student) [+ ce_weight * next-token CE], per valid token."""

    def __init__(self, student: nn.Module, teacher: nn.Module, lr: float = 1e-3, min_lr_ratio: float = 0.1,
                 warmup_steps: int = 10, total_steps: int = 100, weight_decay: float = 0.01,
                 temperature: float = 1.0, direction: Direction = "forward", kd_weight: float = 1.0,
                 ce_weight: float = 0.0, chunk_tokens: Optional[int] = None):
        super().__init__()
        check_same_vocabulary(student, teacher)
        self.student = student
        teacher.requires_grad_(False).eval()
        object.__setattr__(self, "_teacher", teacher)  # deliberately not a registered submodule
        self.save_hyperparameters(ignore=["student", "teacher"])

    @property
    def teacher(self) -> nn.Module:
        return self._teacher

    # -------------------------------------------------------------- device / mode
    def _sync_teacher(self) -> None:
        if next(self.teacher.parameters()).device != self.device:
            self.teacher.to(self.device)
        self.teacher.eval()

    def on_fit_start(self) -> None:
        self._sync_teacher()

    def on_validation_start(self) -> None:
        self._sync_teacher()

    # -------------------------------------------------------------- steps
    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = batch["input_ids"]
        mask = batch.get("loss_mask")
        student_logits = self.student(input_ids=ids, use_cache=False).logits
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=ids, use_cache=False).logits
        hp = self.hparams
        # Position i predicts token i+1, so the last position has no target. Weighting it 0 rather
        # than slicing it off keeps the [B, S, V] logits contiguous: a slice would make kd_loss
        # copy both logit tensors (and keep the student copy alive until backward).
        valid = torch.ones(ids.shape, dtype=torch.float32, device=ids.device)
        valid[:, -1] = 0
        if mask is not None:
            valid[:, :-1] = mask[:, 1:].to(valid.dtype)
        kd = kd_loss(student_logits, teacher_logits, valid, temperature=hp.temperature, direction=hp.direction,
                     chunk_tokens=hp.chunk_tokens)
        # Cross-entropies for the log are computed in chunks without autograd, so logging them costs
        # no [tokens, vocab] copies; only a trained CE term (ce_weight > 0) needs the autograd version.
        if hp.ce_weight:
            student_ce = shifted_cross_entropy(student_logits, ids, mask)
        else:
            student_ce = shifted_cross_entropy_chunked(student_logits, ids, mask, hp.chunk_tokens)
        teacher_ce = shifted_cross_entropy_chunked(teacher_logits, ids, mask, hp.chunk_tokens)
        loss = hp.kd_weight * kd + (hp.ce_weight * student_ce if hp.ce_weight else 0.0)
        return {"loss": loss, "kd": kd.detach(), "student_ce": student_ce.detach(), "teacher_ce": teacher_ce}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=False, sync_dist=True)
        self.log("kd", out["kd"], prog_bar=True, logger=False)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self._losses(batch)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, prog_bar=False, sync_dist=True)
        self.log("val_kd", out["kd"], prog_bar=True, logger=False, sync_dist=True)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = make_adamw(self.student.named_parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        scheduler = cosine_with_warmup(optimizer, hp.warmup_steps, hp.total_steps, hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
