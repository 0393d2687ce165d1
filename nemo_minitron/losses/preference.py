"""Preference losses: RPO (Reward-aware Preference Optimization) variants and DPO (paper 4.3).

With a = beta * [(log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))]
and  b = eta  * (reward_chosen - reward_rejected):

- ``rpo_bwd_kl``: KL(Bern(sigmoid(b)) || Bern(sigmoid(a)))
- ``rpo_fwd_kl``: KL(Bern(sigmoid(a)) || Bern(sigmoid(b)))
- ``rpo_sq``:     (a - b)^2
- ``dpo``:        -log sigmoid(a)  (ignores rewards)

RPO pulls the policy's implicit reward gap toward the observed reward gap rather than pushing
it to infinity, so pairs whose answers are almost equally good are not over-optimised.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F

PreferenceLoss = Literal["rpo_bwd_kl", "rpo_fwd_kl", "rpo_sq", "dpo"]
PREFERENCE_LOSSES: tuple[str, ...] = ("rpo_bwd_kl", "rpo_fwd_kl", "rpo_sq", "dpo")


def bernoulli_kl(logit_p: torch.Tensor, logit_q: torch.Tensor) -> torch.Tensor:
    """KL(Bern(sigmoid(logit_p)) || Bern(sigmoid(logit_q))), computed with log-sigmoids (stable)."""
    p = torch.sigmoid(logit_p)
    return (p * (F.logsigmoid(logit_p) - F.logsigmoid(logit_q))
            + (1 - p) * (F.logsigmoid(-logit_p) - F.logsigmoid(-logit_q)))


def preference_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                    ref_rejected: torch.Tensor, loss_type: PreferenceLoss = "rpo_bwd_kl", beta: float = 0.1,
                    eta: float = 1.0, reward_chosen: Optional[torch.Tensor] = None,
                    reward_rejected: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean preference loss over pairs, from summed response log-probabilities (one value per pair)."""
    if loss_type not in PREFERENCE_LOSSES:
        raise ValueError(f"loss_type={loss_type!r} must be one of {PREFERENCE_LOSSES}")
    a = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    if loss_type == "dpo":
        return -F.logsigmoid(a).mean()
    if reward_chosen is None or reward_rejected is None:
        raise ValueError(f"loss_type={loss_type!r} needs reward_chosen and reward_rejected (or use loss_type='dpo')")
    b = eta * (reward_chosen.to(a.dtype) - reward_rejected.to(a.dtype))
    if loss_type == "rpo_sq":
        return (a - b).pow(2).mean()
    if loss_type == "rpo_bwd_kl":
        return bernoulli_kl(b, a).mean()
    return bernoulli_kl(a, b).mean()


def sequence_logprob(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Sum over masked target positions of log p(token | prefix): one value per sequence.

    ``loss_mask[:, t]`` marks token t as part of the response; logits at t-1 predict it.
    """
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_lp = log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (token_lp * loss_mask[:, 1:].to(token_lp.dtype)).sum(-1)
