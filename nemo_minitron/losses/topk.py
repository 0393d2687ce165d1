"""SFT with knowledge distillation from the teacher's top-k logits (paper 4.3; NeMo-Aligner style).

The teacher pass is run once and cached: per token its top-k token ids and logits plus the
log-sum-exp over the whole vocabulary (k=100 of 131072 is ~0.1% of the full logits). The
loss is the forward KL between teacher and student restricted to the teacher's top-k ids; by
default both distributions are renormalised over those k ids (as NeMo-Aligner's
knowledge-distillation loss does). With ``renormalize=False`` the teacher's true probabilities
(from the cached log-sum-exp) and the student's full-vocabulary log-probabilities are used on
the k ids, which ignores the teacher's tail mass.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def topk_teacher(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top-k ids, top-k logits, full log-sum-exp) of teacher logits [..., vocab]."""
    if not 0 < k <= logits.shape[-1]:
        raise ValueError(f"k={k} must be in [1, vocab={logits.shape[-1]}]")
    values, ids = torch.topk(logits.float(), k, dim=-1)
    return ids, values, torch.logsumexp(logits.float(), dim=-1)


def topk_kd_loss(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logits: torch.Tensor,
                 teacher_lse: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                 renormalize: bool = True) -> torch.Tensor:
    """Mean over masked tokens of KL(p_teacher || p_student) on the teacher's top-k ids.

    Shapes: student_logits [..., V]; teacher_ids / teacher_logits [..., k]; teacher_lse and mask [...].
    """
    student_k = student_logits.float().gather(-1, teacher_ids)
    if renormalize:
        log_pt = F.log_softmax(teacher_logits.float(), dim=-1)
        log_ps = F.log_softmax(student_k, dim=-1)
    else:
        if teacher_lse is None:
            raise ValueError("renormalize=False needs the teacher's full log-sum-exp (teacher_lse)")
        log_pt = teacher_logits.float() - teacher_lse.float()[..., None]
        log_ps = student_k - torch.logsumexp(student_logits.float(), dim=-1, keepdim=True)
    per_token = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    if mask is None:
        return per_token.mean()
    m = mask.to(per_token.dtype)
    if m.sum() <= 0:
        raise ValueError("the loss mask selects no token (no assistant tokens in this batch?)")
    return (per_token * m).sum() / m.sum()
