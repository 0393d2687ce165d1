"""Training losses, as pure functions: logit KD (chunked, bounded memory), top-k KD on cached
teacher targets, RPO/DPO preference losses, and response log-probabilities. No stage code."""

from .kd import (Direction, default_chunk_tokens, kd_loss, kd_loss_reference, shifted_cross_entropy,
                 shifted_cross_entropy_chunked)
from .logprobs import next_token_select, response_logprob, response_token_logprobs, selected_logits
from .preference import PREFERENCE_LOSSES, PreferenceLoss, bernoulli_kl, preference_loss, sequence_logprob
from .topk import topk_kd_loss, topk_teacher

__all__ = [
    "Direction", "default_chunk_tokens", "kd_loss", "kd_loss_reference", "shifted_cross_entropy",
    "shifted_cross_entropy_chunked", "next_token_select", "response_logprob", "response_token_logprobs",
    "selected_logits", "PREFERENCE_LOSSES", "PreferenceLoss", "bernoulli_kl", "preference_loss", "sequence_logprob",
    "topk_kd_loss", "topk_teacher",
]
