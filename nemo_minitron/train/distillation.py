"""Logit distillation: a frozen teacher teaches a trainable student (paper section 3.6)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from nemo_minitron.losses.kd import Direction, kd_loss, shifted_cross_entropy, shifted_cross_entropy_chunked

from .config import OptimConfig
from .modules import FrozenPeerMixin, TrainModule


class VocabularyMismatchError(ValueError):
    """Student and teacher do not predict over the same token ids."""


def check_same_vocabulary(student: nn.Module, teacher: nn.Module) -> None:
    s, t = student.config.vocab_size, teacher.config.vocab_size
    if s != t:
        raise VocabularyMismatchError(
            f"student vocab_size={s} but teacher vocab_size={t}: logit distillation needs the same "
            "vocabulary and tokenizer; prune the student from this teacher (embedding rows are never pruned)")


def check_same_tokenizer(teacher_tok: Any, student_tok: Any, teacher_path: str, student_path: str) -> None:
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise VocabularyMismatchError(
            f"the tokenizer in student_path={student_path} differs from the teacher's in teacher_path={teacher_path}; "
            "distillation compares token distributions, so both must use the same tokenizer")


class DistillationModule(FrozenPeerMixin, TrainModule):
    """Loss = kd_weight * KL(teacher || student) [+ ce_weight * next-token CE], per valid token."""

    trained = "student"

    def __init__(self, student: nn.Module, teacher: nn.Module, optim: Optional[OptimConfig] = None,
                 total_steps: int = 100, temperature: float = 1.0, direction: Direction = "forward",
                 kd_weight: float = 1.0, ce_weight: float = 0.0, chunk_tokens: Optional[int] = None):
        super().__init__(optim, total_steps)
        check_same_vocabulary(student, teacher)
        self.student = student
        self.hold_frozen("teacher", teacher)
        self.record_settings(ignore=["student", "teacher"])

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
