"""LightningModules of post-training (paper 4.3): SFT / SFT-KD on top-k teacher targets, and
RPO/DPO alignment against a frozen reference."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nemo_minitron.losses.logprobs import next_token_select, response_logprob, response_token_logprobs, selected_logits
from nemo_minitron.losses.preference import PREFERENCE_LOSSES, preference_loss
from nemo_minitron.losses.topk import topk_kd_loss

from .config import OptimConfig
from .modules import FrozenPeerMixin, TrainModule


class SFTKDModule(TrainModule):
    """Loss = kd_weight * top-k KD (forward KL on the teacher's top-k ids) + sft_weight * CE,
    both averaged over assistant tokens only. ``kd_weight=0, sft_weight=1`` is plain SFT.

    Batches come from :func:`nemo_minitron.posttrain.topk_cache.topk_collate` (``input_ids``,
    ``loss_mask``, ``topk_ids/logits/lse``, ``kd_mask``); with ``kd_weight=0`` (plain SFT) a
    :func:`~nemo_minitron.data.chat.chat_collate` batch suffices.
    """

    trained = "student"

    def __init__(self, student: nn.Module, optim: Optional[OptimConfig] = None, total_steps: int = 100,
                 kd_weight: float = 1.0, sft_weight: float = 0.0, renormalize: bool = True):
        super().__init__(optim, total_steps)
        if kd_weight < 0 or sft_weight < 0 or kd_weight + sft_weight <= 0:
            raise ValueError(f"need kd_weight, sft_weight >= 0 and one of them > 0, got {kd_weight}, {sft_weight}")
        self.student = student
        self.record_settings(ignore=["student"])

    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        ids, loss_mask = batch["input_ids"], batch["loss_mask"]
        predict = next_token_select(loss_mask)  # logit positions whose next token is trained on
        kd_mask = batch["kd_mask"].bool() if hp.kd_weight else torch.zeros_like(predict)
        select = predict | kd_mask
        if not predict.any():
            raise ValueError("the batch has no assistant token to train on")
        logits = selected_logits(self.student, ids, select)  # [N, V], only where a loss needs it
        sft = torch.nn.functional.cross_entropy(logits[predict[select]], ids[:, 1:][loss_mask[:, 1:] > 0])
        out = {"sft": sft.detach()}
        loss = hp.sft_weight * sft if hp.sft_weight else 0.0
        if hp.kd_weight:
            kd = topk_kd_loss(logits, batch["topk_ids"][select], batch["topk_logits"][select],
                              batch["topk_lse"][select], mask=kd_mask[select], renormalize=hp.renormalize)
            loss = loss + hp.kd_weight * kd
            out["kd"] = kd.detach()
        out["loss"] = loss
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.log_losses(self._losses(batch), batch["input_ids"].shape[0])


def pad_pair_batch(chosen: torch.Tensor, rejected: torch.Tensor, pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad two [B, S1] / [B, S2] tensors to the same width."""
    width = max(chosen.shape[1], rejected.shape[1])

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad_value)

    return pad(chosen), pad(rejected)


class RPOModule(FrozenPeerMixin, TrainModule):
    """Preference alignment of ``policy`` against a frozen ``reference`` copy.

    Per pair: summed response log-probs of chosen/rejected under policy and reference
    (:func:`response_logprob`, equal to ``sequence_logprob`` on full logits), then
    :func:`preference_loss` (``rpo_bwd_kl``, ``rpo_fwd_kl``,
    ``rpo_sq`` or ``dpo``), plus ``sft_weight`` x the policy's mean per-token NLL of the chosen
    response. Batch keys: ``chosen_ids``, ``chosen_mask``, ``rejected_ids``, ``rejected_mask``
    ([B, S], right padded; masks 1 on response tokens) and, for the RPO losses,
    ``reward_chosen`` / ``reward_rejected`` [B].
    """

    trained = "policy"

    def __init__(self, policy: nn.Module, reference: nn.Module, optim: Optional[OptimConfig] = None,
                 total_steps: int = 100, loss_type: str = "rpo_bwd_kl", beta: float = 0.1, eta: float = 1.0,
                 sft_weight: float = 0.0, pad_id: int = 0):
        super().__init__(optim, total_steps)
        if loss_type not in PREFERENCE_LOSSES:
            raise ValueError(f"loss_type={loss_type!r} must be one of {PREFERENCE_LOSSES}")
        if policy is reference:
            raise ValueError("the reference must be a separate frozen copy of the policy")
        self.policy = policy
        self.hold_frozen("reference", reference)
        self.record_settings(ignore=["policy", "reference"])

    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        chosen_ids, rejected_ids = pad_pair_batch(batch["chosen_ids"], batch["rejected_ids"], hp.pad_id)
        chosen_mask, rejected_mask = pad_pair_batch(batch["chosen_mask"], batch["rejected_mask"], 0)
        n = chosen_ids.shape[0]
        ids, mask = torch.cat([chosen_ids, rejected_ids]), torch.cat([chosen_mask, rejected_mask])
        token_lp, rows = response_token_logprobs(self.policy, ids, mask)
        policy_lp = torch.zeros(2 * n, dtype=token_lp.dtype, device=ids.device).index_add(0, rows, token_lp)
        with torch.no_grad():
            ref_lp = response_logprob(self.reference, ids, mask)
        loss = preference_loss(policy_lp[:n], policy_lp[n:], ref_lp[:n], ref_lp[n:], loss_type=hp.loss_type,
                               beta=hp.beta, eta=hp.eta, reward_chosen=batch.get("reward_chosen"),
                               reward_rejected=batch.get("reward_rejected"))
        out = {"preference": loss.detach()}
        if hp.sft_weight:
            nll = -token_lp[rows < n].mean()  # mean per-token NLL of the chosen responses
            loss = loss + hp.sft_weight * nll
            out["sft_nll"] = nll.detach()
        margin = ((policy_lp[:n] - ref_lp[:n]) - (policy_lp[n:] - ref_lp[n:])).detach()
        out.update(loss=loss, margin=margin.mean(), reward_accuracy=(margin > 0).float().mean())
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.log_losses(self._losses(batch), batch["chosen_ids"].shape[0])
