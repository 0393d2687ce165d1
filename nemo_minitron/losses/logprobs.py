"""Logits and log-probabilities only where a loss needs them (post-training's response tokens).

With a 32000-token vocabulary the LM head and the softmax dominate a small model's step, and
post-training scores only assistant tokens (a minority), so these run the backbone on every
position but the head only on the selected ones.
"""

from __future__ import annotations

import torch
from torch import nn

from nemo_minitron.models.runtime import backbone_and_head


def selected_logits(model: nn.Module, input_ids: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Logits ``[N, V]`` of the positions where ``select`` [B, S] is true (row-major order).

    Equal to ``model(input_ids).logits[select]``.
    """
    select = select.bool()
    parts = backbone_and_head(model)
    if parts is None:
        return model(input_ids=input_ids, use_cache=False).logits[select].float()
    backbone, head = parts
    hidden = backbone(input_ids=input_ids, use_cache=False)[0]
    return head(hidden[select]).float()


def next_token_select(mask: torch.Tensor) -> torch.Tensor:
    """Logit positions predicting a masked token: ``out[:, t] = mask[:, t + 1]`` (last column 0)."""
    out = torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
    out[:, :-1] = mask[:, 1:] > 0
    return out


def response_token_logprobs(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the masked tokens (row-major, [N]) and each one's batch row [N].

    Summed per row this equals ``sequence_logprob(model(input_ids).logits, input_ids, mask)``.
    """
    select = next_token_select(mask)
    logits = selected_logits(model, input_ids, select)
    targets = input_ids[:, 1:][mask[:, 1:] > 0]
    token_lp = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(select)[select]
    return token_lp, rows


def response_logprob(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of the masked (response) tokens, one value per sequence."""
    token_lp, rows = response_token_logprobs(model, input_ids, mask)
    return torch.zeros(input_ids.shape[0], dtype=token_lp.dtype, device=token_lp.device).index_add(0, rows, token_lp)
