"""Logit distillation losses with bounded memory at large vocabularies (paper section 3.6).

At vocab 131072 and sequence 8192 one [tokens, vocab] float tensor is 4 GiB. A naive KL keeps
several of them alive for backward (both softmaxes, their logs, the product). Chunking the
forward alone does not help, since autograd would keep every chunk's intermediates. Here a
custom autograd function computes the loss chunk by chunk, saves only its inputs, and
recomputes each chunk's softmaxes in backward to write the gradient: the extra memory is the
gradient tensor plus one chunk.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F

Direction = Literal["forward", "reverse"]


def _token_weights(mask: Optional[torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
    """Per-token weights summing to 1 over valid tokens (mean over valid tokens)."""
    if mask is None:
        return torch.full((n,), 1.0 / n, device=device)
    w = mask.reshape(-1).to(device=device, dtype=torch.float32)
    total = w.sum()
    if total <= 0:
        raise ValueError("the loss mask selects no token")
    return w / total


def _chunk_kl_and_grad(s: torch.Tensor, t: torch.Tensor, temperature: float, direction: Direction,
                       need_grad: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per-token KL for one chunk of [c, V] logits and, optionally, d KL / d student logits."""
    log_ps = F.log_softmax(s.float() / temperature, dim=-1)
    log_pt = F.log_softmax(t.float() / temperature, dim=-1)
    if direction == "forward":  # KL(p_t || p_s)
        pt = log_pt.exp()
        kl = (pt * (log_pt - log_ps)).sum(-1)
        grad = (log_ps.exp() - pt) / temperature if need_grad else None
    else:  # KL(p_s || p_t)
        ps = log_ps.exp()
        diff = log_ps - log_pt
        kl = (ps * diff).sum(-1)
        grad = ps * (diff - kl[:, None]) / temperature if need_grad else None
    return kl, grad


class _ChunkedKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor, temperature: float,
                direction: Direction, chunk: int) -> torch.Tensor:  # type: ignore[override]
        loss = torch.zeros((), device=student.device, dtype=torch.float32)
        for lo in range(0, student.shape[0], chunk):
            kl, _ = _chunk_kl_and_grad(student[lo:lo + chunk], teacher[lo:lo + chunk], temperature, direction,
                                       need_grad=False)
            loss = loss + (kl * weights[lo:lo + chunk]).sum()
        ctx.save_for_backward(student, teacher, weights)
        ctx.temperature, ctx.direction, ctx.chunk = temperature, direction, chunk
        return loss

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        student, teacher, weights = ctx.saved_tensors
        grad = torch.empty_like(student)
        for lo in range(0, student.shape[0], ctx.chunk):
            _, g = _chunk_kl_and_grad(student[lo:lo + ctx.chunk], teacher[lo:lo + ctx.chunk], ctx.temperature,
                                      ctx.direction, need_grad=True)
            grad[lo:lo + ctx.chunk] = (g * (weights[lo:lo + ctx.chunk, None] * grad_out)).to(grad.dtype)
        return grad, None, None, None, None, None


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: Optional[torch.Tensor] = None,
            temperature: float = 1.0, direction: Direction = "forward", chunk_tokens: int = 1024,
            scale_by_temperature_sq: bool = True) -> torch.Tensor:
    """Mean over valid tokens of KL between teacher and student token distributions.

    ``direction="forward"`` is KL(p_teacher || p_student), the paper's choice; ``"reverse"`` is
    KL(p_student || p_teacher). Logits are [..., vocab]; ``mask`` (same leading shape) selects
    the tokens that count. With ``scale_by_temperature_sq`` the loss is multiplied by T^2 so its
    gradient scale does not depend on T (Hinton et al.). Memory beyond the inputs is bounded
    by ``chunk_tokens`` x vocab (plus the gradient, in backward).
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction={direction!r} must be 'forward' or 'reverse'")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: do student and teacher share a vocabulary?")
    vocab = student_logits.shape[-1]
    s = student_logits.reshape(-1, vocab)
    t = teacher_logits.detach().reshape(-1, vocab)
    weights = _token_weights(mask, s.shape[0], s.device)
    if scale_by_temperature_sq:
        weights = weights * temperature**2
    return _ChunkedKD.apply(s, t, weights, float(temperature), direction, int(chunk_tokens))


def kd_loss_reference(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      mask: Optional[torch.Tensor] = None, temperature: float = 1.0,
                      direction: Direction = "forward", scale_by_temperature_sq: bool = True) -> torch.Tensor:
    """The textbook formula on full tensors; the baseline that tests and benchmarks compare to."""
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if direction == "forward":
        per_token = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    else:
        per_token = (log_ps.exp() * (log_ps - log_pt)).sum(-1)
    if mask is None:
        loss = per_token.mean()
    else:
        m = mask.float()
        loss = (per_token * m).sum() / m.sum()
    return loss * (temperature**2 if scale_by_temperature_sq else 1.0)


def shifted_cross_entropy(logits: torch.Tensor, input_ids: torch.Tensor,
                          mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Next-token cross-entropy: logits at position i predict token i+1; ``mask`` marks targets."""
    targets = input_ids[:, 1:]
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    per_token = F.cross_entropy(flat, targets.reshape(-1), reduction="none")
    if mask is None:
        return per_token.mean()
    m = mask[:, 1:].reshape(-1).float()
    return (per_token * m).sum() / m.sum().clamp_min(1)
