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
    if mask.numel() != n:
        raise ValueError(f"the loss mask has {mask.numel()} entries but the logits have {n} tokens")
    w = mask.reshape(-1).to(device=device, dtype=torch.float32)
    total = w.sum()
    if total <= 0:
        raise ValueError("the loss mask selects no token")
    return w / total


#: Default chunk size in logit elements (16 MiB of fp32): 128 tokens at vocab 32000, 32 at 131072.
#: Chunks this small stay in the allocator's reused heap and in cache; 1024-token chunks at vocab
#: 32000 measured 6x slower on CPU (fresh page-faulted memory for every temporary) and use more memory.
CHUNK_ELEMENTS = 1 << 22


def default_chunk_tokens(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, vocab))


def _scaled(x: torch.Tensor, temperature: float) -> torch.Tensor:
    x = x.float()  # may be the caller's tensor itself: never modified in place
    return x / temperature if temperature != 1.0 else x


def _chunk_kl_and_grad(s: torch.Tensor, t: torch.Tensor, temperature: float, direction: Direction,
                       need_kl: bool = True, need_grad: bool = False,
                       ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Per-token KL for one chunk of [c, V] logits and/or d KL / d student logits (fp32).

    Temporaries are owned here (fresh ``log_softmax`` outputs), so they are updated in place.
    """
    log_ps = F.log_softmax(_scaled(s, temperature), dim=-1)
    log_pt = F.log_softmax(_scaled(t, temperature), dim=-1)
    kl = grad = None
    if direction == "forward":  # KL(p_t || p_s); d/dz_s = p_s - p_t
        pt = log_pt.exp()
        if need_grad:
            grad = log_ps.exp().sub_(pt)
        if need_kl:
            kl = log_pt.sub_(log_ps).mul_(pt).sum(-1)
    else:  # KL(p_s || p_t); d/dz_s = p_s * (log p_s - log p_t - KL)
        ps = log_ps.exp()
        diff = log_ps.sub_(log_pt)
        kl = (ps * diff).sum(-1)
        if need_grad:
            grad = diff.sub_(kl[:, None]).mul_(ps)
    if grad is not None and temperature != 1.0:
        grad.div_(temperature)  # z = logits / T
    return kl, grad


class _ChunkedKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor, temperature: float,
                direction: Direction, chunk: int) -> torch.Tensor:  # type: ignore[override]
        loss = torch.zeros((), device=student.device, dtype=torch.float32)
        for lo in range(0, student.shape[0], chunk):
            kl, _ = _chunk_kl_and_grad(student[lo:lo + chunk], teacher[lo:lo + chunk], temperature, direction)
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
                                      ctx.direction, need_kl=False, need_grad=True)
            grad[lo:lo + ctx.chunk] = g.mul_(weights[lo:lo + ctx.chunk, None] * grad_out)  # casts to grad's dtype
        return grad, None, None, None, None, None


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: Optional[torch.Tensor] = None,
            temperature: float = 1.0, direction: Direction = "forward", chunk_tokens: Optional[int] = None,
            scale_by_temperature_sq: bool = True) -> torch.Tensor:
    """Mean over valid tokens of KL between teacher and student token distributions.

    ``direction="forward"`` is KL(p_teacher || p_student), the paper's choice; ``"reverse"`` is
    KL(p_student || p_teacher). Logits are [..., vocab]; ``mask`` (same leading shape) selects
    the tokens that count. With ``scale_by_temperature_sq`` the loss is multiplied by T^2 so its
    gradient scale does not depend on T (Hinton et al.). Memory beyond the inputs is a few
    fp32 ``chunk_tokens x vocab`` temporaries (default: about 4M logits, 16 MiB, per chunk) plus
    the gradient, in backward.
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction={direction!r} must be 'forward' or 'reverse'")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive")
    if chunk_tokens is not None and chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens} must be >= 1 (or None: about 4M logits per chunk)")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: do student and teacher share a vocabulary?")
    vocab = student_logits.shape[-1]
    s = student_logits.reshape(-1, vocab)
    t = teacher_logits.detach().reshape(-1, vocab)
    weights = _token_weights(mask, s.shape[0], s.device)
    if scale_by_temperature_sq:
        weights = weights * temperature**2
    chunk = chunk_tokens if chunk_tokens is not None else default_chunk_tokens(vocab)
    return _ChunkedKD.apply(s, t, weights, float(temperature), direction, int(chunk))


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


@torch.no_grad()
def shifted_cross_entropy_chunked(logits: torch.Tensor, input_ids: torch.Tensor, mask: Optional[torch.Tensor] = None,
                                  chunk_tokens: Optional[int] = None) -> torch.Tensor:
    """:func:`shifted_cross_entropy` without autograd, in chunks: for logging at large vocabularies.

    ``shifted_cross_entropy`` copies the shifted logits and keeps a full log-softmax, two extra
    [tokens, vocab] tensors; here the temporaries are chunk-sized (``kd_loss``'s default chunk).
    """
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)  # a view of contiguous [B, S, V] logits
    targets = torch.zeros_like(input_ids)
    targets[:, :-1] = input_ids[:, 1:]
    weights = torch.zeros(input_ids.shape, dtype=torch.float32, device=logits.device)
    weights[:, :-1] = 1.0 if mask is None else mask[:, 1:].to(torch.float32)
    targets, weights = targets.reshape(-1), weights.reshape(-1)
    chunk = chunk_tokens or default_chunk_tokens(vocab)
    total = torch.zeros((), dtype=torch.float32, device=logits.device)
    for lo in range(0, flat.shape[0], chunk):
        ce = F.cross_entropy(flat[lo:lo + chunk].float(), targets[lo:lo + chunk], reduction="none")
        total += (ce * weights[lo:lo + chunk]).sum()
    return total / weights.sum().clamp_min(1)
